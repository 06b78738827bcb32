"""Small writes from read workers: the worker writes, the primary commits.

A PutObject small enough to be stored inline (``engine.inline_max_size``) is served by the read
worker that received it: it verifies the signature, authorizes, reads and checks the body and
seals it, exactly as the primary would. Only the commit needs the one writer, so the worker sends
the primary the version's journal document (``Warehouse.commit_forwarded_put``) and waits for the
stored version or the error. Passing the whole HTTP request on instead made the primary parse it
and verify its signature again: 4 KiB PUTs with ``--workers 2`` ran at 0.6x of one process.

The link is one Unix-socket connection per worker, in the server's private 0700 run directory,
opened with the worker token. Both ways it carries frames: a 4-byte big-endian length, then a JSON
object. A call is ``{"id", "bucket", "doc"}``; its answer ``{"id", "version"}`` (the stored
version's document without the sealed bytes, which the worker sent and keeps: encoding them back
cost the primary 25 us of its ~1 ms per PUT) or ``{"id", "error": {"type", "message"}}``.
Calls are answered as their commits complete, so the calls of many requests in flight share the
primary's group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import socket
import struct
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from datawarehouse import errors
from datawarehouse.errors import CorruptFrame, DataUnavailable, DwhError
from datawarehouse.records import ObjectVersion
from datawarehouse.service.catalog import version_from_doc, version_to_doc

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
# An inline object is at most 1 MiB (base64 in the document) plus its metadata, tags and
# checksums, each bounded far below this.
MAX_FRAME = 8 * 1024 * 1024

Commit = Callable[[str, dict[str, Any]], Future[ObjectVersion]]


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise CorruptFrame(f"a commit-link frame of {len(body)} bytes is over {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame's object; ``None`` at a clean end of the stream. A frame that is too
    large, cut short or not a JSON object raises ``CorruptFrame``."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise CorruptFrame("a commit-link frame header was cut short") from None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise CorruptFrame(f"a commit-link frame of {size} bytes is over {MAX_FRAME}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise CorruptFrame("a commit-link frame was cut short") from None
    try:
        message = json.loads(body)
    except ValueError:
        raise CorruptFrame("a commit-link frame is not JSON") from None
    if not isinstance(message, dict):
        raise CorruptFrame("a commit-link frame is not a JSON object")
    return message


def error_to_doc(exc: BaseException) -> dict[str, str]:
    """An error for the wire: its class by name (only the project's own tree crosses; anything
    else is a bug whose text stays in this process's log) and its message."""
    if isinstance(exc, DwhError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "DwhError", "message": "the commit failed (see the primary's log)"}


def error_from_doc(doc: Any) -> DwhError:
    """The project error an answer names, raised again in the worker (so the S3 layer maps it to
    the same S3 error the primary would have answered); an unknown or malformed one is a
    ``DwhError``, answered as InternalError."""
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), str):
        return CorruptFrame("the primary answered a malformed error")
    kind = getattr(errors, str(doc.get("type")), None)
    message = doc["message"]
    if isinstance(kind, type) and issubclass(kind, DwhError):
        try:
            return kind(message)
        except TypeError:  # an error class that needs more than a message
            pass
    return DwhError(message)


