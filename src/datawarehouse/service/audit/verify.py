"""``verify``: recompute the whole log and say where it was changed, and how.

It reads every checkpoint and segment of the audit bucket (their original, locked versions) and
the spool, with only the public key. Kinds of problem, each with the seq and the place:

* ``edited``: a record's content no longer matches its hash (or is not a record at all);
* ``deleted``: seqs missing (a record, or a whole segment and its checkpoint);
* ``inserted``: a second record claims a seq, or a record does not link to its predecessor
  (forged, or the predecessor was rewritten with a fresh hash);
* ``reordered``: records out of seq order;
* ``bad-signature`` / ``bad-checkpoint``: a checkpoint not signed by the audit key, or malformed;
* ``checkpoint-mismatch``: a segment differs from what its checkpoint sealed (count, hashes,
  digest), or consecutive checkpoints do not join;
* ``overwritten``: a sealed key got a later version or delete marker (the original is verified);
* ``truncated``: the spool lost records it had reached (``head.json``).

Segments removed by retention: verification anchors at the first remaining checkpoint (its
``prev_hash``) and says so; if the checkpoint before it was sealed too recently to have expired,
that is a ``deleted`` problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from datawarehouse.errors import CorruptFrame, KeyError_
from datawarehouse.service.audit.chain import genesis_hash, record_hash, segment_digest
from datawarehouse.service.audit.checkpoint import (
    PUBLIC_KEY_FILE,
    Checkpoint,
    key_id,
    load_public_key,
    signature_valid,
)
from datawarehouse.service.audit.record import AuditRecord, parse_line, parse_time
from datawarehouse.service.audit.store import (
    SEGMENT_PREFIX,
    AuditBucket,
    StoredObject,
    checkpoint_key,
    load_checkpoints,
    read_head,
    read_spool_files,
    segment_range,
)
from datawarehouse.service.warehouse import Warehouse


@dataclass(frozen=True)
class Problem:
    kind: str
    seq: int | None
    where: str
    message: str

    def __str__(self) -> str:
        at = f"seq {self.seq}" if self.seq is not None else "-"
        return f"{self.kind} at {at} ({self.where}): {self.message}"


@dataclass
class VerifyResult:
    problems: list[Problem] = field(default_factory=list)
    records: int = 0
    checkpoints: int = 0
    first_seq: int = 0
    last_seq: int = 0
    anchored_at: int = 0  # the seq verification starts after (0: from genesis)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_doc(self) -> dict[str, Any]:
        """The JSON form (``dwh audit verify --json`` and the admin API answer alike)."""
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchored_at": self.anchored_at,
            "notes": list(self.notes),
            "problems": [{"kind": p.kind, "seq": p.seq, "where": p.where, "message": p.message} for p in self.problems],
        }


@dataclass
class _Entry:
    record: AuditRecord | None
    where: str


@dataclass
class _Collector:
    found: list[tuple[float, int, Problem]] = field(default_factory=list)

    def add(self, position: float, kind: str, seq: int | None, where: str, message: str) -> None:
        self.found.append((position, len(self.found), Problem(kind, seq, where, message)))

    def sorted(self) -> list[Problem]:
        return [p for _, _, p in sorted(self.found, key=lambda t: (t[0], t[1]))]


def _entries(data: bytes, where: str) -> list[_Entry]:
    out = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line:
            continue
        try:
            out.append(_Entry(parse_line(line), f"{where} line {n}"))
        except CorruptFrame:
            out.append(_Entry(None, f"{where} line {n}"))
    return out


def verify(
    wh: Warehouse, *, public_key: Ed25519PublicKey | None = None, retention_days: int | None = None
) -> VerifyResult:
    """Verify the audit log of ``wh``'s data directory. ``public_key``: default
    ``keys/audit-signing.pub``; ``retention_days``: to tell expiry from early removal (default:
    no such check)."""
    root = wh.engine.datadir.root
    result = VerifyResult()
    found = _Collector()
    genesis = genesis_hash(wh.engine.datadir.datadir_id)
    bucket = AuditBucket(wh)
    stored_cps = load_checkpoints(bucket)
    if public_key is None and stored_cps:
        try:
            public_key = load_public_key(root / "keys" / PUBLIC_KEY_FILE)
        except KeyError_ as exc:
            found.add(-1, "bad-signature", None, "keys", f"{exc}: checkpoints cannot be checked")
    trusted = _trusted_checkpoints(stored_cps, public_key, found)
    result.checkpoints = len(trusted)
    segments = {o.key: o for o in bucket.objects(SEGMENT_PREFIX)}
    for seg in segments.values():
        if seg.later_versions:
            span = segment_range(seg.key)
            found.add(-1, "overwritten", span[0] if span else None, seg.key, _overwritten(seg))

    stream: list[_Entry] = []
    segment_ends: list[tuple[Checkpoint, int, int, bytes | None]] = []  # cp, start, end, bytes
    for cp in trusted:
        obj = segments.get(cp.segment)
        start = len(stream)
        if obj is None or obj.original_is_marker:
            found.add(
                start - 0.5,
                "deleted",
                cp.first_seq,
                cp.segment,
                f"segment with records {cp.first_seq}..{cp.last_seq} is missing",
            )
            segment_ends.append((cp, start, start, None))
            continue
        data = bucket.read(obj)
        stream.extend(_entries(data, f"segment {cp.segment}"))
        segment_ends.append((cp, start, len(stream), data))
    sealed_to = trusted[-1].last_seq if trusted else 0
    covered = {cp.segment for cp in trusted}
    spool_entries: list[_Entry] = []
    for f in read_spool_files(root):
        spool_entries.extend(_entries(b"\n".join(f.lines) + b"\n", f"spool {f.path.name}"))
    spool_seqs = {e.record.seq for e in spool_entries if e.record is not None}
    for key, seg in sorted(segments.items()):
        span = segment_range(key)
        if key in covered or span is None:
            continue
        if span[0] > sealed_to and all(s in spool_seqs for s in range(span[0], span[1] + 1)):
            continue  # sealing was interrupted: its records are still in the spool
        if span[0] > sealed_to:
            found.add(len(stream) - 0.5, "deleted", span[0], key, "the checkpoint of this segment is missing")
            stream.extend(_entries(bucket.read(seg), f"segment {key}"))
            sealed_to = max(sealed_to, span[1])
        else:
            found.add(-1, "inserted", span[0], key, "segment not sealed by any valid checkpoint")
    stream.extend(e for e in spool_entries if e.record is None or e.record.seq > sealed_to)

    anchor_seq, anchor_hash = 0, genesis
    if trusted and trusted[0].first_seq > 1:
        first = trusted[0]
        anchor_seq, anchor_hash = first.first_seq - 1, first.prev_hash
        result.notes.append(
            f"records 1..{anchor_seq} are no longer stored (expired); verified from checkpoint "
            f"{checkpoint_key(first.last_seq)}, anchored at its previous hash"
        )
        if retention_days is not None and first.prev_sealed_at:
            expires = parse_time(first.prev_sealed_at) + timedelta(days=retention_days)
            if expires > wh.engine.now():
                found.add(
                    -0.5,
                    "deleted",
                    1,
                    checkpoint_key(first.last_seq),
                    f"records 1..{anchor_seq} were removed before their retention ended ({expires:%Y-%m-%d})",
                )
    result.anchored_at = anchor_seq
    _walk(stream, anchor_seq, anchor_hash, found)
    _check_checkpoints(segment_ends, genesis, found)
    _check_head(root, stream, found)

    records = [e.record for e in stream if e.record is not None]
    result.records = len(stream)
    result.first_seq = records[0].seq if records else 0
    result.last_seq = max((r.seq for r in records), default=0)
    result.problems = found.sorted()
    return result


def _overwritten(obj: StoredObject) -> str:
    return (
        f"{obj.later_versions} later version(s) or delete marker(s) were added over the sealed original "
        "(the original, locked version is the one verified)"
    )


def _trusted_checkpoints(
    stored: Iterable[tuple[StoredObject, Checkpoint | None]], public: Ed25519PublicKey | None, found: _Collector
) -> list[Checkpoint]:
    out = []
    for obj, cp in stored:
        if obj.later_versions:
            found.add(-1, "overwritten", None, obj.key, _overwritten(obj))
        if cp is None:
            found.add(-1, "bad-checkpoint", None, obj.key, "not a valid checkpoint document")
            continue
        if public is None:
            continue
        if cp.key_id != key_id(public) or not signature_valid(cp, public):
            found.add(
                -1, "bad-signature", cp.last_seq, obj.key, "checkpoint signature does not verify with the audit key"
            )
            continue
        if obj.key != checkpoint_key(cp.last_seq) or cp.count != cp.last_seq - cp.first_seq + 1 or cp.count < 1:
            found.add(-1, "checkpoint-mismatch", cp.last_seq, obj.key, "checkpoint name, range and count disagree")
            continue
        out.append(cp)
    return sorted(out, key=lambda c: c.last_seq)


def _walk(stream: list[_Entry], anchor_seq: int, anchor_hash: str, found: _Collector) -> None:
    """Seq order (gaps, duplicates, moves), each record's own hash, then the links."""
    positions: dict[int, list[int]] = {}
    for i, e in enumerate(stream):
        if e.record is not None:
            positions.setdefault(e.record.seq, []).append(i)
    hashes = {anchor_seq: anchor_hash}
    first_at: dict[int, int] = {}
    expected = anchor_seq + 1
    for i, e in enumerate(stream):
        rec = e.record
        if rec is None:
            found.add(i, "edited", None, e.where, "unreadable: not a valid audit record")
            continue
        if record_hash(rec) != rec.hash:
            found.add(i, "edited", rec.seq, e.where, "content does not match the record's hash")
        if rec.seq in first_at or rec.seq <= anchor_seq:
            found.add(i, "inserted", rec.seq, e.where, f"a second record claims seq {rec.seq}")
            continue
        if rec.seq < expected:
            found.add(i, "reordered", rec.seq, e.where, f"seq {rec.seq} comes after seq {expected - 1}")
        elif rec.seq > expected:
            later = [s for s in range(expected, rec.seq) if any(p > i for p in positions.get(s, []))]
            if later:
                found.add(i, "reordered", rec.seq, e.where, f"seq {rec.seq} comes before seq {later[0]}")
            else:
                missing = f"{expected}" if rec.seq - 1 == expected else f"{expected}..{rec.seq - 1}"
                found.add(i, "deleted", expected, e.where, f"record(s) {missing} missing before seq {rec.seq}")
        first_at[rec.seq] = i
        hashes[rec.seq] = rec.hash
        expected = max(expected, rec.seq + 1)
    for seq, i in first_at.items():
        rec = stream[i].record
        pred = hashes.get(seq - 1)
        if rec is not None and pred is not None and rec.prev != pred:
            found.add(
                i + 0.1,
                "inserted",
                seq,
                stream[i].where,
                f"does not link to seq {seq - 1} (forged, or seq {seq - 1} was rewritten)",
            )


