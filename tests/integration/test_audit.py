"""The audit log on a real Warehouse: records are sealed into the object-locked system bucket,
``verify`` passes on an untouched log, and every kind of tampering — through the spool file and
through the lower layers an attacker with disk access would use (the metadata database, a new
object version over a sealed key) — is found at the right seq with the right kind."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dwh_testkit import init_wh, open_wh

from datawarehouse.clock import ManualClock
from datawarehouse.config import AuditConfig
from datawarehouse.errors import InvalidBucketName, ObjectLocked
from datawarehouse.service import objectlock
from datawarehouse.service.audit.chain import record_hash
from datawarehouse.service.audit.checkpoint import Checkpoint, CheckpointSigner
from datawarehouse.service.audit.export import export_lines
from datawarehouse.service.audit.log import AuditLog
from datawarehouse.service.audit.record import AuditRecord, parse_line
from datawarehouse.service.audit.store import (
    AUDIT_BUCKET,
    AuditBucket,
    checkpoint_key,
    iter_stored_records,
    segment_key,
)
from datawarehouse.service.audit.verify import VerifyResult, verify
from datawarehouse.service.warehouse import Warehouse

CONFIG = AuditConfig(checkpoint_records=10, checkpoint_seconds=86400)
TOTAL = 35  # three sealed segments (1-10, 11-20, 21-30) and 31-35 in the spool
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def write_records(log: AuditLog, start: int, count: int) -> None:
    for i in range(start, start + count):
        log.record(
            operation="GetObject" if i % 3 else "PutObject",
            tenant="t1",
            principal="alice" if i % 2 else "bob",
            access_key="AKIDEXAMPLE",
            source_ip="192.0.2.7",
            bucket="photos",
            key=f"img/{i}.jpg",
            status=200,
            bytes_in=i,
            bytes_out=2 * i,
            duration_us=1000 + i,
            request_id=f"req-{i}",
        )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "dwh"


@pytest.fixture
def wh(root: Path, clock: ManualClock) -> Iterator[Warehouse]:
    w = init_wh(root, clock)
    with AuditLog(w, CONFIG) as log:
        write_records(log, 1, TOTAL)
        log.flush()
    yield w
    w.close()


def problem_of(result: VerifyResult) -> tuple[str, int | None]:
    assert not result.ok
    first = result.problems[0]
    return first.kind, first.seq


def spool_file(root: Path) -> Path:
    (path,) = (root / "audit").glob("spool-*.jsonl")
    return path


def rewrite_lines(data: bytes, change: Callable[[list[bytes]], list[bytes]]) -> bytes:
    lines = [ln for ln in data.split(b"\n") if ln]
    return b"".join(ln + b"\n" for ln in change(lines))


def seq_index(lines: list[bytes], seq: int) -> int:
    return next(i for i, ln in enumerate(lines) if parse_line(ln).seq == seq)


def edit(seq: int, rehash: bool = False) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        i = seq_index(lines, seq)
        doc = json.loads(lines[i])
        doc["principal"] = "mallory"
        r = AuditRecord(**doc)
        if rehash:
            r = r.with_chain(r.seq, r.prev, record_hash(r))
        lines[i] = r.line()
        return lines

    return change


def delete(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: [ln for ln in lines if parse_line(ln).seq != seq]


def insert_after(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    """A forged record claiming ``seq`` (self-consistent hash, linked to seq - 1) after it."""

    def change(lines: list[bytes]) -> list[bytes]:
        i = seq_index(lines, seq)
        original = parse_line(lines[i])
        forged = AuditRecord(**{**original.to_doc(), "operation": "DeleteObject", "principal": "mallory"})
        forged = forged.with_chain(seq, original.prev, record_hash(forged))
        return [*lines[: i + 1], forged.line(), *lines[i + 1 :]]

    return change


def swap(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        i = seq_index(lines, seq)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        return lines

    return change


# --- an untouched log ------------------------------------------------------------------------------


def test_untouched_log_verifies_and_lives_in_a_hidden_locked_bucket(wh: Warehouse, root: Path) -> None:
    result = verify(wh, retention_days=365)
    assert result.ok, result.problems
    assert (result.records, result.checkpoints, result.first_seq, result.last_seq) == (TOTAL, 3, 1, TOTAL)
    assert [r.seq for r in iter_stored_records(wh)] == list(range(1, TOTAL + 1))
    assert AUDIT_BUCKET not in [b.name for b in wh.list_buckets()]
    assert AUDIT_BUCKET in [b.name for b in wh.list_buckets(include_system=True)]
    assert objectlock.lock_enabled(wh, AUDIT_BUCKET)
    v = wh.head_object(AUDIT_BUCKET, segment_key(11, 20))
    assert v.lock_mode == objectlock.COMPLIANCE
    assert v.lock_until is not None and v.lock_until >= wh.engine.now() + timedelta(days=364)
    assert len([ln for ln in spool_file(root).read_bytes().split(b"\n") if ln]) == 5
    for name in ("dwh--audit", "dwh--mine", "my--audit-logs"):
        with pytest.raises(InvalidBucketName):
            wh.create_bucket(name)


def test_a_reopened_log_continues_the_chain(wh: Warehouse) -> None:
    with AuditLog(wh, CONFIG) as log:
        assert log.last_seq == TOTAL
        write_records(log, 100, 7)
        log.flush()
    result = verify(wh)
    assert result.ok and result.last_seq == TOTAL + 7 and result.checkpoints == 4


def test_a_crash_after_sealing_before_the_spool_was_removed_recovers(wh: Warehouse, root: Path) -> None:
    saved = spool_file(root).read_bytes()
    name = spool_file(root).name
    with AuditLog(wh, CONFIG) as log:
        assert log.seal() is not None
    (root / "audit" / name).write_bytes(saved)  # as if the process stopped before the unlink
    assert verify(wh).ok
    with AuditLog(wh, CONFIG) as log:
        assert log.last_seq == TOTAL and log.store.unsealed == 0
    assert not list((root / "audit").glob("spool-*.jsonl"))
    assert verify(wh).ok


# --- tampering with the spool (the unsealed tail) ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "kind", "seq"),
    [
        (edit(33), "edited", 33),
        (edit(33, rehash=True), "inserted", 34),  # the next record no longer links to it
        (delete(32), "deleted", 32),
        (insert_after(33), "inserted", 33),
        (swap(32), "reordered", 33),
    ],
    ids=["edit", "edit-rehash", "delete", "insert", "swap"],
)
def test_spool_tampering_is_found(
    wh: Warehouse, root: Path, change: Callable[[list[bytes]], list[bytes]], kind: str, seq: int
) -> None:
    path = spool_file(root)
    path.write_bytes(rewrite_lines(path.read_bytes(), change))
    result = verify(wh)
    assert problem_of(result) == (kind, seq), result.problems
    assert path.name in result.problems[0].where


def test_a_truncated_spool_is_found(wh: Warehouse, root: Path) -> None:
    path = spool_file(root)
    path.write_bytes(rewrite_lines(path.read_bytes(), lambda lines: lines[:-2]))
    result = verify(wh)
    assert problem_of(result) == ("truncated", 33)
    assert "unsealed records missing after seq 33" in result.problems[0].message


# --- tampering with sealed segments ------------------------------------------------------------------


def raw_sql(root: Path, sql: str, *params: object) -> int:
    """What an attacker with access to the disks can do to the metadata database."""
    con = sqlite3.connect(root / "meta" / "meta.sqlite3")
    try:
        cur = con.execute(sql, params)
        con.commit()
        return cur.rowcount
    finally:
        con.close()


def remove_original(wh: Warehouse, root: Path, key: str, clock: ManualClock) -> Warehouse:
    """Delete the original (locked) version row of ``key`` behind the Warehouse's back."""
    original = AuditBucket(wh).objects(key)[0]
    wh.close()
    assert raw_sql(root, "DELETE FROM object_versions WHERE version_id = ?", original.version_id) == 1
    return open_wh(root, clock)


