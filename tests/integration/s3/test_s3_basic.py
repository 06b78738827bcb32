"""S3 semantics end to end with boto3 (default configuration apart from SigV4) against a real
``dwh serve``: buckets, objects of every interesting size, representation headers, ranges,
conditional requests, checksums, awkward keys, and the bucket/object sub-APIs (listing, copy,
batch delete, tagging, CORS, browser POST, multipart). Each test states with ``s3op`` markers
which operations it proves; docs/s3-compatibility.md is generated from them."""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3http import absent, assert_s3_error, code, signed
from s3server import DwhServer, unique_bucket

KiB, MiB = 1024, 1024 * 1024


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


# --- buckets -------------------------------------------------------------------------------------------


@pytest.mark.s3op("ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "GetBucketLocation")
def test_bucket_lifecycle(s3: Any) -> None:
    name = unique_bucket("life")
    s3.create_bucket(Bucket=name)
    listed = s3.list_buckets()
    assert name in [b["Name"] for b in listed["Buckets"]]
    assert listed["Owner"]["ID"]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") is None  # us-east-1 is empty
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert code(exc) == "BucketAlreadyOwnedByYou" and status(exc) == 409
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=unique_bucket("loc"), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code(exc) == "IllegalLocationConstraintException"
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert code(exc) == "BucketNotEmpty" and status(exc) == 409
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=name, Key="k")
    assert code(exc) == "NoSuchBucket"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Bad_Name", "UPPER", "-lead", "trail-", "a..b", "a.-b", "192.168.1.1", "xn--abc", "x-s3alias"],
)
@pytest.mark.s3op("CreateBucket", note="S3 bucket-name rules (InvalidBucketName)")
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert code(exc) == "InvalidBucketName" and status(exc) == 400


# --- objects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 5 * MiB, 50 * MiB])
@pytest.mark.s3op("PutObject", note="ETag = MD5 of the body; sizes 0 B to 50 MiB")
@pytest.mark.s3op("GetObject", "HeadObject", "DeleteObject", note="NoSuchKey after delete; deleting a missing key: 204")
def test_object_round_trip(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    key = f"sizes/{size}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-test", Metadata={"n": str(size)})
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == size
    assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"n": str(size)}
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"] and head["Metadata"] == {"n": str(size)}
    assert head["ContentType"] == "application/x-test" and head["AcceptRanges"] == "bytes"
    assert abs(head["LastModified"] - datetime.now(UTC)) < timedelta(minutes=5)
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert absent(s3, bucket, key)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key)
    assert code(exc) == "NoSuchKey" and status(exc) == 404
    # Deleting what does not exist succeeds, as in S3.
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.s3op("PutObject", note="an overwrite replaces data, metadata and headers")
@pytest.mark.s3op("GetObject")
def test_overwrite_replaces(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"first version, longer", Metadata={"v": "1"}, ContentLanguage="en")
    s3.put_object(Bucket=bucket, Key="o", Body=b"second")
    got = s3.get_object(Bucket=bucket, Key="o")
    assert got["Body"].read() == b"second" and got["Metadata"] == {} and "ContentLanguage" not in got
    assert got["ContentType"] == "binary/octet-stream"


@pytest.mark.s3op(
    "PutObject",
    "GetObject",
    "HeadObject",
    note="Content-Type/-Encoding/-Disposition/-Language, Cache-Control, Expires, x-amz-meta-* stored and returned",
)
def test_representation_headers(s3: Any, bucket: str) -> None:
    expires = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    s3.put_object(
        Bucket=bucket,
        Key="h",
        Body=b"\x1f\x8b pretend gzip",
        ContentType="text/plain; charset=utf-8",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="report.txt"',
        ContentLanguage="de-CH",
        CacheControl="public, max-age=3600",
        Expires=expires,
        Metadata={"Author": "Ada", "project-id": "42", "empty": ""},
    )
    for resp in (s3.head_object(Bucket=bucket, Key="h"), s3.get_object(Bucket=bucket, Key="h")):
        assert resp["ContentType"] == "text/plain; charset=utf-8"
        assert resp["ContentEncoding"] == "gzip"  # never "gzip,aws-chunked": transfer framing is not stored
        assert resp["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert resp["ContentLanguage"] == "de-CH"
        assert resp["CacheControl"] == "public, max-age=3600"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Mon, 03 Feb 2031 04:05:06 GMT"
        assert resp["Metadata"] == {"author": "Ada", "project-id": "42", "empty": ""}
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="big-meta", Body=b"x", Metadata={"m": "v" * 3000})
    assert code(exc) == "MetadataTooLarge"


