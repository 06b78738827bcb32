"""Server-side maintenance for the admin API: disk status, the heal queue, and scrub/GC runs in
the background of a running server.

The CLI runs scrub and GC in a process of its own (it holds the data directory's lock); a running
server cannot let it, so the admin API starts them here, on a thread of their own, one job at a
time (scrub and GC both walk every chunk; running them together only slows both). ``Jobs``
remembers the state of the current run and the report of the last one of each kind. A scrub is
stopped between two chunks when the server shuts down; a GC run is short and is waited for.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from datawarehouse.engine import diskops
from datawarehouse.engine import gc as gc_mod
from datawarehouse.engine import scrub as scrub_mod
from datawarehouse.errors import Conflict, DwhError, InvalidInput
from datawarehouse.service.warehouse import Warehouse

log = logging.getLogger(__name__)

JobKind = Literal["scrub", "gc"]
JobState = Literal["idle", "running", "succeeded", "failed", "cancelled"]
MAX_SCRUB_RATE = 10 * 1024**4  # bytes/s: anything above is "unlimited" in practice
MAX_GC_GRACE_HOURS = 24 * 365


class JobBusy(Conflict):
    """Another maintenance job is running."""


class _Cancelled(Exception):
    """Raised from the scrub's progress callback to stop it between two chunks."""


@dataclass(frozen=True)
class DiskInfo:
    disk_id: str
    path: str
    state: str
    weight: float
    reachable: bool
    total_size: int
    free_size: int
    shard_count: int
    errors: int
    added_at: datetime


@dataclass(frozen=True)
class HealEntry:
    chunk_id: str  # hex
    reason: str
    queued_at: datetime


@dataclass
class JobStatus:
    """What the admin API reports for one kind of job: the current (or last) run and its report."""

    kind: JobKind
    state: JobState = "idle"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)  # scrub: chunks checked / total
    report: dict[str, Any] | None = None
    error: str | None = None

    def snapshot(self) -> JobStatus:
        return dataclasses.replace(self, options=dict(self.options), progress=dict(self.progress))


@dataclass(frozen=True)
class DataDirFacts:
    datadir_id: str
    disks: int
    active_disks: int
    default_storage_class: str


def datadir_facts(wh: Warehouse) -> DataDirFacts:
    engine = wh.engine
    return DataDirFacts(
        str(engine.datadir.datadir_id),
        len(engine.datadir.disks()),
        len(engine.disks.active()),
        str(engine.default_storage_class()),
    )


def disk_infos(wh: Warehouse) -> list[DiskInfo]:
    """Every disk of the set with its state, capacity, shard count and error count."""
    out = []
    for r in diskops.disk_status(wh.engine):
        rec = r.record
        out.append(
            DiskInfo(
                disk_id=rec.disk_id,
                path=rec.path,
                state=rec.state.value,
                weight=rec.weight,
                reachable=r.reachable,
                total_size=r.total_size,
                free_size=r.free_size,
                shard_count=r.shard_count,
                errors=r.errors,
                added_at=rec.added_at,
            )
        )
    return out


def heal_queue(wh: Warehouse, limit: int = 100) -> tuple[int, list[HealEntry]]:
    """(queue length, the oldest ``limit`` entries). Reads report bad shards here; scrub repairs
    them and empties the queue."""
    with wh.engine.repo.read() as tx:
        items = tx.list_heal(limit=100_000)
    items.sort(key=lambda item: item.queued_at)
    return len(items), [HealEntry(i.chunk_id.hex(), i.reason, i.queued_at) for i in items[:limit]]


class Jobs:
    """Background scrub and GC runs of one server (see the module docstring)."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self._lock = threading.Lock()
        self._status: dict[JobKind, JobStatus] = {"scrub": JobStatus("scrub"), "gc": JobStatus("gc")}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # The last finished scrub's repairs, kept apart so heal status can show them.
        self.last_scrub_finished: JobStatus | None = None

    def status(self, kind: JobKind) -> JobStatus:
        with self._lock:
            return self._status[kind].snapshot()

    def running(self) -> JobKind | None:
        with self._lock:
            for kind, st in self._status.items():
                if st.state == "running":
                    return kind
        return None

    def start_scrub(self, *, deep: bool = False, repair: bool = True, rate: int | None = None) -> JobStatus:
        if rate is not None and not 1 <= rate <= MAX_SCRUB_RATE:
            raise InvalidInput(f"rate: bytes per second, 1..{MAX_SCRUB_RATE}")
        options = {"deep": deep, "repair": repair, "rate": rate}

        def run(status: JobStatus) -> dict[str, Any]:
            def progress(rep: scrub_mod.ScrubReport, total: int) -> None:
                if self._stop.is_set():
                    raise _Cancelled
                with self._lock:
                    status.progress = {"chunks_checked": rep.chunks_checked, "chunks_total": total}

            rep = scrub_mod.scrub(self.wh.engine, deep=deep, repair=repair, rate=rate, progress=progress)
            diskops.persist_disk_errors(self.wh.engine)
            return dataclasses.asdict(rep)

        return self._start("scrub", options, run)

    def start_gc(self, *, grace_hours: float | None = None) -> JobStatus:
        if grace_hours is not None and not 0 <= grace_hours <= MAX_GC_GRACE_HOURS:
            raise InvalidInput(f"grace_hours: 0..{MAX_GC_GRACE_HOURS}")
        grace = timedelta(hours=grace_hours) if grace_hours is not None else None

        def run(status: JobStatus) -> dict[str, Any]:
            return dataclasses.asdict(gc_mod.collect(self.wh.engine, grace))

        return self._start("gc", {"grace_hours": grace_hours}, run)

    def _start(self, kind: JobKind, options: dict[str, Any], run: Any) -> JobStatus:
        with self._lock:
            if self._stop.is_set():
                raise JobBusy("the server is shutting down")
            busy = [k for k, st in self._status.items() if st.state == "running"]
            if busy:
                raise JobBusy(f"a {busy[0]} run is in progress; wait for it to finish")
            status = JobStatus(kind, "running", self.wh.engine.now(), None, options)
            self._status[kind] = status
            self._thread = threading.Thread(target=self._run, args=(status, run), name=f"dwh-{kind}", daemon=True)
            self._thread.start()
            return status.snapshot()

    def _run(self, status: JobStatus, run: Any) -> None:
        began = time.monotonic()
        state: JobState
        report: dict[str, Any] | None = None
        error = None
        try:
            report = run(status)
            state = "succeeded"
        except _Cancelled:
            state, error = "cancelled", "stopped by server shutdown"
        except DwhError as exc:
            state, error = "failed", str(exc)
        except Exception as exc:
            log.exception("%s run failed", status.kind)
            state, error = "failed", f"unexpected {type(exc).__name__} (see the server log)"
        with self._lock:
            status.state = state
            status.finished_at = self.wh.engine.now()
            status.report = report
            status.error = error
            if report is not None:
                report["duration_seconds"] = round(time.monotonic() - began, 3)
            if status.kind == "scrub":
                self.last_scrub_finished = status.snapshot()

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        """Stop a running scrub (between two chunks) and wait for the job thread."""
        self._stop.set()
        self.wait()
