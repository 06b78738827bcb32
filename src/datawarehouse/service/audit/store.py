"""Durable storage of the audit log, inside the system it audits.

* The **spool** (``<datadir>/audit/spool-<first seq>.jsonl``): records are appended as lines and
  ``fdatasync``'d once per batch (group commit); ``audit/head.json`` then says which seq and hash
  the spool reached, so a spool that lost its tail is noticed.
* **Sealed segments**: at every checkpoint the spool's records become the object
  ``segments/<first:020d>-<last:020d>.jsonl`` of the hidden system bucket ``dwh--audit``, then the
  signed checkpoint ``checkpoints/<last:020d>.json``; only then is the spool file removed. The
  bucket has object lock, and both objects carry COMPLIANCE retention for ``audit.retention_days``:
  nobody can delete or replace those versions before it ends, and they get the same dedup,
  compression, encryption, erasure coding and bitrot protection as user data.
* A later version or delete marker on a sealed key cannot hide the original (the locked first
  version is what is read); ``verify`` reports it as an attempted overwrite.

Crash safety: a crash after the segment but before the checkpoint re-seals on the next open (an
identical segment is not written twice); after the checkpoint but before the spool file is gone,
the open finds the spool already covered and drops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from datawarehouse.errors import BucketAlreadyExists, CorruptFrame, NoSuchBucket
from datawarehouse.service import versioning
from datawarehouse.service.audit.chain import ChainHead, genesis_hash, segment_digest
from datawarehouse.service.audit.checkpoint import Checkpoint, CheckpointSigner
from datawarehouse.service.audit.record import AuditRecord, format_time, parse_line
from datawarehouse.service.objectlock import COMPLIANCE, LockRequest
from datawarehouse.service.warehouse import Warehouse

AUDIT_BUCKET = "dwh--audit"
SEGMENT_PREFIX = "segments/"
CHECKPOINT_PREFIX = "checkpoints/"
SPOOL_DIR = "audit"
HEAD_FILE = "head.json"
_SPOOL_NAME = re.compile(r"^spool-(\d{20})\.jsonl$")
_SEGMENT_KEY = re.compile(r"^segments/(\d{20})-(\d{20})\.jsonl$")


def segment_key(first: int, last: int) -> str:
    return f"{SEGMENT_PREFIX}{first:020d}-{last:020d}.jsonl"


def checkpoint_key(last: int) -> str:
    return f"{CHECKPOINT_PREFIX}{last:020d}.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the spool ---------------------------------------------------------------------------------


@dataclass
class SpoolFile:
    path: Path
    first_seq: int
    lines: list[bytes] = field(default_factory=list)  # raw lines, without newline


def spool_dir(root: Path) -> Path:
    return root / SPOOL_DIR


def read_spool_files(root: Path) -> list[SpoolFile]:
    """Every spool file with its complete lines, by first seq. A last line without its newline
    was being written when the process stopped (never flushed): it is not part of the spool."""
    out = []
    directory = spool_dir(root)
    if not directory.is_dir():
        return []
    for path in sorted(directory.iterdir()):
        m = _SPOOL_NAME.match(path.name)
        if not m:
            continue
        data = path.read_bytes()
        lines = data.split(b"\n")
        out.append(SpoolFile(path, int(m.group(1)), [ln for ln in lines[:-1] if ln]))
    return out


def read_head(root: Path) -> ChainHead | None:
    path = spool_dir(root) / HEAD_FILE
    try:
        doc = json.loads(path.read_bytes())
        return ChainHead(int(doc["seq"]), str(doc["hash"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFrame(f"{path}: malformed") from exc


HEAD_INTERVAL = 1.0  # seconds between two rewrites of head.json while records keep coming


class Spool:
    """The open spool file: append-only, one ``fdatasync`` per batch.

    ``head.json`` (the last seq and hash appended) is rewritten at most every ``HEAD_INTERVAL``
    seconds and whenever the spool is closed or discarded: it may lag the spool (harmless: the
    spool is fsynced first) but never run ahead of it, so a spool that lost records the head had
    reached is still detected. Rewriting it per batch cost two more syncs per batch.
    """

    def __init__(self, root: Path) -> None:
        self.dir = spool_dir(root)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd = -1
        self.path: Path | None = None
        self.records: list[AuditRecord] = []  # what the open file holds (sealed next)
        self.older: list[Path] = []  # earlier spool files whose records are in ``records`` too
        self._pending_head: ChainHead | None = None
        self._head_written = 0.0

    def adopt(self, spool: SpoolFile) -> None:
        """Continue an existing spool file (after a restart); a torn last line is cut off."""
        self.close()
        self.path = spool.path
        size = sum(len(ln) + 1 for ln in spool.lines)
        self._fd = os.open(spool.path, os.O_WRONLY | os.O_CLOEXEC)
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)

    def append(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        if self._fd < 0:
            self.path = self.dir / f"spool-{records[0].seq:020d}.jsonl"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            _fsync_dir(self.dir)
        data = b"".join(r.line() + b"\n" for r in records)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fdatasync(self._fd)
        self.records.extend(records)
        self._pending_head = ChainHead(records[-1].seq, records[-1].hash)
        if time.monotonic() - self._head_written >= HEAD_INTERVAL:
            self.flush_head()

    def flush_head(self) -> None:
        if self._pending_head is not None:
            self.write_head(self._pending_head)
            self._pending_head = None
            self._head_written = time.monotonic()

    def write_head(self, head: ChainHead) -> None:
        path = self.dir / HEAD_FILE
        tmp = path.with_name(HEAD_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps({"seq": head.seq, "hash": head.hash}).encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.dir)

    def discard(self) -> None:
        """The open file's records are sealed: remove it (the next append starts a new one)."""
        paths = [*self.older, *([self.path] if self.path is not None else [])]
        self.close()
        self.records = []
        self.older = []
        for path in paths:
            path.unlink(missing_ok=True)
        _fsync_dir(self.dir)

    def close(self) -> None:
        self.flush_head()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self.path = None


