"""A counter of configuration changes, shared by the processes serving one data directory.

A read worker of ``dwh serve --workers`` keeps in memory what nearly every request needs —
buckets, bucket settings, identities and quotas, domain secrets — and must drop it once the
primary changed any of it. SQLite's ``PRAGMA data_version`` says only that *something* was
committed, and under a steady write load that is true before nearly every request: the worker
then reloaded everything each time (its caches were worth nothing while objects were written).

The primary's committer counts instead the commits that may change what workers cache — every
operation but those its caller marked as touching objects only (``Engine.commit(..., announce=
False)``), so an operation forgotten there costs a cache reload, never a stale answer. It adds one
here after the transaction committed and before any of the batch's callers is answered, so a
request that reaches a worker after a change was acknowledged sees the count moved. The counter
is one slot of a ``core.slots.MappedSlots`` file in the server's private run directory.
"""

from __future__ import annotations

from pathlib import Path

from datawarehouse.core.slots import MappedSlots


class ChangeCounter:
    def __init__(self, path: Path) -> None:
        self._slots = MappedSlots(path)
        self._seen = self.value()

    @classmethod
    def create(cls, path: Path) -> ChangeCounter:
        MappedSlots.create(path, [0])
        return cls(path)

    def value(self) -> int:
        return self._slots.get(0)

    def add(self) -> None:
        """The writer (one thread, the committer): a change was committed."""
        self._slots.set(0, self.value() + 1)

    def moved(self) -> bool:
        """A reader: whether the count moved since the last call that answered True (or since
        this object was made)."""
        now = self.value()
        if now == self._seen:
            return False
        self._seen = now
        return True
