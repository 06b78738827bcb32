"""Weighted rendezvous placement: deterministic, distinct, proportional, and minimal movement."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from datawarehouse.engine.placement import place
from datawarehouse.errors import InvalidStorageClass
from datawarehouse.ids import ChunkId, DiskId
from datawarehouse.records import DiskRecord, DiskState

AT = datetime(2026, 1, 1, tzinfo=UTC)
N_CHUNKS = 10_000


def disk(i: int, weight: float = 1.0, state: DiskState = DiskState.ACTIVE) -> DiskRecord:
    return DiskRecord(DiskId(f"{i:032x}"), f"/mnt/d{i}", weight, state, AT)


@pytest.fixture(scope="module")
def chunk_ids() -> list[ChunkId]:
    rng = random.Random(2026)
    return [ChunkId(rng.randbytes(32)) for _ in range(N_CHUNKS)]


def test_deterministic_and_order_independent(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(8)]
    shuffled = disks[:]
    random.Random(1).shuffle(shuffled)
    for cid in chunk_ids[:500]:
        first = place(cid, disks, 6)
        assert place(cid, disks, 6) == first
        assert place(cid, shuffled, 6) == first
        # A smaller count is a prefix: the best disks are the same.
        assert place(cid, disks, 3) == first[:3]


def test_distinct_disks_and_counts(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(12)]
    for count in (1, 3, 6, 12):
        for cid in chunk_ids[:300]:
            got = place(cid, disks, count)
            assert len(got) == count == len(set(got))
            assert set(got) <= {d.disk_id for d in disks}


def test_only_active_disks_are_chosen(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(6)] + [disk(6, state=DiskState.DRAINING), disk(7, state=DiskState.REMOVED)]
    for cid in chunk_ids[:300]:
        got = place(cid, disks, 6)
        assert set(got) == {d.disk_id for d in disks[:6]}
    with pytest.raises(InvalidStorageClass):
        place(chunk_ids[0], disks, 7)
    with pytest.raises(InvalidStorageClass):
        place(chunk_ids[0], [], 1)


def test_spread_is_even_with_equal_weights(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(8)]
    counts = Counter(d for cid in chunk_ids for d in place(cid, disks, 3))
    expected = N_CHUNKS * 3 / 8
    for d in disks:
        assert abs(counts[d.disk_id] - expected) < 0.06 * expected


@pytest.mark.parametrize("weights", [[1, 1, 1, 1, 2, 2], [1, 2, 3, 4], [0.5, 1, 1, 4]])
def test_weights_shift_shares_proportionally(chunk_ids: list[ChunkId], weights: list[float]) -> None:
    disks = [disk(i, w) for i, w in enumerate(weights)]
    counts = Counter(place(cid, disks, 1)[0] for cid in chunk_ids)
    total = sum(weights)
    for d in disks:
        expected = N_CHUNKS * d.weight / total
        assert abs(counts[d.disk_id] - expected) < 0.1 * expected + 30, (d.weight, counts[d.disk_id], expected)


def test_heavier_disk_gets_more_shards_of_wide_chunks(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(9)] + [disk(9, 3.0)]
    counts = Counter(d for cid in chunk_ids for d in place(cid, disks, 3))
    light = [counts[d.disk_id] for d in disks[:9]]
    assert counts[disks[9].disk_id] > 1.8 * max(light)


@pytest.mark.parametrize("count", [1, 3, 6])
def test_adding_a_disk_moves_only_its_share(chunk_ids: list[ChunkId], count: int) -> None:
    old = [disk(i) for i in range(6)]
    new_disk = disk(6)
    new = [*old, new_disk]
    moved_shards = 0
    chunks_changed = 0
    for cid in chunk_ids:
        before = set(place(cid, old, count))
        after = set(place(cid, new, count))
        gone = before - after
        came = after - before
        # Only the new disk gains shards, and each chunk moves at most one shard to it.
        assert came <= {new_disk.disk_id}
        assert len(gone) == len(came) <= 1
        moved_shards += len(gone)
        chunks_changed += bool(gone)
    # The new disk's share: count/7 of all shards land on it, i.e. 1/7 of the shards move.
    expected = N_CHUNKS * count / 7
    assert abs(moved_shards - expected) < 0.08 * expected
    assert chunks_changed == moved_shards


def test_removing_a_disk_moves_only_its_shards(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(8)]
    victim = disks[3]
    rest = [d for d in disks if d is not victim]
    for cid in chunk_ids[:2000]:
        before = set(place(cid, disks, 4))
        after = set(place(cid, rest, 4))
        if victim.disk_id in before:
            assert len(after - before) == 1 and before - after == {victim.disk_id}
        else:
            assert before == after


def test_weight_change_moves_shares_gradually(chunk_ids: list[ChunkId]) -> None:
    disks = [disk(i) for i in range(6)]
    heavier = [*disks[:5], disk(5, 2.0)]
    changed = 0
    for cid in chunk_ids:
        before, after = place(cid, disks, 1)[0], place(cid, heavier, 1)[0]
        if before != after:
            assert after == disks[5].disk_id  # only toward the disk that got heavier
            changed += 1
    # Its share grows from 1/6 to 2/7: about 12% of the chunks move, not a reshuffle.
    expected = N_CHUNKS * (2 / 7 - 1 / 6)
    assert abs(changed - expected) < 0.15 * expected
