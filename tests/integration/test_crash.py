"""Invariants 1 and 3 (docs/invariants.md): a writer process SIGKILLed at any point loses no
acknowledged write, leaves no manifest naming a missing chunk, keeps reference counts exact, and
leaves only orphans that GC removes after the grace period.

The writer (``crash_writer.py``) prints ``ACK <key> <sha256>`` after each put returns and
``DEL <key>`` after each delete; it announces each operation before starting it, so the one
operation in flight at the kill is known (it may or may not have happened).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from dwh_testkit import (
    BUCKET,
    K,
    M,
    all_chunks,
    all_versions,
    init_wh,
    manifest_refcounts,
    open_wh,
    shard_identities,
    temp_files,
    unsealed_packs,
)

from datawarehouse.clock import ManualClock
from datawarehouse.engine import gc
from datawarehouse.errors import NoSuchKey
from datawarehouse.service.warehouse import Warehouse

WRITER = Path(__file__).parent / "crash_writer.py"
LARGE_KEY = "large/object"

State = str | None  # sha256 of the object's bytes, or None: absent


class Writer:
    """One run of crash_writer.py, its stdout going to a file (nothing is lost at the kill)."""

    def __init__(self, root: Path, seed: int, mode: str, log: Path, *extra: str) -> None:
        self.log = log
        self._out = log.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(root), str(seed), mode, *extra],
            stdout=self._out,
            stderr=subprocess.PIPE,
            env=env,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def seen(self, token: str) -> bool:
        """A line that is ``token`` or starts with ``token`` and a space."""
        return any(line == token or line.startswith(token + " ") for line in self.lines())

    def wait_for(self, token: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen(token):
            if self.proc.poll() is not None and not self.seen(token):
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(
                    f"writer exited with {self.proc.returncode} before {token!r}; "
                    f"its last lines: {self.lines()[-3:]}; stderr:\n{err[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"writer did not print {token!r} within {timeout}s")
            time.sleep(0.005)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        if self.proc.stderr:
            self.proc.stderr.close()
        self._out.close()

    def finish(self, timeout: float = 120.0, returncode: int = 0) -> None:
        self.proc.wait(timeout=timeout)
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        self._out.close()
        assert self.proc.returncode == returncode, err


def apply_log(lines: list[str], acked: dict[str, State]) -> tuple[str, State] | None:
    """Fold the writer's log into ``acked`` (key -> last acknowledged state); return the
    operation that was in flight at the kill, if any: (key, state it would have left)."""
    pending: tuple[str, State] | None = None
    for line in lines:
        word, *rest = line.split()
        if word == "PUT":
            pending = (rest[0], rest[1])
        elif word == "ACK":
            assert pending == (rest[0], rest[1])
            acked[rest[0]] = rest[1]
            pending = None
        elif word == "DELSTART":
            pending = (rest[0], None)
        elif word == "DEL":
            assert pending == (rest[0], None)
            acked[rest[0]] = None
            pending = None
    return pending


def state_of(wh: Warehouse, key: str) -> State:
    try:
        data = wh.get_object_bytes(BUCKET, key)
    except NoSuchKey:
        return None
    head = wh.head_object(BUCKET, key)
    assert head.size == len(data)
    assert head.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    return hashlib.sha256(data).hexdigest()


def check_index(wh: Warehouse) -> None:
    """No manifest names a missing chunk; every referenced chunk has all its shards, verified;
    every reference count equals the number of manifest entries naming the chunk."""
    engine = wh.engine
    chunks = {(c.domain_id, c.chunk_id): c for c in all_chunks(engine)}
    refs = manifest_refcounts(engine)
    for ident in refs:
        rec = chunks.get(ident)
        assert rec is not None, f"a manifest references chunk {ident[1].hex()[:16]}, which has no row"
        check = engine.chunks.check(rec)
        assert len(check.good) >= rec.k
        # A kill cannot undo a completed fsync: every shard was durable before the commit.
        assert check.bad == {}, f"chunk {ident[1].hex()[:16]}: {check.bad}"
    for ident, rec in chunks.items():
        assert rec.refcount == refs.get(ident, 0), f"chunk {ident[1].hex()[:16]}: refcount {rec.refcount}"
    for v in all_versions(engine):
        if v.inline_data is None:
            assert sum(ref.plain_size for ref in v.chunks) == v.size


def check_objects(wh: Warehouse, acked: dict[str, State], pending: tuple[str, State] | None) -> None:
    """Every acknowledged object reads back with its sha256 (the in-flight key may also hold the
    in-flight state); every deleted one is gone; then ``acked`` learns the in-flight outcome."""
    listed = {s.key for s in wh.iter_objects(BUCKET)}
    for key, want in acked.items():
        got = state_of(wh, key)
        allowed = {want}
        if pending is not None and pending[0] == key:
            allowed.add(pending[1])
        assert got in allowed, f"{key}: holds {got}, acknowledged {want}"
        assert (got is not None) == (key in listed)
    if pending is not None:
        got = state_of(wh, pending[0])
        assert got in {acked.get(pending[0]), pending[1]}
        acked[pending[0]] = got
    assert listed <= set(acked), f"objects nobody wrote: {listed - set(acked)}"


def orphan_count(root: Path, wh: Warehouse) -> int:
    rows = {(c.domain_id, c.chunk_id, c.generation) for c in all_chunks(wh.engine)}
    return sum(n for ident, n in shard_identities(root).items() if ident not in rows)


def collect_and_check(root: Path, wh: Warehouse, clock: ManualClock) -> gc.GcReport:
    clock.advance(timedelta(seconds=wh.engine.config.gc_grace_seconds + 60))
    report = gc.collect(wh.engine)
    rows = {(c.domain_id, c.chunk_id, c.generation) for c in all_chunks(wh.engine)}
    on_disk = shard_identities(root)
    assert set(on_disk) == rows, "after GC every stored shard belongs to a chunk row"
    assert set(on_disk.values()) <= {K + M}
    assert temp_files(root) == []
    assert unsealed_packs(root) == [], "the packs of killed writers were sealed at the next open"
    assert all(c.refcount > 0 for c in all_chunks(wh.engine)), "unreferenced chunks are collected"
    assert gc.collect(wh.engine).orphan_shards_removed == 0
    return report


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "dwh-data"
    with init_wh(path) as wh:
        wh.create_bucket(BUCKET)
    return path


ROUNDS = 7


def test_sigkill_at_random_points_loses_no_acknowledged_write(root: Path, tmp_path: Path, clock: ManualClock) -> None:
    rng = random.Random(4242)
    acked: dict[str, State] = {}
    acks = kills_in_flight = n = 0
    # About one kill in three lands between two operations: ROUNDS kills leave fewer than
    # ROUNDS // 2 in flight some 3 % of the time, so more rounds (up to 3 * ROUNDS) until enough do.
    while n < ROUNDS or (kills_in_flight < ROUNDS // 2 and n < 3 * ROUNDS):
        writer = Writer(root, seed=1000 + n, mode="mixed", log=tmp_path / f"writer-{n}.log")
        writer.wait_for("ACK")  # at least one acknowledged write per round
        time.sleep(rng.uniform(0.0, 1.0))
        writer.kill()
        lines = writer.lines()
        acks += sum(1 for line in lines if line.startswith("ACK "))
        pending = apply_log(lines, acked)
        kills_in_flight += pending is not None
        with open_wh(root) as wh:
            check_objects(wh, acked, pending)
            check_index(wh)
        n += 1
    assert acks >= ROUNDS and any(v is not None for v in acked.values())
    assert kills_in_flight >= ROUNDS // 2, "kills should interrupt operations"

    with open_wh(root, clock) as wh:
        left = orphan_count(root, wh)
        report = collect_and_check(root, wh, clock)
        assert report.orphan_shards_removed == left
        check_objects(wh, acked, None)
        check_index(wh)


def test_sigkill_during_a_large_write_leaves_it_whole_or_absent(root: Path, tmp_path: Path, clock: ManualClock) -> None:
    acked: dict[str, State] = {}

    # Killed in the middle of the stream: nothing is visible; the shards written so far are
    # orphans (flushed) or temp files (staged, not yet flushed), both left for GC.
    writer = Writer(root, seed=1, mode="large", log=tmp_path / "large-1.log")
    # Up to max_size (4 MiB) waits in the chunker and threads + 4 = 10 chunks may be in flight, so
    # only after ~14 MiB are some chunks certainly on disk: kill after 20.
    writer.wait_for("WROTE 20")
    writer.kill()
    pending = apply_log(writer.lines(), acked)
    assert pending is not None and pending[0] == LARGE_KEY
    with open_wh(root) as wh:
        with pytest.raises(NoSuchKey):
            wh.head_object(BUCKET, LARGE_KEY)
        assert orphan_count(root, wh) + len(temp_files(root)) > 0
        check_index(wh)

    # Killed close to the end (streaming the last pieces, cutting the last chunks, committing):
    # whole or absent, never partial.
    rng = random.Random(77)
    for n in range(2):
        writer = Writer(root, seed=2 + n, mode="large", log=tmp_path / f"large-{2 + n}.log")
        writer.wait_for("WROTE 28")
        time.sleep(rng.uniform(0.0, 0.4))
        writer.kill()
        pending = apply_log(writer.lines(), acked)
        with open_wh(root) as wh:
            check_objects(wh, acked, pending)
            check_index(wh)
            if acked[LARGE_KEY] is not None:
                assert wh.head_object(BUCKET, LARGE_KEY).size == 30 * 1024 * 1024

    # Left alone, it completes; the acknowledged object survives the next kill of a writer.
    writer = Writer(root, seed=9, mode="large", log=tmp_path / "large-9.log")
    writer.finish()
    pending = apply_log(writer.lines(), acked)
    assert pending is None and acked[LARGE_KEY] is not None
    writer = Writer(root, seed=10, mode="large", log=tmp_path / "large-10.log")
    writer.wait_for("WROTE 5")
    writer.kill()
    pending = apply_log(writer.lines(), acked)
    with open_wh(root, clock) as wh:
        check_objects(wh, acked, pending)
        check_index(wh)
        report = collect_and_check(root, wh, clock)
        # What the killed writers left: flushed shards no chunk row names, or staged temp files.
        assert report.orphan_shards_removed + report.temp_files_removed > 0
        check_objects(wh, acked, None)


def test_kill_between_journal_append_and_database_commit_is_replayed(
    root: Path, tmp_path: Path, clock: ManualClock
) -> None:
    """The writer dies right after an operation's journal records are durable and before its
    database transaction commits: the next open applies it from the journal (exactly once)."""
    acked: dict[str, State] = {}
    replayed = 0
    for n, appends in enumerate([1, 5, 11]):
        writer = Writer(root, 300 + n, "journal-kill", tmp_path / f"journal-kill-{n}.log", str(appends))
        writer.finish(returncode=-signal.SIGKILL)
        pending = apply_log(writer.lines(), acked)
        assert pending is not None, "the kill happens inside an operation"
        with open_wh(root) as wh:
            assert wh.engine.replayed == 1
            replayed += 1
            # Not "may or may not": the operation reached the journal, so it happened.
            assert state_of(wh, pending[0]) == pending[1]
            check_objects(wh, acked, pending)
            check_index(wh)
        with open_wh(root) as wh:
            assert wh.engine.replayed == 0, "replay is recorded: a second open applies nothing"
    assert replayed == 3
    with open_wh(root, clock) as wh:
        collect_and_check(root, wh, clock)
        check_objects(wh, acked, None)
        check_index(wh)