# --- the audit bucket --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """A key of the audit bucket: its first (original, locked) version, and how many versions or
    delete markers were added after it (a sealed key should have none)."""

    key: str
    version_id: str
    later_versions: int
    original_is_marker: bool = False


class AuditBucket:
    """The sealed part of the log, through the Warehouse's public methods only."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh

    def exists(self) -> bool:
        try:
            self.wh.get_bucket(AUDIT_BUCKET)
        except NoSuchBucket:
            return False
        return True

    def ensure(self) -> None:
        if self.exists():
            return
        with contextlib.suppress(BucketAlreadyExists):
            self.wh.create_bucket(AUDIT_BUCKET, object_lock=True, system=True)

    def put(self, key: str, data: bytes, retain_until: datetime, content_type: str) -> None:
        self.wh.put_object(
            AUDIT_BUCKET, key, data, content_type=content_type, lock=LockRequest(COMPLIANCE, retain_until)
        )

    def read(self, obj: StoredObject) -> bytes:
        found = self.wh.open_object(AUDIT_BUCKET, obj.key, version_id=obj.version_id)
        return b"".join(self.wh.read_object(found, prefetch=0))

    def objects(self, prefix: str) -> list[StoredObject]:
        """Every key under ``prefix`` with its original version, in key order."""
        if not self.exists():
            return []
        by_key: dict[str, list[tuple[str, bool]]] = {}
        key_marker = version_marker = ""
        while True:
            page = versioning.list_versions(self.wh, AUDIT_BUCKET, prefix, "", key_marker, version_marker, 1000)
            for e in page.entries:
                by_key.setdefault(e.key, []).append((e.s3_version_id, e.is_delete_marker))
            if not page.is_truncated or page.next_key is None:
                break
            key_marker, version_marker = page.next_key, page.next_version or ""
        out = []
        for key in sorted(by_key):
            versions = by_key[key]  # newest first
            vid, marker = versions[-1]
            out.append(StoredObject(key, vid, len(versions) - 1, marker))
        return out

    def delete_all_versions(self, key: str) -> None:
        for obj_version in self._versions(key):
            self.wh.delete_object(AUDIT_BUCKET, key, obj_version)

    def _versions(self, key: str) -> list[str]:
        page = versioning.list_versions(self.wh, AUDIT_BUCKET, key, "", "", "", 1000)
        return [e.s3_version_id for e in page.entries if e.key == key]


def load_checkpoints(bucket: AuditBucket) -> list[tuple[StoredObject, Checkpoint | None]]:
    """Each stored checkpoint object with its parsed original (``None``: malformed)."""
    out: list[tuple[StoredObject, Checkpoint | None]] = []
    for obj in bucket.objects(CHECKPOINT_PREFIX):
        if obj.original_is_marker:
            out.append((obj, None))
            continue
        try:
            out.append((obj, Checkpoint.from_bytes(bucket.read(obj))))
        except CorruptFrame:
            out.append((obj, None))
    return out


def parse_segment(data: bytes) -> Iterator[AuditRecord]:
    """The records of a segment's bytes; malformed lines are skipped (``verify`` reports them)."""
    for line in data.split(b"\n"):
        if line:
            try:
                yield parse_line(line)
            except CorruptFrame:
                continue


# --- the store: spool + bucket -------------------------------------------------------------------