class CommitLink:
    """The worker's side: ``submit`` (``Warehouse.remote_commit``) sends a call and returns a
    future the answer resolves. One connection, opened on first use and again after it broke;
    calls in flight when it breaks fail with ``DataUnavailable`` (503, which SDKs retry) — whether
    such a commit happened is unknown, as with any server that dies mid-request."""

    def __init__(self, socket_path: str, token: str) -> None:
        self.socket_path = socket_path
        self._token = token
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[bytes] = []  # frames waiting for the connection
        # Calls awaiting their answer: the future, and the sealed bytes sent (base64, as in the call).
        self._pending: dict[int, tuple[Future[ObjectVersion], Any]] = {}
        self._next_id = 0
        self._closed = False

    def submit(self, bucket: str, doc: dict[str, Any]) -> Future[ObjectVersion]:
        future: Future[ObjectVersion] = Future()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:  # a worker thread: the link lives on the event loop
            assert self._loop is not None, "the first commit of a link is submitted on its event loop"
            self._loop.call_soon_threadsafe(self._send, bucket, doc, future)
        else:
            self._loop = loop
            self._send(bucket, doc, future)
        return future

    def _send(self, bucket: str, doc: dict[str, Any], future: Future[ObjectVersion]) -> None:
        if self._closed:
            future.set_exception(DataUnavailable("the server is stopping; retry"))
            return
        self._next_id += 1
        call_id = self._next_id
        try:
            frame = encode_frame({"id": call_id, "bucket": bucket, "doc": doc})
        except (CorruptFrame, TypeError, ValueError) as exc:
            future.set_exception(exc if isinstance(exc, DwhError) else CorruptFrame(str(exc)))
            return
        self._pending[call_id] = (future, (doc.get("version") or {}).get("inline"))
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame)
            return
        self._backlog.append(frame)
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=MAX_FRAME + HEADER.size)
        except OSError as exc:
            self._connecting = None
            self._fail_all(f"the primary cannot be reached ({exc.__class__.__name__}); retry")
            return
        writer.write(encode_frame({"token": self._token}))
        for frame in self._backlog:
            writer.write(frame)
        self._backlog.clear()
        self._writer = writer
        self._connecting = None
        await self._read_answers(reader, writer)

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = "the primary closed the commit link; retry"
        try:
            while (message := await read_frame(reader)) is not None:
                self._resolve(message)
        except (CorruptFrame, OSError) as exc:
            reason = f"the commit link broke ({exc}); retry"
            log.warning("worker: %s", reason)
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            self._fail_all(reason)

    def _resolve(self, message: dict[str, Any]) -> None:
        call = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if call is None:
            raise CorruptFrame("the primary answered a call that was not made")
        future, inline = call
        if "version" in message:
            try:
                answer = message["version"]
                if not isinstance(answer, dict):
                    raise CorruptFrame("the primary answered a malformed version")
                future.set_result(version_from_doc({**answer, "inline": inline}))
            except DwhError as exc:
                future.set_exception(exc)
        else:
            future.set_exception(error_from_doc(message.get("error")))

    def _fail_all(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        self._backlog.clear()
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(DataUnavailable(reason))

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()


class CommitService:
    """The primary's side: answers the calls of every worker connected to ``sock`` (bound and
    listening before the workers start) with ``commit`` (``Warehouse.commit_forwarded_put``)."""

    def __init__(self, sock: socket.socket, token: str, commit: Commit) -> None:
        self._sock = sock
        self._token = token.encode()
        self._commit = commit
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.calls = 0  # answered calls, for tests and the curious

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, sock=self._sock, limit=MAX_FRAME + HEADER.size)

    async def close(self) -> None:
        """Stop taking connections. Calls already received still commit; their answers go to
        workers that are still connected (the supervisor stops the workers first)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await read_frame(reader)
            token = hello.get("token") if hello is not None else None
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token):
                log.warning("commit link: a connection without the worker token was refused")
                return
            self._connections.add(writer)
            loop = asyncio.get_running_loop()
            while (message := await read_frame(reader)) is not None:
                self._call(loop, writer, message)
        except CorruptFrame as exc:
            log.warning("commit link: %s; connection closed", exc)
        except OSError:
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    def _call(self, loop: asyncio.AbstractEventLoop, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        call_id, bucket, doc = message.get("id"), message.get("bucket"), message.get("doc")
        if not isinstance(call_id, int) or not isinstance(bucket, str) or not isinstance(doc, dict):
            raise CorruptFrame("a call without an id, a bucket name and a document")
        try:
            pending = self._commit(bucket, doc)
        except Exception as exc:
            self._answer(writer, call_id, exc)
            return
        pending.add_done_callback(lambda done: loop.call_soon_threadsafe(self._answered, writer, call_id, done))

    def _answered(self, writer: asyncio.StreamWriter, call_id: int, done: Future[ObjectVersion]) -> None:
        exc = done.exception()
        self._answer(writer, call_id, exc if exc is not None else done.result())

    def _answer(self, writer: asyncio.StreamWriter, call_id: int, outcome: ObjectVersion | BaseException) -> None:
        self.calls += 1
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, DwhError):
                log.error("commit link: a worker's commit failed", exc_info=outcome)
            message: dict[str, Any] = {"id": call_id, "error": error_to_doc(outcome)}
        else:
            message = {"id": call_id, "version": version_to_doc(dataclasses.replace(outcome, inline_data=None))}
        if not writer.is_closing():
            writer.write(encode_frame(message))