def replace_segment(wh: Warehouse, root: Path, clock: ManualClock, key: str, data: bytes) -> Warehouse:
    """A forged segment: a new version (the lock allows adding one), then the locked original
    removed from the metadata database."""
    wh.put_object(AUDIT_BUCKET, key, data)
    return remove_original(wh, root, key, clock)


@pytest.mark.parametrize(
    ("change", "kind", "seq"),
    [
        (edit(15), "edited", 15),
        (delete(15), "deleted", 15),
        (insert_after(15), "inserted", 15),
        (swap(14), "reordered", 15),
    ],
    ids=["edit", "delete", "insert", "swap"],
)
def test_segment_tampering_is_found(
    wh: Warehouse,
    root: Path,
    clock: ManualClock,
    change: Callable[[list[bytes]], list[bytes]],
    kind: str,
    seq: int,
) -> None:
    key = segment_key(11, 20)
    forged = rewrite_lines(wh.get_object_bytes(AUDIT_BUCKET, key), change)
    wh = replace_segment(wh, root, clock, key, forged)
    try:
        result = verify(wh)
        assert problem_of(result) == (kind, seq), result.problems
        assert key in result.problems[0].where
        assert any(p.kind == "checkpoint-mismatch" and p.seq == 20 for p in result.problems)
    finally:
        wh.close()


def test_the_lock_refuses_deleting_or_overwriting_a_sealed_segment(wh: Warehouse) -> None:
    key = segment_key(11, 20)
    original = AuditBucket(wh).objects(key)[0]
    with pytest.raises(ObjectLocked):
        wh.delete_object(AUDIT_BUCKET, key, original.version_id)
    with pytest.raises(ObjectLocked):
        wh.delete_object(AUDIT_BUCKET, key, original.version_id, bypass_governance=True)
    # What the API does allow (a delete marker, a new version) cannot hide the original:
    wh.delete_object(AUDIT_BUCKET, segment_key(1, 10))
    wh.put_object(AUDIT_BUCKET, key, b'{"forged": true}\n')
    result = verify(wh)
    assert {(p.kind, p.seq) for p in result.problems} == {("overwritten", 1), ("overwritten", 11)}
    assert result.records == TOTAL  # every original record was still verified


