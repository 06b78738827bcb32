"""The ASGI plumbing of the S3 adapter: a request value, a response value, and sending one.

Plain ASGI, no framework: S3 routing is done by ``router.route`` and a framework's router would
only add per-request cost (Starlette's halves small-request rates here).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any, TypeVar

from datawarehouse.api.s3.canonical import parse_query
from datawarehouse.api.s3.errors import S3Error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

# S3's ``x-amz-id-2``: which server answered. Here: which process (``dwh serve --workers``
# runs several); random per process, so it reveals nothing but "same process or not".
HOST_ID = base64.b64encode(os.urandom(12))
MAX_HEADER_BYTES = 64 * 1024  # all request headers together (S3: 8 KiB of user metadata + the rest)

# What an HTTP/1.1 header value cannot carry: control characters other than tab (uvicorn refuses
# to send them, and drops the connection instead of answering). Request headers never hold them
# (the parser refuses them); values that come from a query string or a POST form may, and are
# checked with ``header_value_ok`` before they are used. Text beyond latin-1 is sent as S3 sends
# it, RFC 2047-encoded (``send_response``).
_NOT_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# The same characters as bytes, for the check of every response (``bytes.translate`` deleting
# them is ~3x faster than a regex search over the same bytes) and the last-resort scrub.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
_CONTROL_TO_SPACE = bytes.maketrans(_CONTROL_BYTES, b" " * len(_CONTROL_BYTES))

log = logging.getLogger(__name__)


def header_value_ok(value: str) -> bool:
    """Whether ``value`` can be sent as an HTTP/1.1 header value unchanged."""
    return _NOT_IN_HEADER.search(value) is None


@dataclass
class Request:
    method: str
    raw_path: str
    raw_query: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    header_list: list[tuple[str, str]]
    client: str | None
    receive: Receive
    request_id: str
    body_started: bool = False
    body_done: bool = False
    notes: dict[str, Any] = field(default_factory=dict)  # what the app learnt (caller, endpoint), for audit

    @property
    def body_left_unread(self) -> bool:
        """True when the client sent (or is sending) a body that was not read to its end: the
        connection must then be closed, or those bytes would be parsed as the next request."""
        if self.body_done:
            return False
        if self.body_started:
            return True
        length = self.headers.get("content-length")
        return (length is not None and length != "0") or "transfer-encoding" in self.headers

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, request_id: str) -> Request:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
        raw_query = scope.get("query_string", b"").decode("latin-1")
        header_list = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        if sum(len(k) + len(v) for k, v in header_list) > MAX_HEADER_BYTES:
            from datawarehouse.api.s3.errors import s3_error

            raise s3_error("RequestHeaderSectionTooLarge")
        headers: dict[str, str] = {}
        for k, v in header_list:
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        client = scope.get("client")
        return cls(
            method=scope["method"].upper(),
            raw_path=path.split("?", 1)[0],
            raw_query=raw_query,
            query=parse_query(raw_query),
            headers=headers,
            header_list=header_list,
            client=client[0] if client else None,
            receive=receive,
            request_id=request_id,
        )

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    async def raw_body(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (still aws-chunked if the client chunked it)."""
        self.body_started = True
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                from datawarehouse.api.s3.errors import incomplete_body

                raise incomplete_body("the client disconnected before the body was complete")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more:
                self.body_done = True
            if body:
                yield body
            if not more:
                return


Body = bytes | list[bytes] | AsyncIterator[bytes]  # a list: pieces sent one by one, never joined


@dataclass
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""
    content_type: str | None = None

    def header(self, name: str, value: str | int | None) -> Response:
        if value is not None:
            self.headers.append((name, str(value)))
        return self


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body=body, content_type="application/xml")


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _header_bytes(value: str) -> bytes:
    """A header value as latin-1, or, beyond latin-1 (user metadata in UTF-8 from a POST form),
    RFC 2047-encoded as S3 sends it."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return b"=?UTF-8?B?" + base64.b64encode(value.encode("utf-8", "replace")) + b"?="


async def send_response(send: Send, response: Response, request_id: str, head_only: bool = False) -> None:
    headers = [(b"x-amz-request-id", request_id.encode()), (b"x-amz-id-2", HOST_ID), (b"server", b"DataWarehouse")]
    try:
        if response.content_type:
            headers.append((b"content-type", response.content_type.encode("latin-1")))
        for name, value in response.headers:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    except UnicodeEncodeError:  # rare: the loop again, slower
        headers = headers[:3]
        if response.content_type:
            headers.append((b"content-type", _header_bytes(response.content_type)))
        for name, value in response.headers:
            headers.append((name.lower().encode("latin-1"), _header_bytes(value)))
    # One search over all the values (this runs for every response): a value that escaped the
    # checks (data stored before them, say) gets a space for each control character, which keeps
    # the answer valid HTTP; the alternative is no answer at all.
    values = b"".join([v for _, v in headers])
    if len(values.translate(None, _CONTROL_BYTES)) != len(values):
        log.warning("response headers: control characters replaced by spaces")
        headers = [(n, v.translate(_CONTROL_TO_SPACE)) for n, v in headers]
    if isinstance(response.body, bytes):
        if not any(n == b"content-length" for n, _ in headers):
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else response.body})
        return
    if isinstance(response.body, list):
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        pieces = [] if head_only else response.body
        for i, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})
        if not pieces:
            await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    async for piece in response.body:
        if piece:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def error_response(err: S3Error, request_id: str) -> Response:
    resp = Response(err.http_status, body=err.to_xml(request_id), content_type="application/xml")
    for name, value in err.headers:
        resp.header(name, value)
    return resp


class Offload:
    """Runs the synchronous service on worker threads, away from the event loop."""

    def __init__(self, threads: int = 16) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dwh-s3")
        self.in_flight = 0  # calls of ``run`` not yet returned (read and written on the event loop only)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.in_flight -= 1

    async def iterate(self, it: Iterator[bytes]) -> AsyncIterator[bytes]:
        """Pull a blocking iterator on the pool, one prefetched item ahead."""
        loop = asyncio.get_running_loop()
        sentinel = object()
        pending = loop.run_in_executor(self.pool, next, it, sentinel)
        while True:
            item = await pending
            if item is sentinel:
                return
            pending = loop.run_in_executor(self.pool, next, it, sentinel)
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
