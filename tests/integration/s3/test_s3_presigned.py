"""Presigned URLs (SigV4 query authentication, made by botocore) used by ordinary HTTP clients
(urllib, aiohttp): what is signed must be sent as signed, what is not signed may vary."""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest
from s3http import Reply, assert_s3_error

MiB = 1024 * 1024


def presign(s3: Any, op: str, expires: int = 300, **params: Any) -> str:
    return str(s3.generate_presigned_url(op, Params=params, ExpiresIn=expires))


def call(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


@pytest.mark.s3op("auth:presigned", "PutObject", "GetObject", note="Content-Type signed into a presigned PUT")
def test_presigned_put_with_signed_content_type(s3: Any, bucket: str) -> None:
    url = presign(s3, "put_object", Bucket=bucket, Key="typed", ContentType="image/png")
    assert "content-type" in url.lower()  # listed in X-Amz-SignedHeaders
    body = os.urandom(10_000)
    for wrong in ({"Content-Type": "text/html"}, {}):
        reply = call(url, "PUT", body, wrong)
        assert_s3_error(reply, 403, "SignatureDoesNotMatch")
    assert call(presign(s3, "head_object", Bucket=bucket, Key="typed"), "HEAD").status == 404
    reply = call(url, "PUT", body, {"Content-Type": "image/png"})
    assert reply.status == 200 and reply.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="typed")
    assert got["ContentType"] == "image/png" and got["Body"].read() == body


@pytest.mark.s3op("auth:presigned", "PutObject", note="x-amz-meta-* signed into a presigned PUT")
def test_presigned_put_with_signed_metadata(s3: Any, bucket: str) -> None:
    url = presign(s3, "put_object", Bucket=bucket, Key="meta", Metadata={"owner": "ada"})
    assert "x-amz-meta-owner" in url  # botocore signs it as a header the client must send
    assert_s3_error(call(url, "PUT", b"with metadata"), 403)
    assert_s3_error(call(url, "PUT", b"with metadata", {"x-amz-meta-owner": "eve"}), 403, "SignatureDoesNotMatch")
    assert call(url, "PUT", b"with metadata", {"x-amz-meta-owner": "ada"}).status == 200
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == {"owner": "ada"}


@pytest.mark.s3op(
    "auth:presigned",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    note="GET (ranges, response-* overrides), HEAD, DELETE; the method is signed",
)
def test_presigned_get_head_delete(s3: Any, bucket: str) -> None:
    data = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="g", Body=data, ContentType="a/b")
    url = presign(s3, "get_object", Bucket=bucket, Key="g")
    assert call(url).body == data
    reply = call(url, headers={"Range": "bytes=10-19"})  # an unsigned header the client may add
    assert reply.status == 206 and reply.body == data[10:20]
    over = presign(
        s3,
        "get_object",
        Bucket=bucket,
        Key="g",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseContentType="application/x-download",
    )
    reply = call(over)
    assert reply.headers["content-disposition"] == 'attachment; filename="x.bin"'
    assert reply.headers["content-type"] == "application/x-download" and reply.body == data
    head = call(presign(s3, "head_object", Bucket=bucket, Key="g"), "HEAD")
    assert head.status == 200 and head.headers["content-length"] == str(len(data)) and head.body == b""
    # A URL signed for GET does not authorise DELETE.
    assert_s3_error(call(url, "DELETE"), 403, "SignatureDoesNotMatch")
    assert call(presign(s3, "delete_object", Bucket=bucket, Key="g"), "DELETE").status == 204
    assert_s3_error(call(url), 404, "NoSuchKey")


@pytest.mark.s3op("auth:presigned", note="X-Amz-Expires over 7 days: AuthorizationQueryParametersError")
def test_presigned_expiry_limit(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert call(presign(s3, "get_object", expires=604800, Bucket=bucket, Key="x")).body == b"x"
    reply = call(presign(s3, "get_object", expires=604801, Bucket=bucket, Key="x"))
    assert_s3_error(reply, 400, "AuthorizationQueryParametersError")


@pytest.mark.s3op("auth:presigned", "PutObject", "GetObject", note="streamed 24 MiB PUT and GET with aiohttp")
def test_presigned_aiohttp_streaming(s3: Any, bucket: str) -> None:
    size = 24 * MiB
    block = os.urandom(MiB)

    async def body() -> Any:
        for i in range(size // MiB):
            yield i.to_bytes(4, "big") + block[4:]

    expect = hashlib.md5()
    for i in range(size // MiB):
        expect.update(i.to_bytes(4, "big") + block[4:])

    async def run() -> tuple[int, str, int, str]:
        put_url = presign(s3, "put_object", Bucket=bucket, Key="big")
        get_url = presign(s3, "get_object", Bucket=bucket, Key="big")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.put(put_url, data=body(), headers={"Content-Length": str(size)}) as r:
                put_status, etag = r.status, r.headers.get("ETag", "")
            got = hashlib.md5()
            async with session.get(get_url) as r:
                async for piece in r.content.iter_chunked(256 * 1024):
                    got.update(piece)
                return put_status, etag, r.status, got.hexdigest()

    put_status, etag, get_status, digest = asyncio.run(run())
    assert put_status == 200 and get_status == 200
    assert etag == f'"{expect.hexdigest()}"' and digest == expect.hexdigest()
