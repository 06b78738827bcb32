"""The metadata journal: an append-only log, identical on every disk, from which the metadata
database can be rebuilt.

Records are framed (``core.frame``) and appended to ``journal/<writer>-<segment>.log`` on every
active disk; an append returns only when at least ``required_copies`` disks have fsynced it, so a
record survives the loss of any m disks. Writer names start with a timestamp, so sorting segment
names orders them in time (one process owns a data directory at a time). If a disk fails an
append the segment is closed and the next record starts a new one on the healthy disks: every
copy of a segment is then a prefix of the longest one, and byte offsets mean the same everywhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from datawarehouse.core import crypto, frame
from datawarehouse.engine import journal_process
from datawarehouse.engine.journal_process import JournalProcess, error_for
from datawarehouse.engine.keys import KeyRing
from datawarehouse.errors import CorruptFrame, DwhError, StorageError
from datawarehouse.ids import DiskId
from datawarehouse.storage.base import AppendFile, BlobStore

log = logging.getLogger(__name__)

PREFIX = "journal/"
SEGMENT_LIMIT = 64 * 1024 * 1024

RECORD_DOMAIN_SECRET = 1
RECORD_OP = 2

_OP_HEAD = struct.Struct(">I32s")


@dataclass(frozen=True)
class JournalEntry:
    segment: str
    end_offset: int
    rtype: int
    payload: bytes


def seal_op(keyring: KeyRing, domain_id: int, op: Mapping[str, Any]) -> bytes:
    """Encode a metadata operation as a record payload, sealed under the domain's journal key."""
    record_id = secrets.token_bytes(32)
    plain = json.dumps(op, separators=(",", ":"), sort_keys=True).encode()
    sealed = crypto.seal_chunk(keyring.current(domain_id), record_id, plain, 1, key="journal")
    return _OP_HEAD.pack(domain_id, record_id) + sealed


def open_op(keyring: KeyRing, payload: bytes) -> dict[str, Any]:
    if len(payload) < _OP_HEAD.size:
        raise CorruptFrame("journal op record: too short")
    domain_id, record_id = _OP_HEAD.unpack_from(payload)
    sealed = payload[_OP_HEAD.size :]
    key_version = struct.unpack_from(">I", sealed, 8)[0] if len(sealed) >= 12 else 0
    plain = crypto.open_chunk(keyring.version(domain_id, key_version), record_id, sealed, key="journal")
    op: dict[str, Any] = json.loads(plain)
    return op


@runtime_checkable
class HasFileno(Protocol):
    """A segment file the writer process can take over (local disks)."""

    def fileno(self) -> int: ...


def new_writer_name() -> str:
    return f"{time.time_ns():020d}{secrets.token_hex(4)}"


