"""``PackStore``: shards appended to a few pack files per disk (on-disk format version 3).

Why: one file per shard (v1) made every 1 MiB chunk cost six file creations, six renames and
the inode work behind them. Here a shard is one record appended to the disk's active pack (one
``pwritev`` of header+key and payload), found again through an in-memory key directory, and read
with ``pread`` on a cached descriptor. Keys outside ``packed_prefix`` (journal segments, disk
identity files) and shard files left by format version 1 stay plain files of an inner
``LocalDiskStore`` that every operation falls back to.

With ``direct_io`` (the engine's ``direct_parity`` setting), blobs staged with ``cache=False``
(parity shards: read only to repair) bypass the page cache (``O_DIRECT``) where the filesystem
allows it: the record is copied once into a page-aligned buffer and sent to the device, instead
of into page-cache pages that would hold bytes nobody reads. The engine leaves it off by default:
the direct writes and the buffered ones of the same pack queue on one inode lock (the pack's
extents are preallocated, so ext4 takes it exclusively for a direct write), and a random 512 MiB
PUT ran 20-25 % faster with every shard buffered. Data shards are always written through the
page cache, so a read soon after a write (most reads of new data) is served from memory: written
direct, a 1 GiB object read back at half the speed, from the device. Version 3 aligns every
record to ``ALIGN`` so either kind of write can go anywhere. Reads are buffered, with readahead:
a page readahead caches from a range still being written is dropped by the kernel when that
direct write completes, and a record is read only after its flush anyway. Where ``O_DIRECT`` is
refused (some FUSE and older tmpfs) every record goes through the page cache.

Durability: ``stage`` reserves a byte range of the active pack under the lock and writes it
outside the lock; ``flush`` waits until every range reserved before it is written, fdatasyncs
the packs written since the last sync (one sync serves every flush that was waiting when it
started: group commit), seals full packs (writes their index) and only then publishes the staged
records. So everything ever published lies before any torn write of its pack, and ``open`` can
truncate an unsealed pack at its first bad record without losing an acknowledged blob.

Ordering: every record gets a sequence number when its range is reserved; that order is the
pack/offset order a reopen replays, and the key directory never lets an older record replace a
newer one, so memory and a replay after a crash always agree. Tombstones record the oldest pack
that may hold a put of their key and are carried forward by compaction while any pack in that
range is left (see ``docs/invariants.md``).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import mmap
import os
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

from datawarehouse.errors import DwhError, InvalidInput, StorageError, WouldBlock
from datawarehouse.storage import packformat as fmt
from datawarehouse.storage import prealloc
from datawarehouse.storage.base import AppendFile, BlobStat, Capacity, validate_key
from datawarehouse.storage.localdisk import LocalDiskStore, pread_full, preadv_full

if TYPE_CHECKING:
    from datawarehouse.storage.base import BlobStore

__all__ = [
    "PACK_DIR",
    "CompactionReport",
    "LoadedPack",
    "PackStore",
    "PackedLocation",
    "PackedReads",
    "load_pack",
    "scan_locations",
    "shared_read_fd",
]

log = logging.getLogger(__name__)

PACK_DIR = ".packs"
"""Directory (relative to the root) of pack files and indexes; a dot segment is never a key."""

PREALLOC_STEP = 32 * 1024 * 1024
"""Bytes reserved ahead of the active pack's end at a time (``storage/prealloc.py``)."""

DIRECT_WINDOW = 4 * 1024 * 1024
"""Largest single ``O_DIRECT`` write; a longer record is written in windows of this size (the
page-aligned buffer each writing thread keeps grows to at most this)."""

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NEW_PACK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW
_RW_FLAGS = os.O_RDWR | _O_CLOEXEC | _O_NOFOLLOW
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_DIRECT_FLAGS = os.O_WRONLY | _O_DIRECT | _O_CLOEXEC | _O_NOFOLLOW
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

_ACTIVE, _ROTATING, _SEALED = "active", "rotating", "sealed"


@dataclass(frozen=True)
class PackedLocation:
    """Where a blob's bytes are: ``length`` bytes at ``offset`` of ``path`` (a pack file, or for
    a blob still kept as a plain file, that file at offset 0)."""

    path: Path
    offset: int
    length: int


@dataclass(frozen=True)
class CompactionReport:
    packs_compacted: int = 0
    bytes_reclaimed: int = 0
    records_copied: int = 0
    tombstones_dropped: int = 0


class _Put(NamedTuple):
    pack: int
    offset: int  # payload offset in the pack
    length: int
    timestamp_ns: int
    seq: int
    oldest: int  # oldest pack that may still hold a put record of this key
    size: int  # whole record size (live-byte accounting)


class _Tomb(NamedTuple):
    pack: int
    offset: int
    seq: int
    target: int  # oldest pack that may still hold a put record of this key
    size: int
    timestamp_ns: int


_PACK_FIELD = struct.Struct("<q")  # every entry's first field is its pack id
_E = TypeVar("_E", _Put, _Tomb)