@pytest.mark.s3op("GetObject", note="response-content-type/-language/-expires/-cache-control/-disposition/-encoding")
def test_response_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"override me", ContentType="a/b", CacheControl="no-cache")
    got = s3.get_object(
        Bucket=bucket,
        Key="r",
        ResponseContentType="text/csv",
        ResponseContentLanguage="fr",
        ResponseExpires=datetime(2030, 1, 1, tzinfo=UTC),
        ResponseCacheControl="max-age=1",
        ResponseContentDisposition="inline",
        ResponseContentEncoding="identity",
    )
    assert got["Body"].read() == b"override me"
    assert got["ContentType"] == "text/csv" and got["ContentLanguage"] == "fr"
    assert got["CacheControl"] == "max-age=1" and got["ContentDisposition"] == "inline"
    assert got["ContentEncoding"] == "identity"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"].startswith("Tue, 01 Jan 2030")


@pytest.mark.parametrize(
    "key",
    [
        "ünïcödé/日本語/ключ",
        "with space/and  two",
        "plus+sign+",
        "percent%20literal%",
        "question?mark=1&x",
        "hash#tag",
        "tilde~star*(paren)'quote!",
        "a//double//slash/",
        "emoji 🎉.txt",
        "semi;colon,comma:colon@at$dollar",
        "<xml>&amp;",
        "k" * 1024,
    ],
    ids=lambda k: k[:20],
)
@pytest.mark.s3op("PutObject", note="any UTF-8 key up to 1,024 bytes (spaces, +, %, ?, #, //, emoji)")
@pytest.mark.s3op("GetObject", "HeadObject", "DeleteObject", "ListObjectsV2")
def test_awkward_keys(s3: Any, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(key.encode())
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.s3op("PutObject", note="keys over 1,024 bytes: KeyTooLongError")
def test_key_too_long(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(exc) == "KeyTooLongError"


# --- ranges and conditions -----------------------------------------------------------------------------


@pytest.mark.s3op(
    "GetObject", "HeadObject", note="single ranges a-b, a-, -n (206); 416 InvalidRange; multiple ranges ignored"
)
def test_ranges(s3: Any, bucket: str) -> None:
    data = os.urandom(3 * MiB + 5)
    n = len(data)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for header, (start, end) in {
        "bytes=0-0": (0, 1),
        "bytes=0-99": (0, 100),
        "bytes=100-": (100, n),
        "bytes=-10": (n - 10, n),
        "bytes=-99999999": (0, n),
        "bytes=1048570-2097160": (1048570, 2097161),
        f"bytes={n - 1}-{n + 1000}": (n - 1, n),
    }.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert got["Body"].read() == data[start:end], header
        assert got["ContentRange"] == f"bytes {start}-{end - 1}/{n}", header
        assert got["ContentLength"] == end - start
        head = s3.head_object(Bucket=bucket, Key="r", Range=header)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206 and head["ContentLength"] == end - start
    for header in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert code(exc) == "InvalidRange" and status(exc) == 416
    # Forms S3 ignores: the whole object, 200.
    for header in ("bytes=0-1,5-6", "bytes=5-3", "items=0-1", "bytes=x-y"):
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200, header
        assert got["ContentLength"] == n and got["Body"].read() == data
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-")
    assert code(exc) == "InvalidRange"


@pytest.mark.s3op(
    "GetObject",
    "HeadObject",
    note="If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since (200/304/412, S3's precedence)",
)
def test_conditional_reads(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")["ETag"]
    past, future = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"IfMatch": etag}, 200),
        ({"IfMatch": etag.strip('"')}, 200),
        ({"IfMatch": '"0123"'}, 412),
        ({"IfMatch": '"0123", ' + etag}, 200),
        ({"IfNoneMatch": etag}, 304),
        ({"IfNoneMatch": '"0123"'}, 200),
        ({"IfNoneMatch": "*"}, 304),
        ({"IfModifiedSince": past}, 200),
        ({"IfModifiedSince": future}, 304),
        ({"IfUnmodifiedSince": past}, 412),
        ({"IfUnmodifiedSince": future}, 200),
        # S3's precedence: If-Match true wins over If-Unmodified-Since false ...
        ({"IfMatch": etag, "IfUnmodifiedSince": past}, 200),
        # ... and If-None-Match false (it matches) with If-Modified-Since true is 304.
        ({"IfNoneMatch": etag, "IfModifiedSince": past}, 304),
        ({"IfMatch": '"0123"', "IfNoneMatch": etag}, 412),
    ]
    for kwargs, want in cases:
        for op in (s3.get_object, s3.head_object):
            try:
                resp = op(Bucket=bucket, Key="c", **kwargs)
                got = resp["ResponseMetadata"]["HTTPStatusCode"]
                if op == s3.get_object:
                    assert resp["Body"].read() == b"conditional"
            except ClientError as err:
                got = int(err.response["ResponseMetadata"]["HTTPStatusCode"])
                if got == 412 and op == s3.get_object:
                    assert err.response["Error"]["Code"] == "PreconditionFailed"
                if got == 304:
                    assert err.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag
            assert got == want, (op.__name__, kwargs, got)


