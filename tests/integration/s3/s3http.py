"""Raw HTTP helpers for the S3 integration tests: requests signed with botocore's SigV4 signer
(or not at all), sent with http.client or a bare socket, and checks of S3 error documents.

Nothing here imports the server's own signing code: signatures are made by botocore or, for
aws-chunked bodies, with hmac directly from the SigV4 specification.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from unittest import mock

from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class _PayloadAuth(S3SigV4Auth):
    """botocore's S3 SigV4 signer, with the x-amz-content-sha256 value chosen by the caller
    (botocore would otherwise always put the body's digest or its own choice there)."""

    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def code(self) -> str | None:
        """The S3 error code of an error document, else None."""
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError:
            return None
        return root.findtext("Code") if root.tag == "Error" else None


def assert_s3_error(reply: Reply, status: int, code: str | None = None) -> ET.Element:
    """An S3 error document: <Error><Code/><Message/><RequestId/></Error>, the status expected,
    the request id echoed in x-amz-request-id, and no trace of a Python stack."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert b"Traceback" not in reply.body and b'File "' not in reply.body, reply.body[:2000]
    root = ET.fromstring(reply.body)
    assert root.tag == "Error", reply.body[:500]
    if code is not None:
        assert root.findtext("Code") == code, reply.body[:500]
    request_id = root.findtext("RequestId")
    assert request_id, reply.body[:500]
    assert reply.headers.get("x-amz-request-id") == request_id
    assert root.findtext("Message") is not None
    return root


@contextmanager
def frozen_signing_time(moment: datetime) -> Iterator[None]:
    """botocore signs with this time instead of now (its signers call ``get_current_datetime``)."""
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        yield


def sign(
    server: Any,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    payload_hash: str | None = None,
    secret: str | None = None,
    access_key: str | None = None,
    host: str | None = None,
) -> dict[str, str]:
    """Headers (incl. Authorization) for ``method target`` (path?query, already percent-encoded),
    signed by botocore's S3 SigV4 signer. ``payload_hash`` defaults to the body's SHA-256."""
    url = f"http://{host or f'{server.host}:{server.port}'}{target}"
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    creds = Credentials(access_key or server.access_key, secret or server.secret_key)
    _PayloadAuth(creds, server.region, payload_hash or hashlib.sha256(body).hexdigest()).add_auth(req)
    out = {k: v for k, v in req.headers.items()}
    out.setdefault("Host", host or f"{server.host}:{server.port}")
    return out


def sign_v2(
    server: Any,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    host: str | None = None,
    auth_path: str | None = None,
) -> dict[str, str]:
    """Headers (Date and Authorization) for ``method target``, signed by botocore's SigV2 signer.
    ``auth_path``: the path-style path botocore signs for a virtual-hosted request."""
    url = f"http://{host or f'{server.host}:{server.port}'}{target}"
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    req.auth_path = auth_path
    HmacV1Auth(Credentials(server.access_key, server.secret_key)).add_auth(req)
    out = {k: v for k, v in req.headers.items()}
    out.setdefault("Host", host or f"{server.host}:{server.port}")
    return out


def send(
    server: Any,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One request with http.client (``target`` sent as given)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if not any(k.lower() == "host" for k in hdrs):
            hdrs["Host"] = f"{server.host}:{server.port}"
        if (body or method in ("PUT", "POST")) and not any(k.lower() == "content-length" for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def signed(
    server: Any,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    payload_hash: str | None = None,
) -> Reply:
    hdrs = sign(server, method, target, body=body, headers=headers, payload_hash=payload_hash)
    return send(server, method, target, body=body, headers=hdrs)


def raw(server: Any, data: bytes, *, method: str = "GET", shutdown: bool = False, timeout: float = 30) -> Reply | None:
    """Write ``data`` on a fresh socket and parse the reply (None if the server closed without one)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead):
            return None
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def request_bytes(method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


# --- aws-chunked (SigV4 streaming) bodies, computed from the specification ----------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def streaming_body(
    server: Any,
    headers: Mapping[str, str],
    payload: bytes,
    chunk_size: int = 64 * 1024,
    *,
    trailers: Mapping[str, str] | None = None,
) -> bytes:
    """The aws-chunked body of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) request whose
    headers ``headers`` were signed: each chunk signature chains the previous, starting from the
    seed (the Authorization header's signature); with ``trailers``, a signed trailer ends it."""
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    stamp = headers["X-Amz-Date"]
    scope = f"{stamp[:8]}/{server.region}/s3/aws4_request"
    key = signing_key(server.secret_key, stamp[:8], server.region)
    prev = seed
    out = bytearray()
    pieces = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for piece in pieces:
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, prev, EMPTY_SHA256, hashlib.sha256(piece).hexdigest()]
        )
        prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(piece):x};chunk-signature={prev}\r\n".encode() + piece
        if piece or trailers is None:
            out += b"\r\n"
    if trailers is not None:
        text = "".join(f"{k}:{v}\n" for k, v in trailers.items())
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", stamp, scope, prev, hashlib.sha256(text.encode()).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += text.replace("\n", "\r\n").encode() + f"x-amz-trailer-signature:{sig}\r\n\r\n".encode()
    return bytes(out)


# --- boto3 helpers --------------------------------------------------------------------------------


def code(exc: Any) -> str:
    """The S3 error code of a ``pytest.raises(ClientError)`` result."""
    return str(exc.value.response["Error"]["Code"])


def absent(s3: Any, bucket: str, key: str) -> bool:
    """True when HEAD answers 404 (the object is not visible)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        return int(err.response["ResponseMetadata"]["HTTPStatusCode"]) == 404
    return False


def browser_post(url: str, fields: dict[str, str], data: bytes, boundary: str = "----dwhform") -> Any:
    """A browser-style multipart/form-data POST upload (the fields, then the file): the
    response (its ``headers``), as ``urllib.request.urlopen`` returns it, already read."""
    import urllib.request

    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    body = "".join(parts).encode() + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req) as reply:
        reply.read()
        return reply