class _PackedDirectory(Generic[_E]):
    """Part of the key directory, ``key -> entry`` (a ``_Put`` or a ``_Tomb``), each entry kept as
    its fields packed into one ``bytes`` (8 bytes a field: an 89-byte object for a put) rather
    than as a named tuple of ints (~256 bytes with the int objects). The directory holds an entry
    for every shard on the disk (six per MiB of unique data at EC(4,2)), which makes it most of a
    data directory's memory: with the key string, 455 -> 277 bytes per shard (tracemalloc). An
    entry is decoded on each lookup (one ``struct.unpack``, well under a microsecond; a read does
    one per shard), so entries compare by value: a lookup never returns the same object twice."""

    __slots__ = ("_fields", "_make", "_packed")

    def __init__(self, entry_type: type[_E]) -> None:
        self._make: Callable[[tuple[int, ...]], _E] = entry_type._make
        self._fields = struct.Struct(f"<{len(entry_type._fields)}q")
        self._packed: dict[str, bytes] = {}

    def get(self, key: str) -> _E | None:
        raw = self._packed.get(key)
        return None if raw is None else self._make(self._fields.unpack(raw))

    def __setitem__(self, key: str, entry: _E) -> None:
        self._packed[key] = self._fields.pack(*entry)

    def __delitem__(self, key: str) -> None:
        del self._packed[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def in_pack(self, pack_id: int) -> list[tuple[str, _E]]:
        """The entries whose record is in ``pack_id``: matched on their packed first field, so
        only those are decoded."""
        first = _PACK_FIELD.pack(pack_id)
        unpack = self._fields.unpack
        return [(key, self._make(unpack(raw))) for key, raw in self._packed.items() if raw.startswith(first)]


class _Pack:
    __slots__ = (
        "dfd",
        "fd",
        "id",
        "last_seq",
        "live",
        "path",
        "readers",
        "records",
        "removed",
        "reserved",
        "size",
        "state",
        "version",
    )

    def __init__(self, pack_id: int, path: str, size: int, state: str, version: int, fd: int | None = None) -> None:
        self.id = pack_id
        self.path = path
        self.size = size
        self.state = state
        self.version = version
        self.fd = fd
        self.dfd: int | None = None  # the active pack's O_DIRECT write descriptor, if any
        self.live = 0  # bytes of records the key directory still needs
        self.readers = 0
        self.removed = False
        self.last_seq = -1
        self.records: list[fmt.Record] = []  # records written, kept until the index is written
        self.reserved = 0  # blocks reserved up to this offset (``prealloc``), past ``size``


class PackedReads(ABC):
    """The reads a packed store shares with its plain-file fallback: a packed key is read from
    its pack (``_read_packed``), anything else from ``_legacy``; listings merge both. Shared by
    ``PackStore`` and the read-only ``PackFollower``."""

    _legacy: LocalDiskStore
    _prefix: str

    @abstractmethod
    def _read_packed(self, key: str, offset: int, length: int | None) -> bytes | None:
        """Bytes of a packed key, or ``None`` when no pack holds it."""

    @abstractmethod
    def _packed_keys(self, prefix: str) -> builtins.list[str]:
        """The packed keys starting with ``prefix``."""

    def get(self, key: str) -> bytes:
        validate_key(key)
        data = self._read_packed(key, 0, None)
        return self._legacy.get(key) if data is None else data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"get_range {key!r}: negative offset or length ({offset}, {length})")
        validate_key(key)
        data = self._read_packed(key, offset, length)
        return self._legacy.get_range(key, offset, length) if data is None else data

    def list(self, prefix: str = "") -> Iterator[str]:
        legacy = self._legacy.list(prefix)
        if not (self._prefix.startswith(prefix) or prefix.startswith(self._prefix)):
            yield from legacy
            return
        packed = self._packed_keys(prefix)
        seen = set(packed)
        yield from packed
        for key in legacy:
            if key not in seen:
                yield key