@pytest.mark.s3op(
    "PutObject", "conditional-writes", note="If-None-Match: * (412 when the key exists); If-Match (412 / 404)"
)
def test_conditional_writes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="new", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="new", Body=b"two", IfNoneMatch="*")
    assert code(exc) == "PreconditionFailed" and status(exc) == 412
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"one"
    etag = s3.head_object(Bucket=bucket, Key="new")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="new", Body=b"three", IfMatch='"00000000000000000000000000000000"')
    assert code(exc) == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="new", Body=b"four", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"four"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=etag)
    assert code(exc) == "NoSuchKey"
    assert absent(s3, bucket, "missing")


# --- digests and checksums -----------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def local_checksum(algorithm: str, data: bytes) -> str:
    from awscrt import checksums as crt

    if algorithm == "CRC32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if algorithm == "CRC64NVME":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    return b64(hashlib.new(algorithm.lower(), data).digest())


@pytest.mark.s3op("PutObject", "checksums", note="Content-MD5 verified before commit (BadDigest, InvalidDigest)")
def test_content_md5(s3: Any, bucket: str) -> None:
    body = os.urandom(100_000)
    good = b64(hashlib.md5(body).digest())
    s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=good)
    altered = body[:-1] + bytes([body[-1] ^ 1])  # differs whatever the random last byte is
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5", Body=altered, ContentMD5=good)
    assert code(exc) == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="md5")["Body"].read() == body  # the old object stays
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5-new", Body=b"other", ContentMD5=good)
    assert code(exc) == "BadDigest" and absent(s3, bucket, "md5-new")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5-new", Body=b"other", ContentMD5="not-base64!")
    assert code(exc) == "InvalidDigest" and absent(s3, bucket, "md5-new")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
