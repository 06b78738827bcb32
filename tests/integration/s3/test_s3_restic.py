"""The write-only backup key with a real backup tool: restic (Debian's) against `dwh serve`.

A key with only the built-in ``writeonly`` policy can initialise a repository, back up, list,
check and restore (restic reads back its own config, keys, index and snapshots, and removes its
own lock files), while ``forget --prune`` — what ransomware holding the key would try — is
refused and every snapshot survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from iamkit import client, denied, offline, stop
from s3server import DwhServer

RESTIC = shutil.which("restic")
if RESTIC is None:
    if os.environ.get("CI"):
        raise RuntimeError("restic is required in CI (.ci/run installs the Debian package)")
    pytest.skip("restic is not installed (apt-get install restic)", allow_module_level=True)

BUCKET = "backups"


class Restic:
    def __init__(self, server: DwhServer, access_key: str, secret: str, cache: Path) -> None:
        self.env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret,
            RESTIC_PASSWORD="correct horse battery staple",
            RESTIC_REPOSITORY=f"s3:{server.endpoint}/{BUCKET}/laptop",
            RESTIC_CACHE_DIR=str(cache),
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        assert RESTIC is not None
        done = subprocess.run(
            [RESTIC, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check:
            assert done.returncode == 0, f"restic {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def snapshot_ids(self) -> list[str]:
        import json

        return sorted(s["id"] for s in json.loads(self("snapshots", "--json").stdout))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DwhServer, Restic, tuple[str, str]]]:
    base = tmp_path_factory.mktemp("restic")
    server = DwhServer(base / "data")
    with offline(server) as wh:
        wh.create_bucket(BUCKET)
        wh.iam.create_user("default", "laptop")
        wh.iam.attach_policy("default", "writeonly", user="laptop")
        key = wh.iam.create_access_key("default", "laptop")
    try:
        yield (
            server,
            Restic(server, key.access_key_id, key.secret_key, base / "cache"),
            (key.access_key_id, key.secret_key),
        )
    finally:
        stop(server)


def test_restic_backs_up_and_restores_with_a_write_only_key(
    setup: tuple[DwhServer, Restic, tuple[str, str]], tmp_path: Path
) -> None:
    server, restic, (access_key, secret) = setup
    src = tmp_path / "home"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "report.txt").write_text("quarterly numbers\n" * 1000)
    (src / "photo.raw").write_bytes(os.urandom(3 * 1024 * 1024))
    restic("init")
    restic("backup", str(src))
    (src / "docs" / "report.txt").write_text("revised numbers\n" * 1000)
    second = restic("backup", str(src))
    assert "Remove(<lock" not in second.stderr  # its own locks are removed without a retry
    snapshots = restic.snapshot_ids()
    assert len(snapshots) == 2
    restic("check", "--read-data")

    target = tmp_path / "restore"
    restic("restore", "latest", "--target", str(target))
    restored = target / src.relative_to("/")
    assert (restored / "photo.raw").read_bytes() == (src / "photo.raw").read_bytes()
    assert (restored / "docs" / "report.txt").read_text() == "revised numbers\n" * 1000

    # Ransomware with the key: forgetting and pruning the backups is refused, nothing is lost.
    forget = restic("forget", "--keep-last", "1", "--prune", check=False, timeout=300)
    assert forget.returncode != 0
    assert restic.snapshot_ids() == snapshots
    s3 = client(server, access_key, secret)
    data_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="laptop/data/")["Contents"]]
    assert data_keys
    assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=data_keys[0]))
    assert denied(lambda: s3.put_object(Bucket=BUCKET, Key=data_keys[0], Body=b"encrypted by ransomware"))
    restic("check", "--read-data")
