"""The S3 server end to end with boto3: a real `dwh serve` subprocess on a free port."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from serverproc import ACCESS, SECRET, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("s3core") / "dwh-data")
    yield srv
    output = srv.stop()
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def s3(server: Server):  # type: ignore[no-untyped-def]
    return server.client()


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_buckets(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-buckets")
    assert "core-buckets" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="core-buckets")
    assert s3.get_bucket_location(Bucket="core-buckets").get("LocationConstraint") is None
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="core-buckets")
    assert code(exc) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(exc) == "InvalidBucketName"
    s3.put_object(Bucket="core-buckets", Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="core-buckets")
    assert code(exc) == "BucketNotEmpty"
    s3.delete_object(Bucket="core-buckets", Key="k")
    s3.delete_bucket(Bucket="core-buckets")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="core-buckets")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 5 * 1024 * 1024 + 3])
def test_put_get_head_round_trip(s3, size: int) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-objects") if size == 0 else None
    data = os.urandom(size)
    key = f"sizes/{size} bytes+é"
    put = s3.put_object(
        Bucket="core-objects", Key=key, Body=data, ContentType="application/x-test", Metadata={"a": "1"}
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket="core-objects", Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"a": "1"}
    head = s3.head_object(Bucket="core-objects", Key=key)
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"]


def test_ranges_and_conditions(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-ranges")
    data = os.urandom(3 * 1024 * 1024 + 5)
    etag = s3.put_object(Bucket="core-ranges", Key="r", Body=data)["ETag"]
    for header, want in [
        ("bytes=0-0", data[:1]),
        ("bytes=100-", data[100:]),
        ("bytes=-10", data[-10:]),
        ("bytes=1048570-2097160", data[1048570:2097161]),
    ]:
        got = s3.get_object(Bucket="core-ranges", Key="r", Range=header)
        assert got["Body"].read() == want, header
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-ranges", Key="r", Range=f"bytes={len(data)}-")
    assert code(exc) == "InvalidRange"
    assert s3.get_object(Bucket="core-ranges", Key="r", IfMatch=etag)["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-ranges", Key="r", IfMatch='"0000"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-ranges", Key="r", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-ranges", Key="r", IfModifiedSince=future)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="core-ranges", Key="r", Body=b"new", IfNoneMatch="*")
    assert code(exc) == "PreconditionFailed"
    s3.put_object(Bucket="core-ranges", Key="r", Body=b"new", IfMatch=etag)
    assert s3.get_object(Bucket="core-ranges", Key="r")["Body"].read() == b"new"


def test_errors_and_auth(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-auth")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-auth", Key="missing")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="core-nobucket", Key="x")
    assert code(exc) == "NoSuchBucket"
    bad = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS,
        aws_secret_access_key="wrong-secret",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as exc:
        bad.list_buckets()
    assert code(exc) == "SignatureDoesNotMatch"
    unknown = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id="NOSUCHKEY",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as exc:
        unknown.list_buckets()
    assert code(exc) == "InvalidAccessKeyId"
    try:
        urllib.request.urlopen(f"{server.endpoint}/core-auth/x")
        raise AssertionError("anonymous request accepted")
    except urllib.error.HTTPError as err:
        body = err.read()
        assert err.code == 403 and b"<Code>AccessDenied</Code>" in body and b"<RequestId>" in body


def test_presigned_get_and_put(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-presign")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "core-presign", "Key": "p"}, ExpiresIn=300)
    req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    assert urllib.request.urlopen(req).status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "core-presign", "Key": "p"}, ExpiresIn=300)
    assert urllib.request.urlopen(get_url).read() == b"presigned body"
    tampered = get_url.replace("core-presign/p", "core-presign/q")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tampered)
    assert err.value.code == 403 and b"SignatureDoesNotMatch" in err.value.read()


def test_listing_with_delimiters_and_pagination(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-list")
    keys = [f"d{d}/s{s}/f{i}" for d in range(3) for s in range(3) for i in range(30)] + ["top", "é/x", "a b+c", "z%"]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket="core-list", Key=k, Body=k.encode()), keys))
    want = sorted(keys, key=lambda k: k.encode())
    for op, size in (("list_objects_v2", 37), ("list_objects", 50)):
        pages = s3.get_paginator(op).paginate(Bucket="core-list", PaginationConfig={"PageSize": size})
        assert [o["Key"] for p in pages for o in p.get("Contents", [])] == want
    r = s3.list_objects_v2(Bucket="core-list", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d0/", "d1/", "d2/", "é/"]
    assert [o["Key"] for o in r["Contents"]] == ["a b+c", "top", "z%"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="core-list", Prefix="d1/", Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    assert [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])] == ["d1/s0/", "d1/s1/", "d1/s2/"]
    r = s3.list_objects(Bucket="core-list", Prefix="d2/s1/", MaxKeys=3, EncodingType="url")
    assert len(r["Contents"]) == 3 and r["IsTruncated"]
    assert s3.list_objects_v2(Bucket="core-list", MaxKeys=0)["KeyCount"] == 0


def test_delete_objects(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-batch")
    for i in range(20):
        s3.put_object(Bucket="core-batch", Key=f"k{i}", Body=b"x")
    r = s3.delete_objects(
        Bucket="core-batch", Delete={"Objects": [{"Key": f"k{i}"} for i in range(10)] + [{"Key": "nope"}]}
    )
    assert len(r["Deleted"]) == 11 and "Errors" not in r
    r = s3.delete_objects(
        Bucket="core-batch", Delete={"Objects": [{"Key": f"k{i}"} for i in range(10, 20)], "Quiet": True}
    )
    assert "Deleted" not in r
    assert s3.list_objects_v2(Bucket="core-batch")["KeyCount"] == 0


def test_streaming_upload_survives_restart(tmp_path: Path) -> None:
    """boto3's default upload (aws-chunked with a checksum trailer) of 40 MiB, then a restart."""
    srv = Server(tmp_path / "dwh-data")
    try:
        c = srv.client()
        c.create_bucket(Bucket="core-restart")
        data = os.urandom(40 * 1024 * 1024)
        c.put_object(Bucket="core-restart", Key="big", Body=data)
    finally:
        assert "Traceback" not in srv.stop()
    srv = Server(tmp_path / "dwh-data")
    try:
        assert srv.client().get_object(Bucket="core-restart", Key="big")["Body"].read() == data
    finally:
        srv.stop()


