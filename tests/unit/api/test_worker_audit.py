"""A read worker's audit sink (``WorkerAudit``) against a real HTTP server on a Unix socket that
stands in for the primary's internal endpoint: records that arrive together are posted together,
an idle worker posts nothing, records wait (and are kept) while the primary is away, and closing
delivers what is queued at once."""

from __future__ import annotations

import json
import os
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from datawarehouse.api.s3.forward import TOKEN_HEADER
from datawarehouse.api.s3.worker import AUDIT_PATH, WorkerAudit

TOKEN = "t" * 32


class Primary(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.posts: list[list[dict[str, object]]] = []
        super().__init__(path, _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        os.unlink(self.server_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Primary

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        ok = self.path == AUDIT_PATH and self.headers[TOKEN_HEADER.decode()] == TOKEN
        if ok:
            self.server.posts.append(json.loads(body))
        self.send_response(204 if ok else 403)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"


@pytest.fixture
def socket_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield str(Path(tmp) / "primary.sock")


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_records_arriving_together_are_posted_together(socket_path: str) -> None:
    primary = Primary(socket_path)
    sink = WorkerAudit(socket_path, TOKEN, gather=0.5)
    try:
        for i in range(5):
            sink.record(operation="GetObject", request_id=f"r{i}", status=200, ignored="not an audit field")
        wait_for(lambda: primary.posts)
        time.sleep(0.3)  # an idle worker posts nothing more
        assert [[r["request_id"] for r in post] for post in primary.posts] == [["r0", "r1", "r2", "r3", "r4"]]
        assert all("ignored" not in r for r in primary.posts[0])
        sink.record(operation="HeadObject", request_id="later", status=200)
        wait_for(lambda: len(primary.posts) == 2)
        assert [r["request_id"] for r in primary.posts[1]] == ["later"]
    finally:
        sink.close()
        primary.stop()


def test_records_wait_for_an_absent_primary(socket_path: str) -> None:
    sink = WorkerAudit(socket_path, TOKEN, gather=0.01, retry=0.05)
    sink.record(operation="GetObject", request_id="early", status=200)
    time.sleep(0.2)  # a few failed posts
    primary = Primary(socket_path)
    try:
        wait_for(lambda: primary.posts)
        assert [r["request_id"] for post in primary.posts for r in post] == ["early"]
    finally:
        sink.close()
        primary.stop()


def test_close_delivers_the_queue_at_once(socket_path: str) -> None:
    primary = Primary(socket_path)
    sink = WorkerAudit(socket_path, TOKEN, gather=60.0)  # only closing can post within the test
    try:
        sink.record(operation="GetObject", request_id="last", status=200)
        sink.close()
        assert [r["request_id"] for post in primary.posts for r in post] == ["last"]
    finally:
        primary.stop()
