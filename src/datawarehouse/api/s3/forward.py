"""A read worker's link to the primary server process: requests it does not serve itself are
passed on over the primary's Unix socket, streamed both ways.

The request goes on byte-faithful where SigV4 looks: the same method, raw path and query, and
the same headers (Host included) — the primary verifies the client's signature as if the client
had connected to it. Only hop-by-hop headers change: ``expect`` is dropped (this process already
answered ``100 Continue`` by reading the body), and two reserved headers are set here and
removed from whatever the client sent: the worker's token (which tells the primary that the
request came through a worker) and the client's address. HTTP/1.1 framing on the Unix socket is
done by h11, both ways; the body is never held whole (one ASGI message at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import h11

from datawarehouse.api.s3.http import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

TOKEN_HEADER = b"x-dwh-worker-token"  # the secret the primary gave its workers
CLIENT_HEADER = b"x-dwh-forwarded-for"  # the client's address, trusted with a valid token only
RESERVED = frozenset({TOKEN_HEADER, CLIENT_HEADER})
# Not passed on: hop-by-hop headers, and what this process's own server adds to the response.
DROPPED_REQUEST = frozenset({b"expect", b"connection", b"keep-alive"})
# ("connection: close" is passed on: the primary closes when a body was left unread, and so must
# this process towards the client.)
DROPPED_RESPONSE = frozenset({b"keep-alive", b"transfer-encoding", b"date"})
IDLE_SECONDS = 3.0  # under uvicorn's keep-alive timeout (5 s): an idle link is dropped first
MAX_IDLE = 32
READ_SIZE = 256 * 1024


class LinkError(Exception):
    """The primary could not be reached, or broke the exchange before its response began."""


class NotPassable(Exception):
    """The client's request cannot be written as HTTP/1.1 to the primary: h11 refuses a header
    name, value or target that the server's own parser (httptools) let through."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


class PrimaryLink:
    """Keep-alive HTTP/1.1 connections to the primary's Unix socket (one per request in flight;
    idle ones are reused)."""

    def __init__(self, socket_path: str, token: str) -> None:
        self.socket_path = socket_path
        self._token = token.encode()
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=READ_SIZE)
        except OSError as exc:
            raise LinkError(f"cannot reach the primary ({exc.__class__.__name__})") from exc
        return _Conn(reader, writer, h11.Connection(h11.CLIENT))

    def _reusable(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_SECONDS and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    def _release(self, conn: _Conn) -> None:
        if conn.http.our_state is h11.DONE and conn.http.their_state is h11.DONE and len(self._idle) < MAX_IDLE:
            conn.http.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def _request(self, scope: Scope) -> h11.Request:
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        # Whitespace around a value is not part of it (RFC 9110 5.5; SigV4 trims it too), and
        # h11 refuses to send it, where httptools passes it through.
        headers = [
            (name, value.strip(b" \t"))
            for name, value in scope.get("headers", [])
            if name.lower() not in RESERVED and name.lower() not in DROPPED_REQUEST
        ]
        headers.append((TOKEN_HEADER, self._token))
        client = scope.get("client")
        headers.append((CLIENT_HEADER, str(client[0]).encode() if client else b"-"))
        try:
            return h11.Request(method=scope["method"].encode(), target=target, headers=headers)
        except h11.LocalProtocolError:
            # Not the h11 message: it quotes the header's value, which may be a credential.
            raise NotPassable("a header or the target is not valid HTTP/1.1") from None

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass one request on and stream the primary's response back. Raises ``LinkError`` or
        ``NotPassable`` only before anything was sent to the client (the caller then answers
        it)."""
        request = self._request(scope)
        first = await receive()
        if first["type"] == "http.disconnect":
            return
        conn = await self._open(request, first)
        try:
            await self._send_rest(conn, first, receive)
            await self._relay_response(conn, send)
        except BaseException:
            conn.close()
            raise
        self._release(conn)

    async def _open(self, request: h11.Request, first: Message) -> _Conn:
        """A connection with the request head and its first body piece written. A reused one
        that turns out closed (the primary dropped it while idle) is replaced by a fresh one
        once: nothing is lost, ``first`` is still in hand."""
        conn = self._reusable()
        if conn is not None:
            try:
                await self._write_head(conn, request, first)
                return conn
            except OSError:
                conn.close()
        conn = await self._connect()
        try:
            await self._write_head(conn, request, first)
        except OSError as exc:
            conn.close()
            raise LinkError(f"cannot send the request to the primary ({exc.__class__.__name__})") from exc
        return conn

    @staticmethod
    async def _write_head(conn: _Conn, request: h11.Request, first: Message) -> None:
        """Write the head and ``first``; ``NotPassable`` (the connection closed) when h11 refuses
        the framing, which no other connection would accept either."""
        try:
            data = conn.http.send(request) or b""
            body = first.get("body", b"")
            if body:
                data += conn.http.send(h11.Data(data=body)) or b""
            if not first.get("more_body", False):
                data += conn.http.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            conn.close()
            raise NotPassable("the request's framing is not valid HTTP/1.1") from None
        conn.writer.write(data)
        await conn.writer.drain()

    async def _send_rest(self, conn: _Conn, first: Message, receive: Receive) -> None:
        """The rest of the body. If the primary stops reading (it answered early, e.g. an error
        before the body), the sending stops and its response is relayed all the same."""
        more = first.get("more_body", False)
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("the client disconnected before the body was complete")
            more = message.get("more_body", False)
            data = b""
            body = message.get("body", b"")
            if body:
                data += conn.http.send(h11.Data(data=body)) or b""
            if not more:
                data += conn.http.send(h11.EndOfMessage()) or b""
            try:
                conn.writer.write(data)
                await conn.writer.drain()
            except OSError:
                return  # the primary closed its side; its response (if any) is still readable

    async def _next_event(self, conn: _Conn) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = conn.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await conn.reader.read(READ_SIZE)
            except OSError as exc:
                raise LinkError(f"the primary closed the connection ({exc.__class__.__name__})") from exc
            conn.http.receive_data(data)

    async def _relay_response(self, conn: _Conn, send: Send) -> None:
        started = False
        while True:
            try:
                event = await self._next_event(conn)
            except h11.RemoteProtocolError as exc:
                if started:
                    raise ConnectionResetError("the primary's response was malformed") from exc
                raise LinkError("the primary's response was malformed") from exc
            except LinkError:
                if started:
                    raise ConnectionResetError("the primary closed the connection mid-response") from None
                raise
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                headers = [(k, v) for k, v in event.headers if k not in DROPPED_RESPONSE]
                await send({"type": "http.response.start", "status": event.status_code, "headers": headers})
                started = True
            elif isinstance(event, h11.Data):
                await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
            elif isinstance(event, h11.EndOfMessage):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif isinstance(event, h11.ConnectionClosed):
                if started:
                    raise ConnectionResetError("the primary closed the connection mid-response")
                raise LinkError("the primary closed the connection before answering")


async def drain(receive: Receive) -> None:
    """Read what is left of a request body (so the connection can answer and stay usable)."""
    with contextlib.suppress(Exception):
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