def test_a_whole_deleted_segment_is_found(wh: Warehouse, root: Path, clock: ManualClock) -> None:
    wh = remove_original(wh, root, segment_key(11, 20), clock)
    wh = remove_original(wh, root, checkpoint_key(20), clock)
    try:
        result = verify(wh)
        assert problem_of(result) == ("deleted", 11), result.problems
        assert "11..20" in result.problems[0].message
    finally:
        wh.close()


def test_a_segment_without_its_checkpoint_is_found(wh: Warehouse, root: Path, clock: ManualClock) -> None:
    wh = remove_original(wh, root, segment_key(11, 20), clock)
    try:
        assert problem_of(verify(wh)) == ("deleted", 11)
    finally:
        wh.close()


def test_a_forged_checkpoint_signature_is_found(wh: Warehouse, root: Path, clock: ManualClock, tmp_path: Path) -> None:
    key = checkpoint_key(20)
    cp = Checkpoint.from_bytes(wh.get_object_bytes(AUDIT_BUCKET, key))
    forged = CheckpointSigner.load_or_create(tmp_path / "attacker").sign(cp)
    wh = replace_segment(wh, root, clock, key, forged.to_bytes())
    try:
        result = verify(wh)
        assert problem_of(result) == ("bad-signature", 20), result.problems
    finally:
        wh.close()


def test_a_forged_checkpoint_added_through_the_api_is_found(wh: Warehouse, tmp_path: Path) -> None:
    cp = Checkpoint.from_bytes(wh.get_object_bytes(AUDIT_BUCKET, checkpoint_key(30)))
    fake = Checkpoint(31, 99, 69, cp.last_hash, "ab" * 32, segment_key(31, 99), "cd" * 32, cp.sealed_at, "", "")
    signed = CheckpointSigner.load_or_create(tmp_path / "attacker").sign(fake)
    wh.put_object(AUDIT_BUCKET, checkpoint_key(99), signed.to_bytes())
    assert problem_of(verify(wh)) == ("bad-signature", 99)


# --- retention ----------------------------------------------------------------------------------------


def test_expired_segments_are_removed_and_verify_anchors_at_the_first_remaining(
    wh: Warehouse, clock: ManualClock
) -> None:
    with AuditLog(wh, CONFIG) as log:
        assert log.expire() == 0  # under COMPLIANCE retention: nothing yet
        clock.advance(timedelta(days=366))
        assert log.expire() == 2  # the newest checkpoint always stays
    bucket = AuditBucket(wh)
    assert [o.key for o in bucket.objects("segments/")] == [segment_key(21, 30)]
    result = verify(wh, retention_days=365)
    assert result.ok, result.problems
    assert result.anchored_at == 20 and result.first_seq == 21
    assert any("anchored" in n for n in result.notes)


def test_segments_removed_before_their_retention_ended_are_found(wh: Warehouse, root: Path, clock: ManualClock) -> None:
    wh = remove_original(wh, root, segment_key(1, 10), clock)
    wh = remove_original(wh, root, checkpoint_key(10), clock)
    try:
        result = verify(wh, retention_days=365)
        assert problem_of(result) == ("deleted", 1), result.problems
        assert "before their retention ended" in result.problems[0].message
    finally:
        wh.close()


# --- secrets --------------------------------------------------------------------------------------------


def test_no_secret_or_signature_is_ever_stored(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as w:
        with AuditLog(w, CONFIG) as log:
            for _ in range(12):
                log.record(
                    operation="GetObject",
                    bucket="b",
                    key="k",
                    access_key="AKIDEXAMPLE",
                    status=200,
                    query=f"X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
                    f"&X-Amz-Signature={SIGNATURE}",
                    user_agent=f"curl Signature={SIGNATURE}",
                    detail={"secret_access_key": SECRET, "authorization": f"AWS4-HMAC-SHA256 Signature={SIGNATURE}"},
                )
            log.flush()
        stored = b"".join(p.read_bytes() for p in (root / "audit").glob("*"))
        stored += b"".join(w.get_object_bytes(AUDIT_BUCKET, o.key) for o in AuditBucket(w).objects(""))
        exported = "".join(x for fmt in ("json", "csv", "cef") for x in export_lines(iter_stored_records(w), fmt))
        assert b"AKIDEXAMPLE%2F20260101" in stored  # the credential scope is kept (not secret), as sent
    for needle in (SECRET, SIGNATURE):
        assert needle.encode() not in stored
        assert needle not in exported
    # nor anywhere on the data disks or in the metadata (plaintext)
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and SIGNATURE.encode() not in data, path
