"""``MemoryStore``: the ``BlobStore`` contract in a dict, for tests.

It validates keys exactly like the disk store so tests catch bad keys without touching a disk,
takes an injected clock so GC grace periods can be tested without sleeping, and can be given a
capacity to exercise "disk full" paths.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from datawarehouse.clock import Clock, SystemClock
from datawarehouse.errors import BlobNotFound, StorageError
from datawarehouse.storage.base import BlobStat, Capacity, get_into_via_get, validate_key

if TYPE_CHECKING:
    from datawarehouse.storage.base import AppendFile, BlobStore

__all__ = ["MemoryAppendFile", "MemoryStore"]


@dataclass
class _Blob:
    # bytes for put blobs (immutable, shared without copying); bytearray for append blobs.
    data: bytes | bytearray
    modified_at: datetime


class MemoryStore:
    """An in-memory, thread-safe ``BlobStore``.

    ``capacity_bytes`` (optional) makes puts and appends that would exceed it fail with a
    "disk full" ``StorageError``, like ENOSPC on a real disk.
    """

    def __init__(self, *, clock: Clock | None = None, capacity_bytes: int | None = None, label: str = "memory") -> None:
        self._clock: Clock = clock or SystemClock()
        self._capacity = capacity_bytes
        self._label = label
        self._lock = threading.Lock()
        self._blobs: dict[str, _Blob] = {}
        self._used = 0

    def describe(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"MemoryStore({self._label!r}, {len(self._blobs)} blobs)"

    def __len__(self) -> int:
        return len(self._blobs)

    @property
    def used_size(self) -> int:
        return self._used

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        validate_key(key)
        blob = bytes(data)  # a private copy: the caller may reuse its buffer
        now = self._clock.now()
        with self._lock:
            old = self._blobs.get(key)
            old_size = len(old.data) if old is not None else 0
            self._reserve(len(blob) - old_size, "put", key)
            self._blobs[key] = _Blob(blob, now)

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        """Memory has nothing to make durable: visible at once (a stronger promise than staging)."""
        self.put(key, prefix + bytes(data) if prefix else data)

    def flush(self) -> None:
        """Nothing to make durable in memory."""

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                raise BlobNotFound(f"blob {key!r} not found on {self._label}")
            return bytes(blob.data)

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        return get_into_via_get(self, key, head, dest)  # in memory: ``cached_only`` always holds

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"get_range {key!r}: negative offset or length ({offset}, {length})")
        validate_key(key)
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                raise BlobNotFound(f"blob {key!r} not found on {self._label}")
            return bytes(blob.data[offset : offset + length])

    def delete(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            blob = self._blobs.pop(key, None)
            if blob is None:
                return False
            self._used -= len(blob.data)
            return True

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = [k for k in self._blobs if k.startswith(prefix)]
        return iter(keys)

    def stat(self, key: str) -> BlobStat:
        validate_key(key)
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                raise BlobNotFound(f"blob {key!r} not found on {self._label}")
            return BlobStat(size=len(blob.data), modified_at=blob.modified_at)

    def open_append(self, key: str) -> MemoryAppendFile:
        validate_key(key)
        now = self._clock.now()
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                blob = _Blob(bytearray(), now)
                self._blobs[key] = blob
            elif isinstance(blob.data, bytes):
                # Switch to a growable buffer; the blob object stays the same, so an append
                # handle keeps writing to "its" inode even if the key is later replaced/deleted.
                blob.data = bytearray(blob.data)
        return MemoryAppendFile(self, blob, key)

    def capacity(self) -> Capacity:
        total = self._capacity if self._capacity is not None else 1 << 50
        return Capacity(total_size=total, free_size=max(0, total - self._used))

    # --- test helpers ----------------------------------------------------------------------------

    def set_modified_at(self, key: str, when: datetime) -> None:
        """Backdate a blob (GC grace tests), like ``os.utime`` on a disk store."""
        with self._lock:
            blob = self._blobs.get(key)
            if blob is None:
                raise BlobNotFound(f"blob {key!r} not found on {self._label}")
            blob.modified_at = when

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return builtins.list(self._blobs)

    # --- internals -------------------------------------------------------------------------------

    def _reserve(self, delta: int, op: str, key: str) -> None:
        """Account ``delta`` bytes; caller holds the lock."""
        if self._capacity is not None and delta > 0 and self._used + delta > self._capacity:
            raise StorageError(f"{op} {key!r} on {self._label}: disk full (ENOSPC)")
        self._used += delta

    def _append(self, blob: _Blob, data: bytes, key: str) -> int:
        with self._lock:
            attached = self._blobs.get(key) is blob
            if attached:
                self._reserve(len(data), "append", key)
            assert isinstance(blob.data, bytearray)
            blob.data += data
            blob.modified_at = self._clock.now()
            return len(blob.data)


class MemoryAppendFile:
    """Append handle on a ``MemoryStore`` blob. Writes are immediately visible to ``get``."""

    def __init__(self, store: MemoryStore, blob: _Blob, key: str) -> None:
        self._store = store
        self._blob = blob
        self._key = key
        self._closed = False
        self._lock = threading.Lock()

    @property
    def offset(self) -> int:
        return len(self._blob.data)

    def write(self, data: bytes) -> int:
        with self._lock:
            if self._closed:
                raise StorageError(f"append file {self._key!r}: already closed")
            return self._store._append(self._blob, bytes(data), self._key)

    def sync(self) -> None:
        if self._closed:
            raise StorageError(f"append file {self._key!r}: already closed")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemoryAppendFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if TYPE_CHECKING:
    _store_check: BlobStore = MemoryStore()
    _append_check: AppendFile = MemoryAppendFile(MemoryStore(), _Blob(bytearray(), datetime.now()), "")
