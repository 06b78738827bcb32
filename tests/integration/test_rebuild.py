"""Invariant 2, second half (docs/invariants.md): the metadata database is an index rebuilt from
the disks. Deleting it (and its WAL) loses nothing: ``rebuild_meta`` replays the journal, learns
where every shard is from the disks and recomputes the reference counts.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from dwh_testkit import (
    BUCKET,
    IndexSnapshot,
    Item,
    K,
    M,
    all_chunks,
    assert_dataset,
    chunk_ids_of,
    disk_dirs,
    disk_ids,
    manifest_refcounts,
    open_wh,
    put_items,
    shard_identities,
    snapshot_index,
    text_bytes,
)

from datawarehouse.clock import ManualClock
from datawarehouse.engine import gc
from datawarehouse.engine.diskops import add_disk, remove_disk
from datawarehouse.engine.rebalance import rebalance
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.engine.scrub import scrub
from datawarehouse.errors import DataUnavailable, MetadataError, NoSuchKey
from datawarehouse.service import catalog

META_FILES = ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm")


def _drop_database(root: Path) -> None:
    assert (root / "meta" / "meta.sqlite3").exists()
    for name in META_FILES:
        (root / "meta" / name).unlink(missing_ok=True)


def _assert_open_refuses(root: Path) -> None:
    with pytest.raises(MetadataError, match="rebuild-meta"):
        open_wh(root)


def _snapshot(root: Path) -> IndexSnapshot:
    with open_wh(root) as wh:
        return snapshot_index(wh.engine)


def _assert_same_index(before: IndexSnapshot, after: IndexSnapshot, *, placement: bool = True) -> None:
    assert after.buckets == before.buckets
    assert after.secrets == before.secrets
    # Versions compare whole: key, version id, size, etag, dates, content type, user metadata,
    # storage class, chunker, inline bytes and the manifest.
    assert after.versions == before.versions
    if placement:
        assert after.chunks == before.chunks
    else:
        strip = {k: v[:-1] for k, v in before.chunks.items()}
        assert {k: v[:-1] for k, v in after.chunks.items()} == strip
    # An unreferenced chunk's grace period may restart at the rebuild, never end earlier.
    for key, was in before.zero_since.items():
        now = after.zero_since[key]
        assert (was is None) == (now is None), key
        if was is not None:
            assert now >= was  # type: ignore[operator]


def _assert_refcounts_match_manifests(root: Path) -> None:
    with open_wh(root) as wh:
        refs = manifest_refcounts(wh.engine)
        chunks = {(c.domain_id, c.chunk_id): c.refcount for c in all_chunks(wh.engine)}
    assert {k: v for k, v in chunks.items() if v} == dict(refs)


def _rebuild(root: Path) -> None:
    report = rebuild_meta(root, catalog.replay)
    assert report.damaged_objects == []
    assert report.journal_records > 0


def test_rebuild_after_losing_the_database(populated: Path, dataset: list[Item]) -> None:
    root = populated
    before = _snapshot(root)
    assert sum(1 for v in before.chunks.values() if v[5] > 1) >= 1, "the dataset shares chunks"
    _drop_database(root)
    _assert_open_refuses(root)

    report = rebuild_meta(root, catalog.replay)
    assert report.damaged_objects == []
    assert report.old_database is None
    assert report.versions == len(dataset)
    assert report.chunks == len(before.chunks)
    assert report.shards_found == len(before.chunks) * (K + M)

    _assert_same_index(before, _snapshot(root))
    _assert_refcounts_match_manifests(root)
    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
        assert scrub(wh.engine).clean


def test_rebuild_reflects_overwrites_and_deletes(populated: Path, dataset: list[Item], clock: ManualClock) -> None:
    root = populated
    rng = random.Random(11)
    current = {item.key: item for item in dataset}
    with open_wh(root, clock) as wh:
        # Overwrite three objects (one with the content of another key: dedup across keys).
        for key, data in [
            ("many/random-600k", rng.randbytes(700_000)),
            ("few/text-150k", text_bytes(rng, 90_000)),
            ("small/random-100", current["dup/first"].data),
        ]:
            new = Item(key, data, "application/x-new", {"gen": "2"})
            put_items(wh, [new])
            current[key] = new
        # Delete four (one of the duplicated pair, an inline one), and delete-then-recreate one.
        for key in ("dup/second", "small/text-3000", "many/random-1m", "prefix/a"):
            assert wh.delete_object(BUCKET, key)
            del current[key]
        assert wh.delete_object(BUCKET, "mixed/random-then-text")
        again = Item("mixed/random-then-text", b"recreated " * 1000, "text/plain")
        put_items(wh, [again])
        current[again.key] = again
        # A second bucket that is created, filled, emptied and deleted; a third that stays.
        wh.create_bucket("gone")
        wh.put_object("gone", "x", rng.randbytes(30_000))
        wh.delete_object("gone", "x")
        wh.delete_bucket("gone")
        wh.create_bucket("kept")
        kept = Item("k", rng.randbytes(40_000))
        put_items(wh, [kept], "kept")
        assert_dataset(wh, current.values())
    before = _snapshot(root)
    assert any(v[5] == 0 for v in before.chunks.values()), "deletes must leave unreferenced chunks"

    _drop_database(root)
    _assert_open_refuses(root)
    _rebuild(root)

    _assert_same_index(before, _snapshot(root))
    _assert_refcounts_match_manifests(root)
    with open_wh(root) as wh:
        assert_dataset(wh, current.values())
        assert_dataset(wh, [kept], "kept")
        assert [b.name for b in wh.list_buckets()] == [BUCKET, "kept"]
        for key in ("dup/second", "small/text-3000", "many/random-1m", "prefix/a"):
            with pytest.raises(NoSuchKey):
                wh.head_object(BUCKET, key)


def test_rebuild_after_collecting_garbage(populated: Path, dataset: list[Item], clock: ManualClock) -> None:
    """Chunks GC removed stay removed: the rebuilt index holds no row without shards."""
    root = populated
    gone = ["many/random-1m", "few/random-300k", "dup/first"]
    with open_wh(root, clock) as wh:
        for key in gone:
            wh.delete_object(BUCKET, key)
        clock.advance(timedelta(seconds=wh.engine.config.gc_grace_seconds + 60))
        report = gc.collect(wh.engine)
        assert report.chunks_removed > 0
    before = _snapshot(root)
    _drop_database(root)
    _rebuild(root)
    _assert_same_index(before, _snapshot(root))
    keep = [item for item in dataset if item.key not in gone]
    with open_wh(root) as wh:
        assert_dataset(wh, keep)
        report = scrub(wh.engine)
        assert report.clean, report


def test_rebuild_learns_placement_after_disk_add_rebalance_and_remove(populated: Path, dataset: list[Item]) -> None:
    root = populated
    with open_wh(root) as wh:
        add_disk(wh.engine, root / "disks" / "d7")
        moved = rebalance(wh.engine)
        assert moved.failed == []
        assert moved.shards_moved > 0
        drained = remove_disk(wh.engine, str(root / "disks" / "d2"))
        assert drained.failed == []
        assert drained.shards_moved > 0
        extra = Item("after/rebalance", random.Random(3).randbytes(250_000))
        put_items(wh, [extra])
    before = _snapshot(root)
    ids = set(disk_ids(root).values())
    assert len(ids) == 6
    assert all(set(v[6]) <= ids for v in before.chunks.values())

    _drop_database(root)
    _rebuild(root)
    # Moves are not journaled: the placement comes from the shard files, and must match.
    _assert_same_index(before, _snapshot(root))
    with open_wh(root) as wh:
        assert_dataset(wh, [*dataset, extra])
        assert scrub(wh.engine).clean


def test_rebuild_with_meta_dir_and_two_disks_lost_then_gc_and_scrub(
    populated: Path, dataset: list[Item], clock: ManualClock
) -> None:
    root = populated
    deleted = "many/text-900k"
    with open_wh(root, clock) as wh:
        orphaned = chunk_ids_of(wh, [deleted]) - chunk_ids_of(wh, [i.key for i in dataset if i.key != deleted])
        assert wh.delete_object(BUCKET, deleted)
    assert orphaned
    keep = [item for item in dataset if item.key != deleted]
    before = _snapshot(root)
    disks = disk_dirs(root)

    shutil.rmtree(root / "meta")
    shutil.rmtree(disks[0])
    shutil.rmtree(disks[3])
    _assert_open_refuses(root)
    report = rebuild_meta(root, catalog.replay)
    assert report.damaged_objects == []
    assert report.shards_found == len(before.chunks) * (K + M - 2)

    after = _snapshot(root)
    # Everything but the placement of the lost shards is as before.
    _assert_same_index(before, after, placement=False)
    lost = {disk_ids(root)[disks[0]], disk_ids(root)[disks[3]]}
    for key, value in before.chunks.items():
        for index, disk in enumerate(value[6]):
            if disk not in lost:
                assert after.chunks[key][6][index] == disk

    with open_wh(root, clock) as wh:
        assert_dataset(wh, keep)
        # GC after the rebuild: only the deleted object's chunks go, once their grace is over.
        assert gc.collect(wh.engine).chunks_removed == 0
        clock.advance(timedelta(seconds=wh.engine.config.gc_grace_seconds + 60))
        collected = gc.collect(wh.engine)
        assert collected.chunks_removed == len(orphaned)
        remaining = {c.chunk_id for c in all_chunks(wh.engine)}
        assert not remaining & orphaned
        assert remaining == chunk_ids_of(wh, [i.key for i in keep])
        assert_dataset(wh, keep)
        # Scrub puts the lost shards back on the two empty disks.
        repaired = scrub(wh.engine)
        assert repaired.unrecoverable == []
        assert repaired.shards_repaired == 2 * len(remaining)
        assert scrub(wh.engine).clean
        everywhere = set(disk_ids(root).values())
        assert all(set(c.placement) == everywhere for c in all_chunks(wh.engine))
    # Every shard file on disk belongs to a chunk in the index; redundancy is whole again.
    with open_wh(root) as wh:
        rows = {(c.domain_id, c.chunk_id, c.generation) for c in all_chunks(wh.engine)}
    assert set(shard_identities(root)) == rows
    shutil.rmtree(disks[1])
    shutil.rmtree(disks[5])
    with open_wh(root) as wh:
        assert_dataset(wh, keep, ranges=False)


def _dwh() -> str:
    exe = Path(sys.executable).parent / "dwh"
    found = str(exe) if exe.exists() else shutil.which("dwh")
    assert found, "the dwh entry point is not installed"
    return found


def test_cli_rebuild_meta(populated: Path, dataset: list[Item]) -> None:
    root = populated
    before = _snapshot(root)
    _drop_database(root)
    run = subprocess.run(
        [_dwh(), "repair", "rebuild-meta", "--data-dir", str(root)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "rebuilt" in run.stdout
    assert f"{len(dataset)} object versions" in run.stdout
    _assert_same_index(before, _snapshot(root))

    # With a database present, the old one is kept aside, never deleted.
    run = subprocess.run(
        [_dwh(), "repair", "rebuild-meta", "--data-dir", str(root)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    kept = list((root / "meta").glob("meta.sqlite3.before-rebuild-*"))
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))]
    assert "kept at" in run.stdout
    _assert_same_index(before, _snapshot(root))
    with open_wh(root) as wh:
        assert_dataset(wh, dataset, ranges=False)


def test_snapshot_comparison_can_fail(populated: Path) -> None:
    """Guard against a comparison that cannot fail: a changed refcount or placement is seen."""
    before = _snapshot(root := populated)
    key, value = next(iter(before.chunks.items()))
    changed = dict(before.chunks)
    changed[key] = (*value[:5], value[5] + 1, value[6])
    with pytest.raises(AssertionError):
        _assert_same_index(before, replace(before, chunks=changed))
    changed[key] = (*value[:6], tuple(reversed(value[6])))
    with pytest.raises(AssertionError):
        _assert_same_index(before, replace(before, chunks=changed))
    assert _snapshot(root) == before


def test_rebuild_with_three_disks_lost_reports_the_damaged_objects(populated: Path, dataset: list[Item]) -> None:
    """More than m disks lost: the rebuild says which objects cannot be read, never hides it."""
    root = populated
    disks = disk_dirs(root)
    _drop_database(root)
    for i in (0, 2, 4):
        shutil.rmtree(disks[i])
    run = subprocess.run(
        [_dwh(), "repair", "rebuild-meta", "--data-dir", str(root)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 6, (run.stdout, run.stderr)
    chunked = [item for item in dataset if not item.inline]
    damaged = {line.split(": ", 1)[1].strip() for line in run.stdout.splitlines() if "damaged" in line}
    assert damaged == {f"{BUCKET}/{item.key}" for item in chunked}
    _assert_refcounts_match_manifests(root)
    with open_wh(root) as wh:
        for item in dataset:
            if item.inline:
                assert wh.get_object_bytes(BUCKET, item.key) == item.data
            else:
                with pytest.raises(DataUnavailable):
                    wh.get_object_bytes(BUCKET, item.key)
