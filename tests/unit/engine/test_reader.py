"""``read_range``: which chunks a range reads, on which thread, and how many metadata queries."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from datawarehouse.engine.chunkstore import ChunkStore
from datawarehouse.engine.reader import WINDOW, read_range
from datawarehouse.errors import DataUnavailable, IntegrityError, InvalidRange, WouldBlock
from datawarehouse.ids import BucketId, ChunkId, DomainId, VersionId
from datawarehouse.records import ChunkerParams, ChunkRecord, ChunkRef, ObjectVersion, StorageClass

D = DomainId(1)
SIZE = 10  # bytes per chunk


def cid(n: int) -> ChunkId:
    return ChunkId(n.to_bytes(32, "big"))


def record(n: int | ChunkId) -> ChunkRecord:
    chunk_id = cid(n) if isinstance(n, int) else n
    return ChunkRecord(D, chunk_id, 1, SIZE, SIZE, 1, 0, 1, datetime(2026, 1, 1, tzinfo=UTC))


def plain(chunk_id: ChunkId) -> bytes:
    return bytes([chunk_id[-1]]) * SIZE


class FakeChunks:
    """``ChunkStore.read`` only: the plaintext of a chunk is its last id byte, repeated."""

    def __init__(self, in_memory: int | None = None) -> None:
        self.threads: list[str] = []
        self.by_chunk: dict[ChunkId, str] = {}
        self.in_memory = in_memory  # chunks numbered from here on are "on the disk"

    def read(self, rec: ChunkRecord, *, cached_only: bool = False) -> bytes:
        if cached_only and self.in_memory is not None and int.from_bytes(rec.chunk_id, "big") >= self.in_memory:
            raise WouldBlock("on the disk")
        self.threads.append(threading.current_thread().name)
        self.by_chunk[rec.chunk_id] = threading.current_thread().name
        return plain(rec.chunk_id)


class Index:
    """The chunk getter, counting queries."""

    def __init__(self, missing: frozenset[int] = frozenset()) -> None:
        self.queries: list[list[ChunkId]] = []
        self.missing = missing

    def __call__(self, domain_id: DomainId, ids: list[ChunkId]) -> dict[ChunkId, ChunkRecord]:
        self.queries.append(list(ids))
        return {i: record(i) for i in ids if int.from_bytes(i, "big") not in self.missing}


def version(count: int) -> ObjectVersion:
    refs = tuple(ChunkRef(cid(n), n * SIZE, SIZE) for n in range(count))
    return ObjectVersion(
        BucketId(1),
        "k",
        VersionId("v"),
        count * SIZE,
        "etag",
        datetime(2026, 1, 1, tzinfo=UTC),
        StorageClass(1, 0),
        ChunkerParams(64, 256, 1024),
        chunks=refs,
    )


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2, thread_name_prefix="pool") as p:
        yield p


def read(
    v: ObjectVersion, pool: ThreadPoolExecutor, index: Index, fake: FakeChunks, start: int, end: int, **kw: Any
) -> bytes:
    return b"".join(read_range(cast(ChunkStore, fake), pool, index, D, v, start, end, **kw))


def expected(v: ObjectVersion, start: int, end: int) -> bytes:
    return b"".join(plain(r.chunk_id) for r in v.chunks)[start:end]


@pytest.mark.parametrize("prefetch", [0, 1, 4])
@pytest.mark.parametrize(("start", "end"), [(0, 60), (5, 6), (9, 11), (10, 20), (15, 55), (59, 60)])
def test_ranges_with_and_without_prefetch(pool: ThreadPoolExecutor, prefetch: int, start: int, end: int) -> None:
    v, fake, index = version(6), FakeChunks(), Index()
    assert read(v, pool, index, fake, start, end, prefetch=prefetch) == expected(v, start, end)
    assert len(fake.threads) == (end - 1) // SIZE - start // SIZE + 1  # only the chunks the range touches
    assert fake.by_chunk[cid(start // SIZE)] == threading.current_thread().name  # the first: caller's thread
    if prefetch == 0:
        assert set(fake.threads) == {threading.current_thread().name}
    assert len(index.queries) == 1


def test_cached_only_reads_every_chunk_on_the_callers_thread(pool: ThreadPoolExecutor) -> None:
    """``cached_only``: no prefetch (the pool's threads may wait for a disk), every chunk asked
    from memory; the first chunk that is not raises ``WouldBlock`` from the iterator."""
    v, fake, index = version(6), FakeChunks(), Index()
    assert read(v, pool, index, fake, 5, 55, prefetch=4, cached_only=True) == expected(v, 5, 55)
    assert fake.threads == [threading.current_thread().name] * 6
    fake = FakeChunks(in_memory=3)
    it = read_range(cast(ChunkStore, fake), pool, index, D, v, 0, 60, cached_only=True)
    assert b"".join(next(it) for _ in range(3)) == expected(v, 0, 30)
    with pytest.raises(WouldBlock):
        next(it)


def test_known_records_need_no_query(pool: ThreadPoolExecutor) -> None:
    v, fake, index = version(6), FakeChunks(), Index()
    known = {cid(n): record(n) for n in range(6)}
    assert read(v, pool, index, fake, 0, 60, known=known) == expected(v, 0, 60)
    assert index.queries == []
    # Known records of the head only: the rest comes from one windowed query.
    head = {cid(n): record(n) for n in range(2)}
    assert read(v, pool, index, fake, 0, 60, known=head, prefetch=0) == expected(v, 0, 60)
    assert len(index.queries) == 1


def test_records_are_fetched_a_window_at_a_time(pool: ThreadPoolExecutor) -> None:
    count = 2 * WINDOW + 3
    v, fake, index = version(count), FakeChunks(), Index()
    assert read(v, pool, index, fake, 0, count * SIZE) == expected(v, 0, count * SIZE)
    assert [len(q) for q in index.queries] == [WINDOW, WINDOW, 3]


def test_missing_record_is_data_unavailable(pool: ThreadPoolExecutor) -> None:
    v, fake, index = version(3), FakeChunks(), Index(missing=frozenset({1}))
    with pytest.raises(DataUnavailable):
        read(v, pool, index, fake, 0, 30, prefetch=0)
    with pytest.raises(DataUnavailable):
        read(v, pool, index, fake, 0, 30, known={cid(0): record(0)})


def test_bad_range_and_short_manifest(pool: ThreadPoolExecutor) -> None:
    v, fake, index = version(3), FakeChunks(), Index()
    with pytest.raises(InvalidRange):
        read_range(cast(ChunkStore, fake), pool, index, D, v, 30, 40)
    short = ObjectVersion(**{**v.__dict__, "size": 50})  # the manifest covers 30 bytes only
    with pytest.raises(IntegrityError):
        read(short, pool, index, fake, 40, 50)
