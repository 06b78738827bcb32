"""Group commit of metadata operations: journal first, then one database transaction.

A single thread takes every operation waiting in the queue, applies them in one write
transaction (each operation validates before it writes), appends their journal records to the
disks with one fsync per disk, records the journal position in the same transaction and commits.
Callers block until their operation is durable in both places. Should the process die between
the journal append and the database commit, the records are replayed from the journal when the
data directory is opened next (``catch_up``): replay applies each operation idempotently.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from datawarehouse.engine.journal import Journal
from datawarehouse.errors import DwhError, MetadataError
from datawarehouse.meta.repo import MetaRepo, MetaTx

# Applies one operation inside a transaction and returns its result; raises a DwhError (before
# writing anything) when the operation is refused.
Apply = Callable[[MetaTx], Any]


@dataclass
class _Item:
    apply: Apply
    record: Callable[[], tuple[int, bytes]]  # journal record (type, payload), built after apply
    future: Future[Any]


class Committer:
    def __init__(self, repo: MetaRepo, journal: Journal, max_batch: int = 256) -> None:
        self._repo = repo
        self._journal = journal
        self._max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dwh-committer", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, apply: Apply, record: Callable[[], tuple[int, bytes]]) -> Any:
        """Apply and journal one operation; block until durable; return what ``apply`` returned."""
        if self._closed:
            raise MetadataError("the data directory is closed")
        future: Future[Any] = Future()
        self._queue.put(_Item(apply, record, future))
        return future.result()

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

    def _commit(self, batch: list[_Item]) -> None:
        """Commit a batch; an operation that fails is dropped and the rest committed without it."""
        while batch:
            results: list[Any] = []
            failed: _Item | None = None
            failure: BaseException | None = None
            try:
                with self._repo.transaction() as tx:
                    records = []
                    for item in batch:
                        try:
                            results.append(item.apply(tx))
                            records.append(item.record())
                        except BaseException as exc:
                            failed, failure = item, exc
                            raise
                    positions = self._journal.append(records)
                    segment, offset = positions[-1]
                    tx.set_journal_position(segment, offset)
            except BaseException as exc:
                if failed is None:
                    # The journal or the database failed: every operation of the batch fails.
                    err = exc if isinstance(exc, DwhError) else MetadataError(f"commit failed: {exc!r}")
                    for item in batch:
                        item.future.set_exception(err)
                    return
                assert failure is not None
                failed.future.set_exception(failure)
                batch = [item for item in batch if item is not failed]
                continue
            for item, result in zip(batch, results, strict=True):
                item.future.set_result(result)
            return