class Journal:
    def __init__(
        self,
        stores: Callable[[], Mapping[DiskId, BlobStore]],
        required_copies: Callable[[], int],
        on_disk_error: Callable[[DiskId, Exception], None] | None = None,
        *,
        writer_process: bool = False,
    ) -> None:
        """``writer_process``: make appends in a process of their own (``engine.journal_process``)."""
        self._stores = stores
        self._required = required_copies
        self._on_error = on_disk_error
        self._writer = new_writer_name()
        self._segment_no = 0
        self._files: dict[DiskId, AppendFile] = {}
        self._offset = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dwh-journal")
        self._use_process = writer_process
        self._process: JournalProcess | None = None
        self._process_has_files = False  # the process holds the open segment's files

    @property
    def segment(self) -> str:
        return f"{self._writer}-{self._segment_no:08d}"

    @property
    def open_segment(self) -> str | None:
        """The segment appends go to now, or ``None`` if none is open (after ``rotate``)."""
        with self._lock:
            return self.segment if self._files else None

    def _open_segment(self) -> None:
        self._close_files()
        self._segment_no += 1
        self._offset = 0
        key = f"{PREFIX}{self.segment}.log"
        for disk_id, store in self._stores().items():
            try:
                self._files[disk_id] = store.open_append(key)
            except DwhError as exc:
                self._report(disk_id, exc)
        if len(self._files) < self._required():
            raise StorageError(f"journal: only {len(self._files)} disks writable, {self._required()} needed")

    def _close_files(self) -> None:
        if self._process is not None and self._process_has_files:
            try:
                self._process.set_files([])  # its copies must not keep a removed disk busy
            except StorageError:
                self._drop_process()
        self._process_has_files = False
        for f in self._files.values():
            with contextlib.suppress(DwhError):
                f.close()
        self._files = {}

    def _ready_process(self, files: Mapping[DiskId, AppendFile]) -> JournalProcess | None:
        """The writer process holding ``files``, or ``None``: write in-process (no process wanted,
        a file without a descriptor, or the process not started yet)."""
        if self._process_has_files:
            return self._process
        if not self._use_process:
            return None
        fds = [f.fileno() for f in files.values() if isinstance(f, HasFileno)]
        if len(fds) != len(files):
            return None
        if self._process is None:
            self._process = journal_process.start()
            if self._process is None:
                self._use_process = False
                return None
        try:
            if not self._process.ready():
                return None
            self._process.set_files(fds)
            self._process_has_files = True
        except StorageError as exc:
            # It never became ready, or is gone before this append wrote anything: stay in-process.
            log.warning("journal appends stay in-process: %s", exc)
            self._drop_process()
            self._use_process = False
            return None
        return self._process

    def _drop_process(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        self._process_has_files = False

    def _report(self, disk_id: DiskId, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(disk_id, exc)

    def append(self, records: list[tuple[int, bytes]]) -> list[tuple[str, int]]:
        """Durably append records; return (segment, end offset) for each."""
        data = [frame.pack_journal_record(rtype, payload) for rtype, payload in records]
        blob = b"".join(data)
        with self._lock:
            if not self._files or self._offset + len(blob) > SEGMENT_LIMIT:
                self._open_segment()
            files = dict(self._files)
            results = self._write_everywhere(files, blob)
            failed = [(d, e) for d, e in results if e is not None]
            ok = len(results) - len(failed)
            for disk_id, exc in failed:
                self._report(disk_id, exc)  # type: ignore[arg-type]
            if ok < self._required():
                self._close_files()
                raise StorageError(f"journal append reached {ok} disks, {self._required()} needed")
            segment = self.segment
            out = []
            for rec in data:
                self._offset += len(rec)
                out.append((segment, self._offset))
            if failed:
                # Copies of this segment now differ in length: continue in a new segment.
                self._close_files()
            return out

    def _write_everywhere(
        self, files: Mapping[DiskId, AppendFile], blob: bytes
    ) -> list[tuple[DiskId, Exception | None]]:
        """Append ``blob`` to every file and sync it; each disk's failure, or ``None``."""
        process = self._ready_process(files)
        if process is not None:
            try:
                codes = process.append(blob)
            except StorageError:
                # What reached each copy is unknown: the next append starts a new segment.
                self._drop_process()
                self._close_files()
                raise
            return [
                (disk_id, None if code == 0 else StorageError(f"journal append on {disk_id}: {error_for(code)}"))
                for disk_id, code in zip(files, codes, strict=True)
            ]

        def write_one(item: tuple[DiskId, AppendFile]) -> tuple[DiskId, Exception | None]:
            disk_id, f = item
            try:
                f.write(blob)
                f.sync()
                return disk_id, None
            except (DwhError, OSError) as exc:
                return disk_id, exc

        return list(self._pool.map(write_one, files.items()))

    def rotate(self) -> None:
        """Close the current segment; the next append starts a new one on the current disk set."""
        with self._lock:
            self._close_files()

    def close(self) -> None:
        with self._lock:
            self._close_files()
            self._drop_process()
        self._pool.shutdown(wait=True)


def segment_names(stores: Mapping[DiskId, BlobStore]) -> list[str]:
    names: set[str] = set()
    for store in stores.values():
        try:
            for key in store.list(PREFIX):
                if key.endswith(".log"):
                    names.add(key[len(PREFIX) : -len(".log")])
        except DwhError:
            continue
    return sorted(names)


def read_segment(stores: Mapping[DiskId, BlobStore], segment: str, start: int = 0) -> list[JournalEntry]:
    """Records of a segment from ``start``, taken from the copy with the longest valid prefix."""
    best: tuple[list[tuple[int, int, bytes]], int] = ([], start)
    key = f"{PREFIX}{segment}.log"
    for store in stores.values():
        try:
            size = store.stat(key).size
            if size <= best[1]:
                continue
            data = store.get(key)
        except DwhError:
            continue
        records, valid_end = frame.parse_journal(data, start)
        if valid_end > best[1]:
            best = (records, valid_end)
    return [JournalEntry(segment, end, rtype, payload) for end, rtype, payload in best[0]]


def read_all(stores: Mapping[DiskId, BlobStore], positions: Mapping[str, int] | None = None) -> Iterator[JournalEntry]:
    """Every record after ``positions`` (segment -> applied offset), in journal order."""
    positions = positions or {}
    for segment in segment_names(stores):
        yield from read_segment(stores, segment, positions.get(segment, 0))