def _check_checkpoints(
    segment_ends: list[tuple[Checkpoint, int, int, bytes | None]], genesis: str, found: _Collector
) -> None:
    prev: Checkpoint | None = None
    for cp, start, end, data in segment_ends:
        where = checkpoint_key(cp.last_seq)
        if prev is not None and cp.first_seq != prev.last_seq + 1:
            if cp.first_seq > prev.last_seq + 1:
                found.add(
                    start - 0.5,
                    "deleted",
                    prev.last_seq + 1,
                    where,
                    f"records {prev.last_seq + 1}..{cp.first_seq - 1} missing: segment and checkpoint removed",
                )
            else:
                found.add(start - 0.5, "inserted", cp.first_seq, where, "checkpoint overlaps the previous one")
        elif prev is not None and cp.prev_hash != prev.last_hash:
            found.add(start - 0.5, "checkpoint-mismatch", cp.first_seq, where, "does not join the previous checkpoint")
        if prev is None and cp.first_seq == 1 and cp.prev_hash != genesis:
            found.add(start - 0.5, "checkpoint-mismatch", 1, where, "the first checkpoint does not start at genesis")
        prev = cp
        if data is None:
            continue
        if segment_digest(data) != cp.segment_digest:
            found.add(
                end - 0.5,
                "checkpoint-mismatch",
                cp.last_seq,
                where,
                f"segment {cp.segment} differs from the bytes this checkpoint sealed",
            )
    return


def _check_head(root: Path, stream: list[_Entry], found: _Collector) -> None:
    head = read_head(root)
    records = [e.record for e in stream if e.record is not None]
    if head is None or not records:
        if head is not None and head.seq > 0:
            found.add(
                len(stream), "truncated", head.seq, "spool", f"no records stored, the log had reached seq {head.seq}"
            )
        return
    last = max(records, key=lambda r: r.seq)
    if head.seq > last.seq:
        found.add(
            len(stream),
            "truncated",
            last.seq,
            "spool",
            f"unsealed records missing after seq {last.seq} (the spool had reached seq {head.seq})",
        )
    elif head.seq == last.seq and head.hash != last.hash:
        found.add(len(stream), "edited", last.seq, "spool", "the last record differs from the one written")
