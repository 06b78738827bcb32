"""Invariant 4 (docs/invariants.md): chunks are removed only when unreferenced, older than the
grace period, and re-checked; orphan shard files only once older than the grace period; a write
that reuses an unreferenced chunk restarts its grace period, and a commit never references a
chunk GC removed. Time is a ManualClock (started at the real time: orphan ages are file mtimes).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dwh_testkit import (
    BUCKET,
    K,
    M,
    all_chunks,
    chunk_ids_of,
    init_wh,
    open_wh,
    pack_files,
    shard_identities,
    shard_inventory,
    shard_locations,
    temp_files,
    text_bytes,
)

from datawarehouse.clock import ManualClock
from datawarehouse.engine import gc
from datawarehouse.engine.chunkstore import parse_shard_key
from datawarehouse.engine.committer import _Item
from datawarehouse.errors import ConcurrentModification, NoSuchKey
from datawarehouse.ids import DEFAULT_DOMAIN
from datawarehouse.service.warehouse import Warehouse
from datawarehouse.storage.packformat import ALIGN


def _grace(wh: Warehouse) -> timedelta:
    return timedelta(seconds=wh.engine.config.gc_grace_seconds)


def _rows(wh: Warehouse) -> set[tuple[int, bytes, int]]:
    return {(c.domain_id, c.chunk_id, c.generation) for c in all_chunks(wh.engine)}


def _assert_disks_match_index(root: Path, wh: Warehouse) -> None:
    """Every chunk row has its k+m shards, and there is no other shard."""
    on_disk = shard_identities(root)
    assert set(on_disk) == _rows(wh)
    assert set(on_disk.values()) <= {K + M}


def _nothing(report: gc.GcReport) -> bool:
    return (report.chunks_removed, report.shards_removed, report.orphan_shards_removed, report.bytes_freed) == (
        0,
        0,
        0,
        0,
    )


@pytest.fixture
def wh(tmp_path: Path, clock: ManualClock) -> Warehouse:
    w = init_wh(tmp_path / "dwh-data", clock)
    w.create_bucket(BUCKET)
    yield w  # type: ignore[misc]
    w.close()


def _root(wh: Warehouse) -> Path:
    return wh.engine.datadir.root


def test_deleting_one_of_two_objects_sharing_chunks_keeps_every_shared_chunk(wh: Warehouse, clock: ManualClock) -> None:
    rng = random.Random(21)
    same = rng.randbytes(900_000)
    prefix = rng.randbytes(600_000)
    objects = {
        "same/a": same,
        "same/b": same,
        "prefix/a": prefix + rng.randbytes(300_000),
        "prefix/b": prefix + text_bytes(rng, 300_000),
    }
    for key, data in objects.items():
        wh.put_object(BUCKET, key, data)
    ids = {key: chunk_ids_of(wh, [key]) for key in objects}
    assert ids["same/a"] == ids["same/b"]
    shared_prefix = ids["prefix/a"] & ids["prefix/b"]
    only_a = ids["prefix/a"] - ids["prefix/b"]
    assert len(shared_prefix) >= 3 and only_a, "content-defined chunking must share the prefix's chunks"
    _assert_disks_match_index(_root(wh), wh)

    assert wh.delete_object(BUCKET, "same/a")
    assert wh.delete_object(BUCKET, "prefix/a")
    clock.advance(_grace(wh) + timedelta(minutes=1))
    report = gc.collect(wh.engine)
    assert report.chunks_removed == len(only_a)
    assert report.shards_removed == len(only_a) * (K + M)
    assert report.orphan_shards_removed == 0

    remaining = {c.chunk_id for c in all_chunks(wh.engine)}
    assert remaining == ids["same/b"] | ids["prefix/b"]
    assert shared_prefix <= remaining
    _assert_disks_match_index(_root(wh), wh)
    assert wh.get_object_bytes(BUCKET, "same/b") == same
    assert wh.get_object_bytes(BUCKET, "prefix/b") == objects["prefix/b"]
    assert all(c.refcount == 1 for c in all_chunks(wh.engine) if c.chunk_id in shared_prefix)
    assert _nothing(gc.collect(wh.engine))


def test_nothing_is_collected_before_the_grace_period_everything_after(wh: Warehouse, clock: ManualClock) -> None:
    rng = random.Random(22)
    wh.put_object(BUCKET, "x", rng.randbytes(700_000))
    wh.put_object(BUCKET, "y", text_bytes(rng, 500_000))
    wh.put_object(BUCKET, "inline", b"tiny")
    chunks = all_chunks(wh.engine)
    files = shard_locations(_root(wh))
    assert len(chunks) >= 6 and len(files) == len(chunks) * (K + M)
    for key in ("x", "y", "inline"):
        assert wh.delete_object(BUCKET, key)

    assert _nothing(gc.collect(wh.engine))
    clock.advance(_grace(wh) - timedelta(minutes=1))
    assert _nothing(gc.collect(wh.engine))
    assert shard_locations(_root(wh)) == files
    assert len(all_chunks(wh.engine)) == len(chunks)

    clock.advance(timedelta(minutes=2))
    report = gc.collect(wh.engine)
    assert report.chunks_removed == len(chunks)
    assert report.shards_removed == len(files)
    assert report.bytes_freed == sum(c.sealed_size for c in chunks)
    assert all_chunks(wh.engine) == []
    assert shard_locations(_root(wh)) == {}
    assert _nothing(gc.collect(wh.engine))
    with pytest.raises(NoSuchKey):
        wh.get_object_bytes(BUCKET, "x")


def test_orphan_shards_are_kept_until_older_than_the_grace_period(wh: Warehouse, clock: ManualClock) -> None:
    rng = random.Random(23)
    kept = rng.randbytes(400_000)
    wh.put_object(BUCKET, "kept", kept)
    committed = _rows(wh)
    # A write that made its shards durable and died before its commit.
    writer = wh.engine.new_writer(DEFAULT_DOMAIN, wh.engine.default_storage_class())
    writer.write(rng.randbytes(500_000))
    written = writer.finish()
    assert len(written.new_chunks) >= 3
    orphans = {(c.domain_id, c.chunk_id, c.generation) for c in written.new_chunks}
    assert set(shard_identities(_root(wh))) == committed | orphans
    before = shard_locations(_root(wh))

    assert _nothing(gc.collect(wh.engine))
    clock.advance(_grace(wh) - timedelta(minutes=1))
    assert _nothing(gc.collect(wh.engine))
    assert shard_locations(_root(wh)) == before

    clock.advance(timedelta(minutes=2))
    report = gc.collect(wh.engine)
    assert report.chunks_removed == 0
    assert report.orphan_shards_removed == len(orphans) * (K + M)
    assert set(shard_identities(_root(wh))) == committed
    _assert_disks_match_index(_root(wh), wh)
    assert wh.get_object_bytes(BUCKET, "kept") == kept
    assert _nothing(gc.collect(wh.engine))


def test_temp_files_of_interrupted_puts_are_removed_after_the_grace_period(wh: Warehouse, clock: ManualClock) -> None:
    """A put killed between writing its temp file and renaming it leaves the file in ``.tmp``."""
    wh.put_object(BUCKET, "x", random.Random(24).randbytes(100_000))
    tmp = _root(wh) / "disks" / "d3" / ".tmp"
    tmp.mkdir(exist_ok=True)
    leftover = tmp / "put-deadbeef0000-0"
    leftover.write_bytes(b"half a shard")
    assert gc.collect(wh.engine).temp_files_removed == 0
    assert leftover.exists()
    clock.advance(_grace(wh) + timedelta(minutes=1))
    assert gc.collect(wh.engine).temp_files_removed == 1
    assert temp_files(_root(wh)) == []


def test_chunk_reused_after_its_refcount_dropped_to_zero_survives_gc(wh: Warehouse, clock: ManualClock) -> None:
    data = random.Random(25).randbytes(600_000)
    wh.put_object(BUCKET, "a", data)
    rows = _rows(wh)
    files = shard_locations(_root(wh))
    assert wh.delete_object(BUCKET, "a")
    assert all(c.refcount == 0 for c in all_chunks(wh.engine))
    clock.advance(_grace(wh) / 2)
    wh.put_object(BUCKET, "b", data)  # dedup: the unreferenced chunks are referenced again
    assert _rows(wh) == rows
    assert shard_locations(_root(wh)) == files, "the reuse wrote no new shards"
    clock.advance(_grace(wh) * 2)
    assert _nothing(gc.collect(wh.engine))
    assert wh.get_object_bytes(BUCKET, "b") == data


def _put_with_hook_before_commit(wh: Warehouse, key: str, data: bytes, hook: Callable[[], None]) -> None:
    """``put_object``, running ``hook`` once every chunk is looked up (dedup) and every new shard
    is durable, just before the commit: the window in which GC may run concurrently."""
    engine = wh.engine
    real = engine.commit_later

    def commit_later(*args: Any, **kwargs: Any) -> Any:
        hook()
        return real(*args, **kwargs)

    engine.commit_later = commit_later  # type: ignore[method-assign]
    try:
        wh.put_object(BUCKET, key, data)
    finally:
        del engine.commit_later


def test_gc_between_dedup_lookup_and_commit_keeps_the_reused_chunks(wh: Warehouse, clock: ManualClock) -> None:
    data = random.Random(26).randbytes(800_000)
    wh.put_object(BUCKET, "a", data)
    ids = {c.chunk_id for c in all_chunks(wh.engine)}
    assert wh.delete_object(BUCKET, "a")
    clock.advance(_grace(wh) + timedelta(minutes=1))
    with wh.engine.repo.transaction() as tx:
        collectable = {c.chunk_id for c in tx.collectable_chunks(clock.now() - _grace(wh))}
    assert collectable == ids, "without the reuse, GC would remove them all now"

    files = shard_locations(_root(wh))
    reports: list[gc.GcReport] = []
    # The lookups of the new put restart the grace period of the chunks it reuses.
    _put_with_hook_before_commit(wh, "b", data, lambda: reports.append(gc.collect(wh.engine)))
    assert len(reports) == 1 and _nothing(reports[0])
    assert shard_locations(_root(wh)) == files, "the put reused every chunk, GC removed none"
    assert wh.get_object_bytes(BUCKET, "b") == data
    assert {c.chunk_id: c.refcount for c in all_chunks(wh.engine)} == dict.fromkeys(ids, 1)
    _assert_disks_match_index(_root(wh), wh)
    clock.advance(_grace(wh) * 2)
    assert _nothing(gc.collect(wh.engine))
    assert wh.get_object_bytes(BUCKET, "b") == data


def test_commit_refuses_a_chunk_gc_removed_during_the_write(wh: Warehouse, clock: ManualClock) -> None:
    """A write that outlives the grace period loses its reused chunks to GC: the commit must fail
    rather than store a manifest that names a missing chunk."""
    data = random.Random(27).randbytes(500_000)
    wh.put_object(BUCKET, "a", data)
    assert wh.delete_object(BUCKET, "a")
    removed: list[int] = []

    def slow_write_then_gc() -> None:
        clock.advance(_grace(wh) + timedelta(minutes=1))
        removed.append(gc.collect(wh.engine).chunks_removed)

    with pytest.raises(ConcurrentModification):
        _put_with_hook_before_commit(wh, "b", data, slow_write_then_gc)
    assert removed[0] > 0
    with pytest.raises(NoSuchKey):
        wh.head_object(BUCKET, "b")
    with wh.engine.repo.transaction() as tx:
        assert list(tx.iter_all_versions()) == []
    assert all_chunks(wh.engine) == []


def _pack_bytes(root: Path) -> int:
    return sum(p.stat().st_size for disk in (root / "disks").iterdir() for p in pack_files(disk))


def _chunk_of(name: str) -> bytes:
    parsed = parse_shard_key(name.split("/", 1)[1])
    assert parsed is not None, name
    return parsed[1]


def test_gc_compacts_the_packs_of_collected_shards_and_gives_their_bytes_back(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Removing a packed shard only appends a tombstone; the space comes back when GC compacts
    the packs it left mostly dead: their live shards are copied out (same bytes) and the packs
    removed. Written in one session (its packs sealed at close), collected in the next."""
    root = tmp_path / "dwh-data"
    rng = random.Random(28)
    kept = rng.randbytes(200_000)
    with init_wh(root, clock) as w:
        w.create_bucket(BUCKET)
        w.put_object(BUCKET, "gone", rng.randbytes(1_500_000))
        w.put_object(BUCKET, "kept", kept)
        kept_ids = chunk_ids_of(w, ["kept"])
        gone_ids = chunk_ids_of(w, ["gone"])
    assert kept_ids and len(gone_ids) >= 5 and not kept_ids & gone_ids
    before = shard_locations(root)
    inventory_before = shard_inventory(root)
    dead = {name: loc for name, loc in before.items() if _chunk_of(name) in gone_ids}
    assert len(dead) == len(gone_ids) * (K + M)
    old_packs = {loc.path for loc in before.values()}
    bytes_before = _pack_bytes(root)
    dead_bytes = sum(loc.length for loc in dead.values())

    with open_wh(root, clock) as w:
        assert w.delete_object(BUCKET, "gone")
        clock.advance(_grace(w) + timedelta(minutes=1))
        report = gc.collect(w.engine)
        assert report.chunks_removed == len(gone_ids)
        assert report.shards_removed == len(dead)
        assert report.packs_compacted >= len(old_packs)
        assert report.pack_bytes_reclaimed >= dead_bytes
        after = shard_locations(root)
        assert set(after) == set(before) - set(dead)
        # Every pack that held a removed shard is gone; the live shards it held were moved out
        # with their bytes unchanged.
        assert old_packs and not any(p.exists() for p in old_packs)
        assert not any(loc.path in old_packs for loc in after.values())
        assert shard_inventory(root) == {n: h for n, h in inventory_before.items() if n not in dead}
        # The dead shards' bytes are given back (what remains of them: a tombstone per shard, one
        # aligned block each).
        assert _pack_bytes(root) <= bytes_before - dead_bytes + len(dead) * ALIGN
        assert w.get_object_bytes(BUCKET, "kept") == kept
        _assert_disks_match_index(root, w)
        assert _nothing(gc.collect(w.engine))
    # Reopened: the removed shards stay removed, the moved ones are found where they went.
    assert set(shard_locations(root)) == set(after)
    with open_wh(root, clock) as w:
        assert w.get_object_bytes(BUCKET, "kept") == kept
        _assert_disks_match_index(root, w)


