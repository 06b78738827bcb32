"""Bucket quotas through a real server: set with ``dwh bucket quota``, enforced on PutObject,
CopyObject and UploadPart (mid-multipart) with S3's error format, reported by ``dwh bucket info``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3server import DwhServer

DWH = Path(sys.executable).parent / "dwh"
MiB = 1024 * 1024


def dwh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DWH), *args], capture_output=True, text=True, timeout=120, check=False)


def refused(exc: pytest.ExceptionInfo[ClientError]) -> bool:
    err = exc.value.response
    return err["Error"]["Code"] == "QuotaExceeded" and err["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.s3op("PutObject", "CopyObject", "UploadPart", note="bucket quotas (bytes, objects): 403 QuotaExceeded")
def test_quota_enforced_over_s3(dwh_server_factory: Callable[..., DwhServer]) -> None:
    server = dwh_server_factory()
    s3: Any = server.boto3_client()
    s3.create_bucket(Bucket="capped")
    s3.create_bucket(Bucket="free")
    server.stop()
    data_dir = str(server.data_dir)
    r = dwh("bucket", "quota", "capped", "--max-bytes", "12MiB", "--max-objects", "3", "--data-dir", data_dir)
    assert r.returncode == 0, r.stderr
    assert "12.0 MiB" in r.stdout or "12 MiB" in r.stdout or "12582912" in r.stdout
    server.start()
    s3 = server.boto3_client()

    s3.put_object(Bucket="capped", Key="a", Body=os.urandom(5 * MiB))
    with pytest.raises(ClientError) as exc:  # announced size: refused before the body is stored
        s3.put_object(Bucket="capped", Key="b", Body=os.urandom(8 * MiB))
    assert refused(exc) and "quota" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="capped", Key="b")
    s3.put_object(Bucket="free", Key="b", Body=os.urandom(8 * MiB))  # other buckets are not limited

    # Mid-multipart: parts count against the quota; the part that would overflow is refused.
    up = s3.create_multipart_upload(Bucket="capped", Key="mp")["UploadId"]
    etag1 = s3.upload_part(Bucket="capped", Key="mp", UploadId=up, PartNumber=1, Body=os.urandom(5 * MiB))["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="capped", Key="mp", UploadId=up, PartNumber=2, Body=os.urandom(5 * MiB))
    assert refused(exc)
    s3.complete_multipart_upload(
        Bucket="capped", Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag1}]}
    )
    s3.put_object(Bucket="capped", Key="small", Body=b"x")  # third object
    with pytest.raises(ClientError) as exc:  # a fourth object, even by copy, exceeds max-objects
        s3.copy_object(Bucket="capped", Key="copy", CopySource={"Bucket": "capped", "Key": "small"})
    assert refused(exc)
    s3.delete_object(Bucket="capped", Key="a")  # deleting is always allowed
    s3.put_object(Bucket="capped", Key="after-delete", Body=b"fits again")

    server.stop()
    assert "Traceback" not in server.log()
    info = dwh("bucket", "info", "capped", "--json", "--data-dir", data_dir)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["objects"] == 3 and doc["logical_bytes"] == 5 * MiB + 1 + len(b"fits again")
    assert doc["upload_parts"] == 0 and doc["quota"] == {"max_bytes": 12 * MiB, "max_objects": 3}
    assert doc["stored_chunks"] >= 1 and doc["stored_bytes_with_parity"] > doc["stored_sealed_bytes"] > 0
    table = dwh("bucket", "info", "capped", "--data-dir", data_dir)
    assert table.returncode == 0 and "logical bytes" in table.stdout and "quota" in table.stdout


def test_quota_command_refuses_bad_input(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "d")
    assert dwh("bucket", "create", "bk1", "--data-dir", data_dir).returncode == 0
    bad = dwh("bucket", "quota", "bk1", "--max-bytes", "ten gigs", "--data-dir", data_dir)
    assert bad.returncode == 2 and "not a size" in bad.stderr and "Traceback" not in bad.stderr
    assert dwh("bucket", "quota", "bk1", "--data-dir", data_dir).returncode == 2  # nothing to set
    assert dwh("bucket", "quota", "bk1", "--clear", "--max-objects", "1", "--data-dir", data_dir).returncode == 2
    missing = dwh("bucket", "quota", "nope", "--max-objects", "1", "--data-dir", data_dir)
    assert missing.returncode == 4
    ok = dwh("bucket", "quota", "bk1", "--max-bytes", "1.5GB", "--data-dir", data_dir)
    assert ok.returncode == 0 and "1500000000" in ok.stdout
    assert "quota removed" in dwh("bucket", "quota", "bk1", "--clear", "--data-dir", data_dir).stdout
