"""The parts of a multipart object read back, with boto3 against a real ``dwh serve``: GetObject
and HeadObject with ``partNumber`` (the part's bytes, ``x-amz-mp-parts-count``, the errors), and
GetObjectAttributes (each attribute, part lists with checksums and their paging, versions,
delete markers, bad headers)."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.httpchecksum import StreamingChecksumBody
from s3http import assert_s3_error, code, signed
from s3server import DwhServer

MiB = 1024 * 1024
ALL_ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def upload(s3: Any, bucket: str, key: str, parts: list[bytes], algorithm: str | None = None) -> dict[str, Any]:
    """A multipart upload of ``parts`` (with ``algorithm`` checksums when given); the completion."""
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data, **extra)
        entry = {"PartNumber": n, "ETag": r["ETag"]}
        if algorithm:
            entry[f"Checksum{algorithm}"] = r[f"Checksum{algorithm}"]
        done.append(entry)
    completed: dict[str, Any] = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done}
    )
    return completed


@pytest.fixture(scope="module")
def parts_data() -> list[bytes]:
    return [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB + 123)]


@pytest.mark.s3op(
    "GetObject",
    "HeadObject",
    note="partNumber: one part of a multipart object (206, x-amz-mp-parts-count; the part's checksum with "
    "x-amz-checksum-mode: ENABLED when the parts had checksums)",
)
def test_get_and_head_by_part_number(s3: Any, bucket: str, parts_data: list[bytes]) -> None:
    upload(s3, bucket, "mp", parts_data)
    whole = b"".join(parts_data)
    start = 0
    for n, data in enumerate(parts_data, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data
        assert got["PartsCount"] == 3 and got["ContentLength"] == len(data)
        assert got["ContentRange"] == f"bytes {start}-{start + len(data) - 1}/{len(whole)}"
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert head["ContentLength"] == len(data) and head["PartsCount"] == 3
        assert head["ETag"] == got["ETag"]  # the object's ETag, not the part's
        start += len(data)
    # A plain GET is the whole object, without a part count.
    plain = s3.get_object(Bucket=bucket, Key="mp")
    assert plain["Body"].read() == whole and "PartsCount" not in plain
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket, Key="mp", PartNumber=4)
        assert status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert code(exc) == "InvalidPart"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-9")
    assert code(exc) == "InvalidRequest"


def test_part_checksums_on_part_number_reads(
    dwh_server: DwhServer, s3: Any, bucket: str, parts_data: list[bytes]
) -> None:
    """With x-amz-checksum-mode: ENABLED a partNumber read carries that part's checksum, which
    botocore checks against the body it received; the whole object keeps its composite one."""
    done = upload(s3, bucket, "mp", parts_data, "SHA256")
    for n, data in enumerate(parts_data, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n, ChecksumMode="ENABLED")
        assert got["ChecksumSHA256"] == sha256_b64(data)
        assert got["Body"].read() == data
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == sha256_b64(data)
    assert isinstance(got["Body"], StreamingChecksumBody)  # botocore verified the part's checksum
    unasked = dwh_server.boto3_client(response_checksum_validation="when_required")  # no checksum mode
    assert "ChecksumSHA256" not in unasked.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    ranged = s3.get_object(Bucket=bucket, Key="mp", Range="bytes=0-99", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in ranged  # a byte range has no checksum of its own
    whole = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert whole["ChecksumSHA256"] == done["ChecksumSHA256"] and done["ChecksumSHA256"].endswith("-3")
    # Parts without checksums: a partNumber read carries none.
    upload(s3, bucket, "plain", parts_data[:2])
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="plain", PartNumber=1, ChecksumMode="ENABLED")


def test_part_number_of_a_single_part_object(s3: Any, bucket: str) -> None:
    data = os.urandom(3 * MiB + 5)
    s3.put_object(Bucket=bucket, Key="one", Body=data)
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert got["Body"].read() == data and "PartsCount" not in got
    assert got["ContentRange"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    assert s3.head_object(Bucket=bucket, Key="one", PartNumber=1)["ContentLength"] == len(data)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="one", PartNumber=2)
    assert code(exc) == "InvalidPart"
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    empty = s3.get_object(Bucket=bucket, Key="empty", PartNumber=1)
    assert empty["Body"].read() == b"" and empty["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("value", ["0", "10001", "-1", "1.5", "x", "", "%D9%A3", "9" * 5000])
def test_bad_part_numbers(dwh_server: DwhServer, s3: Any, bucket: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    reply = signed(dwh_server, "GET", f"/{bucket}/k?partNumber={value}")
    root = assert_s3_error(reply, 400, "InvalidArgument")
    assert root.findtext("ArgumentName") == "partNumber"


def test_copy_keeps_the_part_layout(s3: Any, bucket: str, parts_data: list[bytes]) -> None:
    upload(s3, bucket, "mp", parts_data, "SHA256")
    s3.copy_object(
        Bucket=bucket,
        Key="copy",
        CopySource={"Bucket": bucket, "Key": "mp"},
        MetadataDirective="REPLACE",
        ContentType="x/y",
    )
    got = s3.get_object(Bucket=bucket, Key="copy", PartNumber=2)
    assert got["Body"].read() == parts_data[1] and got["PartsCount"] == 3
    attrs = s3.get_object_attributes(Bucket=bucket, Key="copy", ObjectAttributes=["ObjectParts"])
    assert [p["Size"] for p in attrs["ObjectParts"]["Parts"]] == [len(d) for d in parts_data]


@pytest.mark.s3op(
    "GetObjectAttributes",
    note="ETag, Checksum, ObjectParts (parts listed with their checksums, paged), StorageClass, ObjectSize",
)
def test_object_attributes_of_a_multipart_object(s3: Any, bucket: str, parts_data: list[bytes]) -> None:
    done = upload(s3, bucket, "mp", parts_data, "SHA256")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL_ATTRIBUTES)
    assert attrs["ETag"] == done["ETag"].strip('"')  # bare, as S3 gives it here
    assert attrs["ObjectSize"] == sum(len(d) for d in parts_data)
    assert attrs["StorageClass"] == "STANDARD"
    assert attrs["Checksum"]["ChecksumSHA256"] == done["ChecksumSHA256"]
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE"
    listed = attrs["ObjectParts"]
    assert listed["TotalPartsCount"] == 3 and listed["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in listed["Parts"]] == [
        (n, len(d), sha256_b64(d)) for n, d in enumerate(parts_data, 1)
    ]
    assert attrs["LastModified"] == s3.head_object(Bucket=bucket, Key="mp")["LastModified"]
    # Paging: two parts, then the rest from the marker.
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    first = page["ObjectParts"]
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True and first["MaxParts"] == 2
    rest = s3.get_object_attributes(
        Bucket=bucket,
        Key="mp",
        ObjectAttributes=["ObjectParts"],
        MaxParts=2,
        PartNumberMarker=int(first["NextPartNumberMarker"]),
    )["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and rest["IsTruncated"] is False
    # Only what was asked for.
    only = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == attrs["ObjectSize"]
    assert not {"ETag", "Checksum", "ObjectParts", "StorageClass"} & set(only)


def test_object_attributes_without_checksums(s3: Any, bucket: str, parts_data: list[bytes]) -> None:
    upload(s3, bucket, "mp", parts_data[:2])
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL_ATTRIBUTES)
    assert "Checksum" not in attrs
    assert attrs["ObjectParts"] == {"TotalPartsCount": 2}  # S3 lists parts only with checksums
    data = b"single part object"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    s3.put_object(Bucket=bucket, Key="one", Body=data, ChecksumAlgorithm="CRC32")
    one = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL_ATTRIBUTES)
    assert one["ETag"] == hashlib.md5(data).hexdigest() and one["ObjectSize"] == len(data)
    assert one["Checksum"] == {"ChecksumCRC32": crc, "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in one


def test_object_attributes_of_versions_and_missing_keys(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"second!")["VersionId"]
    old = s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=v1, ObjectAttributes=["ObjectSize"])
    assert old["ObjectSize"] == 5 and old["VersionId"] == v1
    new = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert new["ObjectSize"] == 7 and new["VersionId"] == v2
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="never", ObjectAttributes=["ObjectSize"])
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket + "-none", Key="k", ObjectAttributes=["ObjectSize"])
    assert code(exc) == "NoSuchBucket"


@pytest.mark.parametrize(
    ("headers", "argument"),
    [
        ({}, "x-amz-object-attributes"),
        ({"x-amz-object-attributes": " , "}, "x-amz-object-attributes"),
        ({"x-amz-object-attributes": "ETag,Color"}, "x-amz-object-attributes"),
        ({"x-amz-object-attributes": "etag"}, "x-amz-object-attributes"),
        ({"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": "-1"}, "x-amz-max-parts"),
        ({"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": "9" * 20}, "x-amz-max-parts"),
        ({"x-amz-object-attributes": "ObjectParts", "x-amz-part-number-marker": "two"}, "x-amz-part-number-marker"),
    ],
)
def test_object_attributes_bad_headers(
    dwh_server: DwhServer, s3: Any, bucket: str, headers: dict[str, str], argument: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    root = assert_s3_error(
        signed(dwh_server, "GET", f"/{bucket}/k?attributes", headers=headers), 400, "InvalidArgument"
    )
    assert root.findtext("ArgumentName") == argument


def test_attributes_subresource_with_other_methods(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    for method in ("PUT", "DELETE"):
        assert_s3_error(
            signed(dwh_server, method, f"/{bucket}/k?attributes", body=b"x" if method == "PUT" else b""), 405
        )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"  # a PUT never wrote the key