class AuditStore:
    """Appends to the spool, seals it into the bucket, expires old segments. One writer (the
    AuditLog's thread); readers use ``iter_records``."""

    def __init__(self, wh: Warehouse, signer: CheckpointSigner, retention_days: int) -> None:
        self.wh = wh
        self.root = wh.engine.datadir.root
        self.bucket = AuditBucket(wh)
        self.signer = signer
        self.retention = timedelta(days=retention_days)
        self.spool = Spool(self.root)
        self.genesis = genesis_hash(wh.engine.datadir.datadir_id)
        self.head = ChainHead(0, self.genesis)
        self.last_checkpoint: Checkpoint | None = None
        self._recover()

    def _recover(self) -> None:
        checkpoints = [cp for _, cp in load_checkpoints(self.bucket) if cp is not None]
        if checkpoints:
            self.last_checkpoint = max(checkpoints, key=lambda c: c.last_seq)
            self.head = ChainHead(self.last_checkpoint.last_seq, self.last_checkpoint.last_hash)
        pending: list[AuditRecord] = []
        for f in read_spool_files(self.root):
            # Malformed lines are skipped here (verify reports them); the chain goes on from the
            # last good record.
            unsealed = [r for r in parse_segment(b"\n".join(f.lines)) if r.seq > self.head.seq]
            if not unsealed:
                f.path.unlink(missing_ok=True)  # sealed already (crash before the spool was removed)
                continue
            if self.spool.path is not None:
                self.spool.older.append(self.spool.path)
            self.spool.adopt(f)
            pending.extend(unsealed)
            self.head = ChainHead(unsealed[-1].seq, unsealed[-1].hash)
        self.spool.records = pending

    def append(self, records: list[AuditRecord]) -> None:
        self.spool.append(records)
        if records:
            self.head = ChainHead(records[-1].seq, records[-1].hash)

    @property
    def unsealed(self) -> int:
        return len(self.spool.records)

    def seal(self) -> Checkpoint | None:
        """Store the spool's records as a segment, then its signed checkpoint; drop the spool."""
        records = self.spool.records
        if not records:
            return None
        self.bucket.ensure()
        now = self.wh.engine.now()
        until = now + self.retention
        first, last = records[0].seq, records[-1].seq
        data = b"".join(r.line() + b"\n" for r in records)
        key = segment_key(first, last)
        existing = [o for o in self.bucket.objects(key) if o.key == key]
        if not existing or self.bucket.read(existing[0]) != data:
            self.bucket.put(key, data, until, "application/x-ndjson")
        prev_cp = self.last_checkpoint
        cp = self.signer.sign(
            Checkpoint(
                first_seq=first,
                last_seq=last,
                count=len(records),
                prev_hash=records[0].prev,
                last_hash=records[-1].hash,
                segment=key,
                segment_digest=segment_digest(data),
                sealed_at=format_time(now),
                prev_sealed_at=prev_cp.sealed_at if prev_cp is not None else "",
                key_id="",
            )
        )
        self.bucket.put(checkpoint_key(last), cp.to_bytes(), until, "application/json")
        self.last_checkpoint = cp
        self.spool.discard()
        return cp

    def expire(self) -> int:
        """Remove segments (and their checkpoints) whose retention has ended, oldest first and
        without gaps; the newest checkpoint always stays (it anchors the chain). Returns how many."""
        now = self.wh.engine.now()
        stored = [(o, cp) for o, cp in load_checkpoints(self.bucket) if cp is not None]
        stored.sort(key=lambda item: item[1].last_seq)
        removed = 0
        for obj, cp in stored[:-1]:
            if datetime.fromisoformat(cp.sealed_at.replace("Z", "+00:00")) + self.retention > now:
                break
            self.bucket.delete_all_versions(cp.segment)
            self.bucket.delete_all_versions(obj.key)
            removed += 1
        return removed

    def close(self) -> None:
        self.spool.close()


def segment_range(key: str) -> tuple[int, int] | None:
    """(first, last) seq from a segment key, ``None`` if the key is not one."""
    m = _SEGMENT_KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def iter_stored_records(wh: Warehouse, after_seq: int = 0) -> Iterator[AuditRecord]:
    """Records with seq > ``after_seq``, sealed segments first, then the spool. For reading
    (query, export, forwarding): a segment whose key says it ends at or before ``after_seq`` is
    not read. ``verify`` is what checks the records."""
    bucket = AuditBucket(wh)
    last = after_seq
    for obj in bucket.objects(SEGMENT_PREFIX):
        span = segment_range(obj.key)
        if span is None or span[1] <= last or obj.original_is_marker:
            continue
        for r in parse_segment(bucket.read(obj)):
            if r.seq > last:
                last = r.seq
                yield r
    for f in read_spool_files(wh.engine.datadir.root):
        for r in parse_segment(b"\n".join(f.lines)):
            if r.seq > last:
                last = r.seq
                yield r
