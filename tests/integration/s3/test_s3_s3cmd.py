"""s3cmd (Debian's) against a real ``dwh serve``: buckets, put/get (single and multipart), sync,
remote copy and move, header changes, ACLs by document, lifecycle and delete.

s3cmd is a third S3 implementation (Python, its own SigV4 signer and XML), and the one that
sets ACLs by reading the ACL document, adding a grant and writing it back. Its configuration is
a temporary file; the machine's ``~/.s3cfg`` is never read. CI installs the Debian package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import DwhServer, unique_bucket

S3CMD = shutil.which("s3cmd")
if S3CMD is None:
    if os.environ.get("CI"):
        raise RuntimeError("s3cmd is required in CI (.ci/run installs the Debian package)")
    pytest.skip("s3cmd is not installed (apt-get install s3cmd)", allow_module_level=True)

MiB = 1024 * 1024


class S3cmd:
    def __init__(self, server: DwhServer, home: Path, *, signature_v2: bool = False) -> None:
        self.config = home / ("s3cfg-v2" if signature_v2 else "s3cfg")
        address = f"{server.host}:{server.port}"
        self.config.write_text(
            "[default]\n"
            f"access_key = {server.access_key}\n"
            f"secret_key = {server.secret_key}\n"
            f"host_base = {address}\nhost_bucket = {address}\n"
            f"bucket_location = {server.region}\n"
            f"use_https = False\nsignature_v2 = {signature_v2}\n"
        )
        self.config.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"HOME": str(home)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert S3CMD is not None
        done = subprocess.run(
            [S3CMD, "-c", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"s3cmd {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DwhServer, S3cmd]]:
    base = tmp_path_factory.mktemp("s3cmd")
    server = DwhServer(base / "data").start()
    try:
        yield server, S3cmd(server, base)
    finally:
        server.terminate()


def anonymous_status(server: DwhServer, bucket: str, key: str) -> int:
    try:
        with urllib.request.urlopen(server.url(bucket, key), timeout=30) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.s3op(
    "client:s3cmd",
    note="s3cmd mb/put/get (12 MiB in 5 MiB parts)/ls/info/sync --delete-removed/cp/mv/modify/del/rb",
)
@pytest.mark.s3op("auth:sigv2", note="s3cmd with signature_v2 = True: the same round")
@pytest.mark.parametrize("signature_v2", [False, True], ids=["sigv4", "sigv2"])
def test_put_get_sync_copy_move(
    tool: tuple[DwhServer, S3cmd], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, signature_v2: bool
) -> None:
    server, s3cmd = tool
    if signature_v2:
        s3cmd = S3cmd(server, tmp_path_factory.mktemp("s3cmd-v2"), signature_v2=True)
    bucket = unique_bucket("s3cmd")
    big, small = os.urandom(12 * MiB + 3), b"hello s3cmd\n"
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "small.txt").write_bytes(small)
    s3cmd("mb", f"s3://{bucket}")
    s3cmd("put", str(tmp_path / "small.txt"), f"s3://{bucket}/a/small.txt")
    s3cmd("put", "--multipart-chunk-size-mb=5", str(tmp_path / "big.bin"), f"s3://{bucket}/a/big.bin")
    listing = s3cmd("ls", "-r", f"s3://{bucket}").stdout
    assert f"s3://{bucket}/a/big.bin" in listing and str(len(big)) in listing
    info = s3cmd("info", f"s3://{bucket}/a/small.txt").stdout
    assert hashlib.md5(small).hexdigest() in info
    s3cmd("get", "--force", f"s3://{bucket}/a/big.bin", str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == big
    s3: Any = server.boto3_client()
    assert s3.head_object(Bucket=bucket, Key="a/big.bin")["ETag"].strip('"').endswith("-3")
    # sync up, then again after removing and changing files
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for name in ("one.txt", "sub/two words.txt", "sub/\u00e9t\u00e9.txt"):
        (tree / name).write_text(name)
    s3cmd("sync", f"{tree}/", f"s3://{bucket}/sync/")
    (tree / "one.txt").unlink()
    (tree / "sub/two words.txt").write_text("changed")
    s3cmd("sync", "--delete-removed", f"{tree}/", f"s3://{bucket}/sync/")
    keys = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="sync/")["Contents"]}
    assert keys == {
        "sync/sub/two words.txt": len("changed"),
        "sync/sub/\u00e9t\u00e9.txt": len("sub/\u00e9t\u00e9.txt".encode()),
    }
    # remote copy and move, a header changed in place (a copy onto itself with REPLACE)
    s3cmd("cp", f"s3://{bucket}/a/small.txt", f"s3://{bucket}/b/small.txt")
    s3cmd("mv", f"s3://{bucket}/b/small.txt", f"s3://{bucket}/c/small.txt")
    s3cmd("modify", "--add-header=Cache-Control:max-age=60", f"s3://{bucket}/c/small.txt")
    head = s3.head_object(Bucket=bucket, Key="c/small.txt")
    assert head["CacheControl"] == "max-age=60"
    assert s3.get_object(Bucket=bucket, Key="c/small.txt")["Body"].read() == small
    assert "b/small.txt" not in {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    s3cmd("del", "--recursive", "--force", f"s3://{bucket}")
    s3cmd("rb", f"s3://{bucket}")
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


@pytest.mark.s3op(
    "client:s3cmd",
    "PutObjectAcl",
    "GetObjectAcl",
    note="s3cmd setacl --acl-public/--acl-private (an ACL document read, changed and written back), "
    "put --acl-public (canned, multipart too); a grant to another account answers NotImplemented",
)
def test_acls_and_lifecycle(tool: tuple[DwhServer, S3cmd], tmp_path: Path) -> None:
    server, s3cmd = tool
    bucket = unique_bucket("s3cmd")
    (tmp_path / "f.txt").write_bytes(b"shared")
    (tmp_path / "big.bin").write_bytes(os.urandom(6 * MiB))
    s3cmd("mb", f"s3://{bucket}")
    s3cmd("put", str(tmp_path / "f.txt"), f"s3://{bucket}/f.txt")
    assert anonymous_status(server, bucket, "f.txt") == 403
    s3cmd("setacl", "--acl-public", f"s3://{bucket}/f.txt")
    assert anonymous_status(server, bucket, "f.txt") == 200
    assert "*anon*: READ" in s3cmd("info", f"s3://{bucket}/f.txt").stdout
    s3cmd("setacl", "--acl-private", f"s3://{bucket}/f.txt")
    assert anonymous_status(server, bucket, "f.txt") == 403
    refused = s3cmd("setacl", "--acl-grant=read:someone-else", f"s3://{bucket}/f.txt", check=False)
    assert refused.returncode != 0 and "NotImplemented" in refused.stderr
    assert anonymous_status(server, bucket, "f.txt") == 403
    s3cmd("put", "--acl-public", "--multipart-chunk-size-mb=5", str(tmp_path / "big.bin"), f"s3://{bucket}/big.bin")
    assert anonymous_status(server, bucket, "big.bin") == 200
    s3cmd("expire", f"s3://{bucket}", "--expiry-days=30")
    rules = s3cmd("getlifecycle", f"s3://{bucket}").stdout
    assert "<Days>30</Days>" in rules
    s3cmd("dellifecycle", f"s3://{bucket}")
    assert s3cmd("getlifecycle", f"s3://{bucket}", check=False).returncode != 0
