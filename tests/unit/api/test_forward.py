"""``PrimaryLink`` (api/s3/forward.py) against a real HTTP/1.1 server on a Unix socket (h11 in the
server role): what it passes on byte for byte, what it replaces, how it streams, and how it
treats a primary that dropped an idle connection or is not there at all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import h11
import pytest

from datawarehouse.api.s3.forward import CLIENT_HEADER, TOKEN_HEADER, LinkError, NotPassable, PrimaryLink


class Primary:
    """Answers each request with its body echoed back; closes every connection after
    ``close_after`` responses (None: keeps it)."""

    def __init__(self, close_after: int | None = None) -> None:
        self.close_after = close_after
        self.requests: list[tuple[h11.Request, bytes]] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        answered = 0
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        writer.close()
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            self.requests.append((request, body))
            headers = [("content-length", str(len(body) + 4)), ("x-answer", "yes"), ("date", "whenever")]
            writer.write(conn.send(h11.Response(status_code=201, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=b"echo" + body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            answered += 1
            if self.close_after is not None and answered >= self.close_after:
                writer.close()
                return
            conn.start_next_cycle()


async def run(link: PrimaryLink, scope: dict[str, Any], body: list[bytes]) -> list[dict[str, Any]]:
    messages = [{"type": "http.request", "body": b, "more_body": i < len(body) - 1} for i, b in enumerate(body)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await link.forward(scope, receive, send)
    return sent


def scope(**extra: Any) -> dict[str, Any]:
    out = {
        "type": "http",
        "method": "PUT",
        "path": "/bucket/a key",
        "raw_path": b"/bucket/a%20key",
        "query_string": b"X-Amz-Signature=abc&partNumber=1",
        "client": ("203.0.113.9", 5555),
        "headers": [
            (b"host", b"s3.example:9000"),
            (b"content-length", b"10"),
            (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
            (b"expect", b"100-continue"),
            (TOKEN_HEADER, b"forged"),
            (CLIENT_HEADER, b"198.51.100.1"),
        ],
    }
    out.update(extra)
    return out


async def with_primary(tmp_path: Path, primary: Primary, body: Any) -> Any:
    path = str(tmp_path / "p.sock")
    server = await asyncio.start_unix_server(primary.serve, path)
    try:
        return await body(PrimaryLink(path, "the-token"))
    finally:
        server.close()


def test_passes_the_request_on_unchanged_but_for_reserved_headers(tmp_path: Path) -> None:
    primary = Primary()

    async def body(link: PrimaryLink) -> list[dict[str, Any]]:
        return await run(link, scope(), [b"01234", b"56789"])

    sent = asyncio.run(with_primary(tmp_path, primary, body))
    ((request, received),) = primary.requests
    assert request.method == b"PUT"
    assert request.target == b"/bucket/a%20key?X-Amz-Signature=abc&partNumber=1"
    assert received == b"0123456789"
    headers = list(request.headers)
    assert (b"host", b"s3.example:9000") in headers and (b"content-length", b"10") in headers
    assert (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD") in headers
    assert [v for k, v in headers if k == TOKEN_HEADER] == [b"the-token"]  # the client's is dropped
    assert [v for k, v in headers if k == CLIENT_HEADER] == [b"203.0.113.9"]
    assert not [k for k, _ in headers if k == b"expect"]
    start = sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 201
    assert (b"x-answer", b"yes") in start["headers"] and not [k for k, _ in start["headers"] if k == b"date"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"echo0123456789"
    assert sent[-1]["more_body"] is False


def test_an_idle_connection_the_primary_closed_is_replaced(tmp_path: Path) -> None:
    primary = Primary(close_after=1)

    async def body(link: PrimaryLink) -> list[list[dict[str, Any]]]:
        out = []
        for _ in range(3):
            out.append(await run(link, scope(), [b"0123456789"]))
            await asyncio.sleep(0.05)  # the primary's close reaches the idle connection
        return out

    answers = asyncio.run(with_primary(tmp_path, primary, body))
    assert [a[0]["status"] for a in answers] == [201, 201, 201]
    assert primary.connections == 3


def test_a_kept_connection_is_reused(tmp_path: Path) -> None:
    primary = Primary()

    async def body(link: PrimaryLink) -> None:
        for _ in range(3):
            await run(link, scope(method="GET", headers=[(b"host", b"h")]), [b""])

    asyncio.run(with_primary(tmp_path, primary, body))
    assert len(primary.requests) == 3 and primary.connections == 1


def test_no_primary_is_a_link_error(tmp_path: Path) -> None:
    link = PrimaryLink(str(tmp_path / "nobody.sock"), "t")
    with pytest.raises(LinkError):
        asyncio.run(run(link, scope(), [b"0123456789"]))


def test_whitespace_around_a_value_is_trimmed_and_what_h11_refuses_is_not_passable(tmp_path: Path) -> None:
    """httptools lets ``x-a: v `` through with its trailing space, which h11 refuses to send:
    the space is not part of the value (RFC 9110; SigV4 trims it as well), so it is trimmed.
    What h11 still refuses is ``NotPassable`` (the worker answers 400), never a crash, and its
    message does not quote the value (which may be a credential)."""
    primary = Primary()

    async def body(link: PrimaryLink) -> Exception | None:
        await run(link, scope(method="GET", headers=[(b"host", b"h"), (b"x-a", b"v \t")]), [b""])
        bad = scope(method="GET", headers=[(b"host", b"h"), (b"authorization", b"AWS4 sig\x00ret")])
        try:
            await run(link, bad, [b""])
        except NotPassable as exc:
            return exc
        return None

    refused = asyncio.run(with_primary(tmp_path, primary, body))
    ((request, _),) = primary.requests
    assert (b"x-a", b"v") in list(request.headers)
    assert isinstance(refused, NotPassable) and "ret" not in str(refused)


def test_a_body_longer_than_its_content_length_is_not_passable(tmp_path: Path) -> None:
    """A first body piece longer than the declared Content-Length is refused by h11 while the
    head is written: ``NotPassable`` on a reused connection and on a fresh one alike (no retry on
    another connection), that connection closed, and the next request still goes through."""
    primary = Primary()

    async def body(link: PrimaryLink) -> list[Exception]:
        refused: list[Exception] = []
        for _ in range(2):
            await run(link, scope(), [b"0123456789"])  # leaves an idle connection to reuse
            for reuse in (True, False):
                if not reuse:
                    link.close()  # nothing idle: a fresh connection
                try:
                    await run(link, scope(), [b"0123456789-too-long"])
                except NotPassable as exc:
                    refused.append(exc)
        await run(link, scope(), [b"0123456789"])
        return refused

    refused = asyncio.run(with_primary(tmp_path, primary, body))
    assert len(refused) == 4
    assert [b for _, b in primary.requests] == [b"0123456789"] * 3
