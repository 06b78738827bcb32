"""Forwarders against real local receivers on 127.0.0.1 free ports: a webhook (http.server)
that fails the first attempts (retry with backoff), Splunk HEC (an asyncio HTTP server checking
the path and the token), syslog over UDP and TCP (octet-counted frames). Cursors persist, so a
new forwarder resumes after the last delivered record."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dwh_testkit import init_wh

from datawarehouse.clock import ManualClock
from datawarehouse.config import AuditConfig
from datawarehouse.errors import ForwardFailed
from datawarehouse.service.audit.forward import (
    Backoff,
    Cursor,
    Forwarder,
    HecSender,
    SyslogSender,
    WebhookSender,
    cursor_path,
)
from datawarehouse.service.audit.log import AuditLog
from datawarehouse.service.warehouse import Warehouse

FAST = Backoff(base=0.01, cap=0.05)
TOKEN = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def audit(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Warehouse, AuditLog]]:
    wh = init_wh(tmp_path / "dwh", clock)
    log = AuditLog(wh, AuditConfig(checkpoint_records=4))
    for i in range(1, 11):
        log.record(operation="PutObject", principal="alice", bucket="b", key=f"k{i}", status=200, request_id=f"r{i}")
    log.flush()
    yield wh, log
    log.close()
    wh.close()


def forwarder(wh: Warehouse, log: AuditLog, sender, name: str, batch: int = 4) -> Forwarder:  # type: ignore[no-untyped-def]
    return Forwarder(
        log.read_after, sender, Cursor(cursor_path(wh.engine.datadir.root, name)), batch_size=batch, backoff=FAST
    )


# --- webhook -----------------------------------------------------------------------------------------


class Webhook(ThreadingHTTPServer):
    def __init__(self, fail_first: int) -> None:
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.fail_first = fail_first
        self.attempts = 0
        self.batches: list[dict] = []  # type: ignore[type-arg]
        self.headers_seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/audit"


class WebhookHandler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        self.server.headers_seen.append(dict(self.headers))
        if self.server.attempts <= self.server.fail_first:
            self.send_response(503)
        else:
            self.server.batches.append(json.loads(body))
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook(fail_first=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_retries_with_backoff_and_persists_its_cursor(audit, webhook: Webhook) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    fw = forwarder(wh, log, WebhookSender(webhook.url, token="hook-token"), "webhook")
    assert fw.forward_once() == 4  # two 503s, then delivered
    assert webhook.attempts == 3 and fw.failures == 2
    assert len(webhook.batches) == 1
    assert [r["seq"] for r in webhook.batches[0]["records"]] == [1, 2, 3, 4]
    assert webhook.headers_seen[-1]["Authorization"] == "Bearer hook-token"
    assert webhook.headers_seen[-1]["Content-Type"] == "application/json"
    # a new forwarder (a restart) resumes after the cursor
    again = forwarder(wh, log, WebhookSender(webhook.url), "webhook")
    assert again.position == 4
    assert again.drain() == 6
    seqs = [r["seq"] for b in webhook.batches for r in b["records"]]
    assert seqs == list(range(1, 11))
    assert "hook-token" not in repr(again.sender)


def test_webhook_gives_up_after_max_attempts_without_moving_the_cursor(audit, webhook: Webhook) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    webhook.fail_first = 100
    fw = forwarder(wh, log, WebhookSender(webhook.url), "webhook")
    with pytest.raises(ForwardFailed, match="503"):
        fw.forward_once(max_attempts=3)
    assert webhook.attempts == 3 and fw.position == 0
    assert Cursor(cursor_path(wh.engine.datadir.root, "webhook")).load() == 0


def test_background_forwarder_delivers_new_records(audit, webhook: Webhook) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    webhook.fail_first = 1
    fw = forwarder(wh, log, WebhookSender(webhook.url), "bg")
    fw.poll_seconds = 0.05
    fw.start()
    try:
        log.record(operation="DeleteObject", bucket="b", key="k1", status=204)
        log.flush()
        deadline = time.monotonic() + 30
        while fw.position < 11 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        fw.stop()
    seqs = [r["seq"] for b in webhook.batches for r in b["records"]]
    assert seqs == list(range(1, 12))


def test_unreachable_webhook_is_a_forward_failure(audit) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: no other process can listen there meanwhile
        fw = forwarder(wh, log, WebhookSender(f"http://127.0.0.1:{port}/"), "dead")
        with pytest.raises(ForwardFailed, match="cannot reach"):
            fw.forward_once(max_attempts=2)


# --- Splunk HEC (asyncio) ------------------------------------------------------------------------------


class Hec:
    """A minimal HTTP/1.1 server on asyncio: POST /services/collector/event with the token."""

    def __init__(self) -> None:
        self.events: list[dict] = []  # type: ignore[type-arg]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        method, path, _ = request_line.split(" ", 2)
        self.requests.append((f"{method} {path}", headers))
        if path != "/services/collector/event":
            status, answer = "404 Not Found", {"text": "Incorrect index", "code": 7}
        elif headers.get("authorization") != f"Splunk {TOKEN}":
            status, answer = "403 Forbidden", {"text": "Invalid token", "code": 4}
        else:
            decoder = json.JSONDecoder()
            text, pos = body.decode(), 0
            while pos < len(text):
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos >= len(text):
                    break
                event, pos = decoder.raw_decode(text, pos)
                self.events.append(event)
            status, answer = "200 OK", {"text": "Success", "code": 0}
        data = json.dumps(answer).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def hec() -> Iterator[Hec]:
    server = Hec()
    yield server
    server.close()


def test_splunk_hec_receives_events_with_the_token(audit, hec: Hec) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    fw = forwarder(wh, log, HecSender(f"http://127.0.0.1:{hec.port}", TOKEN), "hec", batch=100)
    assert fw.drain() == 10
    assert hec.requests[0][0] == "POST /services/collector/event"
    assert [e["event"]["seq"] for e in hec.events] == list(range(1, 11))
    first = hec.events[0]
    assert first["sourcetype"] == "dwh:audit" and isinstance(first["time"], float)
    assert first["event"]["key"] == "k1"
    assert TOKEN not in repr(fw.sender)


def test_splunk_hec_wrong_token_is_refused(audit, hec: Hec) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    fw = forwarder(wh, log, HecSender(f"http://127.0.0.1:{hec.port}", "wrong-token"), "hec")
    with pytest.raises(ForwardFailed, match="403"):
        fw.forward_once(max_attempts=2)
    assert not hec.events and fw.position == 0


# --- syslog ----------------------------------------------------------------------------------------------

RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) dwh (\d+) (\S+) \[audit@32473 ([^\]]*)\] \xef\xbb\xbf(\{.*\})$", re.S)


def check_message(msg: bytes, seq: int) -> None:
    m = RFC5424.match(msg)
    assert m, msg
    pri, ts, host, _procid, msgid, sd, body = m.groups()
    assert int(pri) == 13 * 8 + 6
    assert ts.endswith(b"Z") and host == b"audit-host" and msgid == b"PutObject"
    assert f'seq="{seq}"'.encode() in sd and b'principal="alice"' in sd
    assert json.loads(body)["seq"] == seq


def test_syslog_udp(audit) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        port = rx.getsockname()[1]
        fw = forwarder(wh, log, SyslogSender(f"udp://127.0.0.1:{port}", hostname="audit-host"), "syslog-udp", 100)
        assert fw.drain() == 10
        fw.sender.close()
        messages = [rx.recv(65535) for _ in range(10)]
    for seq, msg in enumerate(messages, start=1):
        check_message(msg, seq)


def read_octet_counted(data: bytes) -> list[bytes]:
    """RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG, repeated."""
    out = []
    while data:
        length, _, rest = data.partition(b" ")
        n = int(length)
        out.append(rest[:n])
        data = rest[n:]
    return out


def test_syslog_tcp_octet_counting_and_reconnect(audit) -> None:  # type: ignore[no-untyped-def]
    wh, log = audit
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(10)

        def accept_all() -> None:
            for _ in range(2):  # the first connection is dropped after one read: a restart
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5)
                    while chunk := conn.recv(65536):
                        received.extend(chunk)

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        sender = SyslogSender(f"tcp://127.0.0.1:{port}", hostname="audit-host")
        fw = forwarder(wh, log, sender, "syslog-tcp", 5)
        assert fw.forward_once() == 5
        sender.close()  # the connection goes away; the next send reconnects
        assert fw.forward_once() == 5
        sender.close()
        thread.join(20)
    messages = read_octet_counted(bytes(received))
    assert len(messages) == 10
    for seq, msg in enumerate(messages, start=1):
        check_message(msg, seq)