class PackStore(PackedReads):
    """A ``BlobStore`` over one disk directory whose shard keys live in append-only packs.

    Thread-safe. ``root`` must exist unless ``create``; a missing root (unmounted disk) does not
    fail the constructor — every operation then fails with ``StorageError`` until it appears.
    ``packed_prefix=""`` packs every key written with ``put``/``stage``. ``direct_io=False``
    writes ``cache=False`` blobs through the page cache too (the layout is the same).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = False,
        packed_prefix: str = "shards/",
        pack_limit: int = 256 * 1024 * 1024,
        direct_io: bool = True,
    ) -> None:
        if pack_limit < fmt.FILE_HEADER + fmt.RECORD_HEADER:
            raise InvalidInput(f"pack_limit {pack_limit}: too small")
        self._legacy = LocalDiskStore(root, create=create)
        self._label = os.fspath(root)
        self._prefix = packed_prefix
        self._pack_limit = pack_limit
        self._dir = os.path.join(str(self._legacy.root), PACK_DIR)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._load_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._keydir = _PackedDirectory(_Put)
        self._deleted = _PackedDirectory(_Tomb)
        self._packs: dict[int, _Pack] = {}
        self._active: _Pack | None = None
        self._next_id = 1
        self._next_seq = 0
        self._inflight: set[int] = set()
        self._unpublished: dict[str, int] = {}  # key -> records reserved but not yet published
        self._pending: list[tuple[int, _Pack, fmt.Record]] = []
        self._dirty: set[_Pack] = set()
        self._dir_dirty = False
        self._syncing = False
        self._synced_upto = 0  # every record with a smaller sequence number is durable
        self._loaded = False
        self._closed = False
        self._prealloc = True  # until the filesystem refuses a reservation
        self._direct = direct_io and bool(_O_DIRECT)  # until the filesystem refuses O_DIRECT
        with contextlib.suppress(StorageError):
            self._ensure_loaded()

    # --- introspection ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._legacy.root

    @property
    def legacy(self) -> LocalDiskStore:
        """The plain-file store for unpacked keys and v1 shard files."""
        return self._legacy

    @property
    def pack_dir(self) -> Path:
        return Path(self._dir)

    def describe(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"PackStore({self._label!r})"

    def locate(self, key: str) -> PackedLocation:
        validate_key(key)
        if self._packed(key):
            self._ensure_loaded()
            with self._lock:
                e = self._keydir.get(key)
                if e is not None:
                    return PackedLocation(Path(self._packs[e.pack].path), e.offset, e.length)
        st = self._legacy.stat(key)
        return PackedLocation(self._legacy.path_for(key), 0, st.size)

    # --- writes ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        validate_key(key)
        if not self._packed(key):
            self._legacy.put(key, data, defer_dir_sync=defer_dir_sync)
            return
        self._write(fmt.KIND_PUT, key, data, time.time_ns(), publish_now=defer_dir_sync)
        if not defer_dir_sync:
            self._flush_packs()

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        validate_key(key)
        if not self._packed(key):
            self._legacy.stage(key, data, prefix=prefix)
            return
        self._write(fmt.KIND_PUT, key, data, time.time_ns(), publish_now=False, direct=not cache, prefix=prefix)

    def delete(self, key: str) -> bool:
        validate_key(key)
        if not self._packed(key):
            return self._legacy.delete(key)
        self._ensure_loaded()

        def decide() -> int | None:
            e = self._keydir.get(key)
            return None if e is None else e.oldest

        packed = self._write(fmt.KIND_TOMBSTONE, key, b"", time.time_ns(), publish_now=True, decide=decide)
        legacy = self._legacy.delete(key)
        return packed or legacy

    def flush(self) -> None:
        self._flush_packs()
        self._legacy.flush()

    def _flush_packs(self) -> None:
        self._ensure_loaded()
        with self._cond:
            ticket = self._next_seq
            while True:
                if self._synced_upto >= ticket and not self._sealable(ticket):
                    break
                if not self._syncing and self._min_inflight() >= ticket:
                    self._sync_locked_and_publish()
                    break
                self._cond.wait()

    def close(self) -> None:
        """Flush, seal the active pack (write its index) and close every descriptor."""
        with self._cond:
            if self._closed or not self._loaded:
                self._closed = True
                return
            while self._inflight:
                self._cond.wait()
            if self._active is not None:
                self._rotate(self._active)
        self.flush()
        with self._cond:
            self._closed = True
            for pack in self._packs.values():
                self._close_direct(pack)
                if pack.fd is not None and pack.readers == 0:
                    os.close(pack.fd)
                    pack.fd = None

    @property
    def direct_io(self) -> bool:
        """Whether blobs staged with ``cache=False`` currently bypass the page cache."""
        return self._direct

    # --- reads -----------------------------------------------------------------------------------

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        validate_key(key)
        if cached_only and not self._loaded:  # the first use reads every pack's index
            raise WouldBlock(f"get {key!r} on {self._label}: the packs are not loaded yet")
        # ``_held`` spelled out: this runs once per shard of every GET, and the context manager
        # cost more than the bookkeeping it wraps.
        hit = None
        if self._packed(key):
            self._ensure_loaded()
            hit = self._acquire(key)
        if hit is None:
            return self._legacy.get_into(key, head, dest, cached_only=cached_only)
        pack, e = hit
        try:
            if e.length != head + dest.nbytes:
                return None
            try:
                got = preadv_full(self._read_fd(pack), head, dest, e.offset, cached_only=cached_only)
            except OSError as exc:
                raise self._error(exc, "get", key) from exc
            if got is None:
                raise self._short_pack(pack, key)
            return got
        finally:
            self._release(pack)

    def _read_packed(self, key: str, offset: int, length: int | None) -> bytes | None:
        """Bytes ``[offset, offset + length)`` (``None``: to the end) of a packed key, short at its
        end; ``None`` when the key is not in a pack (the caller falls back to a plain file)."""
        with self._held(key) as hit:
            if hit is None:
                return None
            pack, e = hit
            n = max(0, e.length - offset if length is None else min(length, e.length - offset))
            return self._pread(pack, e.offset + offset, n, key) if n else b""

    def stat(self, key: str) -> BlobStat:
        validate_key(key)
        if self._packed(key):
            self._ensure_loaded()
            e = self._keydir.get(key)
            if e is not None:
                return BlobStat(size=e.length, modified_at=datetime.fromtimestamp(e.timestamp_ns / 1e9, UTC))
        return self._legacy.stat(key)

    def _packed_keys(self, prefix: str) -> builtins.list[str]:
        self._ensure_loaded()
        with self._lock:
            return [k for k in self._keydir if k.startswith(prefix)]

    def open_append(self, key: str) -> AppendFile:
        """Append-only blobs are always plain files. A packed blob at ``key`` is first moved to a
        file (written durably, then its packed copy tombstoned and flushed), so appends continue
        it as they would on a ``LocalDiskStore``."""
        validate_key(key)
        with self._held(key) as hit:
            data = b"" if hit is None else self._pread(hit[0], hit[1].offset, hit[1].length, key)
        if hit is not None:
            e = hit[1]
            self._legacy.put(key, data)

            def same_put() -> int | None:
                cur = self._keydir.get(key)
                return cur.oldest if cur == e else None

            if self._write(fmt.KIND_TOMBSTONE, key, b"", time.time_ns(), publish_now=True, decide=same_put):
                self.flush()
        return self._legacy.open_append(key)

    def capacity(self) -> Capacity:
        return self._legacy.capacity()

    def cleanup_temp(self, older_than_seconds: float) -> int:
        """Temp files of unfinished plain-file puts (see ``LocalDiskStore.cleanup_temp``)."""
        return self._legacy.cleanup_temp(older_than_seconds)

    # --- compaction ------------------------------------------------------------------------------

    def compact(self, *, min_dead_fraction: float = 0.5) -> CompactionReport:
        """Rewrite the live records of sealed packs at least ``min_dead_fraction`` dead into the
        active pack, flush, then remove those packs. A crash between the copy and the removal
        leaves both copies; the later one wins at the next open."""
        if not 0.0 <= min_dead_fraction <= 1.0:
            raise InvalidInput(f"min_dead_fraction {min_dead_fraction}: must be between 0 and 1")
        self._ensure_loaded()
        with self._compact_lock:
            with self._lock:
                candidates = [
                    p
                    for p in self._packs.values()
                    if p.state == _SEALED and (p.size <= 0 or 1.0 - p.live / p.size >= min_dead_fraction)
                ]
            removable: builtins.list[tuple[_Pack, builtins.list[tuple[str, _Tomb]]]] = []
            copied = copied_bytes = 0
            for pack in sorted(candidates, key=lambda p: p.id):
                outcome = self._copy_live(pack)
                if outcome is None:
                    continue  # a write of one of its keys is in flight: try again next time
                n, nbytes, dropped = outcome
                copied += n
                copied_bytes += nbytes
                removable.append((pack, dropped))
            if not removable:
                return CompactionReport()
            self.flush()
            reclaimed = dropped_tombs = 0
            for pack, _dropped in removable:
                self._unlink_quietly(os.path.join(self._dir, fmt.pack_name(pack.id)))
                self._unlink_quietly(os.path.join(self._dir, fmt.index_name(pack.id)))
                reclaimed += pack.size
            try:
                self._fsync_dir(self._dir)
            except OSError as exc:
                raise self._error(exc, "compact (directory sync)", PACK_DIR) from exc
            with self._lock:
                for pack, dropped in removable:
                    for key, tomb in dropped:
                        if self._deleted.get(key) == tomb:
                            del self._deleted[key]
                            dropped_tombs += 1
                    pack.removed = True
                    self._packs.pop(pack.id, None)
                    self._dirty.discard(pack)
                    if pack.readers == 0 and pack.fd is not None:
                        os.close(pack.fd)
                        pack.fd = None
            return CompactionReport(len(removable), max(0, reclaimed - copied_bytes), copied, dropped_tombs)

    def _copy_live(self, pack: _Pack) -> tuple[int, int, builtins.list[tuple[str, _Tomb]]] | None:
        """Copy ``pack``'s live puts and still-needed tombstones to the active pack. Returns
        (records copied, bytes copied, tombstones to forget) or ``None`` if a key of the pack has
        a write in flight (its order against the copy would be unclear)."""
        with self._lock:
            puts = self._keydir.in_pack(pack.id)
            tombs = self._deleted.in_pack(pack.id)
            if any(k in self._unpublished for k, _ in puts) or any(k in self._unpublished for k, _ in tombs):
                return None
        copied = nbytes = 0
        busy: builtins.list[str] = []
        for key, e in puts:
            data = self._pread(pack, e.offset, e.length, key)

            def same_put(key: str = key, e: _Put = e) -> int | None:
                if key in self._unpublished:
                    busy.append(key)  # a newer write is on its way: its order against a copy is unclear
                    return None
                return 0 if self._keydir.get(key) == e else None

            if self._write(fmt.KIND_PUT, key, data, e.timestamp_ns, publish_now=True, decide=same_put, keep=e.oldest):
                copied += 1
                nbytes += e.size
        dropped: builtins.list[tuple[str, _Tomb]] = []
        for key, t in tombs:
            with self._lock:
                needed = any(t.target <= q < pack.id for q in self._packs if q != pack.id)
            if not needed:
                dropped.append((key, t))
                continue

            def same_tomb(key: str = key, t: _Tomb = t) -> int | None:
                if key in self._unpublished:
                    busy.append(key)
                    return None
                return t.target if self._deleted.get(key) == t else None

            if self._write(fmt.KIND_TOMBSTONE, key, b"", t.timestamp_ns, publish_now=True, decide=same_tomb):
                copied += 1
                nbytes += t.size
        if busy:
            return None  # the copies made are harmless duplicates; the pack stays for now
        return copied, nbytes, dropped

    # --- internals: writing ----------------------------------------------------------------------

    def _packed(self, key: str) -> bool:
        return key.startswith(self._prefix)

    def _write(
        self,
        kind: int,
        key: str,
        payload: bytes | memoryview,
        timestamp_ns: int,
        *,
        publish_now: bool,
        decide: Callable[[], int | None] | None = None,
        keep: int | None = None,
        direct: bool = False,
        prefix: bytes = b"",
    ) -> bool:
        """Append one record. ``decide`` (run under the lock) returns the tombstone target, or
        ``None`` to write nothing (then ``False`` is returned). ``publish_now`` makes the record
        visible as soon as it is written (deferred puts, deletes, compaction copies) instead of
        at the next flush. ``keep`` carries a copied put's ``oldest`` over. ``direct`` writes the
        record around the page cache where the filesystem allows. The record's payload is
        ``prefix + payload``, written without joining them."""
        self._ensure_loaded()
        view = payload if isinstance(payload, bytes) else memoryview(payload).cast("B")
        kb = key.encode()
        n = len(prefix) + len(view)
        check = fmt.payload_checksum(view, prefix)
        with self._lock:
            if self._closed:
                raise StorageError(f"write {key!r} on {self._label}: store is closed")
            target = 0
            if decide is not None:
                decided = decide()
                if decided is None:
                    return False
                target = decided
            pack = self._active if self._active is not None else self._new_pack(key)
            head = fmt.encode_record_header(kind, kb, n, timestamp_ns, check, target)
            rec_off = pack.size
            span = fmt.record_span(pack.version, len(kb), n)
            pack.size += span
            seq = self._next_seq
            self._next_seq += 1
            pack.last_seq = seq
            if self._prealloc and pack.size > pack.reserved:
                self._reserve(pack)
            self._inflight.add(seq)
            self._unpublished[key] = self._unpublished.get(key, 0) + 1
            if pack.size >= self._pack_limit:
                self._rotate(pack)
        rec = fmt.Record(kind, key, rec_off + len(head), n, timestamp_ns, target)
        try:
            self._write_record(pack, head + prefix if prefix else head, view, rec_off, span, direct)
        except OSError as exc:
            with self._cond:
                self._inflight.discard(seq)
                self._forget_unpublished(key)
                # The range is torn: nothing may be appended behind it in this pack, and its
                # index (written at the next flush) will not mention it.
                if pack is self._active:
                    self._rotate(pack)
                self._cond.notify_all()
            raise self._error(exc, "put", key) from exc
        with self._cond:
            self._inflight.discard(seq)
            pack.records.append(rec)
            self._dirty.add(pack)
            if publish_now:
                self._forget_unpublished(key)
                self._publish(seq, pack, rec, keep)
            else:
                self._pending.append((seq, pack, rec))
            self._cond.notify_all()
        return True

    def _write_record(
        self, pack: _Pack, head: bytes, payload: bytes | memoryview, offset: int, span: int, direct: bool
    ) -> None:
        """Write one reserved record range: header, key, payload and zeros up to ``span``.
        Descriptors are stable here: the active pack's are closed only once no write of it is in
        flight (at seal or close)."""
        gap = span - len(head) - len(payload)
        dfd = pack.dfd if direct and self._direct else None
        if dfd is not None:
            try:
                _write_direct(dfd, head, payload, offset, span)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The filesystem took O_DIRECT at open but not these writes (a larger block
                # size, a FUSE filesystem): write through the page cache from now on.
                self._direct = False
                log.warning("%s: direct writes refused (%s); writing through the page cache", self._label, exc)
        assert pack.fd is not None
        _pwritev_all(pack.fd, [head, payload, bytes(gap)] if gap else [head, payload], offset)

    def _open_direct(self, pack: _Pack) -> None:
        """Give the new active pack an ``O_DIRECT`` write descriptor when the filesystem allows."""
        if not self._direct:
            return
        try:
            pack.dfd = os.open(pack.path, _DIRECT_FLAGS)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False
            log.info("%s: the filesystem refuses O_DIRECT; writing through the page cache", self._label)

    @staticmethod
    def _close_direct(pack: _Pack) -> None:
        if pack.dfd is not None:
            os.close(pack.dfd)
            pack.dfd = None

    def _new_pack(self, key: str) -> _Pack:
        """Create the next active pack (under the lock; once per ``pack_limit`` bytes)."""
        pack_id = self._next_id
        path = os.path.join(self._dir, fmt.pack_name(pack_id))
        try:
            try:
                fd = os.open(path, _NEW_PACK_FLAGS, 0o600)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self._dir, 0o700)
                fd = os.open(path, _NEW_PACK_FLAGS, 0o600)
            pack = _Pack(pack_id, path, fmt.first_record(fmt.FORMAT_VERSION), _ACTIVE, fmt.FORMAT_VERSION, fd)
            try:
                _pwritev_all(fd, [fmt.encode_file_header(pack_id)], 0)
                self._open_direct(pack)
            except OSError:
                self._close_direct(pack)
                os.close(fd)
                self._unlink_quietly(path)
                raise
        except OSError as exc:
            raise self._error(exc, "put (new pack)", key) from exc
        self._next_id += 1
        self._packs[pack_id] = pack
        self._active = pack
        self._dirty.add(pack)
        self._dir_dirty = True
        return pack

    def _reserve(self, pack: _Pack) -> None:
        """Reserve the next ``PREALLOC_STEP`` bytes of the active pack (lock held; once per step)."""
        assert pack.fd is not None
        start = pack.reserved
        end = max(min(pack.size + PREALLOC_STEP, self._pack_limit), pack.size)
        if prealloc.reserve(pack.fd, start, end - start):
            pack.reserved = end
        else:
            self._prealloc = False

    @staticmethod
    def _release_reserved(pack: _Pack) -> None:
        """Hand back blocks reserved past a sealed pack's end."""
        if pack.reserved > pack.size and pack.fd is not None:
            prealloc.release(pack.fd, pack.size)
        pack.reserved = 0

    def _rotate(self, pack: _Pack) -> None:
        pack.state = _ROTATING
        if self._active is pack:
            self._active = None

    def _forget_unpublished(self, key: str) -> None:
        left = self._unpublished[key] - 1
        if left:
            self._unpublished[key] = left
        else:
            del self._unpublished[key]

    def _min_inflight(self) -> int:
        return min(self._inflight) if self._inflight else self._next_seq

    def _sealable(self, upto: int) -> bool:
        return any(p.state == _ROTATING and p.last_seq < upto for p in self._packs.values())

    def _sync_locked_and_publish(self) -> None:
        """One group commit (called with the lock held; releases it around the I/O)."""
        self._syncing = True
        covers = self._min_inflight()
        dirty = self._dirty
        self._dirty = set()
        dir_dirty = self._dir_dirty
        self._dir_dirty = False
        to_seal = [p for p in self._packs.values() if p.state == _ROTATING and p.last_seq < covers]
        failed: _Pack | None = None
        error: DwhError | None = None
        self._lock.release()
        try:
            try:
                for pack in dirty:
                    failed = pack
                    if pack.fd is not None:
                        os.fdatasync(pack.fd)
                        _check_still_linked(pack.fd, pack.path)
                failed = None
                for pack in to_seal:
                    self._write_index(pack)
                    self._release_reserved(pack)
                    self._close_direct(pack)
                if dir_dirty or to_seal:
                    self._fsync_dir(self._dir)
                    if dir_dirty:
                        self._fsync_dir(str(self.root))
            except OSError as exc:
                error = self._error(exc, "flush", PACK_DIR)
        finally:
            self._lock.acquire()
            self._syncing = False
            self._cond.notify_all()
        if error is not None:
            self._dirty |= dirty
            self._dir_dirty |= dir_dirty
            if failed is not None:
                # Data of this pack may be lost from the page cache: never publish its pending
                # records, and append nothing more to it.
                self._rotate(failed)
                self._dirty.discard(failed)
                dropped = {id(r) for s, p, r in self._pending if p is failed and s < covers}
                failed.records = [r for r in failed.records if id(r) not in dropped]
                keep: builtins.list[tuple[int, _Pack, fmt.Record]] = []
                for item in self._pending:
                    if item[1] is failed and item[0] < covers:
                        self._forget_unpublished(item[2].key)
                    else:
                        keep.append(item)
                self._pending = keep
            raise error
        for pack in to_seal:
            pack.state = _SEALED
            pack.records = []
        ready = [item for item in self._pending if item[0] < covers]
        if ready:
            self._pending = [item for item in self._pending if item[0] >= covers]
            ready.sort(key=lambda item: item[0])
            for seq, pack, rec in ready:
                self._forget_unpublished(rec.key)
                self._publish(seq, pack, rec, None)
        self._synced_upto = max(self._synced_upto, covers)

    def _write_index(self, pack: _Pack) -> None:
        records = sorted(pack.records, key=lambda r: r.offset)
        _write_file_durably(
            os.path.join(self._dir, fmt.index_name(pack.id)),
            fmt.encode_index(pack.id, pack.size, records, pack.version),
        )

    def _publish(self, seq: int, pack: _Pack, rec: fmt.Record, keep: int | None) -> None:
        """Apply one record to the key directory (lock held) unless a newer record of its key is
        already there: the directory always reflects the record order a replay sees."""
        key = rec.key
        cur_put = self._keydir.get(key)
        cur_tomb = self._deleted.get(key) if cur_put is None else None
        oldest = pack.id if keep is None else keep
        if cur_put is not None:
            if cur_put.seq > seq:
                return
            oldest = min(oldest, cur_put.oldest)
            self._unaccount(cur_put.pack, cur_put.size)
        elif cur_tomb is not None:
            if cur_tomb.seq > seq:
                return
            oldest = min(oldest, cur_tomb.target)
            self._unaccount(cur_tomb.pack, cur_tomb.size)
        size = rec.span(pack.version)
        if rec.kind == fmt.KIND_PUT:
            self._keydir[key] = _Put(pack.id, rec.offset, rec.length, rec.timestamp_ns, seq, oldest, size)
            if cur_tomb is not None:
                del self._deleted[key]
        else:
            if cur_put is not None:
                del self._keydir[key]
            target = min(rec.target, oldest) if rec.target else oldest
            self._deleted[key] = _Tomb(pack.id, rec.offset, seq, target, size, rec.timestamp_ns)
        pack.live += size

    def _unaccount(self, pack_id: int, size: int) -> None:
        pack = self._packs.get(pack_id)
        if pack is not None:
            pack.live -= size

    # --- internals: reading ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _held(self, key: str) -> Iterator[tuple[_Pack, _Put] | None]:
        """The pack and entry of a packed ``key`` (``None`` when it is not in a pack), the pack
        kept open for reading until the block ends."""
        hit = None
        if self._packed(key):
            self._ensure_loaded()
            hit = self._acquire(key)
        try:
            yield hit
        finally:
            if hit is not None:
                self._release(hit[0])

    def _acquire(self, key: str) -> tuple[_Pack, _Put] | None:
        with self._lock:
            e = self._keydir.get(key)
            if e is None:
                return None
            pack = self._packs[e.pack]
            pack.readers += 1
            return pack, e

    def _release(self, pack: _Pack) -> None:
        with self._lock:
            pack.readers -= 1
            if pack.readers == 0 and (pack.removed or self._closed) and pack.fd is not None:
                os.close(pack.fd)
                pack.fd = None

    def _read_fd(self, pack: _Pack) -> int:
        """The pack's descriptor, opened on first use (the caller holds a reader count)."""
        return shared_read_fd(pack, self._lock)

    def _pread(self, pack: _Pack, offset: int, length: int, key: str) -> bytes:
        try:
            data = pread_full(self._read_fd(pack), length, offset)
        except OSError as exc:
            raise self._error(exc, "get", key) from exc
        if len(data) < length:
            raise self._short_pack(pack, key)
        return data

    def _short_pack(self, pack: _Pack, key: str) -> StorageError:
        return StorageError(f"get {key!r} on {self._label}: pack {pack.id:016x} is shorter than its index says")

    # --- internals: opening ----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            if not os.path.isdir(self.root):
                raise StorageError(f"open {self._label}: store root is missing (disk not mounted?)")
            try:
                self._load()
            except OSError as exc:
                raise self._error(exc, "open", PACK_DIR) from exc
            self._loaded = True

    def _load(self) -> None:
        """Rebuild the key directory from every pack, in pack and record order."""
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".tmp"):
                self._unlink_quietly(os.path.join(self._dir, name))
        ids = list(fmt.iter_pack_ids(names))
        have = set(ids)
        for name in names:
            if name.endswith(fmt.INDEX_SUFFIX) and len(name) == 16 + len(fmt.INDEX_SUFFIX):
                with contextlib.suppress(ValueError):
                    if int(name[:16], 16) not in have:  # its pack was removed by a compaction
                        self._unlink_quietly(os.path.join(self._dir, name))
        if ids:
            self._next_id = ids[-1] + 1
        seq = 0
        for pack_id in ids:
            loaded = load_pack(self._dir, pack_id, repair=True)
            if loaded is None:
                continue
            size, version, records = loaded.size, loaded.version, loaded.records
            pack = _Pack(pack_id, os.path.join(self._dir, fmt.pack_name(pack_id)), size, _SEALED, version)
            self._packs[pack_id] = pack
            with self._lock:
                for rec in records:
                    self._publish(seq, pack, rec, None)
                    seq += 1
        self._next_seq = self._synced_upto = seq

    # --- internals: misc -------------------------------------------------------------------------

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _error(self, exc: OSError, op: str, key: str) -> DwhError:
        code = exc.errno
        name = errno.errorcode.get(code, str(code)) if code is not None else "E?"
        where = f"{key!r} on {self._label}"
        if code in _DISK_FULL_ERRNOS:
            return StorageError(f"{op} {where}: disk full ({name})")
        if not os.path.isdir(self.root):
            return StorageError(f"{op} {where}: store root is missing (disk not mounted?)")
        return StorageError(f"{op} {where}: {name} ({exc.strerror})")


