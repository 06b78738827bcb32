"""rclone (Debian's) against a real ``dwh serve``: copy, sync, check, server-side copy and move,
ranges, modification times, storage class, versions, presigned links, purge.

rclone is its own S3 implementation (the AWS SDK for Go underneath, with rclone's own listing,
multipart and metadata conventions), so it exercises the server differently from boto3 and the
AWS CLI. The remote is configured by environment variables only (``RCLONE_CONFIG_DWH_*``); the
machine's own rclone configuration is never read. CI installs the Debian package (``.ci/run``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import DwhServer, unique_bucket

RCLONE = shutil.which("rclone")
if RCLONE is None:
    if os.environ.get("CI"):
        raise RuntimeError("rclone is required in CI (.ci/run installs the Debian package)")
    pytest.skip("rclone is not installed (apt-get install rclone)", allow_module_level=True)

MiB = 1024 * 1024
# Names that need care in URLs, signatures and XML listings.
TREE = {
    "small.txt": b"hello rclone\n",
    "empty": b"",
    "sub/\u00fcn\u00efcode name with spaces.bin": os.urandom(100_000),
    "sub/plus+and%percent&amp;.txt": b"x" * 10,
    "sub/deeper/big.bin": os.urandom(12 * MiB + 5),  # multipart below: 5 MiB parts
}


class Rclone:
    def __init__(self, server: DwhServer, home: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
        env.update(
            RCLONE_CONFIG=str(home / "rclone.conf"),  # never the user's; empty, the remote is below
            RCLONE_CONFIG_DWH_TYPE="s3",
            RCLONE_CONFIG_DWH_PROVIDER="Other",
            RCLONE_CONFIG_DWH_ACCESS_KEY_ID=server.access_key,
            RCLONE_CONFIG_DWH_SECRET_ACCESS_KEY=server.secret_key,
            RCLONE_CONFIG_DWH_ENDPOINT=server.endpoint,
            RCLONE_CONFIG_DWH_REGION=server.region,
            HOME=str(home),
        )
        (home / "rclone.conf").touch()
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert RCLONE is not None
        done = subprocess.run([RCLONE, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False)
        if check:
            assert done.returncode == 0, f"rclone {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def listing(self, remote: str, *flags: str) -> dict[str, dict[str, Any]]:
        entries = json.loads(self("lsjson", "-R", "--files-only", *flags, remote).stdout)
        return {e["Path"]: e for e in entries}


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DwhServer, Rclone]]:
    base = tmp_path_factory.mktemp("rclone")
    server = DwhServer(base / "data").start()
    try:
        yield server, Rclone(server, base)
    finally:
        server.terminate()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.mark.s3op(
    "client:rclone",
    "ListObjectsV2",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    note="rclone copy/sync/check (MD5s compared, and the bytes with --download), multipart 5 MiB parts",
)
def test_copy_sync_and_check(rc: tuple[DwhServer, Rclone], tmp_path: Path) -> None:
    server, rclone = rc
    bucket = unique_bucket("rclone")
    src = write_tree(tmp_path / "src", TREE)
    rclone("mkdir", f"dwh:{bucket}")
    rclone("copy", str(src), f"dwh:{bucket}/tree", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    listed = rclone.listing(f"dwh:{bucket}/tree", "--hash")
    assert {p: e["Size"] for p, e in listed.items()} == {p: len(d) for p, d in TREE.items()}
    for path, data in TREE.items():  # the multipart object's MD5 is the one rclone stored beside it
        assert listed[path]["Hashes"]["md5"] == hashlib.md5(data).hexdigest(), path
    assert "0 differences found" in rclone("check", str(src), f"dwh:{bucket}/tree").stderr
    assert "0 differences found" in rclone("check", "--download", str(src), f"dwh:{bucket}/tree").stderr
    # what boto3 reads is what rclone wrote
    s3: Any = server.boto3_client()
    got = s3.get_object(Bucket=bucket, Key="tree/sub/deeper/big.bin")
    assert got["Body"].read() == TREE["sub/deeper/big.bin"] and got["ETag"].strip('"').endswith("-3")
    # sync: a removed file goes, a changed one is replaced, the rest is left alone
    (src / "empty").unlink()
    (src / "small.txt").write_bytes(b"changed\n")
    out = rclone("sync", str(src), f"dwh:{bucket}/tree", "-v").stderr
    assert "empty: Deleted" in out and "small.txt: Copied (replaced existing)" in out
    assert "big.bin" not in out  # unchanged: neither uploaded nor deleted
    listed = rclone.listing(f"dwh:{bucket}/tree")
    assert "empty" not in listed and listed["small.txt"]["Size"] == len(b"changed\n")
    down = tmp_path / "down"
    rclone("copy", f"dwh:{bucket}/tree", str(down))
    assert (down / "sub/deeper/big.bin").read_bytes() == TREE["sub/deeper/big.bin"]
    assert (down / "sub/plus+and%percent&amp;.txt").read_bytes() == b"x" * 10
    rclone("purge", f"dwh:{bucket}")
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


@pytest.mark.s3op(
    "client:rclone",
    "CopyObject",
    "GetObject",
    note="rclone copyto/moveto (server-side copy), cat --offset/--count (ranges), touch (modification time "
    "by a copy onto itself), settier STANDARD, link (presigned GET)",
)
def test_server_side_operations(rc: tuple[DwhServer, Rclone], tmp_path: Path) -> None:
    _, rclone = rc
    bucket = unique_bucket("rclone")
    data = os.urandom(3 * MiB)
    (tmp_path / "f.bin").write_bytes(data)
    (tmp_path / "t.txt").write_bytes(b"0123456789abcdef")
    rclone("copyto", str(tmp_path / "f.bin"), f"dwh:{bucket}/f.bin")
    rclone("copyto", str(tmp_path / "t.txt"), f"dwh:{bucket}/t.txt")
    rclone("copyto", f"dwh:{bucket}/f.bin", f"dwh:{bucket}/copy/f.bin")
    rclone("moveto", f"dwh:{bucket}/copy/f.bin", f"dwh:{bucket}/moved/f.bin")
    assert set(rclone.listing(f"dwh:{bucket}")) == {"f.bin", "t.txt", "moved/f.bin"}
    moved = subprocess.run(  # the bytes, not text
        [str(RCLONE), "cat", f"dwh:{bucket}/moved/f.bin"], env=rclone.env, capture_output=True, timeout=120
    )
    assert moved.returncode == 0 and moved.stdout == data
    assert rclone("cat", "--offset", "3", "--count", "5", f"dwh:{bucket}/t.txt").stdout == "34567"
    assert rclone("cat", "--tail", "4", f"dwh:{bucket}/t.txt").stdout == "cdef"
    rclone("touch", "-t", "2020-01-02T03:04:05", f"dwh:{bucket}/t.txt")
    assert rclone.listing(f"dwh:{bucket}")["t.txt"]["ModTime"].startswith("2020-01-02T03:04:05")
    rclone("settier", "STANDARD", f"dwh:{bucket}/t.txt")  # a copy onto itself naming the class
    assert rclone.listing(f"dwh:{bucket}")["t.txt"]["Tier"] == "STANDARD"
    assert rclone("cat", f"dwh:{bucket}/t.txt").stdout == "0123456789abcdef"
    link = rclone("link", "--expire", "1h", f"dwh:{bucket}/t.txt").stdout.strip()
    assert "X-Amz-Signature=" in link
    with urllib.request.urlopen(link, timeout=30) as reply:
        assert reply.read() == b"0123456789abcdef"
    rclone("delete", f"dwh:{bucket}/moved")
    assert set(rclone.listing(f"dwh:{bucket}")) == {"f.bin", "t.txt"}


@pytest.mark.s3op(
    "client:rclone",
    "PutBucketVersioning",
    "ListObjectVersions",
    note="rclone backend versioning, ls --s3-versions, delete (a delete marker), backend cleanup-hidden",
)
def test_versions(rc: tuple[DwhServer, Rclone], tmp_path: Path) -> None:
    _, rclone = rc
    bucket = unique_bucket("rclone")
    rclone("mkdir", f"dwh:{bucket}")
    rclone("backend", "versioning", f"dwh:{bucket}", "Enabled")
    assert rclone("backend", "versioning", f"dwh:{bucket}").stdout.strip() == "Enabled"
    for body in (b"first", b"second!"):
        (tmp_path / "v.txt").write_bytes(body)
        rclone("copyto", str(tmp_path / "v.txt"), f"dwh:{bucket}/v.txt")
    versions = rclone.listing(f"dwh:{bucket}", "--s3-versions")
    assert versions["v.txt"]["Size"] == len(b"second!")
    old = [p for p in versions if p.startswith("v-v") and p.endswith(".txt")]
    assert len(old) == 1 and versions[old[0]]["Size"] == len(b"first")
    assert rclone("cat", f"dwh:{bucket}/{old[0]}", "--s3-versions").stdout == "first"
    rclone("delete", f"dwh:{bucket}/v.txt")
    assert rclone.listing(f"dwh:{bucket}") == {}
    assert len(rclone.listing(f"dwh:{bucket}", "--s3-versions")) == 2  # both versions kept
    rclone("backend", "cleanup-hidden", f"dwh:{bucket}")
    assert rclone.listing(f"dwh:{bucket}", "--s3-versions") == {}