def test_representation_headers_and_checksums_round_trip(s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-headers")
    s3.put_object(
        Bucket="core-headers",
        Key="h",
        Body=b"hello headers",
        CacheControl="max-age=60",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="h.txt"',
        ContentLanguage="fr",
        Expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    head = s3.head_object(Bucket="core-headers", Key="h")
    assert head["CacheControl"] == "max-age=60" and head["ContentEncoding"] == "identity"
    assert head["ContentDisposition"] == 'attachment; filename="h.txt"' and head["ContentLanguage"] == "fr"
    assert head["ExpiresString"].startswith("Wed, 02 Jan 2030")
    got = s3.get_object(Bucket="core-headers", Key="h", ResponseCacheControl="no-store", ResponseContentType="text/x")
    assert got["CacheControl"] == "no-store" and got["ContentType"] == "text/x"
    for algorithm, field in [
        ("SHA256", "ChecksumSHA256"),
        ("CRC32C", "ChecksumCRC32C"),
        ("CRC64NVME", "ChecksumCRC64NVME"),
    ]:
        put = s3.put_object(
            Bucket="core-headers", Key=f"c-{algorithm}", Body=b"checksummed", ChecksumAlgorithm=algorithm
        )
        got = s3.get_object(Bucket="core-headers", Key=f"c-{algorithm}", ChecksumMode="ENABLED")
        assert got[field] == put[field], algorithm
    import base64

    good = base64.b64encode(hashlib.md5(b"md5 body").digest()).decode()
    s3.put_object(Bucket="core-headers", Key="md5", Body=b"md5 body", ContentMD5=good)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="core-headers", Key="md5-bad", Body=b"other body", ContentMD5=good)
    assert code(exc) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="core-headers", Key="md5-bad")