class _SharedFd(Protocol):
    fd: int | None
    path: str


def shared_read_fd(pack: _SharedFd, lock: threading.Lock) -> int:
    """``pack.fd``, opened read-only on first use; of two threads racing to open it, one
    descriptor is kept and the other closed. The caller keeps the pack from being closed
    meanwhile (a reader count)."""
    fd = pack.fd
    if fd is None:
        fd = os.open(pack.path, _READ_FLAGS)
        with lock:
            if pack.fd is None:
                pack.fd = fd
            else:
                os.close(fd)
                fd = pack.fd
    return fd


def _check_still_linked(fd: int, path: str) -> None:
    """Raise ``FileNotFoundError`` unless ``path`` still names the file open as ``fd``: a disk
    directory deleted or replaced under a running store leaves its packs open but unlinked, and
    a sync of them makes nothing durable that a restart would find."""
    st = os.fstat(fd)
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "pack file is no longer in the disk directory", path) from None
    if (on_disk.st_dev, on_disk.st_ino) != (st.st_dev, st.st_ino):
        raise FileNotFoundError(errno.ENOENT, "pack file was replaced in the disk directory", path)


def _pwritev_all(fd: int, parts: builtins.list[bytes | memoryview], offset: int) -> None:
    """Write ``parts`` back to back at ``offset`` with ``pwritev`` (looping only on a short
    write), without joining them into a copy."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        done = os.pwritev(fd, views, offset)
        offset += done
        while views and done >= views[0].nbytes:
            done -= views.pop(0).nbytes
        if done:
            views[0] = views[0][done:]


_buffers = threading.local()


def _aligned_buffer(size: int) -> mmap.mmap:
    """This thread's page-aligned staging buffer for direct writes, at least ``size`` bytes (it
    is reused, so its pages stay resident instead of being faulted in per write)."""
    buf: mmap.mmap | None = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < size:
        if buf is not None:
            buf.close()
        buf = _buffers.buf = mmap.mmap(-1, max(size, 1 << 20))
    return buf


def _write_direct(dfd: int, head: bytes, payload: bytes | memoryview, offset: int, span: int) -> None:
    """Write ``head | payload | zeros`` (``span`` bytes, ``offset`` and ``span`` multiples of
    ``fmt.ALIGN``) through the ``O_DIRECT`` descriptor ``dfd``, copied window by window into this
    thread's aligned buffer."""
    hl, n = len(head), len(payload)
    window = min(span, DIRECT_WINDOW)
    buf = _aligned_buffer(window)
    with memoryview(buf) as mv, memoryview(payload) as pv:
        done = 0
        while done < span:
            w = min(span - done, window)
            fill = 0
            if done < hl:
                part = head[done : done + w]
                mv[: len(part)] = part
                fill = len(part)
            start = done + fill - hl
            take = max(0, min(w - fill, n - start))
            if take:
                mv[fill : fill + take] = pv[start : start + take]
                fill += take
            if fill < w:
                mv[fill:w] = bytes(w - fill)
            with mv[:w] as out:
                written = 0
                while written < w:
                    written += os.pwrite(dfd, out[written:], offset + done + written)
            done += w


