"""Bad and hostile input over raw HTTP (http.client and bare sockets, signed with botocore's SigV4
signer where it matters): every answer is an S3 error document with a request id and no stack
trace, nothing partial or corrupt is stored, nothing escapes the data directory, memory stays
bounded, and the server stays up."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from s3http import Reply, absent, assert_s3_error, raw, request_bytes, send, sign, signed
from s3server import DwhServer

MiB = 1024 * 1024
BOGUS_MD5 = base64.b64encode(b"\0" * 16).decode()


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def still_up(server: DwhServer, s3: Any, bucket: str) -> None:
    assert server.running, server.log()[-3000:]
    s3.put_object(Bucket=bucket, Key="alive", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="alive")["Body"].read() == b"ok"


def rss(server: DwhServer) -> int:
    return int(psutil.Process(server.pid).memory_info().rss)


# --- XML -----------------------------------------------------------------------------------------------

LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
    )
    + b"]><Delete><Object><Key>&lol9;</Key></Object></Delete>"
)
HOSTILE_XML = {
    "truncated": b"<Delete><Object><Key>a</Key></Object>",
    "not-xml": b"this is not xml at all",
    "wrong-root": b"<Other><Object><Key>a</Key></Object></Other>",
    "whitespace": b"   \n\t ",
    "billion-laughs": LAUGHS,
    "external-entity": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Delete><Object><Key>&x;</Key></Object></Delete>",
    "external-dtd": b'<?xml version="1.0"?><!DOCTYPE d SYSTEM "http://127.0.0.1:1/evil.dtd">'
    b"<Delete><Object><Key>a</Key></Object></Delete>",
    "parameter-entity": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
    b"<Delete><Object><Key>a</Key></Object></Delete>",
    "bad-encoding": b'<?xml version="1.0" encoding="no-such-encoding"?><Delete/>',
    "invalid-utf8": b"<Delete><Object><Key>\xff\xfe</Key></Object></Delete>",
}


@pytest.mark.parametrize("name", list(HOSTILE_XML))
@pytest.mark.s3op("hostile-input", note="malformed XML, entity expansion, external entities/DTDs: MalformedXML")
def test_hostile_xml(dwh_server: DwhServer, s3: Any, bucket: str, name: str) -> None:
    body = HOSTILE_XML[name]
    before = rss(dwh_server)
    s3.put_object(Bucket=bucket, Key="a", Body=b"keep me")
    for target, extra in [
        (f"/{bucket}?delete", {"Content-MD5": md5_b64(body)}),
        (f"/{bucket}?tagging", {"Content-MD5": md5_b64(body)}),
        (f"/{bucket}?cors", {"Content-MD5": md5_b64(body)}),
        (f"/{bucket}/a?tagging", {}),
    ]:
        method = "POST" if target.endswith("?delete") else "PUT"
        reply = signed(dwh_server, method, target, body=body, headers=extra)
        assert_s3_error(reply, 400, "MalformedXML")
        assert b"root:" not in reply.body and b"lollol" not in reply.body
    assert rss(dwh_server) - before < 64 * MiB
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"keep me"  # nothing was deleted
    still_up(dwh_server, s3, bucket)


def _stream_until_answer(server: DwhServer, head: bytes, piece: bytes, limit: int) -> tuple[int, Reply | None]:
    """Send ``head`` then ``piece`` repeatedly (up to ``limit`` bytes) until the server answers;
    return the bytes sent and the answer (None if the connection was reset before one came)."""
    sent = 0
    buf = b""
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < limit and time.monotonic() - start < 30:
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got = sock.recv(65536)
                buf += got
                if not got or b"</Error>" in buf:
                    break
            except BlockingIOError:
                pass
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            while b"</Error>" not in buf:
                got = sock.recv(65536)
                if not got:
                    break
                buf += got
        except (ConnectionResetError, TimeoutError):
            pass
    if not buf:
        return sent, None
    head_part, _, body = buf.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return sent, Reply(int(lines[0].split(" ", 2)[1]), hdrs, body)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.s3op("hostile-input", note="an XML body over the limit is refused early, unparsed, in bounded memory")
def test_huge_xml_is_refused_early(dwh_server: DwhServer, s3: Any, bucket: str, framing: str) -> None:
    """Stream a DeleteObjects body of 1 GiB (announced, or with no length at all): the answer
    must come after a few MiB, before the server parses or holds it."""
    target = f"/{bucket}?delete"
    headers = sign(dwh_server, "POST", target, headers={"Content-MD5": BOGUS_MD5}, payload_hash="UNSIGNED-PAYLOAD")
    item = b"<Object><Key>" + b"k" * 1000 + b"</Key></Object>"
    data = item * (64 * 1024 // len(item))
    if framing == "content-length":
        headers["Content-Length"] = str(1024 * MiB)
        piece = data
        want = ("EntityTooLarge", "MalformedXML")  # refused on the announced length, or once over the limit
    else:
        headers["Transfer-Encoding"] = "chunked"
        piece = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        want = ("MalformedXML", "EntityTooLarge")  # over the read limit: either is a clean early refusal
    before = rss(dwh_server)
    sent, reply = _stream_until_answer(dwh_server, request_bytes("POST", target, headers, b""), piece, 64 * MiB)
    assert sent < 32 * MiB, f"the server read {sent} bytes of an oversized XML body before refusing it"
    if reply is not None:  # the answer may be lost to the reset of a connection still sending
        assert_s3_error(reply, 400)
        assert reply.code() in want, reply.body
    assert rss(dwh_server) - before < 128 * MiB
    still_up(dwh_server, s3, bucket)


# --- truncated and broken bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["unsigned", "sha256", "aws-chunked", "no-length"])
@pytest.mark.s3op("hostile-input", "PutObject", note="a body shorter than announced never becomes an object")
def test_truncated_body_stores_nothing(dwh_server: DwhServer, s3: Any, bucket: str, mode: str) -> None:
    data = os.urandom(3 * MiB)
    for key in ("fresh", "existing"):
        if key == "existing":
            s3.put_object(Bucket=bucket, Key=key, Body=b"previous content")
        target = f"/{bucket}/{key}"
        if mode == "aws-chunked":
            chunk = 1 * MiB
            body = (
                b"".join(f"{chunk:x}\r\n".encode() + data[i : i + chunk] + b"\r\n" for i in range(0, len(data), chunk))
                + b"0\r\n\r\n"
            )
            headers = sign(
                dwh_server,
                "PUT",
                target,
                headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))},
                payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            )
        else:
            body = data
            headers = sign(
                dwh_server, "PUT", target, body=data, payload_hash="UNSIGNED-PAYLOAD" if mode == "unsigned" else None
            )
        headers["Content-Length"] = str(len(body))
        if mode == "no-length":  # HTTP chunked transfer coding, cut before its last chunk
            del headers["Content-Length"]
            headers["Transfer-Encoding"] = "chunked"
            body = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        reply = raw(dwh_server, request_bytes("PUT", target, headers, body[: len(body) // 2]), shutdown=True)
        if reply is not None:
            assert reply.status >= 400
            assert_s3_error(reply, reply.status)
        time.sleep(0.2)  # let the server notice the disconnect and abort
        if key == "fresh":
            assert absent(s3, bucket, key)
        else:
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"previous content"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["existing"]
    still_up(dwh_server, s3, bucket)


@pytest.mark.s3op("hostile-input", note="a body longer than Content-Length or a bad aws-chunked frame is refused")
def test_malformed_framing(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    target = f"/{bucket}/framing"
    headers = sign(
        dwh_server,
        "PUT",
        target,
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "10"},
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    for body in (b"zz\r\n0123456789\r\n0\r\n\r\n", b"a\r\n0123456789XX0\r\n\r\n", b"ffffffffff\r\n0123456789"):
        reply = send(dwh_server, "PUT", target, body=body, headers={**headers, "Content-Length": str(len(body))})
        assert reply.status == 400, reply.body
        assert_s3_error(reply, 400)
        assert absent(s3, bucket, "framing")
    still_up(dwh_server, s3, bucket)


# --- headers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["one-huge", "many", "huge-meta"])
@pytest.mark.s3op("hostile-input", note="oversized header sections: 400 (or 431), the connection closed")
def test_huge_headers(dwh_server: DwhServer, s3: Any, bucket: str, shape: str) -> None:
    if shape == "one-huge":
        extra = {"x-custom-junk": "v" * 200_000}
    elif shape == "many":
        extra = {f"x-junk-{i}": "v" * 40 for i in range(3000)}
    else:
        extra = {"x-amz-meta-big": "v" * 70_000}
    headers = sign(dwh_server, "GET", f"/{bucket}/x", headers=extra)
    reply = raw(dwh_server, request_bytes("GET", f"/{bucket}/x", headers))
    if reply is not None:  # a server may also just close such a connection
        assert reply.status in (400, 431), reply.status
        if reply.body:
            assert_s3_error(reply, reply.status)
    still_up(dwh_server, s3, bucket)


@pytest.mark.s3op("hostile-input", note="a request the HTTP parser refuses: 400 InvalidRequest as an S3 error document")
def test_unparsable_http_gets_an_s3_error(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    """A control character in a header value, a broken request line, bad chunked framing: the
    HTTP parser refuses them before the app sees them; the answer is still S3's XML."""
    signed_headers = sign(dwh_server, "GET", f"/{bucket}/x")
    for data in (
        request_bytes("GET", f"/{bucket}/x", {**signed_headers, "Range": "bytes=0-1\x08"}),
        request_bytes("GET", f"/{bucket}/x", {**signed_headers, "x-amz-meta-a": "\x00"}),
        b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
        request_bytes("PUT", f"/{bucket}/x", {"Host": "h", "Transfer-Encoding": "chunked"}, b"zz\r\nabc\r\n"),
    ):
        reply = raw(dwh_server, data)
        assert reply is not None
        error = assert_s3_error(reply, 400, "InvalidRequest")
        assert reply.headers["connection"] == "close"
        assert error.findtext("Message")
    still_up(dwh_server, s3, bucket)


