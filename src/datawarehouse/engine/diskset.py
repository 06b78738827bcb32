"""The disks of a data directory as blob stores, with their state and error counts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping

from datawarehouse.errors import NoSuchDisk
from datawarehouse.ids import DiskId
from datawarehouse.records import DiskRecord, DiskState
from datawarehouse.storage.base import BlobStore


class DiskSet:
    def __init__(self, records: list[DiskRecord], open_store: Callable[[DiskRecord], BlobStore]) -> None:
        self._open_store = open_store
        self._lock = threading.Lock()
        self._records: dict[DiskId, DiskRecord] = {}
        self._stores: dict[DiskId, BlobStore] = {}
        self.errors: Counter[DiskId] = Counter()
        self.update(records)

    def update(self, records: list[DiskRecord]) -> None:
        with self._lock:
            self._records = {r.disk_id: r for r in records if r.state != DiskState.REMOVED}
            for disk_id, rec in self._records.items():
                if disk_id not in self._stores:
                    self._stores[disk_id] = self._open_store(rec)
            gone = [self._stores.pop(d) for d in list(self._stores) if d not in self._records]
        for store in gone:
            _close_store(store)

    def close(self) -> None:
        """Close every store that holds resources (a pack store seals its active pack)."""
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            _close_store(store)

    def records(self) -> list[DiskRecord]:
        with self._lock:
            return list(self._records.values())

    def active(self) -> list[DiskRecord]:
        return [r for r in self.records() if r.state == DiskState.ACTIVE]

    def stores(self) -> Mapping[DiskId, BlobStore]:
        """Every disk that can still be read (active and draining)."""
        with self._lock:
            return dict(self._stores)

    def active_stores(self) -> Mapping[DiskId, BlobStore]:
        with self._lock:
            return {d: s for d, s in self._stores.items() if self._records[d].state == DiskState.ACTIVE}

    def store(self, disk_id: DiskId) -> BlobStore:
        with self._lock:
            store = self._stores.get(disk_id)
        if store is None:
            raise NoSuchDisk(f"disk {disk_id} is not part of the disk set")
        return store

    def has(self, disk_id: DiskId) -> bool:
        with self._lock:
            return disk_id in self._stores

    def record_error(self, disk_id: DiskId) -> None:
        with self._lock:
            self.errors[disk_id] += 1


def _close_store(store: BlobStore) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()
