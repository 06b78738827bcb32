"""Deduplication with the default chunking (FastCDC 256 KiB / 1 MiB / 4 MiB): identical data is
stored once, an insert re-stores only the chunks around it, repeats inside one object are stored
once, and deleting one of two identical objects keeps the other whole."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dwh_testkit import shard_keys_on

from datawarehouse.config import EngineConfig
from datawarehouse.service.warehouse import OpenOptions, Warehouse

MiB = 1024 * 1024
BIG = 100 * MiB


def stream(total: int, seed: int, piece: int = MiB) -> Iterator[bytes]:
    """``total`` seeded random bytes, generated a piece at a time (never all in memory)."""
    rng = random.Random(seed)
    done = 0
    while done < total:
        n = min(piece, total - done)
        yield rng.randbytes(n)
        done += n


def md5_of(pieces: Iterator[bytes]) -> str:
    h = hashlib.md5()
    for p in pieces:
        h.update(p)
    return h.hexdigest()


def disk_usage(wh: Warehouse) -> int:
    """Bytes allocated by every file on the data disks (what ``du`` reports)."""
    total = 0
    for rec in wh.engine.datadir.disks():
        for path in Path(rec.path).rglob("*"):
            if path.is_file():
                total += path.stat().st_blocks * 512
    return total


def shard_file_count(wh: Warehouse) -> int:
    """Shards stored on all disks (packed records, read from the disk directories)."""
    return sum(len(shard_keys_on(Path(rec.path))) for rec in wh.engine.datadir.disks())


def chunk_count(wh: Warehouse) -> int:
    with wh.engine.repo.transaction() as tx:
        return tx.chunk_count()


def refcounts(wh: Warehouse) -> dict[bytes, int]:
    with wh.engine.repo.transaction() as tx:
        return {c.chunk_id: c.refcount for c in tx.list_chunks(None, limit=1_000_000)}


def read_md5(wh: Warehouse, bucket: str, key: str) -> str:
    h = hashlib.md5()
    _, it = wh.get_object(bucket, key)
    for piece in it:
        h.update(piece)
    return h.hexdigest()


@pytest.fixture
def wh(tmp_path: Path):
    w = Warehouse.init(tmp_path / "dwh", options=OpenOptions(config=EngineConfig()))  # default chunking
    w.create_bucket("bkt")
    yield w
    w.close()


def test_same_100_mib_twice_adds_nothing(wh: Warehouse) -> None:
    expected = md5_of(stream(BIG, seed=1))
    before = disk_usage(wh)
    v1 = wh.put_object("bkt", "first", stream(BIG, seed=1), md5_etag=True)
    after_first = disk_usage(wh)
    chunks_first = chunk_count(wh)
    files_first = shard_file_count(wh)
    v2 = wh.put_object("bkt", "second", stream(BIG, seed=1), md5_etag=True)
    after_second = disk_usage(wh)
    assert v1.etag == v2.etag == expected
    assert [r.chunk_id for r in v1.chunks] == [r.chunk_id for r in v2.chunks]
    # EC(4,2) stores 1.5x the data; the second copy adds only its journal record.
    assert after_first - before > BIG
    added = after_second - after_first
    assert added < BIG // 100, f"second identical put added {added} bytes"
    assert chunk_count(wh) == chunks_first
    assert shard_file_count(wh) == files_first
    counts = refcounts(wh)
    per_object = Counter(r.chunk_id for r in v1.chunks)
    assert all(counts[cid] == 2 * n for cid, n in per_object.items())
    assert read_md5(wh, "bkt", "second") == expected


def test_insert_one_byte_restores_few_chunks(wh: Warehouse) -> None:
    v1 = wh.put_object("bkt", "v1", stream(BIG, seed=2))
    before = chunk_count(wh)
    assert before == len(v1.chunks) > 50

    def shifted() -> Iterator[bytes]:
        yield b"!"
        yield from stream(BIG, seed=2)

    v2 = wh.put_object("bkt", "v2", shifted())
    new = chunk_count(wh) - before
    assert 1 <= new <= 3, f"{new} new chunks for a one-byte insert"
    shared = {r.chunk_id for r in v1.chunks} & {r.chunk_id for r in v2.chunks}
    assert len(shared) >= len(v1.chunks) - 3
    assert v2.size == BIG + 1
    assert wh.get_object_bytes("bkt", "v2", 0, 1) == b"!"
    assert wh.get_object_bytes("bkt", "v2", 1, 4097) == wh.get_object_bytes("bkt", "v1", 0, 4096)
    assert read_md5(wh, "bkt", "v2") == md5_of(shifted())


def test_repeated_chunk_stored_once(wh: Warehouse) -> None:
    # Zeros cut at the maximum chunk size: every chunk of the object is the same 4 MiB.
    repeats = 12
    chunk = 4 * MiB
    v = wh.put_object("bkt", "zeros", (bytes(MiB) for _ in range(repeats * chunk // MiB)))
    assert len(v.chunks) == repeats
    ids = {r.chunk_id for r in v.chunks}
    assert len(ids) == 1
    assert chunk_count(wh) == 1
    (cid,) = ids
    assert refcounts(wh)[cid] == repeats
    # One chunk at EC(4,2): six shards in all.
    assert shard_file_count(wh) == 6
    assert wh.get_object_bytes("bkt", "zeros") == bytes(repeats * chunk)
    # A second object with the same chunk adds references, not shards.
    wh.put_object("bkt", "zeros-2", bytes(3 * chunk))
    assert refcounts(wh)[cid] == repeats + 3
    assert shard_file_count(wh) == 6
    wh.delete_object("bkt", "zeros")
    assert refcounts(wh)[cid] == 3
    assert wh.get_object_bytes("bkt", "zeros-2", 5 * MiB, 5 * MiB + 10) == bytes(10)


def test_delete_one_of_two_identical_keeps_the_other(tmp_path: Path) -> None:
    size = 12 * MiB + 123
    expected = md5_of(stream(size, seed=4))
    with Warehouse.init(tmp_path / "dwh") as wh:
        wh.create_bucket("bkt")
        wh.create_bucket("other")
        wh.put_object("bkt", "a", stream(size, seed=4))
        wh.put_object("other", "b", stream(size, seed=4))
        files = shard_file_count(wh)
        assert all(n == 2 for n in refcounts(wh).values())
        assert wh.delete_object("bkt", "a")
        counts = refcounts(wh)
        assert counts and all(n == 1 for n in counts.values())
        assert shard_file_count(wh) == files
        assert read_md5(wh, "other", "b") == expected
    # Still whole after a reopen (refcounts persisted, nothing collected).
    with Warehouse.open(tmp_path / "dwh") as wh:
        assert read_md5(wh, "other", "b") == expected
        assert all(n == 1 for n in refcounts(wh).values())
