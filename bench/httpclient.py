"""A lean HTTP/1.1 client for the S3 benchmark: keep-alive connections on uvloop that receive each
response straight into one reusable buffer.

Why not aiohttp: on this 2-core machine the client shares the CPU with the server under test, so
every millisecond the client spends is one the server does not get. Against the trivial server,
aiohttp (either event loop) took 0.55-0.9 ms of client CPU per 1 MiB GET or PUT and ~0.1 ms per
4 KiB request; this client takes ~0.23 ms per 1 MiB GET, ~0.35 per 1 MiB PUT and ~0.03 per 4 KiB
request: one copy of a body from the kernel into a buffer, no per-piece ``bytes`` objects, no
stream reader. It speaks only what the benchmark needs -- one request at a time per connection,
``Content-Length`` or chunked responses, bodies ended by the server closing the connection, and
``Connection: close`` -- and reconnects when the server closes.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # a response head larger than this is an error, not something to wait for


class HttpError(Exception):
    """The server answered something this client cannot read, or went away mid-response."""


class Response:
    """Status and body of one response. ``body`` is a view into the connection's buffer: it is
    valid until the next request on the same connection."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: memoryview) -> None:
        self.status, self.body = status, body


class _Connection(asyncio.BufferedProtocol):
    def __init__(self, buffer: bytearray) -> None:
        self._buf = buffer
        self._view = memoryview(self._buf)
        self._n = 0  # bytes received for the response in progress
        self._head_end = -1  # offset of the body, once the head is complete
        self._length = 0  # body length; -1 chunked; -2 until the connection closes
        self._status = 0
        self._method = "GET"  # of the request in progress (a HEAD response has no body)
        self._close_after = False
        self._done: asyncio.Future[Response] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    @property
    def buffer(self) -> bytearray:
        return self._buf

    # -- asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._head_end >= 0 and self._length == -2:  # body ended by the close
                self._finish(self._view[self._head_end : self._n])
            else:
                self._done.set_exception(HttpError(f"connection closed mid-response ({self._n} bytes in)"))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._n == len(self._buf):  # a larger response than planned: a new, larger buffer
            bigger = bytearray(2 * len(self._buf))
            bigger[: self._n] = self._view[: self._n]
            self._buf, self._view = bigger, memoryview(bigger)
        return self._view[self._n :]

    def buffer_updated(self, nbytes: int) -> None:
        self._n += nbytes
        if self._done is None or self._done.done():
            return
        try:
            self._progress()
        except (HttpError, ValueError) as exc:
            self._done.set_exception(HttpError(f"unreadable response: {exc}"))

    # -- parsing

    def _progress(self) -> None:
        if self._head_end < 0 and not self._parse_head():
            return
        if self._length >= 0:
            if self._n >= self._head_end + self._length:
                self._finish(self._view[self._head_end : self._head_end + self._length])
        elif self._length == -1:
            body = self._dechunk()
            if body is not None:
                self._finish(memoryview(body))

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n", 0, self._n)
        if end < 0:
            if self._n > MAX_HEAD:
                raise HttpError("response head too large")
            return False
        lines = bytes(self._view[:end]).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self._status = int(rest[:3])
        length, chunked, close = None, False, version == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = value.endswith("chunked")
            elif name == "connection":
                close = value == "close"
        self._close_after = close
        self._head_end = end + 4
        if chunked:
            self._length = -1
        elif length is not None:
            self._length = length
        elif self._status in (204, 304) or 100 <= self._status < 200:
            self._length = 0
        else:
            self._length, self._close_after = -2, True
        if self._method == "HEAD":  # the head describes a body that is never sent
            self._length = 0
        return True

    def _dechunk(self) -> bytes | None:
        """The whole chunked body, or None while some of it is still on the way. Re-read from the
        start each time: chunked answers here are the servers' short PUT replies."""
        pos, pieces = self._head_end, []
        while True:
            line_end = self._buf.find(b"\r\n", pos, self._n)
            if line_end < 0:
                return None
            size = int(bytes(self._view[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = self._buf.find(b"\r\n\r\n", line_end, self._n)
                return b"".join(pieces) if trailer_end >= 0 else None
            start = line_end + 2
            if self._n < start + size + 2:
                return None
            pieces.append(bytes(self._view[start : start + size]))
            pos = start + size + 2

    def _finish(self, body: memoryview) -> None:
        assert self._done is not None
        self._done.set_result(Response(self._status, body))

    # -- requests

    async def request(self, method: str, target: str, host: str, body: bytes) -> Response:
        if self.closed or self.transport is None:
            raise HttpError("connection is closed")
        self._n, self._head_end, self._method = 0, -1, method
        self._done = asyncio.get_running_loop().create_future()
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1")
        if len(body) <= 64 * 1024:
            self.transport.write(head + body)  # one send for small requests
        else:
            self.transport.writelines((head, body))
        response = await self._done
        if self._close_after:
            self.transport.close()
            self.closed = True
        return response


class Client:
    """``concurrency`` keep-alive connections to one server, each carrying one request at a time."""

    def __init__(self, url: str, concurrency: int, buffer_size: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need http://host:port, not {url!r}")
        self.host, self.port, self.authority = parts.hostname, parts.port, parts.netloc
        self._concurrency, self._buffer_size = concurrency, buffer_size
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()

    async def __aenter__(self) -> Client:
        for _ in range(self._concurrency):
            self._idle.put_nowait(await self._connect(bytearray(self._buffer_size)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn.transport is not None:
                conn.transport.close()

    async def _connect(self, buffer: bytearray) -> _Connection:
        """A new connection receiving into ``buffer``: a server that closes after every response
        (moto does) costs a connect, not a fresh zeroed buffer of twice the body's size."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(buffer), self.host, self.port)
        return conn

    async def acquire(self) -> _Connection:
        """A free connection (reopened if the server closed it); hand it back with ``release``
        once done with the body of its response."""
        conn = await self._idle.get()
        if conn.closed:
            try:
                conn = await self._connect(conn.buffer)
            except BaseException:
                self._idle.put_nowait(conn)  # still closed: the next borrower tries again
                raise
        return conn

    async def send(self, conn: _Connection, method: str, url: str, body: bytes = b"") -> tuple[int, memoryview]:
        """One request on ``conn``: the status and the body (a view valid until ``conn``'s next request)."""
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        try:
            response = await conn.request(method, target, self.authority, body)
        except BaseException:  # the connection is in an unknown state: the next borrower reconnects
            if conn.transport is not None:
                conn.transport.close()
            conn.closed = True
            raise
        return response.status, response.body

    def release(self, conn: _Connection) -> None:
        self._idle.put_nowait(conn)
