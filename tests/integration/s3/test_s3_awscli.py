"""The AWS CLI against a real server: s3 cp / sync / ls / rm and s3api calls."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ACCESS, SECRET, Server

AWS = shutil.which("aws")
pytestmark = pytest.mark.skipif(AWS is None, reason="the AWS CLI (`aws`) is not installed on this machine")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("awscli") / "dwh-data")
    yield srv
    assert "Traceback" not in srv.stop()


def aws(server: Server, tmp_path: Path, *args: str) -> str:
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3v4\n")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    out = subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cp_ls_rm_including_multipart(server: Server, tmp_path: Path) -> None:
    aws(server, tmp_path, "s3", "mb", "s3://cli-bucket")
    small = tmp_path / "small.txt"
    small.write_text("hello from the aws cli\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024 + 11))  # over the CLI's 8 MiB multipart threshold
    aws(server, tmp_path, "s3", "cp", str(small), "s3://cli-bucket/dir/small.txt")
    aws(server, tmp_path, "s3", "cp", str(big), "s3://cli-bucket/dir/big.bin")
    listing = aws(server, tmp_path, "s3", "ls", "s3://cli-bucket/dir/")
    assert "small.txt" in listing and "big.bin" in listing
    aws(server, tmp_path, "s3", "cp", "s3://cli-bucket/dir/big.bin", str(tmp_path / "big.back"))
    assert filecmp.cmp(big, tmp_path / "big.back", shallow=False)
    head = json.loads(aws(server, tmp_path, "s3api", "head-object", "--bucket", "cli-bucket", "--key", "dir/big.bin"))
    parts = -(-big.stat().st_size // (8 * 1024 * 1024))  # the CLI's default 8 MiB parts
    assert head["ContentLength"] == big.stat().st_size and head["ETag"].endswith(f'-{parts}"')
    aws(server, tmp_path, "s3", "rm", "--recursive", "s3://cli-bucket/dir/")
    left = aws(server, tmp_path, "s3api", "list-objects-v2", "--bucket", "cli-bucket", "--prefix", "dir/")
    assert not left.strip() or json.loads(left).get("KeyCount", 0) == 0


def test_sync_both_ways(server: Server, tmp_path: Path) -> None:
    aws(server, tmp_path, "s3", "mb", "s3://cli-sync")
    src = tmp_path / "tree"
    for i in range(12):
        path = src / f"d{i % 3}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1000 + i * 5000))
    aws(server, tmp_path, "s3", "sync", str(src), "s3://cli-sync/tree")
    listed = json.loads(aws(server, tmp_path, "s3api", "list-objects-v2", "--bucket", "cli-sync"))
    assert len(listed["Contents"]) == 12
    back = tmp_path / "back"
    aws(server, tmp_path, "s3", "sync", "s3://cli-sync/tree", str(back))
    assert not filecmp.dircmp(src, back).diff_files
    for sub in ("d0", "d1", "d2"):
        assert sorted(p.name for p in (src / sub).iterdir()) == sorted(p.name for p in (back / sub).iterdir())
    again = aws(server, tmp_path, "s3", "sync", str(src), "s3://cli-sync/tree")
    assert "upload:" not in again  # nothing changed, nothing sent


def test_s3api_put_get(server: Server, tmp_path: Path) -> None:
    aws(server, tmp_path, "s3api", "create-bucket", "--bucket", "cli-api")
    body = tmp_path / "body"
    body.write_bytes(b"s3api body")
    aws(
        server,
        tmp_path,
        "s3api",
        "put-object",
        "--bucket",
        "cli-api",
        "--key",
        "k",
        "--body",
        str(body),
        "--content-type",
        "text/x-test",
        "--metadata",
        "a=1",
    )
    out = tmp_path / "out"
    meta = json.loads(aws(server, tmp_path, "s3api", "get-object", "--bucket", "cli-api", "--key", "k", str(out)))
    assert out.read_bytes() == b"s3api body" and meta["ContentType"] == "text/x-test" and meta["Metadata"] == {"a": "1"}
