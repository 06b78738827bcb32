"""Reads from memory only (``cached_only``, what ``dwh serve`` does on its event loop): the
bytes come from the page cache or not at all. Bytes on the disk, a bad data shard or a shard the
process has not located yet raise ``WouldBlock`` and report nothing; the ordinary read then does
the whole job, reports what it finds, and leaves the pages cached for the next memory-only read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dwh_testkit import evict_page_cache, flip_shard_byte

from datawarehouse.errors import WouldBlock
from datawarehouse.ids import ChunkId
from datawarehouse.records import ChunkRecord
from datawarehouse.service.warehouse import ObjectRead, Warehouse

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv2 RWF_NOWAIT (Linux)")


def cached(wh: Warehouse, found: ObjectRead, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(wh.read_object(found, start, end, cached_only=True))


def plain(wh: Warehouse, found: ObjectRead, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(wh.read_object(found, start, end))


def heal_queue(wh: Warehouse) -> set[ChunkId]:
    with wh.engine.repo.read() as tx:
        return {item.chunk_id for item in tx.list_heal(limit=10_000)}


def first_chunk(found: ObjectRead) -> ChunkRecord:
    rec = found.chunks[found.version.chunks[0].chunk_id]
    assert rec.k > 1, "the default storage class is erasure-coded"
    return rec


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse.init(tmp_path / "data") as opened:
        opened.create_bucket("photos")
        yield opened


def test_memory_only_reads_come_from_the_page_cache_or_not_at_all(wh: Warehouse, tmp_path: Path) -> None:
    small, large = os.urandom(MiB), os.urandom(3 * MiB + 17)  # one chunk or two, several
    wh.put_object("photos", "small", small)
    wh.put_object("photos", "large", large)
    found = {name: wh.open_object("photos", name) for name in ("small", "large")}
    # Just written (and fsynced): still in the page cache.
    assert cached(wh, found["small"]) == small
    assert cached(wh, found["large"]) == large
    assert cached(wh, found["large"], MiB + 5, 2 * MiB + 9) == large[MiB + 5 : 2 * MiB + 9]

    if not evict_page_cache(tmp_path / "data"):
        pytest.skip("this file system keeps every page in memory (tmpfs)")
    errors = dict(wh.engine.disks.errors)
    for name in ("small", "large"):
        with pytest.raises(WouldBlock):
            cached(wh, found[name])
    assert heal_queue(wh) == set() and dict(wh.engine.disks.errors) == errors  # not a fault
    # The ordinary read waits for the disk, and the pages stay cached for the next one.
    assert plain(wh, found["small"]) == small
    assert cached(wh, found["small"]) == small
    assert plain(wh, found["large"]) == large
    assert cached(wh, found["large"]) == large


def test_a_bad_data_shard_is_left_to_the_ordinary_read_which_reports_it(wh: Warehouse, tmp_path: Path) -> None:
    data = os.urandom(MiB)
    wh.put_object("photos", "cat", data)
    found = wh.open_object("photos", "cat")
    rec = first_chunk(found)
    # Parity is not read when the data shards are whole: damage there does not matter here.
    flip_shard_byte(tmp_path / "data", rec, rec.k, -3)
    assert cached(wh, found) == data
    assert heal_queue(wh) == set()

    flip_shard_byte(tmp_path / "data", rec, 1, -3)  # a data shard, inside its payload
    with pytest.raises(WouldBlock):
        cached(wh, found)
    assert heal_queue(wh) == set()  # the memory-only read reports nothing ...
    assert plain(wh, found) == data  # ... the ordinary read reads around it and queues the heal
    assert heal_queue(wh) == {rec.chunk_id}
    with pytest.raises(WouldBlock):  # still bad: every memory-only read leaves it to the thread
        cached(wh, found)


def test_a_follower_reads_memory_only_what_it_has_located(tmp_path: Path) -> None:
    primary = Warehouse.init(tmp_path / "data")
    follower = Warehouse.open(tmp_path / "data", follower=True)
    try:
        primary.create_bucket("photos")
        data = os.urandom(MiB)
        primary.put_object("photos", "new", data)  # after the follower opened: not located yet
        follower.refresh_if_changed()
        found = follower.open_object("photos", "new")
        with pytest.raises(WouldBlock):  # catching up would read the packs' files
            cached(follower, found)
        assert plain(follower, found) == data  # the ordinary read catches up
        assert cached(follower, found) == data
    finally:
        follower.close()
        primary.close()


def test_reused_read_buffers_never_mix_chunks(wh: Warehouse, tmp_path: Path) -> None:
    """Reads share a few scratch buffers for the sealed frames (``ChunkStore``): many chunks of
    different sizes, read at once from several threads and both ways, each come back whole; a
    plaintext already returned is never a view of a buffer that later reads overwrite; a read
    that falls back to decoding around a bad shard after the buffer held other chunks is right."""
    from concurrent.futures import ThreadPoolExecutor

    from datawarehouse.engine.chunkstore import SCRATCH_KEPT

    sizes = [300 * 1024, MiB, 3 * MiB + 17, 700 * 1024 + 3, 5 * MiB, 4096]
    objects = {f"o{i}": os.urandom(size) for i, size in enumerate(sizes * 2)}
    for name, data in objects.items():
        wh.put_object("photos", name, data)
    found = {name: wh.open_object("photos", name) for name in objects}
    kept = {name: plain(wh, found[name]) for name in objects}  # held while the others are read

    def read_all(way: int) -> None:
        for name in sorted(objects, key=lambda n: (way + len(objects[n])) % 7):
            got = cached(wh, found[name]) if way % 2 else plain(wh, found[name])
            assert got == objects[name], name

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(read_all, range(12)))
    assert all(kept[name] == objects[name] for name in objects)
    assert len(wh.engine.chunks._scratch) <= SCRATCH_KEPT

    rec = first_chunk(found["o1"])
    flip_shard_byte(tmp_path / "data", rec, 0, -3)  # a data shard: the read decodes around it
    assert plain(wh, found["o1"]) == objects["o1"]
    assert heal_queue(wh) == {rec.chunk_id}
