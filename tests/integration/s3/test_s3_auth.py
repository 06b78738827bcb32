"""Authentication against a real ``dwh serve``: every SigV4 mode S3 clients use, and every way a
request can fail to authenticate. Bodies that fail a check never become objects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from s3http import (
    Reply,
    absent,
    assert_s3_error,
    code,
    frozen_signing_time,
    send,
    sign,
    signed,
    streaming_body,
)
from s3server import DwhServer


def client_with(server: DwhServer, **kwargs: Any) -> Any:
    config = kwargs.pop("config", Config(signature_version="s3v4", retries={"max_attempts": 1}))
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=kwargs.pop("access_key", server.access_key),
        aws_secret_access_key=kwargs.pop("secret_key", server.secret_key),
        region_name="us-east-1",
        config=config,
        **kwargs,
    )


def urlopen(req: urllib.request.Request | str) -> Reply:
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


# --- SigV4 header -------------------------------------------------------------------------------------


@pytest.mark.s3op("auth:sigv4-header", note="wrong secret: SignatureDoesNotMatch; unknown key: InvalidAccessKeyId")
def test_wrong_secret_and_unknown_key(dwh_server: DwhServer, bucket: str) -> None:
    bad = client_with(dwh_server, secret_key="not-the-secret-at-all")
    for call in (bad.list_buckets, lambda: bad.put_object(Bucket=bucket, Key="k", Body=b"x")):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "SignatureDoesNotMatch"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = client_with(dwh_server, access_key="AKIDNOSUCHKEY0000000")
    with pytest.raises(ClientError) as exc:
        unknown.get_object(Bucket=bucket, Key="k")
    assert code(exc) == "InvalidAccessKeyId"
    assert absent(dwh_server.boto3_client(), bucket, "k")
    # The raw error documents carry a request id and no secret.
    reply = send(
        dwh_server,
        "GET",
        "/",
        headers=sign(dwh_server, "GET", "/", secret="not-the-secret-at-all"),
    )
    root = assert_s3_error(reply, 403, "SignatureDoesNotMatch")
    assert dwh_server.secret_key not in reply.body.decode()
    assert root.findtext("RequestId")


@pytest.mark.s3op("auth:anonymous", status="refused", note="AccessDenied (403)")
def test_anonymous_is_denied(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret data")
    for method, target, body in [
        ("GET", "/", b""),
        ("GET", f"/{bucket}", b""),
        ("GET", f"/{bucket}/private", b""),
        ("HEAD", f"/{bucket}/private", b""),
        ("PUT", f"/{bucket}/anon", b"anonymous write"),
        ("DELETE", f"/{bucket}/private", b""),
        ("PUT", "/anon-bucket-xyz", b""),
    ]:
        reply = send(dwh_server, method, target, body=body)
        if method == "HEAD":
            assert reply.status == 403 and reply.body == b""
        else:
            assert_s3_error(reply, 403, "AccessDenied")
            assert b"secret data" not in reply.body
    assert absent(s3, bucket, "anon")
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"secret data"


@pytest.mark.s3op("auth:sigv4-header", note="x-amz-security-token refused (no temporary credentials)")
def test_session_token_is_refused(dwh_server: DwhServer, bucket: str) -> None:
    with_token = client_with(dwh_server, aws_session_token="FwoGZXIvYXdzEXAMPLETOKEN")
    with pytest.raises(ClientError) as exc:
        with_token.list_objects_v2(Bucket=bucket)
    assert code(exc) == "AccessDenied"


@pytest.mark.s3op("auth:clock-skew", note="15 minutes either way: RequestTimeTooSkewed")
def test_clock_skew(dwh_server: DwhServer, bucket: str) -> None:
    now = datetime.now(UTC)
    for offset, ok in [(-20, False), (20, False), (-60 * 24, False), (-10, True), (10, True)]:
        with frozen_signing_time(now + timedelta(minutes=offset)):
            headers = sign(dwh_server, "GET", f"/{bucket}?list-type=2")
        reply = send(dwh_server, "GET", f"/{bucket}?list-type=2", headers=headers)
        if ok:
            assert reply.status == 200, (offset, reply.body)
        else:
            root = assert_s3_error(reply, 403, "RequestTimeTooSkewed")
            assert root.findtext("ServerTime") and root.findtext("RequestTime")


# --- payload modes -------------------------------------------------------------------------------------


@pytest.mark.s3op("auth:unsigned-payload")
def test_unsigned_payload(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    body = b"unsigned body " * 1000
    reply = signed(dwh_server, "PUT", f"/{bucket}/unsigned", body=body, payload_hash="UNSIGNED-PAYLOAD")
    assert reply.status == 200, reply.body
    assert reply.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == body
    # The headers are still signed: changing one breaks the signature.
    headers = sign(dwh_server, "PUT", f"/{bucket}/unsigned2", body=body, payload_hash="UNSIGNED-PAYLOAD")
    headers["x-amz-meta-added"] = "later"
    assert_s3_error(send(dwh_server, "PUT", f"/{bucket}/unsigned2", body=body, headers=headers), 403)
    assert absent(s3, bucket, "unsigned2")


@pytest.mark.s3op("auth:content-sha256", "auth:sigv4-header", note="XAmzContentSHA256Mismatch; nothing stored")
def test_payload_hash_mismatch(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    body = b"the real body"
    reply = signed(dwh_server, "PUT", f"/{bucket}/hashed", body=body, payload_hash=hashlib.sha256(b"other").hexdigest())
    assert_s3_error(reply, 400, "XAmzContentSHA256Mismatch")
    assert absent(s3, bucket, "hashed")
    reply = signed(dwh_server, "PUT", f"/{bucket}/hashed", body=body)
    assert reply.status == 200
    assert s3.get_object(Bucket=bucket, Key="hashed")["Body"].read() == body
    reply = signed(dwh_server, "PUT", f"/{bucket}/hashed2", body=body, payload_hash="NOT-A-HASH")
    assert_s3_error(reply, 400, "InvalidArgument")


def _streaming_headers(server: DwhServer, target: str, mode: str, decoded_length: int, **extra: str) -> dict[str, str]:
    base = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded_length),
        **extra,
    }
    return sign(server, "PUT", target, headers=base, payload_hash=mode)


def _put_raw(server: DwhServer, target: str, headers: dict[str, str], body: bytes) -> Reply:
    return send(server, "PUT", target, body=body, headers={**headers, "Content-Length": str(len(body))})


@pytest.mark.s3op(
    "auth:streaming-signed",
    note="chunk signatures chained from the seed; a tampered, dropped or reordered chunk is refused before commit",
)
def test_streaming_signed_payload(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    data = bytes(range(256)) * 1000  # 256,000 bytes: 4 chunks of 64 KiB
    target = f"/{bucket}/streamed"
    headers = _streaming_headers(dwh_server, target, mode, len(data))
    good = streaming_body(dwh_server, headers, data)
    reply = _put_raw(dwh_server, target, headers, good)
    assert reply.status == 200, reply.body
    assert reply.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == data

    def attempt(key: str, mutate: Callable[[bytes], bytes]) -> Reply:
        target = f"/{bucket}/{key}"
        headers = _streaming_headers(dwh_server, target, mode, len(data))
        return _put_raw(dwh_server, target, headers, mutate(streaming_body(dwh_server, headers, data)))

    def flip(body: bytes) -> bytes:
        at = body.index(b"\r\n") + 2 + 30_000  # a byte inside the first chunk's data
        return body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]

    reply = attempt("tampered", flip)
    assert_s3_error(reply, 403, "SignatureDoesNotMatch")
    assert absent(s3, bucket, "tampered")
    # Flipping a byte of the last data chunk: earlier chunks were fine, nothing may be kept.
    reply = attempt("tampered-late", lambda b: b[:-200] + bytes([b[-200] ^ 1]) + b[-199:])
    assert reply.status in (400, 403) and absent(s3, bucket, "tampered-late")

    def drop_second(body: bytes) -> bytes:
        first = body.index(b"\r\n", body.index(b"\r\n") + 2 + 64 * 1024) + 2
        second = body.index(b"\r\n", body.index(b"\r\n", first) + 2 + 64 * 1024) + 2
        return body[:first] + body[second:]

    reply = attempt("dropped", drop_second)
    assert reply.status in (400, 403) and absent(s3, bucket, "dropped")
    # Overwriting with a tampered stream leaves the old object intact.
    reply = attempt("streamed", flip)
    assert_s3_error(reply, 403, "SignatureDoesNotMatch")
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == data


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.s3op("auth:streaming-signed-trailer", "checksums", note="signed chunks + signed checksum trailer")
def test_streaming_signed_payload_with_trailer(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    data = b"trailer-signed " * 10_000
    target = f"/{bucket}/signed-trailer"
    headers = _streaming_headers(dwh_server, target, mode, len(data), **{"x-amz-trailer": "x-amz-checksum-crc32"})
    body = streaming_body(dwh_server, headers, data, trailers={"x-amz-checksum-crc32": _crc32(data)})
    reply = _put_raw(dwh_server, target, headers, body)
    assert reply.status == 200, reply.body
    got = s3.get_object(Bucket=bucket, Key="signed-trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == _crc32(data)
    # A wrong checksum in a correctly signed trailer: BadDigest.
    target = f"/{bucket}/signed-trailer-bad"
    headers = _streaming_headers(dwh_server, target, mode, len(data), **{"x-amz-trailer": "x-amz-checksum-crc32"})
    body = streaming_body(dwh_server, headers, data, trailers={"x-amz-checksum-crc32": _crc32(b"other")})
    assert_s3_error(_put_raw(dwh_server, target, headers, body), 400, "BadDigest")
    assert absent(s3, bucket, "signed-trailer-bad")
    # A trailer changed after signing: SignatureDoesNotMatch.
    body = streaming_body(dwh_server, headers, data, trailers={"x-amz-checksum-crc32": _crc32(data)})
    forged = body.replace(_crc32(data).encode(), _crc32(b"forged").encode())
    assert_s3_error(_put_raw(dwh_server, target, headers, forged), 403, "SignatureDoesNotMatch")
    assert absent(s3, bucket, "signed-trailer-bad")


@pytest.mark.s3op(
    "auth:streaming-unsigned-trailer", "checksums", note="the trailer checksum is verified before commit (BadDigest)"
)
def test_streaming_unsigned_payload_with_trailer(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    data = bytes(range(256)) * 700

    def body(payload: bytes, crc: str, chunk: int = 50_000) -> bytes:
        out = b"".join(
            f"{len(payload[i : i + chunk]):x}\r\n".encode() + payload[i : i + chunk] + b"\r\n"
            for i in range(0, len(payload), chunk)
        )
        return out + b"0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()

    for key, crc, want in [("unsigned-trailer", _crc32(data), 200), ("unsigned-trailer-bad", _crc32(b"no"), 400)]:
        target = f"/{bucket}/{key}"
        headers = _streaming_headers(dwh_server, target, mode, len(data), **{"x-amz-trailer": "x-amz-checksum-crc32"})
        reply = _put_raw(dwh_server, target, headers, body(data, crc))
        assert reply.status == want, reply.body
        if want == 200:
            got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            assert got["Body"].read() == data and got["ChecksumCRC32"] == crc
        else:
            assert_s3_error(reply, 400, "BadDigest")
            assert absent(s3, bucket, key)
    # A body shorter than x-amz-decoded-content-length is refused.
    target = f"/{bucket}/unsigned-trailer-short"
    headers = _streaming_headers(dwh_server, target, mode, len(data) + 10, **{"x-amz-trailer": "x-amz-checksum-crc32"})
    reply = _put_raw(dwh_server, target, headers, body(data, _crc32(data)))
    assert reply.status == 400 and absent(s3, bucket, "unsigned-trailer-short")


# --- presigned URLs ------------------------------------------------------------------------------------


@pytest.mark.s3op("auth:presigned", note="GET/PUT with urllib and aiohttp")
def test_presigned_get_and_put(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in put_url and "AWSAccessKeyId" not in put_url
    reply = urlopen(urllib.request.Request(put_url, data=b"presigned body", method="PUT"))
    assert reply.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
    assert urlopen(get_url).body == b"presigned body"

    async def with_aiohttp() -> tuple[int, bytes, int]:
        url2 = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p2"}, ExpiresIn=300)
        async with aiohttp.ClientSession() as session:
            async with session.put(url2, data=b"via aiohttp") as r:
                put_status = r.status
            async with session.get(
                s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p2"}, ExpiresIn=300)
            ) as r:
                return put_status, await r.read(), r.status

    put_status, data, get_status = asyncio.run(with_aiohttp())
    assert (put_status, get_status, data) == (200, 200, b"via aiohttp")


@pytest.mark.s3op("auth:presigned", note="expired URL: AccessDenied")
def test_presigned_expired(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="e", Body=b"soon gone")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.2)
    reply = urlopen(url)
    root = assert_s3_error(reply, 403, "AccessDenied")
    assert "expired" in (root.findtext("Message") or "").lower()
    assert b"soon gone" not in reply.body


@pytest.mark.s3op("auth:presigned", note="any change to the signed query or path: SignatureDoesNotMatch")
def test_presigned_tampered(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"tamper target")
    s3.put_object(Bucket=bucket, Key="u", Body=b"other object")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "t"}, ExpiresIn=300)
    parts = urlsplit(url)
    query = parse_qsl(parts.query)

    def with_query(q: list[tuple[str, str]], path: str | None = None) -> str:
        return urlunsplit((parts.scheme, parts.netloc, path or parts.path, urlencode(q), ""))

    tampered = [
        with_query([(k, "600" if k == "X-Amz-Expires" else v) for k, v in query]),  # longer life
        with_query([*query, ("response-content-type", "text/html")]),  # an added parameter
        with_query(query, path=parts.path[:-1] + "u"),  # another key
        with_query([(k, v[:-1] + ("0" if v[-1] != "0" else "1") if k == "X-Amz-Signature" else v) for k, v in query]),
    ]
    for bad in tampered:
        reply = urlopen(bad)
        assert_s3_error(reply, 403, "SignatureDoesNotMatch")
        assert b"tamper target" not in reply.body and b"other object" not in reply.body
    missing = with_query([(k, v) for k, v in query if k != "X-Amz-Date"])
    assert_s3_error(urlopen(missing), 400, "AuthorizationQueryParametersError")
    assert urlopen(url).body == b"tamper target"


# --- refused schemes -----------------------------------------------------------------------------------


@pytest.mark.s3op("auth:sigv4a", status="refused", note="InvalidRequest")
def test_sigv4a_is_refused(dwh_server: DwhServer, bucket: str) -> None:
    headers = sign(dwh_server, "GET", f"/{bucket}")
    headers["Authorization"] = headers["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1)
    headers["X-Amz-Region-Set"] = "*"
    assert_s3_error(send(dwh_server, "GET", f"/{bucket}", headers=headers), 400, "InvalidRequest")


# --- addressing ----------------------------------------------------------------------------------------


@pytest.mark.s3op("addressing:path-style", "addressing:virtual-hosted", note="Host: BUCKET.<domain>[:port]")
def test_virtual_hosted_style(dwh_server_factory: Callable[..., DwhServer]) -> None:
    server = dwh_server_factory(domain="localtest")
    s3 = server.boto3_client()  # path style
    s3.create_bucket(Bucket="vhost")
    host = f"vhost.localtest:{server.port}"

    def vsend(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        hdrs = sign(server, method, target, body=body, headers=headers, host=host)
        return send(server, method, target, body=body, headers=hdrs)

    reply = vsend("PUT", "/dir/virtual%20key", b"virtually hosted")
    assert reply.status == 200, reply.body
    assert s3.get_object(Bucket="vhost", Key="dir/virtual key")["Body"].read() == b"virtually hosted"
    reply = vsend("GET", "/dir/virtual%20key")
    assert reply.status == 200 and reply.body == b"virtually hosted"
    reply = vsend("GET", "/?list-type=2&prefix=dir%2F")
    assert reply.status == 200 and b"<Key>dir/virtual key</Key>" in reply.body
    reply = vsend("HEAD", "/")
    assert reply.status == 200
    s3.put_object(Bucket="vhost", Key="path-style", Body=b"ps")
    assert vsend("GET", "/path-style").body == b"ps"
    # A Host outside the domain is path style; the same signed bytes under another bucket fail.
    hdrs = sign(server, "GET", "/path-style", host=host)
    hdrs["Host"] = f"other.localtest:{server.port}"
    assert send(server, "GET", "/path-style", headers=hdrs).status in (403, 404)


@pytest.mark.s3op("addressing:path-style", note="a server without --domain ignores the Host's bucket")
def test_without_domain_host_is_ignored(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"path style")
    host = f"{bucket}.localtest:{dwh_server.port}"
    hdrs = sign(dwh_server, "GET", f"/{bucket}/k", host=host)
    reply = send(dwh_server, "GET", f"/{bucket}/k", headers=hdrs)
    assert reply.status == 200 and reply.body == b"path style"
    hdrs = sign(dwh_server, "GET", "/k", host=host)
    assert_s3_error(send(dwh_server, "GET", "/k", headers=hdrs), 404, "NoSuchBucket")