@pytest.mark.s3op("GetObject", "hostile-input", note="response-* overrides that no header can carry: 400")
def test_response_overrides_with_control_characters(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    """Found by the fuzz test: ``response-content-type=%00`` made the server drop the connection
    without an answer (the value went into a header that HTTP cannot carry)."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"data")
    for param in ("response-content-type", "response-content-disposition", "response-cache-control"):
        for value in ("%00", "a%0D%0Ab", "%1B%5B31m"):
            reply = signed(dwh_server, "GET", f"/{bucket}/o?{param}={value}")
            error = assert_s3_error(reply, 400, "InvalidArgument")
            assert error.findtext("ArgumentName") == param
    reply = signed(dwh_server, "GET", f"/{bucket}/o?response-content-type=text%2Fplain%09x")  # tab is allowed
    assert reply.status == 200 and reply.headers["content-type"] == "text/plain\tx" and reply.body == b"data"
    still_up(dwh_server, s3, bucket)


# --- ranges, names, paths ------------------------------------------------------------------------------


@pytest.mark.s3op("GetObject", "hostile-input", note="unsatisfiable ranges: 416 InvalidRange; garbage ranges ignored")
def test_invalid_ranges(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    for rng, want in [
        ("bytes=10-", 416),
        ("bytes=100-200", 416),
        ("bytes=abc", 200),
        ("bytes=", 200),
        ("bytes=--1", 200),
        ("bytes=3-1", 200),
        ("bytes=0-1,4-5", 200),
        ("bytes=99999999999999999999999-", 416),
        ("lines=1-2", 200),
        ("bytes=-0", 416),
    ]:
        reply = signed(dwh_server, "GET", f"/{bucket}/r", headers={"Range": rng})
        if want == 416:
            root = assert_s3_error(reply, 416, "InvalidRange")
            assert root.findtext("RequestId")
        else:
            assert reply.status == want and reply.body == b"0123456789", (rng, reply.status)
    still_up(dwh_server, s3, bucket)


# Numbers no integer parser should be handed blindly: 5,000 digits (Python's int refuses more than
# 4,300), 20 digits (beyond 64 bits), a superscript two (a digit to str.isdigit, not to int).
BAD_NUMBERS = {"5000-digits": "9" * 5000, "20-digits": "9" * 20, "superscript": "%C2%B2"}


@pytest.mark.parametrize("number", list(BAD_NUMBERS))
@pytest.mark.s3op("hostile-input", note="numbers that are not plain bounded digits: 400, never a server error")
def test_numbers_that_are_not_numbers(dwh_server: DwhServer, s3: Any, bucket: str, number: str) -> None:
    value = BAD_NUMBERS[number]
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    queries = [
        ("GET", f"/{bucket}?list-type=2&max-keys={value}", "max-keys"),
        ("GET", f"/{bucket}?uploads&max-uploads={value}", "max-uploads"),
        ("GET", f"/{bucket}/mp?uploadId={upload}&max-parts={value}", "max-parts"),
        ("GET", f"/{bucket}/mp?uploadId={upload}&part-number-marker={value}", "part-number-marker"),
        ("PUT", f"/{bucket}/mp?uploadId={upload}&partNumber={value}", "partNumber"),
        ("GET", f"/{bucket}/k?partNumber={value}", "partNumber"),
        ("HEAD", f"/{bucket}/k?partNumber={value}", None),
    ]
    for method, target, argument in queries:
        reply = signed(dwh_server, method, target, body=b"x" if method == "PUT" else b"")
        if method == "HEAD":
            assert reply.status == 400, (target, reply.status)
            continue
        root = assert_s3_error(reply, 400, "InvalidArgument")
        assert root.findtext("ArgumentName") == argument, target
    plain = value.replace("%C2%B2", "\u00b2")
    attributes = {"x-amz-object-attributes": "ObjectParts"}
    for header in ("x-amz-max-parts", "x-amz-part-number-marker"):
        reply = signed(dwh_server, "GET", f"/{bucket}/k?attributes", headers={**attributes, header: plain})
        assert_s3_error(reply, 400, "InvalidArgument")
    # An announced size that is not a number: never trusted, never a server error.
    reply = signed(
        dwh_server, "PUT", f"/{bucket}/announced", body=b"body", headers={"x-amz-decoded-content-length": plain}
    )
    assert reply.status < 500, reply.body[:300]
    lock = (
        "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
        f"<Mode>GOVERNANCE</Mode><Days>{plain}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
    )
    reply = signed(dwh_server, "PUT", f"/{bucket}?object-lock", body=lock.encode())
    assert 400 <= reply.status < 500, reply.body[:300]
    cors = (
        "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"
        f"<MaxAgeSeconds>{plain}</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    )
    assert_s3_error(signed(dwh_server, "PUT", f"/{bucket}?cors", body=cors.encode()), 400)
    still_up(dwh_server, s3, bucket)


@pytest.mark.parametrize("name", ["Invalid_Bucket", "ab", "a..b", "-x-", "a" * 64, "192.168.0.1", "b%20c"])
@pytest.mark.s3op("CreateBucket", "hostile-input", note="invalid bucket names: InvalidBucketName")
def test_invalid_bucket_names_raw(dwh_server: DwhServer, s3: Any, bucket: str, name: str) -> None:
    assert_s3_error(signed(dwh_server, "PUT", f"/{name}"), 400, "InvalidBucketName")
    reply = signed(dwh_server, "GET", f"/{name}/key")
    assert reply.status in (400, 404)
    assert_s3_error(reply, reply.status)
    assert reply.code() in ("InvalidBucketName", "NoSuchBucket")
    still_up(dwh_server, s3, bucket)


PATH_TRICKS = [
    "/{b}/../x",
    "/{b}/../../../../etc/passwd",
    "/{b}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/{b}/..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/../../etc/passwd",
    "/{b}/a%00b",
    "/{b}/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/{b}/bad%zzescape",
    "/{b}/%ff%fe",
    "//{b}//x",
    "/{b}/" + "a/" * 3000,
    "/{b}/x?%00=1",
]


@pytest.mark.parametrize("path", PATH_TRICKS, ids=lambda p: p.replace("{b}", "B")[:40])
@pytest.mark.s3op("hostile-input", note="path tricks (.., %2e%2e, NUL, bad escapes) are plain keys or clean errors")
def test_path_tricks(dwh_server: DwhServer, s3: Any, bucket: str, path: str) -> None:
    target = path.format(b=bucket)
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        body = b"escape attempt" if method == "PUT" else b""
        try:
            headers = sign(dwh_server, method, target, body=body)
        except Exception:  # botocore cannot sign some of these: send them unsigned
            headers = {}
        reply = raw(
            dwh_server,
            request_bytes(method, target, {**headers, "Content-Length": str(len(body))}, body),
            method=method,
        )
        assert reply is not None, (method, target)
        assert reply.status < 500, (method, target, reply.status, reply.body[:300])
        assert b"root:" not in reply.body and b"Traceback" not in reply.body
        if reply.status >= 400 and method != "HEAD":
            assert_s3_error(reply, reply.status)
    # A raw NUL byte and raw control characters in the request line.
    for bad in (b"GET /" + bucket.encode() + b"/a\x00b HTTP/1.1\r\n", b"GET /\x01\x02 HTTP/1.1\r\n"):
        r = raw(dwh_server, bad + f"Host: {dwh_server.host}\r\n\r\n".encode())
        assert r is None or 400 <= r.status < 500
    # Whatever was stored went into the object namespace, never onto the file system.
    root = dwh_server.data_dir.parent
    assert not any(p.name in ("passwd", "x", "escape attempt") for p in root.rglob("*") if p.is_file())
    assert Path("/etc/passwd").read_bytes()[:5] != b"escap"
    still_up(dwh_server, s3, bucket)


@pytest.mark.s3op(
    "subresources:unsupported",
    status="NotImplemented",
    note="501 NotImplemented for every subresource the router lists as unsupported; PATCH: 405",
)
def test_unsupported_subresources_and_methods(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    from datawarehouse.api.s3.router import (
        _UNSUPPORTED_BUCKET,
        _UNSUPPORTED_OBJECT,
        UNCONFIGURED_BUCKET_READS,
        UNCONFIGURED_BUCKET_WRITES,
    )

    # reads and restating writes of unconfigured features are answered (test_s3_unconfigured.py)
    answered = {("GET", name) for name, _ in UNCONFIGURED_BUCKET_READS}
    answered |= {(method, name) for method, name, _ in UNCONFIGURED_BUCKET_WRITES}
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for name in _UNSUPPORTED_BUCKET:
        for method in ("GET", "PUT", "DELETE", "POST"):
            if (method, name) not in answered:
                assert_s3_error(signed(dwh_server, method, f"/{bucket}?{name}"), 501, "NotImplemented")
    for name in _UNSUPPORTED_OBJECT:
        for method in ("GET", "PUT"):
            assert_s3_error(signed(dwh_server, method, f"/{bucket}/k?{name}"), 501, "NotImplemented")
    # a version id this server cannot have issued
    assert_s3_error(signed(dwh_server, "GET", f"/{bucket}/k?versionId=3HL4kqtJlcpXroDTDmJ"), 400, "InvalidArgument")
    assert_s3_error(signed(dwh_server, "PATCH", f"/{bucket}/k"), 405, "MethodNotAllowed")
    assert_s3_error(signed(dwh_server, "POST", f"/{bucket}/k"), 501, "NotImplemented")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


@pytest.mark.s3op("hostile-input", note="errors for missing things: NoSuchBucket, NoSuchKey, NoSuchUpload")
def test_missing_things(dwh_server: DwhServer, bucket: str) -> None:
    assert_s3_error(signed(dwh_server, "GET", "/no-such-bucket-here/k"), 404, "NoSuchBucket")
    assert_s3_error(signed(dwh_server, "GET", f"/{bucket}/no-such-key"), 404, "NoSuchKey")
    assert_s3_error(signed(dwh_server, "GET", f"/{bucket}/k?uploadId=nope"), 404, "NoSuchUpload")
    reply = signed(dwh_server, "HEAD", f"/{bucket}/no-such-key")
    assert reply.status == 404 and reply.body == b""


def test_zz_server_survived_everything(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    """Last: the server process is the one that started, and it never logged a traceback."""
    still_up(dwh_server, s3, bucket)
    assert "Traceback" not in dwh_server.log(), dwh_server.log()[-5000:]
