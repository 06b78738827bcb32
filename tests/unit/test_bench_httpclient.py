"""The benchmark's HTTP client (``bench/httpclient.py``): the S3 figures depend on it reading each
server's framing right. A scripted asyncio server answers with a Content-Length body, a chunked
body, ``Connection: close``, a body ended by the close, a body larger than the buffer, and a
response cut short; the client must return each body exactly, reconnect after a close, and
refuse the short one."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench`

from bench.httpclient import Client, HttpError

BIG = bytes(range(256)) * 5000  # 1.28 MB: more than the 64 KiB buffer the test gives the client

SCRIPT = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "/close": b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    "/until-eof": b"HTTP/1.0 200 OK\r\n\r\nto the end",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG) + BIG,
    "/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
}
CLOSES = {"/close", "/until-eof", "/short"}


async def _serve(connections: list[int], bodies: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1].split("?")[0]
                fields = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
                length = int(fields["content-length"])
                bodies.append(await reader.readexactly(length))
                writer.write(SCRIPT[path])
                await writer.drain()
                if path in CLOSES:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_each_framing_is_read_exactly() -> None:
    async def main() -> tuple[list[tuple[int, bytes]], list[int], list[bytes]]:
        connections: list[int] = []
        received: list[bytes] = []
        server = await _serve(connections, received)
        port = server.sockets[0].getsockname()[1]
        got = []
        async with Client(f"http://127.0.0.1:{port}", 1, buffer_size=64 * 1024) as http:
            for path in ("/length", "/chunked", "/length", "/close", "/until-eof", "/big", "/empty", "/length"):
                conn = await http.acquire()
                try:
                    status, body = await http.send(conn, "PUT", f"http://127.0.0.1:{port}{path}?q=1", b"x" * 3)
                    got.append((status, bytes(body)))
                finally:
                    http.release(conn)
        server.close()
        await server.wait_closed()
        return got, connections, received

    got, connections, received = uvloop.run(main())
    assert got == [
        (200, b"hello"),
        (200, b"abcde"),
        (200, b"hello"),
        (201, b"ok"),
        (200, b"to the end"),
        (200, BIG),
        (204, b""),
        (200, b"hello"),
    ]
    assert received == [b"xxx"] * 8  # each request carried its body
    assert len(connections) == 3  # reconnected after the close and after the body ended by one


def test_a_response_cut_short_is_an_error() -> None:
    async def main() -> None:
        server = await _serve([], [])
        port = server.sockets[0].getsockname()[1]
        try:
            async with Client(f"http://127.0.0.1:{port}", 1, buffer_size=64 * 1024) as http:
                conn = await http.acquire()
                try:
                    with pytest.raises(HttpError, match="closed mid-response"):
                        await http.send(conn, "GET", f"http://127.0.0.1:{port}/short")
                finally:
                    http.release(conn)
                conn = await http.acquire()  # the next borrower gets a fresh connection
                try:
                    assert bytes((await http.send(conn, "GET", f"http://127.0.0.1:{port}/length"))[1]) == b"hello"
                finally:
                    http.release(conn)
        finally:
            server.close()
            await server.wait_closed()

    uvloop.run(main())