@pytest.mark.s3op(
    "PutObject",
    "GetObject",
    "HeadObject",
    "checksums",
    note="x-amz-checksum-* stored; returned with x-amz-checksum-mode: ENABLED on whole-object reads",
)
def test_additional_checksums(s3: Any, bucket: str, algorithm: str) -> None:
    data = os.urandom(200_000)
    want = local_checksum(algorithm, data)
    field = f"Checksum{algorithm}"
    put = s3.put_object(Bucket=bucket, Key=algorithm, Body=data, ChecksumAlgorithm=algorithm)
    assert put[field] == want
    got = s3.get_object(Bucket=bucket, Key=algorithm, ChecksumMode="ENABLED")
    assert got[field] == want and got["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key=algorithm, ChecksumMode="ENABLED")[field] == want
    assert field not in s3.get_object(Bucket=bucket, Key=algorithm, Range="bytes=0-9")  # not for a part
    # A wrong value: BadDigest and nothing stored.
    wrong = local_checksum(algorithm, data + b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=f"{algorithm}-bad", Body=data, **{field: wrong})
    assert code(exc) == "BadDigest"
    assert absent(s3, bucket, f"{algorithm}-bad")


# --- listing -------------------------------------------------------------------------------------------


@pytest.mark.s3op("ListObjects", note="prefix, delimiter, marker, NextMarker, max-keys")
@pytest.mark.s3op(
    "ListObjectsV2",
    note="prefix, delimiter/CommonPrefixes, continuation-token, start-after, max-keys, fetch-owner, encoding-type=url",
)
def test_listing(s3: Any, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"d{d}/s{s}/f{i}" for d in range(3) for s in range(2) for i in range(12)]
    keys += ["top", "é/x", "a b+c", "z%", "d1"]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
    want = sorted(keys, key=lambda k: k.encode())
    for op, size in (("list_objects_v2", 7), ("list_objects", 11)):
        pages = list(s3.get_paginator(op).paginate(Bucket=bucket, PaginationConfig={"PageSize": size}))
        assert [o["Key"] for p in pages for o in p.get("Contents", [])] == want
        assert len(pages) == -(-len(keys) // size)
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d0/", "d1/", "d2/", "é/"]
    assert [o["Key"] for o in r["Contents"]] == ["a b+c", "d1", "top", "z%"]
    assert r["KeyCount"] == 8 and not r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="d1/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d1/s0/", "d1/s1/"] and "Contents" not in r
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="d2/s1/f5", Prefix="d2/")
    assert [o["Key"] for o in r["Contents"]] == [k for k in want if k.startswith("d2/") and k > "d2/s1/f5"]
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert r["KeyCount"] == 0 and "Contents" not in r
    r = s3.list_objects(Bucket=bucket, Prefix="d2/s1/", MaxKeys=3, Delimiter="/")
    assert len(r["Contents"]) == 3 and r["IsTruncated"] and r["NextMarker"] == r["Contents"][-1]["Key"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="é/", EncodingType="url")
    # An explicit EncodingType is not decoded by botocore: the keys arrive percent-encoded.
    assert [o["Key"] for o in r["Contents"]] == ["%C3%A9/x"] and r["EncodingType"] == "url"
    obj = s3.list_objects_v2(Bucket=bucket, Prefix="top", FetchOwner=True)["Contents"][0]
    assert obj["Size"] == 3 and obj["ETag"] == f'"{hashlib.md5(b"top").hexdigest()}"' and obj["Owner"]["ID"]
    assert obj["StorageClass"] in ("STANDARD", "REDUCED_REDUNDANCY") or obj["StorageClass"]
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=unique_bucket("none"))
    assert code(exc) == "NoSuchBucket"


# --- copy, batch delete, tagging -----------------------------------------------------------------------


@pytest.mark.s3op(
    "CopyObject",
    note="same and cross bucket, metadata COPY/REPLACE, x-amz-copy-source-if-*; copying onto itself needs REPLACE, "
    "a storage class or an encryption",
)
def test_copy_object(s3: Any, bucket: str) -> None:
    other = unique_bucket("copy")
    s3.create_bucket(Bucket=other)
    data = os.urandom(2 * MiB + 7)
    put = s3.put_object(Bucket=bucket, Key="src key+é", Body=data, ContentType="a/b", Metadata={"x": "1"})
    r = s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": bucket, "Key": "src key+é"})
    assert r["CopyObjectResult"]["ETag"] == put["ETag"] and r["CopyObjectResult"]["LastModified"]
    got = s3.get_object(Bucket=other, Key="dst")
    assert got["Body"].read() == data and got["ContentType"] == "a/b" and got["Metadata"] == {"x": "1"}
    s3.copy_object(
        Bucket=bucket,
        Key="src key+é",
        CopySource={"Bucket": bucket, "Key": "src key+é"},
        MetadataDirective="REPLACE",
        ContentType="c/d",
        Metadata={"y": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="src key+é")
    assert head["ContentType"] == "c/d" and head["Metadata"] == {"y": "2"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src key+é", CopySource={"Bucket": bucket, "Key": "src key+é"})
    assert code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=other, Key="x", CopySource={"Bucket": bucket, "Key": "src key+é"}, CopySourceIfMatch='"0"'
        )
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=other, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert code(exc) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="src key+é")
    assert s3.get_object(Bucket=other, Key="dst")["Body"].read() == data  # the copy is independent


