"""The AWS CLI (v1, `aws` on PATH) against a real ``dwh serve``: s3 cp / sync / ls / rm and s3api.

Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the endpoint from --endpoint-url,
and AWS_CONFIG_FILE points to a temporary file asking for SigV4 (`s3 = signature_version = s3v4`)
so nothing from the machine's own AWS configuration leaks in. Skipped, visibly, without `aws`
(CI: `pip install awscli` — see the report/pyproject note)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from s3server import DwhServer, unique_bucket

AWS = shutil.which("aws")
pytestmark = pytest.mark.skipif(AWS is None, reason="the AWS CLI (`aws`) is not installed: pip install awscli")
MiB = 1024 * 1024


def aws(server: DwhServer, tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "aws-config"
    if not config.exists():
        config.write_text("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3v4\n")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    assert AWS is not None
    out = subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert out.returncode == 0, f"aws {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def api(server: DwhServer, tmp_path: Path, *args: str) -> Any:
    text = aws(server, tmp_path, "s3api", *args, "--output", "json").stdout
    return json.loads(text) if text.strip() else {}


def write_random(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        block = os.urandom(min(size, 4 * MiB) or 1)
        n = 0
        while left > 0:
            piece = n.to_bytes(8, "big") + block[8 : min(left, len(block))]
            f.write(piece[:left])
            left -= len(piece[:left])
            n += 1
    return path


@pytest.mark.s3op(
    "client:awscli",
    "CreateBucket",
    "PutObject",
    "GetObject",
    "HeadObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    note="aws s3 cp up/down, small and 100 MiB (multipart, 8 MiB parts)",
)
def test_cp_small_and_large(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("cli-cp")
    aws(dwh_server, tmp_path, "s3", "mb", f"s3://{bucket}")
    small = tmp_path / "small file é.txt"
    small.write_text("hello from the aws cli\n")
    big = write_random(tmp_path / "big.bin", 100 * MiB + 11)
    aws(dwh_server, tmp_path, "s3", "cp", str(small), f"s3://{bucket}/dir/small file é.txt")
    aws(dwh_server, tmp_path, "s3", "cp", str(big), f"s3://{bucket}/dir/big.bin")
    aws(dwh_server, tmp_path, "s3", "cp", f"s3://{bucket}/dir/small file é.txt", str(tmp_path / "small.back"))
    aws(dwh_server, tmp_path, "s3", "cp", f"s3://{bucket}/dir/big.bin", str(tmp_path / "big.back"))
    assert filecmp.cmp(small, tmp_path / "small.back", shallow=False)
    assert filecmp.cmp(big, tmp_path / "big.back", shallow=False)
    head = api(dwh_server, tmp_path, "head-object", "--bucket", bucket, "--key", "dir/big.bin")
    parts = -(-big.stat().st_size // (8 * MiB))  # the CLI's default 8 MiB parts
    assert head["ContentLength"] == big.stat().st_size and head["ETag"].endswith(f'-{parts}"')
    head = api(dwh_server, tmp_path, "head-object", "--bucket", bucket, "--key", "dir/small file é.txt")
    assert head["ETag"] == f'"{hashlib.md5(small.read_bytes()).hexdigest()}"'


@pytest.mark.s3op(
    "client:awscli",
    "ListObjectsV2",
    "PutObject",
    "GetObject",
    "DeleteObject",
    note="aws s3 sync up and down (changed files only, --delete)",
)
def test_sync_both_ways(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("cli-sync")
    aws(dwh_server, tmp_path, "s3", "mb", f"s3://{bucket}")
    src = tmp_path / "src"
    files = {
        "a.txt": b"alpha\n",
        "empty": b"",
        "sub/b.bin": os.urandom(300_000),
        "sub/deeper/c with space.txt": b"gamma\n",
        "ünï/d+plus.txt": b"delta\n",
        "sub/e.bin": os.urandom(9 * MiB),  # over the multipart threshold
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    out = aws(dwh_server, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == len(files)
    listing = aws(dwh_server, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/tree/").stdout
    assert all(rel in listing for rel in files), listing
    # Nothing changed: nothing to send.
    assert "upload:" not in aws(dwh_server, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/tree").stdout
    (src / "a.txt").write_bytes(b"alpha, longer now\n")
    (src / "new.txt").write_bytes(b"new\n")
    (src / "empty").unlink()
    out = aws(dwh_server, tmp_path, "s3", "sync", "--delete", str(src), f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == 2 and out.count("delete:") == 1, out
    dst = tmp_path / "dst"
    out = aws(dwh_server, tmp_path, "s3", "sync", f"s3://{bucket}/tree", str(dst)).stdout
    assert out.count("download:") == len(files)  # 6 - 1 deleted + 1 new
    cmp = filecmp.dircmp(src, dst)

    def same(c: filecmp.dircmp[str]) -> bool:
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        return (
            not c.left_only
            and not c.right_only
            and not mismatch
            and not errors
            and all(same(s) for s in c.subdirs.values())
        )

    assert same(cmp)


@pytest.mark.s3op(
    "client:awscli",
    "ListBuckets",
    "ListObjects",
    "ListObjectsV2",
    "DeleteObject",
    "DeleteObjects",
    "DeleteBucket",
    note="aws s3 ls, rm --recursive, rb",
)
def test_ls_and_rm_recursive(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("cli-rm")
    aws(dwh_server, tmp_path, "s3", "mb", f"s3://{bucket}")
    for i in range(25):
        f = tmp_path / "f" / f"{i}.txt"
        f.parent.mkdir(exist_ok=True)
        f.write_text(str(i))
    aws(dwh_server, tmp_path, "s3", "cp", "--recursive", str(tmp_path / "f"), f"s3://{bucket}/p/")
    aws(dwh_server, tmp_path, "s3", "cp", str(tmp_path / "f" / "0.txt"), f"s3://{bucket}/keep.txt")
    assert bucket in aws(dwh_server, tmp_path, "s3", "ls").stdout
    top = aws(dwh_server, tmp_path, "s3", "ls", f"s3://{bucket}/").stdout
    assert "PRE p/" in top and "keep.txt" in top
    assert aws(dwh_server, tmp_path, "s3", "ls", f"s3://{bucket}/p/").stdout.count(".txt") == 25
    out = aws(dwh_server, tmp_path, "s3", "rm", "--recursive", f"s3://{bucket}/p/").stdout
    assert out.count("delete:") == 25
    left = api(dwh_server, tmp_path, "list-objects-v2", "--bucket", bucket)
    assert [o["Key"] for o in left.get("Contents", [])] == ["keep.txt"]
    assert aws(dwh_server, tmp_path, "s3", "rb", f"s3://{bucket}", check=False).returncode != 0  # not empty
    aws(dwh_server, tmp_path, "s3", "rb", "--force", f"s3://{bucket}")
    assert bucket not in aws(dwh_server, tmp_path, "s3", "ls").stdout


@pytest.mark.s3op(
    "client:awscli",
    "PutObject",
    "GetObject",
    "HeadObject",
    "ListObjectsV2",
    "DeleteObject",
    note="aws s3api put-object/get-object/head-object/list-objects-v2/delete-object",
)
def test_s3api_calls(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("cli-api")
    api(dwh_server, tmp_path, "create-bucket", "--bucket", bucket)
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(70_000))
    put = api(
        dwh_server,
        tmp_path,
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "docs/one.bin",
        "--body",
        str(body),
        "--content-type",
        "application/x-one",
        "--metadata",
        "team=storage,stage=test",
    )
    assert put["ETag"] == f'"{hashlib.md5(body.read_bytes()).hexdigest()}"'
    head = api(dwh_server, tmp_path, "head-object", "--bucket", bucket, "--key", "docs/one.bin")
    assert head["ContentType"] == "application/x-one" and head["Metadata"] == {"team": "storage", "stage": "test"}
    out = tmp_path / "out.bin"
    got = api(dwh_server, tmp_path, "get-object", "--bucket", bucket, "--key", "docs/one.bin", str(out))
    assert got["ContentLength"] == 70_000 and out.read_bytes() == body.read_bytes()
    ranged = api(
        dwh_server,
        tmp_path,
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "docs/one.bin",
        "--range",
        "bytes=5-9",
        str(tmp_path / "part"),
    )
    assert ranged["ContentRange"] == "bytes 5-9/70000" and (tmp_path / "part").read_bytes() == body.read_bytes()[5:10]
    api(dwh_server, tmp_path, "put-object", "--bucket", bucket, "--key", "docs/two.txt", "--body", str(body))
    api(dwh_server, tmp_path, "put-object", "--bucket", bucket, "--key", "other.txt", "--body", str(body))
    listed = api(dwh_server, tmp_path, "list-objects-v2", "--bucket", bucket, "--prefix", "docs/")
    assert [o["Key"] for o in listed["Contents"]] == ["docs/one.bin", "docs/two.txt"]
    listed = api(dwh_server, tmp_path, "list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["docs/"]
    assert [o["Key"] for o in listed["Contents"]] == ["other.txt"]
    api(dwh_server, tmp_path, "delete-object", "--bucket", bucket, "--key", "other.txt")
    missing = aws(dwh_server, tmp_path, "s3api", "head-object", "--bucket", bucket, "--key", "other.txt", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


@pytest.mark.s3op("PutBucketLifecycleConfiguration", "GetBucketLifecycleConfiguration", note="AWS CLI s3api")
def test_lifecycle_configuration(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("lccli")
    api(dwh_server, tmp_path, "create-bucket", "--bucket", bucket)
    doc = tmp_path / "lifecycle.json"
    rule = {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 3}}
    doc.write_text(json.dumps({"Rules": [rule]}))
    api(dwh_server, tmp_path, "put-bucket-lifecycle-configuration", "--bucket", bucket,
        "--lifecycle-configuration", f"file://{doc}")  # fmt: skip
    got = api(dwh_server, tmp_path, "get-bucket-lifecycle-configuration", "--bucket", bucket)
    assert got["Rules"] == [rule]


@pytest.mark.s3op(
    "client:awscli",
    "auth:sigv2",
    note="`aws s3 presign` as configured by default (SigV2), `aws s3 cp/ls` with signature_version = s3",
)
def test_default_presign_and_version_2_signing(dwh_server: DwhServer, tmp_path: Path) -> None:
    (tmp_path / "aws-config").write_text("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3\n")
    bucket = unique_bucket("awsv2")
    aws(dwh_server, tmp_path, "s3", "mb", f"s3://{bucket}")
    body = write_random(tmp_path / "up" / "v2 file.bin", 9 * MiB)  # multipart: the CLI splits at 8 MiB
    aws(dwh_server, tmp_path, "s3", "cp", str(body), f"s3://{bucket}/v2 file.bin")
    assert "v2 file.bin" in aws(dwh_server, tmp_path, "s3", "ls", f"s3://{bucket}/").stdout
    (tmp_path / "aws-config").write_text("[default]\nregion = us-east-1\n")  # nothing about signatures
    url = aws(dwh_server, tmp_path, "s3", "presign", f"s3://{bucket}/v2 file.bin", "--expires-in", "120").stdout.strip()
    assert "AWSAccessKeyId=" in url
    with urllib.request.urlopen(url, timeout=60) as reply:
        assert reply.read() == body.read_bytes()
