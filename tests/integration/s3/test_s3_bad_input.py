"""Hostile and broken requests: each gets an S3 error document (or a clean close) and the server
stays up, never storing partial or corrupt data."""

from __future__ import annotations

import hashlib
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from serverproc import ACCESS, SECRET, Server

BUCKET = "bad-input"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("bad") / "dwh-data")
    srv.client().create_bucket(Bucket=BUCKET)
    yield srv
    assert "Traceback" not in srv.stop()


def signed(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    url = f"{server.endpoint}{path}"
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    req.headers["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=dict(req.headers.items()))
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


def assert_s3_error(status: int, body: bytes, want_status: int, want_code: str) -> None:
    assert status == want_status, (status, body)
    assert f"<Code>{want_code}</Code>".encode() in body, body
    assert b"<RequestId>" in body and b"Traceback" not in body


def still_up(server: Server) -> None:
    s3 = server.client()
    s3.put_object(Bucket=BUCKET, Key="alive", Body=b"ok")
    assert s3.get_object(Bucket=BUCKET, Key="alive")["Body"].read() == b"ok"


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete><Object><Key>a</Key></Object>",  # truncated
        b"not xml at all",
        b"<Other><Object><Key>a</Key></Object></Other>",  # wrong root
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Delete><Object><Key>&c;</Key></Object></Delete>',
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Delete><Object><Key>&x;</Key></Object></Delete>",
    ],
    ids=["truncated", "not-xml", "wrong-root", "billion-laughs", "external-entity"],
)
def test_hostile_xml_is_malformed(server: Server, body: bytes) -> None:
    md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
    status, data, _ = signed(server, "POST", f"/{BUCKET}?delete", body, {"Content-MD5": md5})
    assert_s3_error(status, data, 400, "MalformedXML")
    assert b"root:" not in data
    still_up(server)


def test_huge_xml_is_refused_before_parsing(server: Server) -> None:
    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 200_000 + b"</Delete>"  # ~5.8 MB
    md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
    # The server answers MalformedXML as soon as the body passes its limit and closes the
    # connection; a client still sending then sees the reset instead of the answer.
    try:
        status, data, _ = signed(server, "POST", f"/{BUCKET}?delete", body, {"Content-MD5": md5})
        assert status == 400 and b"MalformedXML" in data
    except (ConnectionResetError, BrokenPipeError):
        pass
    still_up(server)


def test_truncated_body_stores_nothing(server: Server) -> None:
    body = b"x" * 100_000
    req = AWSRequest(method="PUT", url=f"{server.endpoint}/{BUCKET}/truncated", data=body)
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(req)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"PUT /{BUCKET}/truncated HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "content-length"
        )
        sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:50_000])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)
    with pytest.raises(ClientError) as exc:
        server.client().head_object(Bucket=BUCKET, Key="truncated")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    still_up(server)


def test_wrong_payload_hash_stores_nothing(server: Server) -> None:
    status, data, _ = signed(server, "PUT", f"/{BUCKET}/hashed", b"real body", payload_hash="0" * 64)
    assert_s3_error(status, data, 400, "XAmzContentSHA256Mismatch")
    with pytest.raises(ClientError):
        server.client().head_object(Bucket=BUCKET, Key="hashed")


def test_tampered_aws_chunked_payload_is_refused(server: Server) -> None:
    """A signed streaming upload whose chunk data was altered in flight."""
    from datawarehouse.api.s3.signing import derive_signing_key, sign

    data = b"0123456789" * 1000
    req = AWSRequest(method="PUT", url=f"{server.endpoint}/{BUCKET}/chunked", data=b"")
    req.headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    req.headers["x-amz-decoded-content-length"] = str(len(data))
    req.headers["content-encoding"] = "aws-chunked"
    SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(req)
    seed = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    stamp = req.headers["X-Amz-Date"]
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    key = derive_signing_key(SECRET, stamp[:8], "us-east-1", "s3")
    empty = hashlib.sha256(b"").hexdigest()

    def chunk(prev: str, payload: bytes) -> tuple[str, bytes]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, prev, empty, hashlib.sha256(payload).hexdigest()])
        sig = sign(key, sts)
        return sig, f"{len(payload):x};chunk-signature={sig}\r\n".encode() + payload + b"\r\n"

    sig1, c1 = chunk(seed, data)
    _, c2 = chunk(sig1, b"")
    tampered = c1.replace(b"0123456789", b"0123456780", 1)
    body = tampered + c2
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
    conn.request("PUT", f"/{BUCKET}/chunked", body=body, headers={**headers, "Content-Length": str(len(body))})
    resp = conn.getresponse()
    assert_s3_error(resp.status, resp.read(), 403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError):
        server.client().head_object(Bucket=BUCKET, Key="chunked")
    # The untampered stream is accepted.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    good = c1 + c2
    conn.request("PUT", f"/{BUCKET}/chunked", body=good, headers={**headers, "Content-Length": str(len(good))})
    assert conn.getresponse().status == 200
    assert server.client().get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == data


def test_huge_headers_and_path_tricks(server: Server, tmp_path: Path) -> None:
    status, data, _ = signed(server, "GET", f"/{BUCKET}/x", headers={"x-amz-meta-big": "v" * 70_000})
    assert status in (400, 431)
    for path in (f"/{BUCKET}/../../etc/passwd", f"/{BUCKET}/%2e%2e/%2e%2e/x", f"/{BUCKET}/a%00b", "/%2e%2e/x"):
        status, data, _ = signed(server, "GET", path)
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in data and b"Traceback" not in data
    status, data, _ = signed(server, "GET", f"/{BUCKET}/k", headers={"Range": "bytes=999999-"})
    assert status == 404 or b"InvalidRange" in data
    still_up(server)


def test_invalid_names_and_methods(server: Server) -> None:
    status, data, _ = signed(server, "PUT", "/Invalid_Bucket")
    assert_s3_error(status, data, 400, "InvalidBucketName")
    status, data, _ = signed(server, "PATCH", f"/{BUCKET}/k")
    assert_s3_error(status, data, 405, "MethodNotAllowed")
    status, data, _ = signed(server, "GET", f"/{BUCKET}?acl")
    assert_s3_error(status, data, 501, "NotImplemented")
    still_up(server)