@pytest.mark.s3op("DeleteObjects", note="up to 1,000 keys, Quiet, missing keys count as deleted")
def test_delete_objects(s3: Any, bucket: str) -> None:
    keys = [f"k{i}" for i in range(30)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:10]] + [{"Key": "nope"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted([*keys[:10], "nope"]) and "Errors" not in r
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[10:]], "Quiet": True})
    assert "Deleted" not in r and "Errors" not in r
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"m{i}"} for i in range(1001)]})
    assert code(exc) in ("MalformedXML", "InvalidRequest")


@pytest.mark.s3op(
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetBucketTagging",
    "PutBucketTagging",
    "DeleteBucketTagging",
    note="x-amz-tagging on PUT, x-amz-tagging-count, S3 tag limits (InvalidTag), NoSuchTagSet",
)
def test_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"tagged", Tagging="team=storage&env=test%20a")
    assert s3.head_object(Bucket=bucket, Key="t")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == {"team": "storage", "env": "test a"}
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "only", "Value": "one"}]
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"tagged"
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(
            Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
        )
    assert code(exc) == "InvalidTag"
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "k" * 129, "Value": "v"}]})
    assert code(exc) == "InvalidTag"
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(exc) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost", "Value": "42"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "cost", "Value": "42"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(exc) == "NoSuchTagSet"


# --- CORS and browser POST -----------------------------------------------------------------------------


