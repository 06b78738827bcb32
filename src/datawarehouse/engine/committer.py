"""Group commit of metadata operations: journal first, then one database transaction.

A single thread takes every operation waiting in the queue, applies them in one write
transaction (each operation validates before it writes), appends their journal records to the
disks with one fsync per disk, records the journal position in the same transaction and commits.
Callers block until their operation is durable in both places. Should the process die between
the journal append and the database commit, the records are replayed from the journal when the
data directory is opened next (``catch_up``): replay applies each operation idempotently.

The thread does as little per operation as it can, because it is the one serial stage:

* A journal record that does not depend on the outcome of ``apply`` is built and sealed on the
  caller's thread (``submit`` takes the record itself instead of a function).
* Operations of one kind can be applied together (``submit(..., batch=, payload=)``): a run of
  consecutive operations with the same ``BatchApply`` is handed to it at once, so that it can
  answer its look-ups with one query and write all rows with one statement. It returns, per
  operation, a result, ``Refused(error)`` (validated and refused before anything was written for
  it) or ``APPLY_ALONE`` (the committer then calls that operation's own ``apply``, after the
  run). Operations it applies must therefore commute with those of the run it leaves alone (they
  touch different rows); everything else keeps the queue order, which is the journal's order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from datawarehouse.engine.journal import Journal
from datawarehouse.errors import DwhError, MetadataError, StorageError
from datawarehouse.ids import DiskId
from datawarehouse.meta.repo import MetaRepo, MetaTx

# Applies one operation inside a transaction and returns its result; raises a DwhError (before
# writing anything) when the operation is refused.
Apply = Callable[[MetaTx], Any]
Record = tuple[int, bytes]  # journal record: (type, payload)
# Applies a run of operations of one kind; one outcome per payload, in order (see module doc).
BatchApply = Callable[[MetaTx, Sequence[Any]], Sequence[Any]]


@dataclass(frozen=True)
class Refused:
    """Outcome of a batched operation that was refused before it wrote anything."""

    error: BaseException


class _ApplyAlone:
    def __repr__(self) -> str:
        return "APPLY_ALONE"


APPLY_ALONE: Final = _ApplyAlone()


@dataclass
class _Item:
    apply: Apply
    record: Record | Callable[[], Record]  # a function is called after apply (its record may depend on it)
    future: Future[Any]
    batch: BatchApply | None = None
    payload: Any = None
    flush: frozenset[DiskId] = frozenset()
    announce: bool = True


class _ItemFailed(Exception):
    def __init__(self, item: _Item, error: BaseException) -> None:
        super().__init__(repr(error))
        self.item = item
        self.error = error


class Committer:
    def __init__(
        self,
        repo: MetaRepo,
        journal: Journal,
        max_batch: int = 256,
        *,
        flush: Callable[[frozenset[DiskId]], None] | None = None,
    ) -> None:
        self._repo = repo
        self._journal = journal
        self._max_batch = max_batch
        self._flush = flush
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dwh-committer", daemon=True)
        self._closed = False
        # Called after a transaction that committed an operation enqueued with ``announce``, before
        # any operation of its batch is answered (``engine.changes``).
        self.on_announced: Callable[[], None] | None = None
        self._thread.start()

    def submit(
        self,
        apply: Apply,
        record: Record | Callable[[], Record],
        *,
        batch: BatchApply | None = None,
        payload: Any = None,
    ) -> Any:
        """Apply and journal one operation; block until durable; return what ``apply`` (or
        ``batch`` for this ``payload``) returned. ``record`` is the journal record, or a function
        that builds it after ``apply`` ran."""
        return self.enqueue(apply, record, batch=batch, payload=payload).result()

    def enqueue(
        self,
        apply: Apply,
        record: Record | Callable[[], Record],
        *,
        batch: BatchApply | None = None,
        payload: Any = None,
        flush: frozenset[DiskId] = frozenset(),
        announce: bool = True,
    ) -> Future[Any]:
        """``submit`` without blocking: the future is resolved (on the committer's thread) once
        the operation is durable, or refused. An event loop awaits it instead of parking a thread.
        ``flush``: disks holding staged shards the operation refers to; they are made durable
        before its journal record is written (one flush per disk for the whole batch).
        ``announce``: the operation may change what other processes cache (``on_announced``)."""
        if self._closed:
            raise MetadataError("the data directory is closed")
        if flush and self._flush is None:
            raise MetadataError("this committer cannot flush disks")
        future: Future[Any] = Future()
        self._queue.put(_Item(apply, record, future, batch, payload, flush, announce))
        return future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _flush_shards(self, batch: list[_Item]) -> list[_Item]:
        """Make the staged shards of the batch durable, every disk once, before anything refers
        to them; if that fails, every operation with shards fails (nothing of it was committed:
        its client may retry) and the rest go on."""
        disks = frozenset().union(*(item.flush for item in batch))
        if not disks:
            return batch
        assert self._flush is not None
        try:
            self._flush(disks)
        except BaseException as exc:
            err = exc if isinstance(exc, DwhError) else StorageError(f"flushing shards failed: {exc!r}")
            for item in batch:
                if item.flush:
                    item.future.set_exception(err)
            return [item for item in batch if not item.flush]
        return batch

    def _commit(self, batch: list[_Item]) -> None:
        """Commit a batch; an operation that fails is dropped and the rest committed without it."""
        batch = self._flush_shards(batch)
        grouped = True
        while batch:
            try:
                with self._repo.transaction() as tx:
                    outcomes = self._apply(tx, batch, grouped)
                    records = [
                        item.record if isinstance(item.record, tuple) else item.record()
                        for item, out in zip(batch, outcomes, strict=True)
                        if not isinstance(out, Refused)
                    ]
                    if records:
                        positions = self._journal.append(records)
                        segment, offset = positions[-1]
                        tx.set_journal_position(segment, offset)
            except _ItemFailed as failed:
                # Rolled back: commit the others without it.
                failed.item.future.set_exception(failed.error)
                batch = [item for item in batch if item is not failed.item]
                continue
            except BaseException as exc:
                if grouped and any(item.batch is not None for item in batch):
                    # A batch function failed as a whole: retry one operation at a time, so that
                    # the failure is charged to the operation that caused it.
                    grouped = False
                    continue
                # The journal or the database failed: every operation of the batch fails.
                err = exc if isinstance(exc, DwhError) else MetadataError(f"commit failed: {exc!r}")
                for item in batch:
                    item.future.set_exception(err)
                return
            if self.on_announced is not None and any(
                item.announce and not isinstance(out, Refused) for item, out in zip(batch, outcomes, strict=True)
            ):
                self.on_announced()
            for item, out in zip(batch, outcomes, strict=True):
                if isinstance(out, Refused):
                    item.future.set_exception(out.error)
                else:
                    item.future.set_result(out)
            return

    @staticmethod
    def _apply(tx: MetaTx, batch: list[_Item], grouped: bool) -> list[Any]:
        """Apply every operation of the batch in the transaction, in queue order; one outcome each.

        A run handed to a batch function is finished (including the operations it leaves alone)
        before the next operation: only operations within one run may be reordered."""
        outcomes: list[Any] = [APPLY_ALONE] * len(batch)
        i = 0
        while i < len(batch):
            fn = batch[i].batch if grouped else None
            j = i + 1
            if fn is not None:
                while j < len(batch) and batch[j].batch is fn:
                    j += 1
                results = fn(tx, [item.payload for item in batch[i:j]])
                if len(results) != j - i:
                    raise MetadataError(f"batch apply returned {len(results)} outcomes for {j - i} operations")
                outcomes[i:j] = results
            for k in range(i, j):
                if outcomes[k] is APPLY_ALONE:
                    try:
                        outcomes[k] = batch[k].apply(tx)
                    except BaseException as exc:
                        raise _ItemFailed(batch[k], exc) from exc
            i = j
        return outcomes
