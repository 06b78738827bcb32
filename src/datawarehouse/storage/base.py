"""The ``BlobStore`` protocol that every store implementation (local directory, memory, wrappers)
satisfies; the contract suite in ``tests/contracts`` runs against each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from datawarehouse.errors import UnsafePath, WouldBlock

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}"
# One pattern for the whole key (1 to 16 segments): every shard write checks its key, so one
# regex call instead of a split and a call per segment.
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,15}}")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``UnsafePath``.

    Segments are ``[A-Za-z0-9_][A-Za-z0-9._-]*`` (so no ``..``, no hidden-file tricks, no
    absolute paths, no backslashes, no NUL); at most 16 segments, 1024 characters.
    """
    if not key or len(key) > 1024:
        raise UnsafePath("blob key: must be 1..1024 characters")
    if _KEY.fullmatch(key) is None:
        raise UnsafePath("blob key: invalid segment (allowed: letters, digits, '.', '_', '-')")
    return key


@dataclass(frozen=True)
class BlobStat:
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class Capacity:
    total_size: int
    free_size: int


class AppendFile(Protocol):
    """An open append-only blob (journal segments). ``write`` buffers; ``sync`` makes durable."""

    def write(self, data: bytes) -> int:
        """Append ``data``; return the offset just after it."""
        ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        """Atomically write a blob: temp file, write, fsync, rename over ``key``.

        The parent directory is fsynced now, or (``defer_dir_sync``) at the next ``flush`` — the
        caller must ``flush`` before anything durable refers to the blob.
        """
        ...

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        """Write a blob that becomes visible, atomically and durably, at the next ``flush``.

        The blob is ``prefix + data``; passing a header as ``prefix`` spares the caller a joined
        copy of a large payload. ``cache=False`` hints that the blob is unlikely to be read soon (a parity shard is read
        only to repair): a store may then write it around the page cache. Stores may ignore it.

        For the bulk writes of a chunk's shards: the data goes to a temp file now without an
        fsync of its own; ``flush`` then makes every staged file durable together (one
        filesystem sync), renames each into place, and makes the renames durable. So a blob at
        its final name is always complete, as with ``put``, while a batch of blobs costs two
        filesystem syncs instead of two fsyncs per blob. Not readable before that ``flush``.
        """
        ...

    def flush(self) -> None:
        """Complete every staged blob and fsync every directory touched by a deferred put since
        the last flush (including staged blobs another thread wrote: flushes are serialised, so a
        flush returns only once everything staged before it started is durable)."""
        ...

    def get(self, key: str) -> bytes:
        """Whole blob, or ``BlobNotFound``."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset`` (short at the end of the blob)."""
        ...

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        """Read a blob in two parts: its first ``head`` bytes are returned, the rest is written
        into ``dest``. ``None`` (``dest`` untouched or partly written) when the blob is not
        ``head + len(dest)`` bytes long; ``BlobNotFound`` when it is missing.

        ``cached_only``: never wait for a disk — ``WouldBlock`` when any byte is not in memory
        (the page cache) or the store cannot tell; for a caller that must not stall, such as
        an event loop.

        For readers that place several blobs side by side in one buffer (a chunk's data shards):
        a store that can (``PackStore``: one ``preadv``) reads straight into ``dest``, sparing the
        copy a join of whole blobs would cost."""
        ...

    def delete(self, key: str) -> bool:
        """Remove a blob; ``False`` if it was not there."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix`` (a plain string prefix, not only whole segments), in no
        particular order. Temporary files of unfinished puts are never listed."""
        ...

    def stat(self, key: str) -> BlobStat: ...

    def open_append(self, key: str) -> AppendFile:
        """Open (creating if needed) a blob for appending; creation is made durable at once."""
        ...

    def capacity(self) -> Capacity: ...

    def describe(self) -> str:
        """A human label (a path) for messages; never a secret."""
        ...


def get_into_via_get(
    store: BlobStore, key: str, head: int, dest: memoryview, *, cached_only: bool = False
) -> bytes | None:
    """``BlobStore.get_into`` for stores without a scatter read: ``get``, then one copy. Such a
    store cannot promise a read from memory: ``cached_only`` raises ``WouldBlock``."""
    if cached_only:
        raise WouldBlock(f"get {key!r} on {store.describe()}: this store cannot read from memory only")
    data = store.get(key)
    if len(data) != head + dest.nbytes:
        return None
    dest[:] = memoryview(data)[head:]
    return data[:head]
