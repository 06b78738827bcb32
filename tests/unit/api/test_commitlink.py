"""The commit link between a read worker and the primary (``api/s3/commitlink.py``), over a real
Unix socket: answers reach the call that asked, in any order; the primary's errors come back as
the same project errors (and nothing else's text); a wrong token, a missing primary and a
connection cut mid-call fail the calls with ``DataUnavailable`` (503); malformed frames are
refused."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datawarehouse.api.s3 import commitlink
from datawarehouse.api.s3.commitlink import (
    MAX_FRAME,
    CommitLink,
    CommitService,
    error_from_doc,
    read_frame,
)
from datawarehouse.errors import (
    CorruptFrame,
    DataUnavailable,
    DwhError,
    PreconditionFailed,
    QuotaExceeded,
)
from datawarehouse.ids import BucketId, VersionId
from datawarehouse.records import ChunkerParams, ObjectVersion, StorageClass

TOKEN = "t0ken"


def _version(key: str) -> ObjectVersion:
    return ObjectVersion(
        bucket_id=BucketId(7),
        key=key,
        version_id=VersionId("v-" + key),
        size=3,
        etag="e",
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
        storage_class=StorageClass(4, 2),
        chunker=ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024),
        inline_data=b"sealed",
        null_version=False,
    )


def _listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def _run(
    tmp_path: Path,
    commit: Callable[[str, dict[str, Any]], Future[ObjectVersion]],
    body: Callable[[CommitLink], Awaitable[None]],
    *,
    token: str = TOKEN,
) -> None:
    async def main() -> None:
        path = tmp_path / "commit.sock"
        service = CommitService(_listening(path), TOKEN, commit)
        await service.start()
        link = CommitLink(str(path), token)
        try:
            await body(link)
        finally:
            link.close()
            await service.close()

    asyncio.run(main())


def _later(seconds: float, outcome: ObjectVersion | BaseException) -> Future[ObjectVersion]:
    """A future resolved on another thread, as the committer resolves them."""
    future: Future[ObjectVersion] = Future()

    def resolve() -> None:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    threading.Timer(seconds, resolve).start()
    return future


def test_answers_reach_their_calls_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call gets its own answer; the answer leaves out the sealed bytes (the worker sent
    them and keeps them), and the version the worker gets back holds them again."""
    seen: list[tuple[str, dict[str, Any]]] = []
    frames: list[dict[str, Any]] = []
    encode = commitlink.encode_frame

    def recording(message: dict[str, Any]) -> bytes:
        frames.append(message)
        return encode(message)

    monkeypatch.setattr(commitlink, "encode_frame", recording)

    def commit(bucket: str, doc: dict[str, Any]) -> Future[ObjectVersion]:
        seen.append((bucket, doc))
        n = doc["n"]
        return _later(0.05 * (5 - n), _version(f"k{n}"))  # the first call is answered last

    def call(n: int) -> dict[str, Any]:
        return {"n": n, "version": {"inline": base64.b64encode(f"sealed {n}".encode()).decode()}}

    async def body(link: CommitLink) -> None:
        futures = [link.submit("tenant:bucket", call(n)) for n in range(5)]
        got = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        assert [v.key for v in got] == [f"k{n}" for n in range(5)]
        assert [v.inline_data for v in got] == [f"sealed {n}".encode() for n in range(5)]
        assert got[0] == dataclasses.replace(_version("k0"), inline_data=b"sealed 0")

    _run(tmp_path, commit, body)
    assert seen == [("tenant:bucket", call(n)) for n in range(5)]
    answers = [f["version"] for f in frames if "version" in f and "id" in f and "bucket" not in f]
    assert len(answers) == 5 and all(a["inline"] is None for a in answers)


def test_errors_come_back_as_the_same_project_errors(tmp_path: Path) -> None:
    def commit(bucket: str, doc: dict[str, Any]) -> Future[ObjectVersion]:
        if doc["case"] == "raise":
            raise PreconditionFailed("If-None-Match")
        if doc["case"] == "later":
            return _later(0.01, QuotaExceeded("bucket b: over its quota"))
        return _later(0.01, ValueError("private detail of a bug"))

    async def body(link: CommitLink) -> None:
        with pytest.raises(PreconditionFailed, match="If-None-Match"):
            await asyncio.wrap_future(link.submit("b", {"case": "raise"}))
        with pytest.raises(QuotaExceeded, match="over its quota"):
            await asyncio.wrap_future(link.submit("b", {"case": "later"}))
        with pytest.raises(DwhError) as err:
            await asyncio.wrap_future(link.submit("b", {"case": "bug"}))
        assert type(err.value) is DwhError and "private detail" not in str(err.value)

    _run(tmp_path, commit, body)


def test_an_unknown_error_name_is_a_plain_project_error() -> None:
    assert type(error_from_doc({"type": "SystemExit", "message": "m"})) is DwhError
    assert type(error_from_doc({"type": "os", "message": "m"})) is DwhError
    assert type(error_from_doc({"type": "DeleteMarkerFound", "message": "m"})).__name__ == "DeleteMarkerFound"
    assert isinstance(error_from_doc("not a dict"), CorruptFrame)


def test_a_wrong_token_is_refused(tmp_path: Path) -> None:
    calls: list[str] = []

    def commit(bucket: str, doc: dict[str, Any]) -> Future[ObjectVersion]:
        calls.append(bucket)
        return _later(0, _version("k"))

    async def body(link: CommitLink) -> None:
        with pytest.raises(DataUnavailable):
            await asyncio.wrap_future(link.submit("b", {}))

    _run(tmp_path, commit, body, token="guessed")
    assert calls == []


def test_no_primary_and_a_cut_connection_fail_the_calls(tmp_path: Path) -> None:
    async def missing() -> None:
        link = CommitLink(str(tmp_path / "nobody.sock"), TOKEN)
        with pytest.raises(DataUnavailable):
            await asyncio.wrap_future(link.submit("b", {}))

    asyncio.run(missing())

    async def cut() -> None:
        path = tmp_path / "cut.sock"
        server_sock = _listening(path)
        accepted: list[socket.socket] = []

        def accept() -> None:
            conn, _ = server_sock.accept()
            conn.recv(65536)  # the token and the call
            accepted.append(conn)
            conn.close()  # the primary died before it answered

        t = threading.Thread(target=accept)
        t.start()
        link = CommitLink(str(path), TOKEN)
        with pytest.raises(DataUnavailable):
            await asyncio.wrap_future(link.submit("b", {}))
        t.join()
        server_sock.close()
        assert accepted

    asyncio.run(cut())


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">I", MAX_FRAME + 1),  # over the limit: refused before reading it
        struct.pack(">I", 10) + b"{}",  # cut short
        b"\x00\x00",  # header cut short
        struct.pack(">I", 2) + b"[]",  # not an object
        struct.pack(">I", 3) + b"{x}",  # not JSON
    ],
)
def test_malformed_frames_are_refused(raw: bytes) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        with pytest.raises(CorruptFrame):
            await read_frame(reader)

    asyncio.run(main())


def test_a_clean_end_of_stream_is_not_an_error() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_eof()
        assert await read_frame(reader) is None

    asyncio.run(main())
