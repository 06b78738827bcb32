"""Snapshots through a real server: made with ``dwh snapshot create`` (server stopped), then read
over S3 as the bucket ``<bucket>--snap--<name>`` (GET, HEAD, ListObjectsV2) while every write to it
is refused with 403 AccessDenied; hidden from ListBuckets; the name is reserved for CreateBucket."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3server import DwhServer

DWH = Path(sys.executable).parent / "dwh"
VIEW = "docs--snap--monday"


def dwh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DWH), *args], capture_output=True, text=True, timeout=120, check=False)


def denied(exc: pytest.ExceptionInfo[ClientError]) -> bool:
    err = exc.value.response
    return err["Error"]["Code"] == "AccessDenied" and err["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_snapshot_is_a_read_only_bucket_view(dwh_server_factory: Callable[..., DwhServer]) -> None:
    server = dwh_server_factory()
    s3: Any = server.boto3_client()
    s3.create_bucket(Bucket="docs")
    s3.put_object(Bucket="docs", Key="a.txt", Body=b"alpha v1")
    s3.put_object(Bucket="docs", Key="dir/b.txt", Body=b"beta" * 100_000)
    server.stop()
    r = dwh("snapshot", "create", "docs", "--name", "monday", "--data-dir", str(server.data_dir))
    assert r.returncode == 0, r.stderr
    assert VIEW in r.stdout
    server.start()
    s3 = server.boto3_client()

    s3.put_object(Bucket="docs", Key="a.txt", Body=b"alpha v2")
    s3.delete_object(Bucket="docs", Key="dir/b.txt")
    assert s3.get_object(Bucket=VIEW, Key="a.txt")["Body"].read() == b"alpha v1"
    assert s3.get_object(Bucket=VIEW, Key="dir/b.txt")["Body"].read() == b"beta" * 100_000
    assert s3.head_object(Bucket=VIEW, Key="a.txt")["ContentLength"] == 8
    listed = s3.list_objects_v2(Bucket=VIEW)
    assert [o["Key"] for o in listed["Contents"]] == ["a.txt", "dir/b.txt"]
    assert s3.get_object(Bucket="docs", Key="a.txt")["Body"].read() == b"alpha v2"

    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=VIEW, Key="a.txt", Body=b"no")
    assert denied(exc) and "read-only" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=VIEW, Key="a.txt")
    assert denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=VIEW, Delete={"Objects": [{"Key": "a.txt"}]})
    assert denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=VIEW, Key="m")
    assert denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=VIEW, Key="a.txt", Tagging={"TagSet": []})
    assert denied(exc)
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=VIEW)
    assert denied(exc)
    assert s3.get_object(Bucket=VIEW, Key="a.txt")["Body"].read() == b"alpha v1"

    # copying out of a snapshot is a read of it: allowed
    s3.copy_object(Bucket="docs", Key="restored.txt", CopySource={"Bucket": VIEW, "Key": "a.txt"})
    assert s3.get_object(Bucket="docs", Key="restored.txt")["Body"].read() == b"alpha v1"

    assert VIEW not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="mine--snap--x")
    assert exc.value.response["Error"]["Code"] == "InvalidBucketName"