def test_a_run_of_puts_with_one_collected_chunk_refuses_only_that_put(wh: Warehouse, clock: ManualClock) -> None:
    """Chunked PUTs of new keys are stored together by the group commit
    (``catalog.apply_object_puts``). When GC removed a chunk one of them reuses, the run as a
    whole fails and the committer applies them one at a time: only that PUT is refused, the
    others are stored with their chunks counted."""
    reused = random.Random(28).randbytes(500_000)
    wh.put_object(BUCKET, "a", reused)
    assert wh.delete_object(BUCKET, "a")
    committer = wh.engine.committer
    queued: list[_Item] = []
    enqueued = threading.Semaphore(0)

    def hold(
        apply: Any,
        record: Any,
        *,
        batch: Any = None,
        payload: Any = None,
        flush: frozenset[Any] = frozenset(),
        announce: bool = True,
    ) -> Future[Any]:
        """Queue the operation without committing it; the test commits the run at once."""
        future: Future[Any] = Future()
        queued.append(_Item(apply, record, future, batch, payload, flush, announce))
        enqueued.release()
        return future

    # c and d reuse the chunks of a live object (no new shards, which GC could take for orphans).
    live = random.Random(29).randbytes(400_000)
    wh.put_object(BUCKET, "e", live)
    fresh = {"c": live, "d": live}
    with ThreadPoolExecutor(3) as pool:
        committer.enqueue = hold  # type: ignore[method-assign]
        try:
            futures = {key: pool.submit(wh.put_object, BUCKET, key, data) for key, data in fresh.items()}
            futures["b"] = pool.submit(wh.put_object, BUCKET, "b", reused)
            for _ in range(3):
                assert enqueued.acquire(timeout=30)
        finally:
            del committer.enqueue
        # Every write is done (its shards staged, made durable by the commit), its dedup lookups
        # made; now GC runs past the grace period.
        clock.advance(_grace(wh) + timedelta(minutes=1))
        assert gc.collect(wh.engine).chunks_removed > 0
        batches: list[int] = []
        real = queued[0].batch
        assert real is not None and all(q.batch is real for q in queued)

        def counting(tx: Any, payloads: Any) -> Any:
            batches.append(len(payloads))
            return real(tx, payloads)

        for q in queued:
            q.batch = counting
        committer._commit(queued)
        assert batches == [3]  # tried as one run, which failed, then one at a time
        with pytest.raises(ConcurrentModification):
            futures["b"].result(timeout=30)
        for key, data in fresh.items():
            futures[key].result(timeout=30)
            assert wh.get_object_bytes(BUCKET, key) == data
    with pytest.raises(NoSuchKey):
        wh.head_object(BUCKET, "b")
    with wh.engine.repo.transaction() as tx:
        assert {v.key for v in tx.iter_all_versions()} == {"c", "d", "e"}
    counts = {c.chunk_id: c.refcount for c in all_chunks(wh.engine)}
    assert counts == dict.fromkeys(chunk_ids_of(wh, ["e"]), 3)
