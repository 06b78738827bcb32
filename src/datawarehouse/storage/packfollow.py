"""``PackFollower``: a read-only view of a disk directory whose packs another process writes.

Why: serving reads from more than one process (the read workers of ``docs/status.md``) needs
every process to find shards, while one process (the primary, through its ``PackStore``) writes
them and keeps its key directory in its own memory. A follower builds its own key directory from
the same files — the pack indexes, and a scan of the packs not sealed yet — and catches up when
asked for a key it does not know: it loads the packs that appeared and scans the unsealed ones
from where it stopped. Scanning stops at the first record that does not verify (a write still in
progress, or torn), and the next refresh starts there again.

Order: the key directory reflects the records in the order a replay of the packs sees them
(pack id, then offset). Ranges of a pack are reserved in that order but written concurrently,
so a refresh can see an older pack's record after a newer pack's; each key therefore keeps the
position of the record that decided it, and only a later position replaces it. A pack that
vanished (a compaction copied its live records into the active pack first, then deleted it)
makes the next refresh start over from the files as they are.

The follower never writes, truncates, seals or deletes anything, and reports nothing: finding
and healing damage is the writer's job. Descriptors stay open once used, so a pack deleted by a
compaction is still readable through them until the next refresh drops it.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from datawarehouse.errors import StorageError, WouldBlock
from datawarehouse.storage import packformat as fmt
from datawarehouse.storage.base import AppendFile, BlobStat, Capacity, validate_key
from datawarehouse.storage.localdisk import LocalDiskStore, pread_full, preadv_full
from datawarehouse.storage.packstore import PACK_DIR, PackedReads, load_pack, shared_read_fd

__all__ = ["PackFollower"]


@dataclass
class _Followed:
    path: str
    version: int
    end: int  # records before this offset are applied
    sealed: bool
    fd: int | None = None
    readers: int = 0  # reads using ``fd`` now: it is closed only once none is left
    dropped: bool = False  # no longer in the follower (its file was removed, or the follower closed)


class PackFollower(PackedReads):
    """A read-only ``BlobStore`` over a disk directory written by another process's
    ``PackStore``. Thread-safe. Keys outside ``packed_prefix`` are read as plain files."""

    def __init__(self, root: str | os.PathLike[str], *, packed_prefix: str = "shards/") -> None:
        self._legacy = LocalDiskStore(root)
        self._label = os.fspath(root)
        self._prefix = packed_prefix
        self._dir = os.path.join(str(self._legacy.root), PACK_DIR)
        self._lock = threading.Lock()  # the dictionaries below
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._packs: dict[int, _Followed] = {}
        self._where: dict[str, tuple[int, int, int, int]] = {}  # key -> (pack, offset, length, timestamp)
        self._gone: dict[str, tuple[int, int]] = {}  # key -> position of its tombstone
        self.refreshes = 0  # completed refreshes
        # A reader that misses may skip its own refresh only if one that *began* after its lookup
        # has completed: a refresh that began earlier can have listed the packs before the write
        # the reader is looking for was acknowledged, and finish after the miss without it.
        self._begun = 0  # refreshes begun (under ``_refresh_lock``)
        self._fresh_from = 0  # the begin number of the last refresh that completed

    # --- introspection ---------------------------------------------------------------------------

    @property
    def root(self) -> os.PathLike[str]:
        return self._legacy.root

    def describe(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"PackFollower({self._label!r})"

    # --- catching up -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with the packs as they are now (see the module doc)."""
        with self._refresh_lock:
            self._refresh_locked()

    def _refresh_after(self, ticket: int) -> None:
        """Catch up unless a refresh that began after ``ticket`` (``_begun`` when the caller
        looked) has completed: everything acknowledged before the caller looked is then known."""
        with self._refresh_lock:
            if self._fresh_from <= ticket:
                self._refresh_locked()

    def _refresh_locked(self) -> None:
        self._begun += 1
        begun = self._begun
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            names = []
        except OSError as exc:
            raise StorageError(f"refresh {self._label}: {exc.strerror}") from exc
        ids = list(fmt.iter_pack_ids(names))
        present = set(ids)
        if any(pack_id not in present for pack_id in self._packs):
            self._start_over()
        for pack_id in ids:
            followed = self._packs.get(pack_id)
            if followed is None or not followed.sealed:
                self._catch_up(pack_id, followed)
        self.refreshes += 1
        self._fresh_from = begun

    def _start_over(self) -> None:
        """Forget every pack (closing its descriptor once no read uses it, so that the space of
        a removed pack is not held) and every location."""
        with self._lock:
            old = list(self._packs.values())
            self._packs, self._where, self._gone = {}, {}, {}
            for followed in old:
                followed.dropped = True
                self._close_if_unused(followed)

    @staticmethod
    def _close_if_unused(followed: _Followed) -> None:
        if followed.dropped and followed.readers == 0 and followed.fd is not None:
            with contextlib.suppress(OSError):
                os.close(followed.fd)
            followed.fd = None

    def _catch_up(self, pack_id: int, followed: _Followed | None) -> None:
        """Apply the records of one pack not applied yet: from its index once it is sealed,
        else by scanning from where the last scan stopped."""
        try:
            loaded = load_pack(self._dir, pack_id, repair=False, start=None if followed is None else followed.end)
        except OSError as exc:
            raise StorageError(f"refresh {self._label}, pack {pack_id:016x}: {exc.strerror}") from exc
        if loaded is None:
            return  # being created, removed since the listing (its live records are in a later pack), or unreadable
        if followed is None:
            followed = _Followed(os.path.join(self._dir, fmt.pack_name(pack_id)), loaded.version, 0, sealed=False)
        with self._lock:
            for rec in loaded.records:
                self._apply(pack_id, rec)
            followed.end, followed.sealed = loaded.end, loaded.indexed
            self._packs[pack_id] = followed

    def _apply(self, pack_id: int, rec: fmt.Record) -> None:
        """Apply one record unless a later position already decided its key (lock held)."""
        key = rec.key
        position = (pack_id, rec.offset)
        put = self._where.get(key)
        decided = (put[0], put[1]) if put is not None else self._gone.get(key)
        if decided is not None and decided >= position:
            return
        if rec.kind == fmt.KIND_PUT:
            self._where[key] = (pack_id, rec.offset, rec.length, rec.timestamp_ns)
            self._gone.pop(key, None)
        else:
            self._where.pop(key, None)
            self._gone[key] = position

    # --- reads -----------------------------------------------------------------------------------

    def _packed(self, key: str) -> bool:
        return key.startswith(self._prefix)

    def _locate(self, key: str) -> tuple[int, int, int, int] | None:
        """Where ``key``'s record is, refreshing once if it is not known yet."""
        ticket = self._begun
        with self._lock:
            hit = self._where.get(key)
        if hit is None:
            self._refresh_after(ticket)
            with self._lock:
                hit = self._where.get(key)
        return hit

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        validate_key(key)
        if not self._packed(key):
            return self._legacy.get_into(key, head, dest, cached_only=cached_only)
        if cached_only:
            return self._get_into_located(key, head, dest)
        for attempt in (0, 1):
            hit = self._locate(key)
            if hit is None:
                break
            pack_id, offset, length, _ = hit
            if length != head + dest.nbytes:
                return None
            got = self._attempt(functools.partial(preadv_full, head=head, dest=dest, offset=offset), pack_id)
            if got is not None:
                return got
            if attempt == 0:
                self.refresh()  # its pack vanished or is shorter: the record moved
        return self._legacy.get_into(key, head, dest)

    def _get_into_located(self, key: str, head: int, dest: memoryview) -> bytes | None:
        """``get_into`` from memory only: a key already located, bytes in the page cache.
        Catching up (a key not known yet, a pack that moved) reads the packs' files, so it is
        left to an ordinary read: ``WouldBlock``."""
        with self._lock:
            hit = self._where.get(key)
        if hit is None:
            raise WouldBlock(f"get {key!r} on {self._label}: not located yet")
        pack_id, offset, length, _ = hit
        if length != head + dest.nbytes:
            return None
        read = functools.partial(preadv_full, head=head, dest=dest, offset=offset, cached_only=True)
        got = self._attempt(read, pack_id)
        if got is None:
            raise WouldBlock(f"get {key!r} on {self._label}: its pack moved")
        return got

    def _read_packed(self, key: str, offset: int, length: int | None) -> bytes | None:
        """Bytes ``[offset, offset + length)`` (``None``: to the end) of a packed key, short at
        its end; ``None`` when no pack holds the key (the caller reads a plain file)."""
        if not self._packed(key):
            return None
        for attempt in (0, 1):
            hit = self._locate(key)
            if hit is None:
                return None
            pack_id, at, size, _ = hit
            n = max(0, size - offset if length is None else min(length, size - offset))
            if n == 0:
                return b""
            data = self._attempt(functools.partial(_pread_exactly, length=n, offset=at + offset), pack_id)
            if data is not None:
                return data
            if attempt == 0:
                self.refresh()
        raise StorageError(f"get {key!r} on {self._label}: its pack is shorter than its records say")

    def _attempt(self, read: Callable[[int], bytes | None], pack_id: int) -> bytes | None:
        """``read(fd)`` of a pack, its descriptor held open meanwhile; ``None`` when the pack is
        gone from this follower or from the disk."""
        with self._lock:
            followed = self._packs.get(pack_id)
            if followed is None:
                return None
            followed.readers += 1
        try:
            return read(shared_read_fd(followed, self._lock))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"read pack {pack_id:016x} on {self._label}: {exc.strerror}") from exc
        finally:
            with self._lock:
                followed.readers -= 1
                self._close_if_unused(followed)

    def stat(self, key: str) -> BlobStat:
        validate_key(key)
        hit = self._locate(key) if self._packed(key) else None
        if hit is not None:
            return BlobStat(size=hit[2], modified_at=datetime.fromtimestamp(hit[3] / 1e9, UTC))
        return self._legacy.stat(key)

    def _packed_keys(self, prefix: str) -> builtins.list[str]:
        self.refresh()
        with self._lock:
            return [k for k in self._where if k.startswith(prefix)]

    def capacity(self) -> Capacity:
        return self._legacy.capacity()

    # --- writes: refused -------------------------------------------------------------------------

    def _refuse(self, op: str, key: str) -> StorageError:
        return StorageError(f"{op} {key!r} on {self._label}: a follower is read-only (the primary writes)")

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        raise self._refuse("put", key)

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        raise self._refuse("stage", key)

    def delete(self, key: str) -> bool:
        raise self._refuse("delete", key)

    def open_append(self, key: str) -> AppendFile:
        raise self._refuse("append to", key)

    def flush(self) -> None:
        """Nothing is ever staged here, so there is nothing to make durable."""

    def close(self) -> None:
        self._start_over()


def _pread_exactly(fd: int, *, length: int, offset: int) -> bytes | None:
    data = pread_full(fd, length, offset)
    return data if len(data) == length else None