def test_copy_object(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-copy-a")
    s3.create_bucket(Bucket="core-copy-b")
    data = os.urandom(3 * 1024 * 1024)
    put = s3.put_object(Bucket="core-copy-a", Key="src", Body=data, ContentType="a/b", Metadata={"x": "1"})
    r = s3.copy_object(Bucket="core-copy-b", Key="dst", CopySource={"Bucket": "core-copy-a", "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == put["ETag"]
    got = s3.get_object(Bucket="core-copy-b", Key="dst")
    assert got["Body"].read() == data and got["ContentType"] == "a/b" and got["Metadata"] == {"x": "1"}
    s3.copy_object(
        Bucket="core-copy-a",
        Key="src",
        CopySource="core-copy-a/src",
        MetadataDirective="REPLACE",
        ContentType="c/d",
        Metadata={"y": "2"},
    )
    head = s3.head_object(Bucket="core-copy-a", Key="src")
    assert head["ContentType"] == "c/d" and head["Metadata"] == {"y": "2"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="core-copy-a", Key="src", CopySource="core-copy-a/src")
    assert code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="core-copy-b", Key="x", CopySource="core-copy-a/src", CopySourceIfMatch='"0000"')
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="core-copy-b", Key="x", CopySource="core-copy-a/missing")
    assert code(exc) == "NoSuchKey"
    s3.copy_object(Bucket="core-copy-b", Key="y", CopySource="core-copy-a/src", CopySourceIfMatch=put["ETag"])
    s3.delete_object(Bucket="core-copy-a", Key="src")  # the copies keep the shared chunks alive
    assert s3.get_object(Bucket="core-copy-b", Key="y")["Body"].read() == data


def test_copy_stores_no_new_data(tmp_path: Path) -> None:
    srv = Server(tmp_path / "dwh-data")
    try:
        c = srv.client()
        c.create_bucket(Bucket="copy-refs")
        c.put_object(Bucket="copy-refs", Key="src", Body=os.urandom(4 * 1024 * 1024))
        shard_files = lambda: sum(1 for _ in (tmp_path / "dwh-data" / "disks").rglob("*.0"))  # noqa: E731
        before = shard_files()
        for i in range(5):
            c.copy_object(Bucket="copy-refs", Key=f"copy{i}", CopySource="copy-refs/src")
        assert shard_files() == before
    finally:
        assert "Traceback" not in srv.stop()
    from datawarehouse.service.warehouse import Warehouse

    with Warehouse.open(tmp_path / "dwh-data") as wh, wh.engine.repo.read() as tx:
        assert {c.refcount for c in tx.list_chunks(limit=1000)} == {6}


def test_object_and_bucket_tagging(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-tags")
    s3.put_object(Bucket="core-tags", Key="t", Body=b"tagged", Tagging="team=storage&env=test")
    assert s3.head_object(Bucket="core-tags", Key="t")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    got = s3.get_object_tagging(Bucket="core-tags", Key="t")["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == {"team": "storage", "env": "test"}
    s3.put_object_tagging(Bucket="core-tags", Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket="core-tags", Key="t")["TagSet"] == [{"Key": "only", "Value": "one"}]
    assert s3.get_object(Bucket="core-tags", Key="t")["Body"].read() == b"tagged"  # data untouched
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(
            Bucket="core-tags", Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
        )
    assert code(exc) in ("InvalidTag", "BadRequest", "MalformedXML")
    s3.delete_object_tagging(Bucket="core-tags", Key="t")
    assert s3.get_object_tagging(Bucket="core-tags", Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket="core-tags")
    assert code(exc) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket="core-tags", Tagging={"TagSet": [{"Key": "cost", "Value": "42"}]})
    assert s3.get_bucket_tagging(Bucket="core-tags")["TagSet"] == [{"Key": "cost", "Value": "42"}]
    s3.delete_bucket_tagging(Bucket="core-tags")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket="core-tags")
    assert code(exc) == "NoSuchTagSet"


def test_cors_configuration_and_preflight(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-cors")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket="core-cors")
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
    s3.put_bucket_cors(Bucket="core-cors", CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket="core-cors")["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://app.example.com"] and got[0]["MaxAgeSeconds"] == 600

    def options(origin: str, method: str, headers: str = "") -> tuple[int, dict[str, str]]:
        req = urllib.request.Request(f"{server.endpoint}/core-cors/file", method="OPTIONS")
        req.add_header("Origin", origin)
        req.add_header("Access-Control-Request-Method", method)
        if headers:
            req.add_header("Access-Control-Request-Headers", headers)
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}
        except urllib.error.HTTPError as err:
            return err.code, {}

    status, headers = options("https://app.example.com", "PUT", "content-type, x-amz-meta-a")
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example.com"
    assert "PUT" in headers["access-control-allow-methods"] and headers["access-control-max-age"] == "600"
    assert options("https://evil.example.net", "PUT")[0] == 403
    assert options("https://app.example.com", "PUT", "authorization-bogus")[0] == 403
    status, headers = options("https://anyone.example.org", "GET")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    s3.put_object(Bucket="core-cors", Key="file", Body=b"cors")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "core-cors", "Key": "file"}, ExpiresIn=60)
    req = urllib.request.Request(url)
    req.add_header("Origin", "https://app.example.com")
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert resp.headers["Access-Control-Expose-Headers"] == "ETag"
    s3.delete_bucket_cors(Bucket="core-cors")
    assert options("https://anyone.example.org", "GET")[0] == 403


def _post_form(url: str, fields: dict[str, str], content: bytes, filename: str = "upload.txt") -> tuple[int, bytes]:
    boundary = "----dwhtestboundary7MA4YWxkTrZu0gW"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_browser_post_policy_upload(server: Server, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="core-post")
    post = s3.generate_presigned_post(
        "core-post",
        "uploads/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"success_action_status": "201"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=300,
    )
    status, body = _post_form(post["url"], post["fields"], b"hello from a browser form", "note.txt")
    assert status == 201 and b"<Key>uploads/note.txt</Key>" in body, body
    assert s3.get_object(Bucket="core-post", Key="uploads/note.txt")["Body"].read() == b"hello from a browser form"
    status, body = _post_form(post["url"], post["fields"], b"x" * 2000, "big.txt")  # over content-length-range
    assert status == 400 and b"EntityTooLarge" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket="core-post", Key="uploads/big.txt")
    tampered = {**post["fields"], "key": "elsewhere/${filename}"}
    status, body = _post_form(post["url"], tampered, b"sneaky")
    assert status == 403 and b"Invalid according to Policy" in body
    forged = {**post["fields"], "x-amz-signature": "0" * 64}
    status, body = _post_form(post["url"], forged, b"forged")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    extra = {**post["fields"], "x-amz-meta-unlisted": "1"}
    status, body = _post_form(post["url"], extra, b"extra field")
    assert status == 403 and b"Extra input fields" in body
    expired = s3.generate_presigned_post("core-post", "uploads/${filename}", ExpiresIn=-10)
    status, body = _post_form(expired["url"], expired["fields"], b"late")
    assert status == 403 and b"Policy expired" in body
