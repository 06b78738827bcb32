"""``AuditLog``: the one entry point that records audited events.

How the S3 app and the admin API call it (one ``AuditLog`` per data directory, opened after the
Warehouse, closed before it)::

    audit = AuditLog(warehouse, config.audit)
    ...
    # after every S3 request has been answered (success or error), from the request handler:
    audit.record(
        operation="PutObject",          # the S3 operation name (router endpoint), or for admin
                                        # actions "admin:<verb>" such as "admin:CreateUser"
        tenant=tenant_id, principal=principal_name, access_key=access_key_id,  # '' if anonymous
        source_ip=client_ip, bucket=bucket, key=key, version_id=version_id,
        status=http_status, error=s3_error_code_or_empty,
        bytes_in=request_body_bytes, bytes_out=response_body_bytes,
        duration_us=elapsed_microseconds, request_id=x_amz_request_id,
        user_agent=user_agent, query=raw_query_string,   # redacted here: X-Amz-Signature etc.
        detail={"param": "value"},      # optional; secret-named keys are redacted
    )
    ...
    audit.close()                       # flushes and stops the writer thread

Never pass the Authorization header, a secret key or a signature: there is no field for them,
and ``query``/``detail`` are redacted anyway (redact.py). ``record`` only appends to an
in-memory queue (thread-safe, never blocks on I/O); a background thread assigns seq, chains and
appends batches to the spool with one ``fdatasync`` each (group commit) and seals a segment
every ``audit.checkpoint_records`` records or ``audit.checkpoint_seconds`` seconds. ``flush``
waits until everything recorded so far is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from datawarehouse.config import AuditConfig
from datawarehouse.errors import AuditLogClosed, InvalidInput, StorageError
from datawarehouse.service.audit.checkpoint import Checkpoint, CheckpointSigner
from datawarehouse.service.audit.query import AuditQuery
from datawarehouse.service.audit.record import AuditRecord, clip, format_time
from datawarehouse.service.audit.redact import redact_detail, redact_query, redact_text
from datawarehouse.service.audit.store import AuditStore, iter_stored_records
from datawarehouse.service.audit.verify import VerifyResult, verify
from datawarehouse.service.warehouse import Warehouse

log = logging.getLogger(__name__)
MAX_BATCH = 1000
GROUP_COMMIT_SECONDS = 0.02  # gather records this long before a spool write (one fdatasync for all)
RETRY_SECONDS = 1.0  # after a failed spool write or seal (the records stay queued)


class AuditLog:
    def __init__(self, wh: Warehouse, config: AuditConfig | None = None) -> None:
        self.wh = wh
        self.config = config or AuditConfig()
        signer = CheckpointSigner.load_or_create(wh.engine.datadir.root / "keys")
        self.store = AuditStore(wh, signer, self.config.retention_days)
        # Accepted events, made into records (redacted, clipped, formatted) by the writer thread:
        # ``record`` runs on every request's path and only queues.
        self._queue: deque[AuditRecord | Callable[[], AuditRecord]] = deque()
        self._cond = threading.Condition()
        self._store_lock = threading.Lock()  # the writer thread, seal(), expire(), readers
        self._accepted = 0
        self._durable = 0
        self._seal_requested = False
        self._closing = False
        self._closed = False
        self._error: BaseException | None = None
        self._segment_started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="dwh-audit", daemon=True)
        self._thread.start()

    # --- the cheap part: called on every request -----------------------------------------------

    def record(
        self,
        *,
        operation: str,
        tenant: str = "",
        principal: str = "",
        access_key: str = "",
        source_ip: str = "",
        bucket: str = "",
        key: str = "",
        version_id: str = "",
        status: int = 0,
        error: str = "",
        bytes_in: int = 0,
        bytes_out: int = 0,
        duration_us: int = 0,
        request_id: str = "",
        user_agent: str = "",
        query: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> None:
        """Queue one event (see the module docstring); the time is the server clock's now."""
        if not operation:
            raise InvalidInput("audit record: operation is required")
        if min(status, bytes_in, bytes_out, duration_us) < 0:
            raise InvalidInput("audit record: status, bytes and duration must be >= 0")
        at = self.wh.engine.now()
        detail_copy = dict(detail) if detail else None

        def rec() -> AuditRecord:
            return AuditRecord(
                seq=0,
                time=format_time(at),
                operation=clip(operation),
                tenant=clip(tenant),
                principal=clip(principal),
                access_key=clip(access_key),
                source_ip=clip(source_ip),
                bucket=clip(bucket),
                key=clip(key),
                version_id=clip(version_id),
                status=status,
                error=clip(error),
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                duration_us=duration_us,
                request_id=clip(request_id),
                user_agent=clip(redact_text(user_agent)),
                query=clip(redact_query(query)),
                detail={k: clip(v) for k, v in redact_detail(detail_copy).items()},
            )

        with self._cond:
            if self._closing:
                raise AuditLogClosed("the audit log is closed")
            self._queue.append(rec)
            self._accepted += 1
            if len(self._queue) == 1:  # the writer waits only for a first record (or a deadline)
                self._cond.notify_all()

    # --- durability ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Return once every record accepted before the call is in the spool (fdatasync'd)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._accepted
            while self._durable < target:
                if self._error is not None and not self._thread.is_alive():
                    raise StorageError(f"audit log writer stopped: {self._error}")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StorageError("audit log: flush timed out (see the server log)")
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))

    def seal(self) -> Checkpoint | None:
        """Flush, then seal the spool into a segment and a signed checkpoint now."""
        self.flush()
        with self._store_lock:
            cp = self.store.seal()
            self._segment_started = time.monotonic()
        return cp

    def expire(self) -> int:
        """Remove the segments whose retention has ended (see AuditStore.expire)."""
        with self._store_lock:
            return self.store.expire()

    def read_after(self, seq: int, limit: int = 1000) -> list[AuditRecord]:
        """Up to ``limit`` durable records with seq > ``seq`` (forwarders read through this):
        from memory when they are still in the spool, else from the stored segments."""
        with self._store_lock:
            pending = self.store.spool.records
            if pending and pending[0].seq <= seq + 1:
                return [r for r in pending if r.seq > seq][:limit]
        out = []
        for r in iter_stored_records(self.wh, seq):
            out.append(r)
            if len(out) >= limit:
                break
        return out

    def query(self, q: AuditQuery, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Up to ``limit`` records matching ``q`` with seq > ``after_seq``, read while this process
        writes the log: everything recorded before the call is included (flushed first), and no
        batch or seal runs meanwhile (a half-appended spool is never read)."""
        self.flush()
        out: list[AuditRecord] = []
        with self._store_lock:
            for r in iter_stored_records(self.wh, after_seq):
                if q.matches(r):
                    out.append(r)
                    if len(out) >= limit:
                        break
        return out

    def verify(self) -> VerifyResult:
        """``verify`` of this data directory's log while this process writes it (flushed first, and
        no batch or seal runs meanwhile, so a write in progress is never reported as damage)."""
        self.flush()
        with self._store_lock:
            return verify(self.wh, retention_days=self.config.retention_days)

    @property
    def last_seq(self) -> int:
        return self.store.head.seq

    def close(self) -> None:
        """Write what is queued, seal nothing more than the policy says, stop the thread."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._store_lock:
            self.store.close()
        self._closed = True

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the writer thread ---------------------------------------------------------------------

    def _seal_due(self) -> bool:
        unsealed = self.store.unsealed
        if unsealed >= self.config.checkpoint_records:
            return True
        return unsealed > 0 and time.monotonic() - self._segment_started >= self.config.checkpoint_seconds

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    wait = self.config.checkpoint_seconds - (time.monotonic() - self._segment_started)
                    if self.store.unsealed and wait <= 0:
                        break
                    self._cond.wait(max(wait, 0.05) if self.store.unsealed else None)
                # group commit: records of concurrent requests share one write and sync
                deadline = time.monotonic() + GROUP_COMMIT_SECONDS
                while self._queue and len(self._queue) < MAX_BATCH and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                pending = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                closing = self._closing
            batch = [item if isinstance(item, AuditRecord) else item() for item in pending]
            try:
                self._write(batch)
            except Exception as exc:  # disk full, metadata down: keep the records and retry
                log.error("audit log: writing failed, retrying: %s", type(exc).__name__)
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._error = exc
                    if closing:
                        return
                    self._cond.wait(RETRY_SECONDS)
                continue
            if closing and not self._queue:
                return

    def _write(self, batch: list[AuditRecord]) -> None:
        """Chain and append ``batch``, sealing exactly every ``checkpoint_records`` records."""
        with self._store_lock:
            head = self.store.head
            linked = []
            for rec in batch:
                rec, head = head.link(rec)
                linked.append(rec)
            while linked:
                room = max(self.config.checkpoint_records - self.store.unsealed, 1)
                piece, linked = linked[:room], linked[room:]
                self.store.append(piece)
                with self._cond:
                    self._durable += len(piece)
                    self._error = None
                    self._cond.notify_all()
                if self._seal_due():
                    self._seal_locked()
            if self._seal_due():
                self._seal_locked()

    def _seal_locked(self) -> None:
        self.store.seal()
        self._segment_started = time.monotonic()