def _write_file_durably(path: str, data: bytes) -> None:
    """Temp file, write, fsync, rename over ``path`` (the caller fsyncs the directory)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
    try:
        _pwritev_all(fd, [data], 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class LoadedPack(NamedTuple):
    size: int
    version: int
    records: builtins.list[fmt.Record]
    end: int  # records before this offset are in ``records`` (or were, for a resumed load)
    indexed: bool  # read from a valid index: the pack is sealed, nothing will follow ``end``


def load_pack(pack_dir: str, pack_id: int, *, repair: bool, start: int | None = None) -> LoadedPack | None:
    """One pack's records, from its index or by scanning it. With ``repair``, a pack without an
    index (the active pack of a crashed process) is truncated at its first bad record and sealed;
    a pack with a damaged index is only scanned (it was sealed: a bad record there is damage, not
    a torn write, and what follows it is left for an operator). ``start``: only the records from
    that offset on (where an earlier load stopped: a ``PackFollower`` resuming). ``None`` for a
    file that is not (or not yet, or no longer) a pack of a readable format version."""
    path = os.path.join(pack_dir, fmt.pack_name(pack_id))
    idx_path = os.path.join(pack_dir, fmt.index_name(pack_id))
    try:
        fd = os.open(path, _RW_FLAGS if repair else _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        try:
            with open(idx_path, "rb") as f:
                idx_data: bytes | None = f.read()
        except FileNotFoundError:
            idx_data = None
        # The size only after the index: a pack is sealed (its index written) after its last
        # record, so an index read here covers no record past this size. Taken before, a record
        # appended in between would be cut off below while the pack counts as sealed, and a
        # PackFollower would never look at the pack again.
        size = os.fstat(fd).st_size
        header = fmt.read_file_header(os.pread(fd, fmt.FILE_HEADER, 0))
        if header is None or header[0] != pack_id:
            if repair and size < fmt.FILE_HEADER and idx_data is None:
                os.unlink(path)  # crashed while being created: holds nothing
            elif size >= fmt.FILE_HEADER:  # a shorter one is being created (or was, by a crashed writer)
                log.warning("%s: not a pack file of a readable format version, ignored", path)
            return None
        version = header[1]
        first = fmt.first_record(version) if start is None else start
        if idx_data is not None:
            decoded = fmt.decode_index(idx_data, pack_id, version)
            if decoded is not None:
                _covered, records = decoded
                whole = [r for r in records if r.offset + r.length <= size and r.record_offset >= first]
                return LoadedPack(size, version, whole, size, indexed=True)
            log.warning("%s: index is damaged, scanning the pack", idx_path)
        records, good_end = fmt.scan_records(fd, size, version, start=first)
        if repair and idx_data is None:
            if good_end < size:
                log.warning("%s: dropping %d bytes of unacknowledged tail", path, size - good_end)
                os.ftruncate(fd, good_end)
                os.fsync(fd)
                size = good_end
            else:
                # Blocks the crashed process reserved past the end (``prealloc``) are handed back.
                prealloc.release(fd, size)
            _write_file_durably(idx_path, fmt.encode_index(pack_id, size, records, version))
            PackStore._fsync_dir(pack_dir)
        return LoadedPack(size, version, records, good_end, indexed=False)
    finally:
        os.close(fd)


def scan_locations(root: str | os.PathLike[str]) -> dict[str, PackedLocation]:
    """Read-only: every live packed key of a disk directory -> its location (from pack indexes,
    scanning packs that have none). Never modifies, truncates or creates anything; safe while a
    PackStore has the directory open."""
    pack_dir = os.path.join(os.path.realpath(os.fspath(root)), PACK_DIR)
    try:
        names = os.listdir(pack_dir)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StorageError(f"scan {pack_dir}: {exc.strerror}") from exc
    live: dict[str, PackedLocation] = {}
    for pack_id in fmt.iter_pack_ids(names):
        try:
            loaded = load_pack(pack_dir, pack_id, repair=False)
        except OSError as exc:
            raise StorageError(f"scan {pack_dir}: {exc.strerror}") from exc
        if loaded is None:
            continue
        path = Path(pack_dir, fmt.pack_name(pack_id))
        for rec in loaded.records:
            if rec.kind == fmt.KIND_PUT:
                live[rec.key] = PackedLocation(path, rec.offset, rec.length)
            else:
                live.pop(rec.key, None)
    return live


if TYPE_CHECKING:
    _store_check: BlobStore = PackStore(".")
