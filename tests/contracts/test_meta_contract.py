"""Contract of ``MetaRepo``/``MetaTx`` (``datawarehouse.meta.repo``), run against every backend.

SQLite runs always (a fresh file per test). PostgreSQL runs when ``DWH_TEST_PG_URL`` names a
database to test in (each test empties a schema ``dwh_test_<worker>`` of its own there).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from datawarehouse.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    DwhError,
    InvalidInput,
    MetadataError,
    NoSuchBucket,
    NoSuchDisk,
    NoSuchKey,
)
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, VersionId
from datawarehouse.meta import schema
from datawarehouse.meta.repo import DomainSecretRecord, HealItem, MetaRepo
from datawarehouse.meta.sql import SqlMetaRepo
from datawarehouse.records import (
    BucketRecord,
    ChunkerParams,
    ChunkRecord,
    ChunkRef,
    DiskRecord,
    DiskState,
    ObjectVersion,
    PartRecord,
    StorageClass,
    UploadRecord,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
D1 = DomainId(1)
SC = StorageClass(2, 1)


# --- builders ----------------------------------------------------------------------------------


def cid(n: int) -> ChunkId:
    return ChunkId(n.to_bytes(32, "big"))


def disk(n: int) -> DiskId:
    return DiskId(f"{n:032x}")


def version(
    bucket_id: BucketId,
    key: str,
    vid: str,
    *,
    at: datetime = T0,
    chunks: tuple[ChunkRef, ...] = (),
    inline: bytes | None = b"sealed-frame",
    marker: bool = False,
) -> ObjectVersion:
    return ObjectVersion(
        bucket_id=bucket_id,
        key=key,
        version_id=VersionId(vid),
        size=sum(c.plain_size for c in chunks) if chunks else len(inline or b""),
        etag=f"etag-{vid}",
        created_at=at,
        storage_class=SC,
        chunker=ChunkerParams(64, 256, 1024),
        content_type="text/plain; charset=utf-8",
        user_meta={"owner": "zoë", "x-empty": ""},
        inline_data=None if chunks else inline,
        chunks=chunks,
        is_delete_marker=marker,
    )


def chunk(n: int, *, refcount: int = 1, domain: DomainId = D1, width: int = 3) -> ChunkRecord:
    return ChunkRecord(
        domain_id=domain,
        chunk_id=cid(n),
        generation=(1 << 62) + n,
        plain_size=1000 + n,
        sealed_size=900 + n,
        k=2,
        m=width - 2,
        refcount=refcount,
        created_at=T0,
        zero_since=None if refcount else T0,
        placement=tuple(disk(i + n) for i in range(width)),
    )


def make_bucket(repo: MetaRepo, name: str = "b") -> BucketId:
    with repo.transaction() as tx:
        return tx.create_bucket(D1, name, T0, None).bucket_id


def add_domain(repo: SqlMetaRepo, domain_id: int) -> None:
    """Domains have no MetaTx method yet (multi-tenancy); the tests add one directly."""
    with repo.engine.begin() as conn:
        conn.execute(sa.insert(schema.domains).values(domain_id=domain_id, tenant_id=schema.DEFAULT_TENANT_ID))


# --- settings ----------------------------------------------------------------------------------


def test_settings(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        assert tx.get_setting("format") is None
        tx.set_setting("format", "1")
        tx.set_setting("datadir_id", "ab" * 16)
    with repo.transaction() as tx:
        assert tx.get_setting("format") == "1"
        tx.set_setting("format", "2")
    with repo.transaction() as tx:
        assert tx.get_setting("format") == "2"
        assert tx.get_setting("datadir_id") == "ab" * 16


# --- domain secrets ----------------------------------------------------------------------------


def test_domain_secrets_put_list_and_replace(repo: SqlMetaRepo) -> None:
    a = DomainSecretRecord(D1, 1, b"\x00wrapped-1\xff", "aaaa", T0)
    b = DomainSecretRecord(D1, 2, b"wrapped-2", "aaaa", T0 + timedelta(days=1))
    with repo.transaction() as tx:
        assert tx.list_domain_secrets() == []
        tx.put_domain_secret(b)
        tx.put_domain_secret(a)
    with repo.transaction() as tx:
        assert tx.list_domain_secrets() == [a, b]
        rewrapped = replace(a, wrapped=b"rewrapped", master_key_id="bbbb")
        tx.put_domain_secret(rewrapped)  # rewrap replaces (domain, key_version)
    with repo.transaction() as tx:
        assert tx.list_domain_secrets() == [rewrapped, b]


def test_domain_secret_for_unknown_domain_is_refused(repo: SqlMetaRepo) -> None:
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.put_domain_secret(DomainSecretRecord(DomainId(99), 1, b"w", "aaaa", T0))


# --- disks -------------------------------------------------------------------------------------


def test_disks(repo: SqlMetaRepo) -> None:
    d1 = DiskRecord(disk(1), "/srv/d1", 1.0, DiskState.ACTIVE, T0)
    d2 = DiskRecord(disk(2), "/srv/d2 ü", 2.5, DiskState.ACTIVE, T0 + timedelta(seconds=1))
    with repo.transaction() as tx:
        tx.upsert_disk(d2)
        tx.upsert_disk(d1)
    with repo.transaction() as tx:
        assert tx.list_disks() == [d1, d2]
        tx.upsert_disk(replace(d1, path="/mnt/d1", weight=0.5))
        tx.set_disk_state(disk(2), DiskState.DRAINING)
    with repo.transaction() as tx:
        assert tx.list_disks() == [replace(d1, path="/mnt/d1", weight=0.5), replace(d2, state=DiskState.DRAINING)]
    with pytest.raises(NoSuchDisk), repo.transaction() as tx:
        tx.set_disk_state(disk(3), DiskState.REMOVED)


# --- buckets -----------------------------------------------------------------------------------


def test_create_get_list_buckets(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        a = tx.create_bucket(D1, "alpha", T0, None)
        b = tx.create_bucket(D1, "beta", T0 + timedelta(hours=1), SC)
    assert a.bucket_id != b.bucket_id
    assert b == BucketRecord(b.bucket_id, D1, "beta", T0 + timedelta(hours=1), SC)
    with repo.transaction() as tx:
        assert tx.get_bucket("alpha") == a
        assert tx.get_bucket("beta") == b
        assert tx.get_bucket_by_id(b.bucket_id) == b
        assert tx.get_bucket_by_id(BucketId(12345)) is None
        assert tx.list_buckets() == [a, b]
        with pytest.raises(NoSuchBucket):
            tx.get_bucket("gamma")
        with pytest.raises(NoSuchBucket):
            tx.get_bucket("Alpha")  # names are case-sensitive


def test_duplicate_bucket(repo: SqlMetaRepo) -> None:
    make_bucket(repo, "dup")
    with pytest.raises(BucketAlreadyExists), repo.transaction() as tx:
        tx.create_bucket(D1, "dup", T0, SC)
    with repo.transaction() as tx:
        assert len(tx.list_buckets()) == 1


def test_create_bucket_in_unknown_domain(repo: SqlMetaRepo) -> None:
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.create_bucket(DomainId(77), "x", T0, None)


def test_bucket_names_are_unique_per_tenant_across_domains(repo: SqlMetaRepo) -> None:
    add_domain(repo, 2)  # a second domain of the default tenant
    make_bucket(repo, "shared")
    with pytest.raises(BucketAlreadyExists), repo.transaction() as tx:
        tx.create_bucket(DomainId(2), "shared", T0, None)


def test_insert_bucket_replay(repo: SqlMetaRepo) -> None:
    rec = BucketRecord(BucketId(42), D1, "replayed", T0, StorageClass(1, 2))
    with repo.transaction() as tx:
        tx.insert_bucket(rec)
        tx.insert_bucket(rec)  # idempotent
        tx.insert_bucket(replace(rec, name="other-name"))  # same id: no-op
    with repo.transaction() as tx:
        assert tx.list_buckets() == [rec]
        assert tx.get_bucket("replayed") == rec
        new = tx.create_bucket(D1, "next", T0, None)
    assert new.bucket_id > 42  # ids continue after an explicitly inserted one
    with pytest.raises(BucketAlreadyExists), repo.transaction() as tx:
        tx.insert_bucket(replace(rec, bucket_id=BucketId(1000)))  # name taken by another id


def test_delete_bucket(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo, "doomed")
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1"))
    with pytest.raises(BucketNotEmpty), repo.transaction() as tx:
        tx.delete_bucket(bid)
    with repo.transaction() as tx:
        assert tx.get_bucket_by_id(bid) is not None
        tx.delete_version(bid, "k", VersionId("v1"))
        tx.delete_bucket(bid)
    with repo.transaction() as tx:
        assert tx.get_bucket_by_id(bid) is None
        assert tx.list_buckets() == []
        tx.delete_bucket(bid)  # gone already: no-op
        again = tx.create_bucket(D1, "doomed", T0, None)
    assert again.bucket_id != bid  # ids are never reused


def test_delete_bucket_refused_while_delete_marker_remains(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "m1", marker=True, inline=None))
    with pytest.raises(BucketNotEmpty), repo.transaction() as tx:
        tx.delete_bucket(bid)


def test_delete_bucket_refused_while_multipart_upload_in_progress(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.create_upload(upload(bid, "k", "u1"))
    with pytest.raises(BucketNotEmpty), repo.transaction() as tx:
        tx.delete_bucket(bid)


# --- object versions ---------------------------------------------------------------------------


def test_version_round_trip_inline_and_manifest(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    inline = version(bid, "small", "v-inline", inline=b"\x00\x01sealed\xff")
    refs = tuple(ChunkRef(cid(i), i * 100, 100) for i in range(5))
    big = version(bid, "dir/big ü", "v-big", chunks=refs, at=T0 + timedelta(microseconds=7))
    with repo.transaction() as tx:
        tx.insert_version(inline)
        tx.insert_version(big)
    with repo.transaction() as tx:
        assert tx.get_version(bid, "small") == inline
        assert tx.get_version(bid, "dir/big ü") == big
        assert tx.get_version(bid, "dir/big ü", VersionId("v-big")) == big
        got = tx.get_version(bid, "dir/big ü")
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert got.chunks == refs


def test_insert_version_is_idempotent(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    refs = (ChunkRef(cid(1), 0, 10), ChunkRef(cid(2), 10, 10))
    v1 = version(bid, "k", "v1", chunks=refs)
    v2 = version(bid, "k", "v2", at=T0 + timedelta(seconds=1))
    with repo.transaction() as tx:
        tx.insert_version(v1)
        tx.insert_version(v2)
        tx.insert_version(v1)  # replay of an applied op: nothing changes, v2 stays latest
    with repo.transaction() as tx:
        assert tx.count_versions(bid) == 2
        assert tx.get_version(bid, "k") == v2
        assert tx.get_version(bid, "k", VersionId("v1")).chunks == refs


def test_insert_version_makes_it_latest(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        for i in range(3):
            tx.insert_version(version(bid, "k", f"v{i}", at=T0 + timedelta(seconds=i)))
            assert tx.get_version(bid, "k").version_id == f"v{i}"
        [summary] = tx.list_objects(bid)
    assert summary.version_id == "v2"


def test_insert_version_into_unknown_bucket(repo: SqlMetaRepo) -> None:
    with pytest.raises(NoSuchBucket), repo.transaction() as tx:
        tx.insert_version(version(BucketId(999), "k", "v1"))


def test_latest_keys(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    other = make_bucket(repo, "other")
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "a", "v1"))
        tx.insert_version(version(bid, "b", "v2"))
        tx.insert_version(version(bid, "b", "v3", at=T0 + timedelta(seconds=1)))
        tx.insert_version(version(bid, "gone", "m1", marker=True, inline=None))  # a marker counts
        tx.insert_version(version(other, "c", "v4"))
        assert tx.latest_keys(bid, ["a", "b", "c", "gone", "new", "a"]) == {"a", "b", "gone"}
        assert tx.latest_keys(bid, []) == set()
        assert tx.latest_keys(other, ["a", "c"]) == {"c"}
        assert tx.latest_keys(bid, [f"k{i}" for i in range(1200)] + ["b"]) == {"b"}  # several IN lists
        assert tx.latest_keys(BucketId(999), ["a"]) is None
        assert tx.latest_keys(BucketId(999), []) is None


def test_insert_new_versions(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    other = make_bucket(repo, "other")
    refs = tuple(ChunkRef(cid(i), i * 100, 100) for i in range(3))
    batch = [
        version(bid, "small", "v1", inline=b"\x00frame"),
        version(bid, "big ü", "v2", chunks=refs),
        version(other, "small", "v3", at=T0 + timedelta(microseconds=3)),
        version(bid, "marker", "v4", marker=True, inline=None),
    ]
    with repo.transaction() as tx:
        tx.insert_new_versions([])
        tx.insert_new_versions(batch)
    with repo.transaction() as tx:
        assert tx.get_version(bid, "small") == batch[0]
        assert tx.get_version(bid, "big ü") == batch[1]
        assert tx.get_version(other, "small") == batch[2]
        assert tx.get_version(bid, "marker") == batch[3]
        assert [o.key for o in tx.list_objects(bid)] == ["big ü", "small"]
        assert tx.latest_keys(bid, ["small", "big ü", "marker"]) == {"small", "big ü", "marker"}
        # Then a version through insert_version replaces one as usual.
        tx.insert_version(version(bid, "small", "v5", at=T0 + timedelta(seconds=1)))
        assert tx.get_version(bid, "small").version_id == "v5"
        assert tx.count_versions(bid) == 4


def test_insert_new_versions_refuses_known_ids_and_unknown_buckets(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1"))
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.insert_new_versions([version(bid, "k2", "v1")])  # an id that exists: not a silent no-op
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.insert_new_versions([version(BucketId(999), "k", "v9")])
    with repo.transaction() as tx:
        assert tx.count_versions(bid) == 1


def test_get_version_errors(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    other = make_bucket(repo, "other")
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1"))
        tx.insert_version(version(bid, "k2", "v2"))
    with repo.transaction() as tx:
        with pytest.raises(NoSuchKey):
            tx.get_version(bid, "missing")
        with pytest.raises(NoSuchKey):
            tx.get_version(bid, "k", VersionId("nope"))
        with pytest.raises(NoSuchKey):
            tx.get_version(bid, "k", VersionId("v2"))  # a version of another key
        with pytest.raises(NoSuchKey):
            tx.get_version(other, "k")  # same key, another bucket
        with pytest.raises(NoSuchKey):
            tx.get_version(bid, "K")  # keys are case-sensitive


def test_delete_version_returns_it_and_promotes_next_newest(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    refs = (ChunkRef(cid(9), 0, 50),)
    old = version(bid, "k", "v-old", at=T0)
    mid = version(bid, "k", "v-mid", at=T0 + timedelta(seconds=5), chunks=refs)
    new = version(bid, "k", "v-new", at=T0 + timedelta(seconds=10))
    with repo.transaction() as tx:
        tx.insert_version(mid)
        tx.insert_version(old)  # inserted later but older: still becomes latest on insert
        tx.insert_version(new)
    with repo.transaction() as tx:
        assert tx.delete_version(bid, "k", VersionId("v-new")) == new
        assert tx.get_version(bid, "k") == mid  # newest by created_at, not by insertion
        assert tx.delete_version(bid, "k", VersionId("v-new")) is None
        gone = tx.delete_version(bid, "k", VersionId("v-mid"))
    assert gone == mid and gone is not None and gone.chunks == refs
    with repo.transaction() as tx:
        assert tx.get_version(bid, "k") == old
        assert tx.delete_version(bid, "k", VersionId("v-old")) == old
        with pytest.raises(NoSuchKey):
            tx.get_version(bid, "k")
        assert tx.count_versions(bid) == 0
        assert tx.list_objects(bid) == []


def test_delete_version_tie_on_created_at_breaks_by_version_id(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        for vid in ("v-b", "v-c", "v-a", "v-top"):
            tx.insert_version(version(bid, "k", vid, at=T0))
        tx.delete_version(bid, "k", VersionId("v-top"))
        assert tx.get_version(bid, "k").version_id == "v-c"


def test_delete_non_latest_version_keeps_latest(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1", at=T0))
        tx.insert_version(version(bid, "k", "v2", at=T0 + timedelta(seconds=1)))
        tx.delete_version(bid, "k", VersionId("v1"))
        assert tx.get_version(bid, "k").version_id == "v2"
        assert tx.delete_version(bid, "other", VersionId("v2")) is None  # wrong key: absent


def test_delete_marker(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1"))
        tx.insert_version(version(bid, "k", "dm", at=T0 + timedelta(seconds=1), marker=True, inline=None))
        tx.insert_version(version(bid, "other", "v2"))
    with repo.transaction() as tx:
        latest = tx.get_version(bid, "k")
        assert latest.is_delete_marker and latest.version_id == "dm"
        assert [o.key for o in tx.list_objects(bid)] == ["other"]
        assert tx.count_versions(bid) == 3
        tx.delete_version(bid, "k", VersionId("dm"))
        assert [o.key for o in tx.list_objects(bid)] == ["k", "other"]


# --- listing -----------------------------------------------------------------------------------


def put_keys(repo: MetaRepo, bid: BucketId, keys: list[str]) -> None:
    """Version ids are unique across buckets: ``v<bucket>-<i>``."""
    with repo.transaction() as tx:
        for i, key in enumerate(keys):
            tx.insert_version(version(bid, key, f"v{bid}-{i}"))


def test_list_objects_utf8_binary_order(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    keys = ["z", "\U0001f600", "b", "é", "a", "\u00ff", "B", "\uffff", "a/b", "a b", "\ue000"]
    put_keys(repo, bid, keys)
    expected = sorted(keys, key=lambda k: k.encode("utf-8"))
    assert expected[:8] == ["B", "a", "a b", "a/b", "b", "z", "é", "\u00ff"]
    with repo.transaction() as tx:
        listed = tx.list_objects(bid)
    assert [o.key for o in listed] == expected
    first = listed[0]
    assert (first.version_id, first.size, first.etag, first.created_at) == (
        f"v{bid}-{keys.index('B')}",
        len(b"sealed-frame"),
        f"etag-v{bid}-{keys.index('B')}",
        T0,
    )


def test_list_objects_prefix_is_literal_and_case_sensitive(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    keys = ["50%/a", "50%/b", "50x/c", "505/d", "a_b", "axb", "a_", "A_b", "a\\_b", "a", "é/1", "é/2", "éé"]
    put_keys(repo, bid, keys)

    def listed(prefix: str, start_after: str = "") -> list[str]:
        with repo.transaction() as tx:
            return [o.key for o in tx.list_objects(bid, prefix=prefix, start_after=start_after)]

    assert listed("50%") == ["50%/a", "50%/b"]
    assert listed("50%/") == ["50%/a", "50%/b"]
    assert listed("a_") == ["a_", "a_b"]
    assert listed("A") == ["A_b"]
    assert listed("a\\") == ["a\\_b"]
    assert listed("é/") == ["é/1", "é/2"]
    assert listed("é") == ["é/1", "é/2", "éé"]
    assert listed("nothing") == []
    assert listed("50%", start_after="50%/a") == ["50%/b"]
    assert listed("50%", start_after="4") == ["50%/a", "50%/b"]  # start_after before the prefix
    assert listed("50%", start_after="6") == []  # start_after past the prefix
    assert listed("", start_after="éé") == []


def test_list_objects_prefix_with_maximal_code_points(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    top = "\U0010ffff"
    keys = ["a" + top, "a" + top + "x", "a" + top + top, "b", "a\ud7ff", "a\ud7ffz", "a\ue000"]
    put_keys(repo, bid, keys)
    with repo.transaction() as tx:
        assert [o.key for o in tx.list_objects(bid, prefix="a" + top)] == [
            "a" + top,
            "a" + top + "x",
            "a" + top + top,
        ]
        assert [o.key for o in tx.list_objects(bid, prefix=top)] == []
        assert [o.key for o in tx.list_objects(bid, prefix="a\ud7ff")] == ["a\ud7ff", "a\ud7ffz"]


def test_list_objects_pagination(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    other = make_bucket(repo, "other")
    keys = [f"k/{i:05d}" for i in range(2000)] + [f"z{i}" for i in range(10)]
    put_keys(repo, bid, keys)
    put_keys(repo, other, ["k/00001"])
    pages: list[list[str]] = []
    after = ""
    while True:
        with repo.transaction() as tx:
            page = [o.key for o in tx.list_objects(bid, prefix="k/", start_after=after, limit=333)]
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [333] * 6 + [2]
    assert [k for p in pages for k in p] == keys[:2000]
    with repo.transaction() as tx:
        assert tx.list_objects(bid, limit=0) == []
        assert len(tx.list_objects(bid)) == 1000  # default limit
        assert tx.count_versions(bid) == 2010
        assert tx.count_versions(other) == 1


def test_iter_all_versions(repo: SqlMetaRepo) -> None:
    a = make_bucket(repo, "a")
    b = make_bucket(repo, "b")
    expected: dict[str, ObjectVersion] = {}
    with repo.transaction() as tx:
        for i in range(1203):  # spans several internal pages
            refs = tuple(ChunkRef(cid(i * 10 + j), j * 64, 64) for j in range(i % 4))
            v = version(a if i % 2 else b, f"key{i % 700}", f"v{i}", chunks=refs)
            tx.insert_version(v)
            expected[v.version_id] = v
    with repo.transaction() as tx:
        got = list(tx.iter_all_versions())
    assert len(got) == len(expected)
    assert {v.version_id: v for v in got} == expected


# --- chunks ------------------------------------------------------------------------------------


def test_chunk_insert_get_and_placement_round_trip(repo: SqlMetaRepo) -> None:
    rec = chunk(1, width=5)
    with repo.transaction() as tx:
        assert tx.get_chunk(D1, cid(1)) is None
        assert tx.insert_chunk(rec) is True
    with repo.transaction() as tx:
        got = tx.get_chunk(D1, cid(1))
        assert got == rec
        assert got is not None and got.placement == tuple(disk(1 + i) for i in range(5))
        assert tx.insert_chunk(replace(rec, generation=7, refcount=9, placement=(disk(99),) * 5)) is False
        assert tx.get_chunk(D1, cid(1)) == rec  # nothing written by the refused insert
        tx.set_placement(D1, cid(1), 3, disk(42))
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.placement[3] == disk(42) and got.placement[2] == disk(3)
        with pytest.raises(MetadataError):
            tx.set_placement(D1, cid(1), 5, disk(1))  # outside EC(2,3)
        with pytest.raises(MetadataError):
            tx.set_placement(D1, cid(2), 0, disk(1))  # unknown chunk


def test_chunk_without_placement(repo: SqlMetaRepo) -> None:
    rec = replace(chunk(1), placement=())
    with repo.transaction() as tx:
        assert tx.insert_chunk(rec)
        assert tx.get_chunk(D1, cid(1)) == rec
        tx.set_placement(D1, cid(1), 0, disk(5))
        got = tx.get_chunk(D1, cid(1))
    assert got is not None and got.placement == (disk(5), DiskId(""), DiskId(""))  # k+m positions


def test_placement_is_positional_with_missing_shards(repo: SqlMetaRepo) -> None:
    """Placement index i is shard i; a missing shard reads as "" and never shifts the others."""
    gap = (disk(1), DiskId(""), disk(3), DiskId(""))
    rec = replace(chunk(1, width=4), placement=gap)
    with repo.transaction() as tx:
        assert tx.insert_chunk(rec)
        assert tx.get_chunk(D1, cid(1)) == rec
        assert tx.shard_counts_by_disk() == {disk(1): 1, disk(3): 1}
        tx.set_placement(D1, cid(1), 0, DiskId(""))  # shard 0 lost
        tx.set_placement(D1, cid(1), 3, disk(9))  # shard 3 healed
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.placement == (DiskId(""), DiskId(""), disk(3), disk(9))
        [listed] = tx.list_chunks()
        assert listed.placement == got.placement


def test_chunk_identity_is_per_domain(repo: SqlMetaRepo) -> None:
    add_domain(repo, 2)
    with repo.transaction() as tx:
        assert tx.insert_chunk(chunk(1))
        assert tx.insert_chunk(chunk(1, domain=DomainId(2), refcount=5))
        assert tx.get_chunk(DomainId(2), cid(1)) == chunk(1, domain=DomainId(2), refcount=5)
        assert tx.get_chunk(D1, cid(1)) == chunk(1)


def test_incref_decref_zero_since(repo: SqlMetaRepo) -> None:
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=1))
        assert tx.incref(D1, cid(1), 2) is True
        assert tx.incref(D1, cid(2), 1) is False  # no row
        assert tx.decref(D1, cid(1), 1, t1) == 2
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.refcount == 2 and got.zero_since is None
        assert tx.decref(D1, cid(1), 2, t1) == 0
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.refcount == 0 and got.zero_since == t1
        tx.touch_unreferenced(D1, cid(1), t2)
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.zero_since == t2
        assert tx.incref(D1, cid(1), 1)
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.refcount == 1 and got.zero_since is None  # incref clears it
        tx.touch_unreferenced(D1, cid(1), t2)  # referenced: nothing happens
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.zero_since is None
        tx.touch_unreferenced(D1, cid(3), t2)  # unknown chunk: nothing happens


def test_batched_insert_and_incref_match_the_single_ones(repo: SqlMetaRepo) -> None:
    """``insert_chunks``/``incref_many`` (one object's commit) behave as the loop of single calls:
    existing ids and repeats are left alone, placements are written, missing ids are reported and
    get nothing, a count of 0 only checks existence, and a batch larger than one IN list works."""
    add_domain(repo, 2)
    t1 = T0 + timedelta(hours=1)
    many = [chunk(n, refcount=0) for n in range(10, 10 + 1200)]
    with repo.transaction() as tx:
        assert tx.insert_chunk(chunk(1, refcount=4))
        assert tx.insert_chunks([chunk(1, refcount=9), chunk(2, width=5), chunk(2), chunk(3, domain=DomainId(2))]) == 2
        assert tx.get_chunk(D1, cid(1)) == chunk(1, refcount=4)  # an existing row is kept as it was
        assert tx.get_chunk(D1, cid(2)) == chunk(2, width=5)  # the first of two repeats wins
        assert tx.get_chunk(DomainId(2), cid(3)) == chunk(3, domain=DomainId(2))
        assert tx.insert_chunks(many) == 1200
        assert tx.insert_chunks([]) == 0
        tx.decref(D1, cid(2), 1, t1)
        missing = tx.incref_many(D1, {cid(1): 2, cid(2): 3, cid(3): 1, cid(5000): 1, cid(10): 0})
        assert missing == [cid(3), cid(5000)]  # cid(3) lives in domain 2 only
        got = {n: tx.get_chunk(D1, cid(n)) for n in (1, 2, 10)}
        assert got[1] is not None and got[1].refcount == 6
        assert got[2] is not None and got[2].refcount == 3 and got[2].zero_since is None
        assert got[10] is not None and got[10].refcount == 0  # count 0: untouched
        assert tx.incref_many(D1, {c.chunk_id: 1 for c in many}) == []
        assert all(c.refcount == 1 for c in tx.get_chunks(D1, [c.chunk_id for c in many]).values())
        assert tx.get_chunk(DomainId(2), cid(3)) == chunk(3, domain=DomainId(2))


def test_decref_inconsistencies_are_errors(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=1))
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.decref(D1, cid(1), 2, T0)  # below zero
    with pytest.raises(MetadataError), repo.transaction() as tx:
        tx.decref(D1, cid(2), 1, T0)  # unknown chunk
    with pytest.raises(InvalidInput), repo.transaction() as tx:
        tx.incref(D1, cid(1), -1)
    with repo.transaction() as tx:
        got = tx.get_chunk(D1, cid(1))
    assert got is not None and got.refcount == 1


def test_set_refcount(repo: SqlMetaRepo) -> None:
    t1 = T0 + timedelta(days=1)
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=3))
        tx.set_refcount(D1, cid(1), 0, t1)
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and (got.refcount, got.zero_since) == (0, t1)
        tx.set_refcount(D1, cid(1), 4, t1)
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and (got.refcount, got.zero_since) == (4, None)
        with pytest.raises(MetadataError):
            tx.set_refcount(D1, cid(2), 1, t1)


def test_list_chunks_keyset_pagination(repo: SqlMetaRepo) -> None:
    add_domain(repo, 2)
    with repo.transaction() as tx:
        for n in (5, 1, 300, 2, 256):
            tx.insert_chunk(chunk(n))
            tx.insert_chunk(chunk(n, domain=DomainId(2)))
    expected = [(1, cid(n)) for n in (1, 2, 5, 256, 300)] + [(2, cid(n)) for n in (1, 2, 5, 256, 300)]
    seen: list[tuple[int, bytes]] = []
    after: tuple[DomainId, ChunkId] | None = None
    while True:
        with repo.transaction() as tx:
            page = tx.list_chunks(after, limit=3)
        if not page:
            break
        for rec in page:
            assert rec == chunk(int.from_bytes(rec.chunk_id, "big"), domain=rec.domain_id)  # placement filled
        seen += [(r.domain_id, r.chunk_id) for r in page]
        after = (page[-1].domain_id, page[-1].chunk_id)
    assert seen == expected
    with repo.transaction() as tx:
        assert len(tx.list_chunks()) == 10
        assert tx.list_chunks(limit=0) == []


def test_collectable_and_delete_if_collectable(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=1))
        tx.insert_chunk(chunk(2, refcount=1))
        tx.insert_chunk(chunk(3, refcount=1))
        tx.decref(D1, cid(1), 1, T0 + timedelta(hours=2))
        tx.decref(D1, cid(2), 1, T0 + timedelta(hours=1))
        tx.decref(D1, cid(3), 1, T0 + timedelta(hours=5))
        tx.enqueue_heal(HealItem(D1, cid(2), "missing shard", T0))
    cutoff = T0 + timedelta(hours=5)  # strictly before: chunk 3 is not old enough
    with repo.transaction() as tx:
        found = tx.collectable_chunks(cutoff)
    assert [c.chunk_id for c in found] == [cid(2), cid(1)]  # oldest first
    assert found[0].placement == chunk(2).placement and found[0].refcount == 0
    with repo.transaction() as tx:
        assert [c.chunk_id for c in tx.collectable_chunks(cutoff, limit=1)] == [cid(2)]
        assert tx.delete_chunk_if_collectable(D1, cid(2), cutoff) is True
        assert tx.delete_chunk_if_collectable(D1, cid(2), cutoff) is False  # gone
        assert tx.delete_chunk_if_collectable(D1, cid(3), cutoff) is False  # too young
        assert tx.get_chunk(D1, cid(2)) is None
        assert tx.list_heal() == []  # the heal request went with the chunk
        # so did its placement (chunk n sits on disks n, n+1, n+2)
        assert tx.shard_counts_by_disk() == {disk(1): 1, disk(2): 1, disk(3): 2, disk(4): 1, disk(5): 1}
        assert [c.chunk_id for c in tx.collectable_chunks(cutoff)] == [cid(1)]


def test_delete_if_collectable_rechecks_a_listed_chunk(repo: SqlMetaRepo) -> None:
    """GC lists collectable chunks in one transaction and deletes in another: a write that
    re-referenced the chunk in between must win."""
    cutoff = T0 + timedelta(days=1)
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=1))
        tx.decref(D1, cid(1), 1, T0)
    with repo.transaction() as tx:
        [listed] = tx.collectable_chunks(cutoff)
    with repo.transaction() as tx:
        assert tx.incref(D1, listed.chunk_id, 1)
    with repo.transaction() as tx:
        assert tx.delete_chunk_if_collectable(D1, listed.chunk_id, cutoff) is False
        got = tx.get_chunk(D1, cid(1))
        assert got is not None and got.refcount == 1 and got.placement == chunk(1).placement
    # ... and a touch (restarted grace period) also wins
    with repo.transaction() as tx:
        tx.decref(D1, cid(1), 1, T0)
        tx.touch_unreferenced(D1, cid(1), cutoff + timedelta(seconds=1))
        assert tx.delete_chunk_if_collectable(D1, cid(1), cutoff) is False
        assert tx.collectable_chunks(cutoff) == []


def test_chunk_statistics(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        assert (tx.chunk_count(), tx.stored_size_total(), tx.shard_counts_by_disk()) == (0, 0, {})
        tx.insert_chunk(chunk(1))  # disks 1, 2, 3
        tx.insert_chunk(chunk(2))  # disks 2, 3, 4
        assert tx.chunk_count() == 2
        assert tx.stored_size_total() == 901 + 902
        assert tx.shard_counts_by_disk() == {disk(1): 1, disk(2): 2, disk(3): 2, disk(4): 1}


def test_update_chunk_and_max_chunk_width(repo: SqlMetaRepo) -> None:
    """Engine extensions (not in the MetaTx protocol yet): rebuild overwrites a chunk row from
    what the disks hold, keeping its references; disk removal asks for the widest k+m."""
    with repo.transaction() as tx:
        assert tx.max_chunk_width() is None
        tx.insert_chunk(chunk(1, refcount=4, width=3))
        tx.insert_chunk(chunk(2, refcount=1, width=5))
        assert tx.max_chunk_width() == 5
        fresh = replace(chunk(1, width=4), generation=99, refcount=0, placement=(disk(7), DiskId(""), disk(8), disk(9)))
        tx.update_chunk(fresh)
        got = tx.get_chunk(D1, cid(1))
        assert got == replace(fresh, refcount=4)  # everything but the references
        new = replace(chunk(3, refcount=0), generation=5)
        tx.update_chunk(new)  # an unknown chunk is inserted as given
        assert tx.get_chunk(D1, cid(3)) == new


# --- heal queue --------------------------------------------------------------------------------


def test_heal_queue(repo: SqlMetaRepo) -> None:
    a = HealItem(D1, cid(1), "shard 2 missing", T0 + timedelta(seconds=2))
    b = HealItem(D1, cid(2), "checksum mismatch", T0 + timedelta(seconds=1))
    with repo.transaction() as tx:
        tx.enqueue_heal(a)
        tx.enqueue_heal(b)
        tx.enqueue_heal(replace(a, reason="again", queued_at=T0 + timedelta(days=1)))  # idempotent
    with repo.transaction() as tx:
        assert tx.list_heal() == [b, a]
        assert tx.list_heal(limit=1) == [b]
        tx.remove_heal(D1, cid(2))
        tx.remove_heal(D1, cid(9))  # absent: no-op
        assert tx.list_heal() == [a]


# --- journal positions -------------------------------------------------------------------------


def test_journal_positions(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        assert tx.get_journal_positions() == {}
        tx.set_journal_position("w1-00000001", 4096)
        tx.set_journal_position("w1-00000002", 0)
    with repo.transaction() as tx:
        tx.set_journal_position("w1-00000001", 1 << 40)
    with repo.transaction() as tx:
        assert tx.get_journal_positions() == {"w1-00000001": 1 << 40, "w1-00000002": 0}


# --- transactions ------------------------------------------------------------------------------


def test_exception_rolls_back_everything(repo: SqlMetaRepo) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), repo.transaction() as tx:
        bid = tx.create_bucket(D1, "b", T0, None).bucket_id
        tx.insert_version(version(bid, "k", "v1", chunks=(ChunkRef(cid(1), 0, 1),)))
        tx.insert_chunk(chunk(1))
        tx.set_setting("s", "v")
        tx.set_journal_position("seg", 10)
        tx.enqueue_heal(HealItem(D1, cid(1), "r", T0))
        tx.upsert_disk(DiskRecord(disk(1), "/d", 1.0, DiskState.ACTIVE, T0))
        raise Boom
    with repo.transaction() as tx:
        assert tx.list_buckets() == []
        assert list(tx.iter_all_versions()) == []
        assert tx.chunk_count() == 0
        assert tx.get_setting("s") is None
        assert tx.get_journal_positions() == {}
        assert tx.list_heal() == []
        assert tx.list_disks() == []


def test_contract_error_inside_transaction_propagates_unchanged(repo: SqlMetaRepo) -> None:
    make_bucket(repo, "x")
    with repo.transaction() as tx:
        with pytest.raises(BucketAlreadyExists):
            tx.create_bucket(D1, "x", T0, None)
        tx.set_setting("after", "still usable")  # the transaction goes on
    with repo.transaction() as tx:
        assert tx.get_setting("after") == "still usable"


def test_transaction_is_unusable_after_its_block(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        pass
    with pytest.raises(MetadataError):
        tx.get_setting("x")


def test_datetimes_are_stored_as_utc(repo: SqlMetaRepo) -> None:
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=plus2)
    with repo.transaction() as tx:
        rec = tx.create_bucket(D1, "tz", local, None)
    with repo.transaction() as tx:
        got = tx.get_bucket("tz").created_at
    assert got == local and got.tzinfo == UTC and got.hour == 10 and rec.created_at == local
    with pytest.raises(InvalidInput), repo.transaction() as tx:
        tx.create_bucket(D1, "naive", datetime(2026, 1, 1), None)


def test_errors_are_dwh_errors(repo: SqlMetaRepo) -> None:
    with pytest.raises(DwhError), repo.transaction() as tx:
        tx.insert_chunk(chunk(1, domain=DomainId(5)))  # foreign key: unknown domain


def test_concurrent_writers_serialise(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        tx.insert_chunk(chunk(1, refcount=1))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(200):
                with repo.transaction() as tx:
                    got = tx.get_chunk(D1, cid(1))  # read-modify-write: lost updates would show
                    assert got is not None
                    tx.set_refcount(D1, cid(1), got.refcount + 1, T0)
                with repo.transaction() as tx:
                    assert tx.incref(D1, cid(1), 1)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with repo.transaction() as tx:
        got = tx.get_chunk(D1, cid(1))
    assert got is not None and got.refcount == 1 + 2 * 200 * 2


# --- object system metadata and tags, bucket settings ------------------------------------------


def test_version_system_meta_and_tags_round_trip(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    v = replace(
        version(bid, "k", "v1"),
        system_meta={"cache-control": "no-cache", "x-amz-checksum-crc32": "AAAAAA=="},
        tags={"project": "blé", "empty": ""},
    )
    with repo.transaction() as tx:
        tx.insert_version(v)
    with repo.read() as tx:
        got = tx.get_version(bid, "k")
        (listed,) = tx.iter_all_versions()
    assert got.system_meta == v.system_meta and got.tags == v.tags
    assert listed.system_meta == v.system_meta and listed.tags == v.tags


def test_set_version_tags(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.insert_version(version(bid, "k", "v1"))
        tx.insert_version(version(bid, "k", "v2", at=T0 + timedelta(seconds=1)))
    with repo.transaction() as tx:
        tx.set_version_tags(bid, "k", VersionId("v1"), {"a": "1"})
    with repo.read() as tx:
        assert tx.get_version(bid, "k", VersionId("v1")).tags == {"a": "1"}
        assert tx.get_version(bid, "k").tags == {}  # only the named version
    with repo.transaction() as tx:
        tx.set_version_tags(bid, "k", VersionId("v1"), {})
        assert tx.get_version(bid, "k", VersionId("v1")).tags == {}
    for key, vid in [("k", "nope"), ("other", "v1")]:
        with pytest.raises(NoSuchKey), repo.transaction() as tx:
            tx.set_version_tags(bid, key, VersionId(vid), {"a": "1"})


def test_bucket_settings(repo: SqlMetaRepo) -> None:
    b1, b2 = make_bucket(repo, "one"), make_bucket(repo, "two")
    with repo.transaction() as tx:
        assert tx.get_bucket_setting(b1, "cors") is None
        tx.put_bucket_setting(b1, "cors", '{"rules": []}')
        tx.put_bucket_setting(b1, "tagging", "{}")
        tx.put_bucket_setting(b2, "cors", "other")
    with repo.transaction() as tx:
        assert tx.get_bucket_setting(b1, "cors") == '{"rules": []}'
        tx.put_bucket_setting(b1, "cors", "x" * 100_000)  # replaced; documents may be large
    with repo.transaction() as tx:
        assert tx.get_bucket_setting(b1, "cors") == "x" * 100_000
        assert tx.get_bucket_setting(b2, "cors") == "other"
        assert tx.delete_bucket_setting(b1, "cors") is True
        assert tx.delete_bucket_setting(b1, "cors") is False
        assert tx.get_bucket_setting(b1, "cors") is None
        assert tx.get_bucket_setting(b1, "tagging") == "{}"
    with repo.transaction() as tx:  # settings go with their bucket
        tx.delete_bucket(b1)
    with repo.transaction() as tx:
        assert tx.get_bucket_setting(b1, "tagging") is None
        assert tx.get_bucket_setting(b2, "cors") == "other"


# --- multipart uploads -------------------------------------------------------------------------


def upload(bid: BucketId, key: str, upload_id: str, *, at: datetime = T0) -> UploadRecord:
    return UploadRecord(
        upload_id=upload_id,
        bucket_id=bid,
        key=key,
        created_at=at,
        storage_class=SC,
        chunker=ChunkerParams(64, 256, 1024),
        content_type="x/y",
        user_meta={"m": "ü"},
        system_meta={"cache-control": "max-age=1"},
        tags={"t": "1"},
    )


def part(upload_id: str, number: int, chunk_numbers: list[int], *, etag: str = "e") -> PartRecord:
    refs = tuple(ChunkRef(cid(n), i * 100, 100) for i, n in enumerate(chunk_numbers))
    return PartRecord(
        upload_id=upload_id,
        part_number=number,
        size=100 * len(refs),
        etag=f"{etag}{number}",
        created_at=T0 + timedelta(seconds=number),
        chunks=refs,
        checksums={"x-amz-checksum-crc32": "AAAAAA=="},
    )


def test_upload_round_trip_and_idempotent_create(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    u = upload(bid, "k/ü", "u1")
    with repo.transaction() as tx:
        tx.create_upload(u)
        tx.create_upload(replace(u, key="other"))  # replay of the same id: no-op
    with repo.read() as tx:
        assert tx.get_upload("u1") == u
        assert tx.get_upload("nope") is None
        assert tx.all_upload_ids() == ["u1"]


def test_parts_put_replace_list_and_get(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.create_upload(upload(bid, "k", "u1"))
        tx.create_upload(upload(bid, "k", "u2"))
        for n in (3, 1, 2):
            assert tx.put_part(part("u1", n, [n * 10, n * 10 + 1])) is None
        tx.put_part(part("u2", 1, [99]))
        empty = replace(part("u1", 4, []), size=0)
        assert tx.put_part(empty) is None
    with repo.transaction() as tx:
        old = tx.put_part(part("u1", 2, [7], etag="new"))
    assert old == part("u1", 2, [20, 21])  # the replaced part comes back with its chunks
    with repo.read() as tx:
        assert tx.get_part("u1", 2) == part("u1", 2, [7], etag="new")
        assert tx.get_part("u1", 9) is None
        listed = tx.list_parts("u1")
        assert [(p.part_number, p.etag, p.chunks) for p in listed] == [
            (1, "e1", ()),
            (2, "new2", ()),
            (3, "e3", ()),
            (4, "e4", ()),
        ]
        assert listed[0].checksums == {"x-amz-checksum-crc32": "AAAAAA=="}
        assert [p.part_number for p in tx.list_parts("u1", after=1, limit=2)] == [2, 3]
        assert [p.part_number for p in tx.list_parts("u1", after=4)] == []
        full = tx.get_parts("u1")
        assert [p.part_number for p in full] == [1, 2, 3, 4]
        assert [c.chunk_id for c in full[2].chunks] == [cid(30), cid(31)]
        assert full[3].chunks == () and full[3].size == 0
        assert [p.part_number for p in tx.get_parts("u2")] == [1]


def test_delete_upload_returns_its_parts(repo: SqlMetaRepo) -> None:
    bid = make_bucket(repo)
    with repo.transaction() as tx:
        tx.create_upload(upload(bid, "k", "u1"))
        tx.create_upload(upload(bid, "k", "u2"))
        tx.put_part(part("u1", 1, [1, 2]))
        tx.put_part(part("u1", 2, [3]))
        tx.put_part(part("u2", 1, [4]))
    with repo.transaction() as tx:
        gone = tx.delete_upload("u1")
    assert [(p.part_number, [c.chunk_id for c in p.chunks]) for p in gone] == [(1, [cid(1), cid(2)]), (2, [cid(3)])]
    with repo.transaction() as tx:
        assert tx.get_upload("u1") is None and tx.list_parts("u1") == [] and tx.get_parts("u1") == []
        assert tx.delete_upload("u1") == []  # already gone
        assert [p.part_number for p in tx.get_parts("u2")] == [1]
        tx.delete_upload("u2")
        tx.delete_bucket(bid)  # nothing in progress any more


def test_list_uploads_order_prefix_and_markers(repo: SqlMetaRepo) -> None:
    bid, other = make_bucket(repo, "one"), make_bucket(repo, "two")
    rows = [
        ("b", "u-late", T0 + timedelta(seconds=5)),
        ("b", "u-early", T0 + timedelta(seconds=1)),
        ("a/x", "u1", T0),
        ("a/y", "u2", T0),
        ("a", "u3", T0),
        ("c", "u4", T0),
    ]
    with repo.transaction() as tx:
        for key, uid, at in rows:
            tx.create_upload(upload(bid, key, uid, at=at))
        tx.create_upload(upload(other, "a/x", "elsewhere"))

    def ids(**kw: object) -> list[str]:
        with repo.read() as tx:
            return [u.upload_id for u in tx.list_uploads(bid, **kw)]  # type: ignore[arg-type]

    # by key, then by initiation time within a key
    assert ids() == ["u3", "u1", "u2", "u-early", "u-late", "u4"]
    assert ids(prefix="a/") == ["u1", "u2"]
    assert ids(prefix="a") == ["u3", "u1", "u2"]
    assert ids(prefix="zzz") == []
    assert ids(limit=2) == ["u3", "u1"]
    assert ids(key_marker="a/y") == ["u-early", "u-late", "u4"]  # keys after the marker
    assert ids(key_marker="a/", prefix="a") == ["u1", "u2"]
    # Within a key the marker is an upload: the next page starts after it in listing order (by
    # initiation, not by upload id), whatever the ids look like.
    assert ids(key_marker="b", upload_id_marker="u-early") == ["u-late", "u4"]
    assert ids(key_marker="b", upload_id_marker="u-late") == ["u4"]
    assert ids(key_marker="a/x", upload_id_marker="u1") == ["u2", "u-early", "u-late", "u4"]
    assert ids(key_marker="b", upload_id_marker="unknown") == ["u4"]
    assert ids(key_marker="a/x", upload_id_marker="u-early") == ["u2", "u-early", "u-late", "u4"]
    with repo.transaction() as tx:  # same key and instant: the upload id breaks the tie
        tx.create_upload(upload(bid, "c", "u0", at=T0))
        tx.create_upload(upload(bid, "c", "u9", at=T0))
    assert ids(key_marker="c", upload_id_marker="u0") == ["u4", "u9"]
    assert ids(key_marker="c", upload_id_marker="u4") == ["u9"]
    assert ids(key_marker="a/y", limit=3) == ["u-early", "u-late", "u0"]
    with repo.read() as tx:
        assert [u.upload_id for u in tx.list_uploads(other)] == ["elsewhere"]


def test_uploads_go_nowhere_without_their_bucket(repo: SqlMetaRepo) -> None:
    with pytest.raises(DwhError), repo.transaction() as tx:
        tx.create_upload(upload(BucketId(9999), "k", "u1"))


# --- SQLite specifics --------------------------------------------------------------------------


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> Iterator[SqlMetaRepo]:
    r = SqlMetaRepo.for_sqlite(tmp_path / "meta.sqlite3")
    try:
        yield r
    finally:
        r.close()


def test_sqlite_connection_settings(sqlite_repo: SqlMetaRepo) -> None:
    with sqlite_repo.engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30000}


def test_sqlite_transaction_takes_the_write_lock_at_begin(sqlite_repo: SqlMetaRepo, tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: even a transaction that has only read holds the write lock, so another
    writer cannot slip in between its read and its write."""
    other = sqlite3.connect(tmp_path / "meta.sqlite3", timeout=0, isolation_level=None)
    try:
        with sqlite_repo.transaction() as tx:
            tx.get_setting("x")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM buckets").fetchone() == (0,)  # readers are not blocked
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_sqlite_busy_database_is_a_metadata_error(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    SqlMetaRepo.for_sqlite(path).close()
    repo = SqlMetaRepo(f"sqlite:///{path}", busy_timeout=0.05)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(MetadataError, match="locked"), repo.transaction():
            pass
        other.execute("ROLLBACK")
        with repo.transaction() as tx:
            tx.set_setting("ok", "1")
    finally:
        other.close()
        repo.close()


def test_sqlite_nested_transaction_in_one_thread_is_refused(sqlite_repo: SqlMetaRepo) -> None:
    with sqlite_repo.transaction() as tx:
        tx.set_setting("outer", "1")
        with pytest.raises(MetadataError, match="nested"), sqlite_repo.transaction():
            pass
        tx.set_setting("outer", "2")
    with sqlite_repo.transaction() as tx:
        assert tx.get_setting("outer") == "2"


def test_sqlite_memory_database_is_refused() -> None:
    with pytest.raises(InvalidInput):
        SqlMetaRepo("sqlite://")
