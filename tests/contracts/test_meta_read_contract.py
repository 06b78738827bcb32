"""Contract of ``MetaRepo.read_object`` (the one-statement read of GET/HEAD), on every backend:
it must agree with ``get_bucket`` + ``get_version`` + ``get_chunks`` read in one transaction."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from test_meta_contract import D1, T0, add_domain, chunk, cid, disk, make_bucket, version

from datawarehouse.errors import MetadataError, NoSuchBucket, NoSuchKey
from datawarehouse.ids import BucketId, DiskId, DomainId, VersionId
from datawarehouse.meta.repo import ObjectRead
from datawarehouse.meta.sql import SqlMetaRepo
from datawarehouse.records import ChunkRecord, ChunkRef, ObjectVersion


def expected(repo: SqlMetaRepo, bucket: str, key: str, head: int) -> ObjectRead:
    with repo.read() as tx:
        rec = tx.get_bucket(bucket)
        v = tx.get_version(rec.bucket_id, key)
        ids = [r.chunk_id for r in v.chunks[:head]]
        return ObjectRead(rec, v, tx.get_chunks(rec.domain_id, ids) if ids else {})


def put(repo: SqlMetaRepo, *versions: ObjectVersion, chunks: tuple[ChunkRecord, ...] = ()) -> None:
    with repo.transaction() as tx:
        for c in chunks:
            tx.insert_chunk(c)
        for v in versions:
            tx.insert_version(v)


def refs(*ns: int) -> tuple[ChunkRef, ...]:
    return tuple(ChunkRef(cid(n), i * 100, 100) for i, n in enumerate(ns))


def test_read_object_agrees_with_the_transaction_methods(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo, "photos")
    big = version(bid, "dir/big ü", "v-big", chunks=refs(1, 2, 3, 4, 5, 6), at=T0 + timedelta(microseconds=7))
    big = replace(big, system_meta={"cache-control": "no-cache"}, tags={"a": "b"})
    put(repo, big, chunks=tuple(chunk(n, width=3 + n % 3) for n in range(1, 7)))
    for head in (0, 1, 4, 6, 100):
        got = repo.read_object("photos", "dir/big ü", head)
        assert got == expected(repo, "photos", "dir/big ü", head)
        assert len(got.chunks) == min(head, 6)
    got = repo.read_object("photos", "dir/big ü")
    assert got.version.created_at.utcoffset() == timedelta(0)
    assert got.bucket.created_at.utcoffset() == timedelta(0)
    assert got.chunks[cid(1)].placement == chunk(1, width=4).placement


def test_read_object_inline_version_has_no_chunk_records(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    small = version(bid, "small", "v1", inline=b"\x00sealed\xff")
    with_ref = version(bid, "small-ref", "v2", inline=b"frame")
    with_ref = replace(with_ref, chunks=(ChunkRef(cid(9), 0, 5),))  # the frame's id, no chunk row
    put(repo, small, with_ref)
    got = repo.read_object("b", "small")
    assert got.version == small and got.chunks == {}
    assert got == expected(repo, "b", "small", 4)
    got = repo.read_object("b", "small-ref")
    assert got.version == with_ref and got.chunks == {}


def test_read_object_errors_and_delete_marker(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with pytest.raises(NoSuchBucket):
        repo.read_object("nope", "k")
    with pytest.raises(NoSuchKey):
        repo.read_object("b", "k")
    put(repo, version(bid, "k", "v1"), version(bid, "k", "v2", marker=True, inline=None, at=T0 + timedelta(1)))
    got = repo.read_object("b", "k")
    assert got.version.is_delete_marker and got.version.version_id == VersionId("v2")
    with pytest.raises(NoSuchKey):
        repo.read_object("b", "K")  # keys are case-sensitive
    with pytest.raises(NoSuchBucket):
        repo.read_object("B", "k")


def test_read_object_returns_the_latest_version(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    put(repo, version(bid, "k", "v1", chunks=refs(1)), chunks=(chunk(1), chunk(2)))
    put(repo, version(bid, "k", "v2", chunks=refs(2), at=T0 + timedelta(seconds=1)))
    got = repo.read_object("b", "k")
    assert got.version.version_id == VersionId("v2") and list(got.chunks) == [cid(2)]


def test_read_object_missing_chunk_and_positional_placement(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    gap = replace(chunk(1, width=4), placement=(disk(1), DiskId(""), disk(3), DiskId("")))
    bare = replace(chunk(3), placement=())
    put(repo, version(bid, "k", "v1", chunks=refs(1, 2, 3)), chunks=(gap, bare))  # chunk 2 is not indexed
    got = repo.read_object("b", "k")
    assert set(got.chunks) == {cid(1), cid(3)}
    assert got.chunks[cid(1)].placement == gap.placement
    assert got.chunks[cid(3)].placement == ()
    assert got == expected(repo, "b", "k", 4)


def test_read_object_wide_placement_with_gaps(repo: SqlMetaRepo) -> None:
    """Indexes of two digits, gaps and a lost last shard all come back in place (the shards of a
    chunk are read as one text column and put back by index)."""
    bid = make_bucket(repo)
    wide = chunk(1, width=14)
    lost = {0, 7, 10, 13}
    wide = replace(wide, placement=tuple(DiskId("") if i in lost else d for i, d in enumerate(wide.placement)))
    put(repo, version(bid, "k", "v1", chunks=refs(1)), chunks=(wide,))
    got = repo.read_object("b", "k")
    assert got.chunks[cid(1)].placement == wide.placement
    assert got == expected(repo, "b", "k", 4)


def test_read_object_repeated_chunk_and_domains(repo: SqlMetaRepo) -> None:
    add_domain(repo, 2)
    bid = make_bucket(repo)
    other = chunk(1, domain=DomainId(2), width=5)  # same id, another domain: never mixed in
    put(repo, version(bid, "k", "v1", chunks=refs(1, 1, 1)), chunks=(chunk(1), other))
    got = repo.read_object("b", "k")
    assert got.chunks == {cid(1): chunk(1)}
    assert [r.chunk_id for r in got.version.chunks] == [cid(1)] * 3
    assert got.bucket.domain_id == D1


def test_read_object_in_parallel_threads(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    put(repo, *(version(bid, f"k{i}", f"v{i}", chunks=refs(i)) for i in range(20)), chunks=tuple(map(chunk, range(20))))
    failures: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            for i in range(100):
                key = f"k{(i + n) % 20}"
                got = repo.read_object("b", key)
                assert got.version.key == key and list(got.chunks) == [cid((i + n) % 20)]
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_read_object_sees_commits_and_refuses_after_close(tmp_path: Path) -> None:
    repo = SqlMetaRepo.for_sqlite(tmp_path / "m.sqlite3")
    bid = make_bucket(repo)
    with pytest.raises(NoSuchKey):
        repo.read_object("b", "k")
    put(repo, version(bid, "k", "v1"))
    assert repo.read_object("b", "k").version.version_id == VersionId("v1")
    with repo.transaction() as tx:
        tx.delete_version(bid, "k", VersionId("v1"))
    with pytest.raises(NoSuchKey):
        repo.read_object("b", "k")
    repo.close()
    with pytest.raises(MetadataError):
        repo.read_object("b", "k")


def test_read_object_bucket_ids_are_records(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo, "ids")
    put(repo, version(bid, "k", "v1"))
    got = repo.read_object("ids", "k")
    assert got.bucket.bucket_id == BucketId(bid) and got.version.bucket_id == bid
    assert got.bucket.name == "ids" and got.bucket.storage_class is None


def test_chunk_refcount_is_the_dedup_probe(repo: SqlMetaRepo) -> None:
    """``chunk_refcount`` (one raw read on SQLite) agrees with ``get_chunk`` as the count moves,
    per domain, including 0 (kept for its grace period) and a chunk never stored."""
    add_domain(repo, 2)
    put(repo, chunks=(chunk(1, refcount=0), chunk(2, refcount=3), chunk(1, refcount=5, domain=DomainId(2))))
    assert repo.chunk_refcount(D1, cid(1)) == 0
    assert repo.chunk_refcount(D1, cid(2)) == 3
    assert repo.chunk_refcount(DomainId(2), cid(1)) == 5
    assert repo.chunk_refcount(D1, cid(3)) is None
    assert repo.chunk_refcount(DomainId(2), cid(2)) is None
    with repo.transaction() as tx:
        tx.incref(D1, cid(1), 2)
    assert repo.chunk_refcount(D1, cid(1)) == 2
    with repo.read() as tx:
        got = tx.get_chunk(D1, cid(1))
    assert got is not None and got.refcount == 2


def test_reads_are_local_only_on_sqlite(repo: SqlMetaRepo) -> None:
    """The S3 server runs a current-version GET/HEAD lookup on its event loop only when this is
    true: on PostgreSQL every read is a network round trip and stays on a worker thread."""
    assert repo.reads_are_local is (repo._engine.dialect.name == "sqlite")
