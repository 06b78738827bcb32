"""Serving one data directory from several processes (``dwh serve --workers N``).

One **primary** process holds the data directory (its lock, the journal, the committer, the
background jobs, the audit chain) and N-1 **read workers** share its listening socket. A worker
opens the data directory as a follower (``Warehouse.open(follower=True)``: pack followers for the
disks, the metadata read-only) and serves the hot reads itself — ``LOCAL_OPERATIONS`` — while
every other request is passed on to the primary over its Unix socket (``forward.PrimaryLink``).
So there is still exactly one writer, and whatever a client writes through any process is
committed by the primary.

Coherence: before each request it serves, a worker asks SQLite whether another connection
committed (``PRAGMA data_version``) and if so drops its caches of buckets, settings, identities
and quotas; a read after a write that returned sees the write, and a revoked key is refused once
the revocation returned. New shards are found by the pack followers on a miss.

Audit: a worker's own requests are recorded by the primary, in its one hash chain — the worker
queues the records and posts them in batches to ``AUDIT_PATH`` on the Unix socket; requests it
passes on are recorded by the primary as it serves them. The internal path is only answered on
the Unix socket and with the worker token, which a worker strips from every client request.
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.acl import names_grants
from datawarehouse.api.s3.commitlink import CommitLink, CommitService
from datawarehouse.api.s3.errors import S3Error, s3_error
from datawarehouse.api.s3.forward import CLIENT_HEADER, TOKEN_HEADER, LinkError, NotPassable, PrimaryLink, drain
from datawarehouse.api.s3.http import Receive, Scope, Send, error_response, send_response
from datawarehouse.errors import DwhError
from datawarehouse.service.access import ACL_SETTING
from datawarehouse.service.audit.log import GROUP_COMMIT_SECONDS

if TYPE_CHECKING:
    from datawarehouse.service.audit.log import AuditLog
    from datawarehouse.service.warehouse import Warehouse

log = logging.getLogger(__name__)

INTERNAL_PREFIX = "/_dwh_internal/"  # never a bucket: "_" cannot start a bucket name
AUDIT_PATH = INTERNAL_PREFIX + "audit"
# What a worker serves itself: reads that write nothing (not even a heal: a bad shard it meets
# is left to the primary's reads and scrub).
LOCAL_OPERATIONS = frozenset({"GetObject", "HeadObject", "HeadBucket", "ListObjects", "ListObjectsV2"})
# Writes a worker serves itself when ``PassOn.writes_here`` says so (small enough to be inline,
# nothing but the version to commit), the commit made by the primary (``commitlink``).
LOCAL_WRITES = frozenset({"PutObject"})
AUDIT_FIELDS: Mapping[str, type] = {
    "operation": str,
    "tenant": str,
    "principal": str,
    "access_key": str,
    "source_ip": str,
    "bucket": str,
    "key": str,
    "version_id": str,
    "status": int,
    "error": str,
    "bytes_in": int,
    "bytes_out": int,
    "duration_us": int,
    "request_id": str,
    "user_agent": str,
    "query": str,
}
AUDIT_BATCH = 512
AUDIT_QUEUE_MAX = 100_000  # records kept while the primary cannot take them (then counted, dropped)
MAX_AUDIT_POST = 16 * 1024 * 1024


class PassOn:
    """What a read worker's ``S3App`` does with a request it does not serve: the primary answers
    it (streamed through ``PrimaryLink``), or, if the primary cannot be reached, a 503 the
    client's SDK retries. ``commits``: the link for the small writes it serves itself."""

    def __init__(self, link: PrimaryLink, commits: CommitLink | None = None) -> None:
        self.link = link
        self.commits = commits

    def takes(self, operation: str) -> bool:
        """Passed on at once, by operation alone (``LOCAL_WRITES`` are decided later by
        ``writes_here``, once the caller and the bucket are known)."""
        return operation not in LOCAL_OPERATIONS and (self.commits is None or operation not in LOCAL_WRITES)

    def writes_here(self, wh: Warehouse, headers: Mapping[str, str], bucket: str) -> bool:
        """Whether this worker serves a PutObject itself: a body announced small enough to be
        stored inline (its bytes go to the primary with the commit), and no ACL to write — none
        asked for, and none on the bucket that the write could have to withdraw from its key."""
        length = whole_number(headers.get("content-length"))
        if length is None or length > wh.inline_max_size or "x-amz-acl" in headers or names_grants(headers):
            return False
        try:
            return wh.bucket_setting_cached(wh.bucket_for_write(bucket), ACL_SETTING) is None
        except DwhError:  # no such bucket, ...: the primary answers
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        try:
            await self.link.forward(scope, receive, send)
        except LinkError as exc:
            log.warning("worker: %s", exc)
            await self._refuse(
                scope, receive, send, request_id, s3_error("ServiceUnavailable", "the server is restarting; retry")
            )
        except NotPassable as exc:
            await self._refuse(scope, receive, send, request_id, s3_error("InvalidRequest", str(exc)))

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, request_id: str, err: S3Error) -> None:
        await drain(receive)
        response = error_response(err, request_id).header("connection", "close")
        await send_response(send, response, request_id, head_only=scope.get("method") == "HEAD")

    def close(self) -> None:
        self.link.close()
        if self.commits is not None:
            self.commits.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class WorkerAudit:
    """The audit sink of a worker: records queued (``record`` never blocks on I/O) and posted to
    the primary in batches by one thread; kept and retried while the primary is unreachable.

    The thread sleeps until a record arrives, gathers for ``gather`` seconds (the primary's own
    group-commit window, so a process killed with SIGKILL loses at most that much, whichever it
    is), then posts; while the primary cannot be reached it retries every ``retry`` seconds."""

    def __init__(
        self, socket_path: str, token: str, *, gather: float = GROUP_COMMIT_SECONDS, retry: float = 0.2
    ) -> None:
        self._path = socket_path
        self._token = token
        self._gather = gather
        self._retry = retry
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self._conn: _UnixConnection | None = None  # used by the thread only
        self._thread = threading.Thread(target=self._run, name="dwh-worker-audit", daemon=True)
        self._thread.start()

    def record(self, **fields: Any) -> None:
        doc = {name: fields[name] for name in AUDIT_FIELDS if name in fields}
        with self._lock:
            if len(self._queue) >= AUDIT_QUEUE_MAX:
                self.dropped += 1
                return
            self._queue.append(doc)
            if len(self._queue) == 1:
                self._wake.set()

    def _run(self) -> None:
        pause: float | None = None  # None: until a record arrives
        while True:
            self._wake.wait(pause)
            if not self._stop.is_set():
                self._stop.wait(self._gather)  # let the records of requests in flight join the batch
            self._wake.clear()
            stopping = self._stop.is_set()  # read before delivering: nothing recorded earlier is left
            error = self._deliver()
            pause = None if error is None else self._retry
            if stopping:
                if error is not None:
                    log.error("worker audit: %d records not delivered: %s", len(self._queue), error)
                if self._conn is not None:
                    self._conn.close()
                return
            if error is not None:
                log.warning("worker audit: will retry (%s)", error)

    def _deliver(self) -> Exception | None:
        """Post what is queued, a batch at a time; the error that stopped it, if any (what was
        not acknowledged stays queued)."""
        while True:
            with self._lock:
                batch = [self._queue[i] for i in range(min(AUDIT_BATCH, len(self._queue)))]
            if not batch:
                return None
            try:
                if self._conn is None:
                    self._conn = _UnixConnection(self._path, timeout=30)
                body = json.dumps(batch, separators=(",", ":")).encode()
                self._conn.request(
                    "POST",
                    AUDIT_PATH,
                    body=body,
                    headers={TOKEN_HEADER.decode(): self._token, "content-type": "application/json"},
                )
                reply = self._conn.getresponse()
                reply.read()
                if reply.status != 204:
                    raise OSError(f"the primary answered {reply.status}")
            except (OSError, http.client.HTTPException) as exc:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                return exc
            with self._lock:
                for _ in batch:
                    self._queue.popleft()

    def close(self) -> None:
        """Deliver what is queued (the primary is still serving while its workers stop)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)


class InternalEndpoint:
    """The primary's side: which requests came through a worker, the audit records workers
    post, and (``commits``) the small writes they commit here. Only on the Unix sockets
    (``socket_path``, the commit link's) and with the token."""

    def __init__(
        self,
        socket_path: str,
        token: str,
        audit: AuditLog,
        note_key_use: Callable[[str, datetime], None],
        now: Callable[[], datetime],
        commits: CommitService | None = None,
    ) -> None:
        self.socket_path = socket_path
        self._token = token.encode()
        self._audit = audit
        self._note_key_use = note_key_use
        self._now = now
        self.commits = commits

    async def start(self) -> None:
        if self.commits is not None:
            await self.commits.start()

    async def close(self) -> None:
        if self.commits is not None:
            await self.commits.close()

    def from_worker(self, scope: Scope) -> bool:
        """Whether a worker sent this (the Unix socket and the token): a client's request it
        passed on, or one of its own calls (``is_call``)."""
        server = scope.get("server")
        if not server or server[0] != self.socket_path:
            return False
        for name, value in scope.get("headers", []):
            if name.lower() == TOKEN_HEADER:
                return hmac.compare_digest(value, self._token)
        return False

    @staticmethod
    def is_call(scope: Scope) -> bool:
        """A worker's own call (its audit records), not a client's request it passed on: those
        always carry the client's address, and never reach the internal path anyway."""
        return scope.get("path", "").startswith(INTERNAL_PREFIX) and not any(
            name.lower() == CLIENT_HEADER for name, _ in scope.get("headers", [])
        )

    @staticmethod
    def with_client(scope: Scope) -> Scope:
        """The scope of a request a worker passed on, with the client's address it reported."""
        out = dict(scope)
        out["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (TOKEN_HEADER, CLIENT_HEADER)]
        for name, value in scope.get("headers", []):
            if name.lower() == CLIENT_HEADER:
                out["client"] = None if value == b"-" else (value.decode("latin-1"), 0)
        return out

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST" or scope.get("path") != AUDIT_PATH:
            await _plain(send, 404)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > MAX_AUDIT_POST:
                await _plain(send, 413)
                return
            if not message.get("more_body", False):
                break
        try:
            records = json.loads(body)
            if not isinstance(records, list):
                raise ValueError("not a list")
            checked = [_checked(doc) for doc in records]
        except ValueError as exc:
            log.warning("worker audit: malformed batch refused (%s)", exc)
            await _plain(send, 400)
            return
        now = self._now()
        for fields in checked:
            try:
                self._audit.record(**fields)
            except DwhError:
                log.exception("audit: a worker's record could not be recorded")
            if fields.get("access_key"):
                self._note_key_use(fields["access_key"], now)
        await _plain(send, 204)


def _checked(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or "operation" not in doc:
        raise ValueError("a record is not an object with an operation")
    out: dict[str, Any] = {}
    for name, value in doc.items():
        kind = AUDIT_FIELDS.get(name)
        if kind is None or type(value) is not kind:
            raise ValueError(f"field {name!r}")
        out[name] = value
    return out


async def _plain(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