def _options(url: str, origin: str, method: str, headers: str = "") -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method="OPTIONS")
    req.add_header("Origin", origin)
    req.add_header("Access-Control-Request-Method", method)
    if headers:
        req.add_header("Access-Control-Request-Headers", headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    except urllib.error.HTTPError as err:
        return err.code, {}


def aes256(bucket_key: bool | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    return {"Rules": [rule]}


@pytest.mark.s3op(
    "GetBucketEncryption",
    "PutBucketEncryption",
    "DeleteBucketEncryption",
    note="always SSE-S3: every chunk is encrypted at rest, so the answer is AES256 (as S3 gives for every bucket "
    "since 2023); an AES256 configuration is kept with its BucketKeyEnabled; aws:kms, aws:kms:dsse or a "
    "KMSMasterKeyID: NotImplemented; DeleteBucketEncryption returns to AES256; every write and read answers "
    "x-amz-server-side-encryption: AES256",
)
def test_bucket_encryption(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    def rules() -> Any:
        return s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]

    assert rules() == aes256(False)["Rules"]
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=aes256(True))
    assert rules() == aes256(True)["Rules"]
    kms = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1"}}]}
    for config in (kms, {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}]}):
        with pytest.raises(ClientError) as exc:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
        assert code(exc) == "NotImplemented"
    keyed = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "k1"}}]}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=keyed)
    assert code(exc) == "NotImplemented"
    assert rules() == aes256(True)["Rules"]  # a refused configuration changes nothing
    apply = (
        "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
    )
    rule = f"<Rule>{apply}</Rule>"
    for bad in (
        b"<ServerSideEncryptionConfiguration>",
        b"<ServerSideEncryptionConfiguration></ServerSideEncryptionConfiguration>",
        f"<ServerSideEncryptionConfiguration>{rule}{rule}</ServerSideEncryptionConfiguration>".encode(),
        b"<ServerSideEncryptionConfiguration><Rule><BucketKeyEnabled>yes</BucketKeyEnabled></Rule>"
        b"</ServerSideEncryptionConfiguration>",
        b"<CORSConfiguration/>",
    ):
        assert_s3_error(signed(dwh_server, "PUT", f"/{bucket}?encryption", body=bad), 400, "MalformedXML")
    huge = b"<ServerSideEncryptionConfiguration>" + b"x" * 20_000 + b"</ServerSideEncryptionConfiguration>"
    assert_s3_error(signed(dwh_server, "PUT", f"/{bucket}?encryption", body=huge), 400, "EntityTooLarge")
    s3.delete_bucket_encryption(Bucket=bucket)
    assert rules() == aes256(False)["Rules"]
    # Every write and read says what every object gets, asked for or not.
    answers = [
        s3.put_object(Bucket=bucket, Key="k", Body=b"data"),
        s3.head_object(Bucket=bucket, Key="k"),
        s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-1"),
        s3.copy_object(Bucket=bucket, Key="k2", CopySource={"Bucket": bucket, "Key": "k"}),
    ]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    answers += [up, part, done]
    assert [a.get("ServerSideEncryption") for a in answers] == ["AES256"] * len(answers)
    for call in (
        lambda: s3.get_bucket_encryption(Bucket="no-such-bucket-enc"),
        lambda: s3.put_bucket_encryption(Bucket="no-such-bucket-enc", ServerSideEncryptionConfiguration=aes256()),
        lambda: s3.delete_bucket_encryption(Bucket="no-such-bucket-enc"),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "NoSuchBucket"


@pytest.mark.s3op(
    "GetBucketCors",
    "PutBucketCors",
    "DeleteBucketCors",
    "CorsPreflight",
    note="rules with * wildcards, preflight 200/403, CORS headers on actual requests",
)
def test_cors(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(exc) == "NoSuchCORSConfiguration"
    rules = [
        {
            "AllowedOrigins": ["https://app.example.com"],
            "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["content-*", "x-amz-*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
    ]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://app.example.com"] and got[0]["MaxAgeSeconds"] == 600
    url = dwh_server.url(bucket, "file")
    st, headers = _options(url, "https://app.example.com", "PUT", "content-type, x-amz-meta-a")
    assert st == 200 and headers["access-control-allow-origin"] == "https://app.example.com"
    assert "PUT" in headers["access-control-allow-methods"] and headers["access-control-max-age"] == "600"
    assert _options(url, "https://evil.example.net", "PUT")[0] == 403
    st, headers = _options(url, "https://anyone.example.org", "GET")
    assert st == 200 and headers["access-control-allow-origin"] == "*"
    s3.put_object(Bucket=bucket, Key="file", Body=b"cors")
    signed_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "file"}, ExpiresIn=60)
    req = urllib.request.Request(signed_url, headers={"Origin": "https://app.example.com"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert resp.headers["Access-Control-Expose-Headers"] == "ETag"
    s3.delete_bucket_cors(Bucket=bucket)
    assert _options(url, "https://anyone.example.org", "GET")[0] == 403


def _post_form(url: str, fields: dict[str, str], content: bytes, filename: str) -> tuple[int, bytes]:
    boundary = "----dwhbasicboundary0123456789"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.s3op("PostObject", note="SigV4 POST policy: eq, starts-with, content-length-range, ${filename}")
def test_post_object(s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"success_action_status": "201"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=300,
    )
    st, body = _post_form(post["url"], post["fields"], b"hello from a form", "note.txt")
    assert st == 201 and b"<Key>uploads/note.txt</Key>" in body, body
    assert s3.get_object(Bucket=bucket, Key="uploads/note.txt")["Body"].read() == b"hello from a form"
    st, body = _post_form(post["url"], post["fields"], b"x" * 2000, "big.txt")
    assert st == 400 and b"EntityTooLarge" in body and absent(s3, bucket, "uploads/big.txt")
    st, body = _post_form(post["url"], {**post["fields"], "key": "elsewhere/${filename}"}, b"sneaky", "s.txt")
    assert st == 403 and absent(s3, bucket, "elsewhere/s.txt")
    st, body = _post_form(post["url"], {**post["fields"], "x-amz-signature": "0" * 64}, b"forged", "f.txt")
    assert st == 403 and b"SignatureDoesNotMatch" in body


@pytest.mark.s3op("PostObject", note="form fields sent back as headers: control characters refused, UTF-8 as RFC 2047")
def test_post_object_fields_that_become_headers(s3: Any, bucket: str) -> None:
    """Form fields, unlike request headers, may hold control characters. A value that every GET
    would have to send back as a header is refused up front (before, the object was stored and
    every GET of it lost its connection); UTF-8 metadata is kept and sent RFC 2047-encoded, as
    S3 does."""
    conditions: list[Any] = [["starts-with", "$key", "form/"], ["starts-with", "$x-amz-meta-note", ""]]
    post = s3.generate_presigned_post(bucket, "form/${filename}", Conditions=conditions, ExpiresIn=300)
    for bad in ("line\x01break", "bell\x07", "del\x7f"):
        st, body = _post_form(post["url"], {**post["fields"], "x-amz-meta-note": bad}, b"data", "bad.txt")
        assert st == 400 and b"<Code>InvalidArgument</Code>" in body, body
        assert absent(s3, bucket, "form/bad.txt")
    st, body = _post_form(post["url"], {**post["fields"], "x-amz-meta-note": "café ✓"}, b"data", "ok.txt")
    assert st == 204, body
    head = s3.head_object(Bucket=bucket, Key="form/ok.txt")
    sent = head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-note"]
    assert sent == "=?UTF-8?B?" + base64.b64encode("café ✓".encode()).decode() + "?="


# --- multipart -----------------------------------------------------------------------------------------


@pytest.mark.s3op("CreateMultipartUpload", note="content type and metadata carried to the object")
@pytest.mark.s3op("UploadPart", "ListParts", "AbortMultipartUpload", note="part ETag = MD5; NoSuchUpload afterwards")
@pytest.mark.s3op("UploadPartCopy", note="x-amz-copy-source-range")
@pytest.mark.s3op("ListMultipartUploads")
@pytest.mark.s3op("CompleteMultipartUpload", note="ETag md5-of-md5s-N; InvalidPartOrder, InvalidPart, EntityTooSmall")
def test_multipart(s3: Any, bucket: str) -> None:
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="x/y", Metadata={"m": "1"})["UploadId"]
    assert any(u["UploadId"] == up for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"])
    etags = []
    for n, data in enumerate(parts_data, 1):
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=data)["ETag"]
        assert etag == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(etag)
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (n, e, len(d)) for n, (e, d) in enumerate(zip(etags, parts_data, strict=True), 1)
    ]
    with pytest.raises(ClientError) as exc:  # parts out of order
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]},
        )
    assert code(exc) == "InvalidPartOrder"
    with pytest.raises(ClientError) as exc:  # a wrong ETag
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]}
        )
    assert code(exc) == "InvalidPart"
    with pytest.raises(ClientError) as exc:  # a small part that is not the last
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 3, "ETag": etags[2]}, {"PartNumber": 4, "ETag": etags[2]}]},
        )
    assert code(exc) in ("InvalidPart", "EntityTooSmall")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts_data)
    assert got["ContentType"] == "x/y" and got["Metadata"] == {"m": "1"} and got["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)
    assert code(exc) == "NoSuchUpload"
    # UploadPartCopy with a range, then abort.
    up2 = s3.create_multipart_upload(Bucket=bucket, Key="mp2")["UploadId"]
    r = s3.upload_part_copy(
        Bucket=bucket,
        Key="mp2",
        UploadId=up2,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "mp"},
        CopySourceRange="bytes=0-5242879",
    )
    assert r["CopyPartResult"]["ETag"] == etags[0]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp2", UploadId=up2)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="mp2", UploadId=up2, PartNumber=2, Body=b"late")
    assert code(exc) == "NoSuchUpload"
    assert absent(s3, bucket, "mp2")
    assert not any(u["UploadId"] in (up, up2) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
