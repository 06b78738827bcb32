"""CopyObject end to end with boto3 against a real ``dwh serve``: same and cross bucket, inline,
empty and multi-chunk objects, the metadata and tagging directives, copying onto itself, the
copy-source conditions, the x-amz-copy-source forms, and no data written for a copy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from dwh_testkit import disk_dirs, pack_files, shard_locations
from s3http import assert_s3_error, code, signed
from s3server import DwhServer, unique_bucket

MiB = 1024 * 1024


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def tag_count(s3: Any, bucket: str, key: str) -> str | None:
    headers = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    return headers.get("x-amz-tagging-count")


@pytest.mark.s3op(
    "CopyObject",
    note="by reference (no data copied; no 5 GiB limit); same and cross bucket; inline, empty and chunked objects",
)
@pytest.mark.parametrize("size", [0, 100, 3 * MiB + 17])
def test_copy_round_trip(s3: Any, bucket: str, size: int) -> None:
    other = unique_bucket("copy-dst")
    s3.create_bucket(Bucket=other)
    data = os.urandom(size)
    key = f"dir/sóurce key+{size}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    same = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key})
    cross = s3.copy_object(Bucket=other, Key="copy", CopySource={"Bucket": bucket, "Key": key})
    for result in (same, cross):
        assert result["CopyObjectResult"]["ETag"] == put["ETag"]
        assert result["CopyObjectResult"]["LastModified"].tzinfo is not None
    s3.delete_object(Bucket=bucket, Key=key)  # the copies hold their own references
    for b in (bucket, other):
        got = s3.get_object(Bucket=b, Key="copy")
        assert got["Body"].read() == data and got["ETag"] == put["ETag"] and got["ContentLength"] == size
    if size > 1000:
        got = s3.get_object(Bucket=other, Key="copy", Range="bytes=1000-1999")
        assert got["Body"].read() == data[1000:2000]


def test_metadata_directive(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="src",
        Body=b"payload",
        ContentType="text/x-source",
        Metadata={"origin": "src", "n": "1"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="s.txt"',
        Tagging="a=1&b=2",
    )
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/src")  # COPY is the default
    head = s3.head_object(Bucket=bucket, Key="copied")
    assert head["ContentType"] == "text/x-source" and head["Metadata"] == {"origin": "src", "n": "1"}
    assert head["CacheControl"] == "max-age=60" and head["ContentDisposition"] == 'attachment; filename="s.txt"'
    assert tag_count(s3, bucket, "copied") == "2"
    # COPY ignores metadata sent with the request.
    s3.copy_object(
        Bucket=bucket, Key="copied2", CopySource=f"{bucket}/src", ContentType="ignored/type", Metadata={"x": "y"}
    )
    head = s3.head_object(Bucket=bucket, Key="copied2")
    assert head["ContentType"] == "text/x-source" and head["Metadata"] == {"origin": "src", "n": "1"}
    # REPLACE takes content type, user and system metadata from the request; tags still follow
    # their own directive (COPY).
    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="application/x-new",
        Metadata={"fresh": "yes"},
        ContentLanguage="fr",
    )
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["ContentType"] == "application/x-new" and head["Metadata"] == {"fresh": "yes"}
    assert head["ContentLanguage"] == "fr" and "CacheControl" not in head and "ContentDisposition" not in head
    assert tag_count(s3, bucket, "replaced") == "2"
    s3.copy_object(Bucket=bucket, Key="bare", CopySource=f"{bucket}/src", MetadataDirective="REPLACE")
    head = s3.head_object(Bucket=bucket, Key="bare")
    assert head["ContentType"] == "binary/octet-stream" and head["Metadata"] == {}
    assert s3.get_object(Bucket=bucket, Key="bare")["Body"].read() == b"payload"


def test_tagging_directive(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"t", Tagging="keep=me")
    s3.copy_object(
        Bucket=bucket, Key="retagged", CopySource=f"{bucket}/src", TaggingDirective="REPLACE", Tagging="new=1&other=2"
    )
    tags = s3.get_object_tagging(Bucket=bucket, Key="retagged")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"new": "1", "other": "2"}
    s3.copy_object(Bucket=bucket, Key="untagged", CopySource=f"{bucket}/src", TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="untagged")["TagSet"] == []
    s3.copy_object(Bucket=bucket, Key="kept", CopySource=f"{bucket}/src", Tagging="ignored=1")
    assert s3.get_object_tagging(Bucket=bucket, Key="kept")["TagSet"] == [{"Key": "keep", "Value": "me"}]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="bad", CopySource=f"{bucket}/src", TaggingDirective="REPLACE", Tagging="aws:x=1"
        )
    assert code(exc) == "InvalidTag"


def test_copy_onto_itself(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"same bytes", Metadata={"v": "1"})
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert code(exc) == "InvalidRequest" and status(exc) == 400
    with pytest.raises(ClientError) as exc:  # a tagging change alone does not make it legal
        s3.copy_object(
            Bucket=bucket, Key="self", CopySource=f"{bucket}/self", TaggingDirective="REPLACE", Tagging="a=1"
        )
    assert code(exc) == "InvalidRequest"
    s3.copy_object(
        Bucket=bucket, Key="self", CopySource=f"{bucket}/self", MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"v": "2"} and got["Body"].read() == b"same bytes"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["self"]
    # Naming a storage class or an encryption makes it legal, as on S3, even when they are the
    # ones the object has (``rclone settier STANDARD``, ``aws s3 cp --storage-class``,
    # ``--sse AES256`` onto itself); the metadata is copied.
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self", StorageClass="STANDARD")
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self", ServerSideEncryption="AES256")
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"v": "2"} and got["Body"].read() == b"same bytes"


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(
    ("conditions", "ok"),
    [
        (lambda etag, t: {"CopySourceIfMatch": etag}, True),
        (lambda etag, t: {"CopySourceIfMatch": '"0123"'}, False),
        (lambda etag, t: {"CopySourceIfNoneMatch": etag}, False),
        (lambda etag, t: {"CopySourceIfNoneMatch": '"0123"'}, True),
        (lambda etag, t: {"CopySourceIfModifiedSince": t - timedelta(days=1)}, True),
        (lambda etag, t: {"CopySourceIfModifiedSince": t + timedelta(days=1)}, False),
        (lambda etag, t: {"CopySourceIfUnmodifiedSince": t + timedelta(days=1)}, True),
        (lambda etag, t: {"CopySourceIfUnmodifiedSince": t - timedelta(days=1)}, False),
        # If-Match true and If-Unmodified-Since false: S3 copies.
        (lambda etag, t: {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": t - timedelta(days=1)}, True),
        # If-None-Match true: If-Modified-Since is not consulted (RFC 7232 precedence), so it copies.
        (lambda etag, t: {"CopySourceIfNoneMatch": '"0"', "CopySourceIfModifiedSince": t + timedelta(days=1)}, True),
        # If-None-Match false and If-Modified-Since true: S3's documented 412.
        (lambda etag, t: {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": t - timedelta(days=1)}, False),
    ],
)
def test_copy_source_conditions(
    s3: Any, bucket: str, conditions: Callable[[str, datetime], dict[str, Any]], ok: bool
) -> None:
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"conditional")
    modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    kwargs = conditions(put["ETag"], modified)
    if ok:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", **kwargs)
        assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"conditional"
    else:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", **kwargs)
        assert code(exc) == "PreconditionFailed" and status(exc) == 412
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="dst")


def test_copy_source_header_forms(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    key = "ü dir/naïve + file?.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"forms")
    encoded = quote(key, safe="/")
    for n, source in enumerate([f"{bucket}/{encoded}", f"/{bucket}/{encoded}", f"/{bucket}/{encoded}?versionId=null"]):
        reply = signed(dwh_server, "PUT", f"/{bucket}/dst{n}", headers={"x-amz-copy-source": source})
        assert reply.status == 200 and b"<CopyObjectResult" in reply.body, (source, reply.body)
        assert s3.get_object(Bucket=bucket, Key=f"dst{n}")["Body"].read() == b"forms"
    reply = signed(dwh_server, "PUT", f"/{bucket}/x", headers={"x-amz-copy-source": f"{bucket}/{encoded}?versionId=3"})
    assert_s3_error(reply, 400, "InvalidArgument")  # a malformed version id
    reply = signed(dwh_server, "PUT", f"/{bucket}/x", headers={"x-amz-copy-source": bucket})
    assert_s3_error(reply, 400, "InvalidArgument")
    for directive in ("x-amz-metadata-directive", "x-amz-tagging-directive"):
        reply = signed(
            dwh_server, "PUT", f"/{bucket}/x", headers={"x-amz-copy-source": f"{bucket}/{encoded}", directive: "MOVE"}
        )
        assert_s3_error(reply, 400, "InvalidArgument")


def test_missing_things_and_storage_class(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/missing")
    assert code(exc) == "NoSuchKey" and status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{unique_bucket('nope')}/src")
    assert code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=unique_bucket("nope"), Key="dst", CopySource=f"{bucket}/src")
    assert code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", StorageClass="GLACIER")
    assert code(exc) == "InvalidStorageClass"
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", StorageClass="STANDARD")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"x"


def test_replace_keeps_checksums_of_the_unchanged_bytes(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"checksummed", ChecksumAlgorithm="SHA256")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", MetadataDirective="REPLACE")
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == put["ChecksumSHA256"]


def test_a_copy_writes_no_data(dwh_server_factory: Callable[..., DwhServer]) -> None:
    server = dwh_server_factory()
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="copy-refs")
    s3.put_object(Bucket="copy-refs", Key="src", Body=os.urandom(6 * MiB))

    def stored() -> tuple[int, int]:
        """Shards stored, and the bytes of every pack they live in (a copy appends to none)."""
        shards = shard_locations(server.data_dir)
        packs = {p for disk in disk_dirs(server.data_dir) for p in pack_files(disk)}
        return len(shards), sum(p.stat().st_size for p in packs)

    count, size = stored()
    assert count >= 6  # the source's shards
    # No wall-clock bound: each copy's commit fsyncs the journal, which the other worker's writes
    # to the same file system can slow down for seconds. The shards and packs below are the proof.
    for i in range(10):
        s3.copy_object(Bucket="copy-refs", Key=f"copy{i}", CopySource="copy-refs/src")
    new_count, new_size = stored()
    assert new_count == count and new_size < size + 64 * 1024, (count, size, new_count, new_size)
