"""Journal documents of the catalog: versions and chunks survive a JSON round trip exactly."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from datawarehouse.errors import CorruptFrame
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, VersionId
from datawarehouse.records import BucketRecord, ChunkerParams, ChunkRecord, ChunkRef, ObjectVersion, StorageClass
from datawarehouse.service import catalog

AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def cid(i: int) -> ChunkId:
    return ChunkId(bytes([i]) * 32)


def chunked() -> ObjectVersion:
    return ObjectVersion(
        bucket_id=BucketId(7),
        key="photos/2026/ünïcode 😀.jpg",
        version_id=catalog.new_version_id(AT),
        size=300,
        etag="0123456789abcdef0123456789abcdef",
        created_at=AT,
        storage_class=StorageClass(4, 2),
        chunker=ChunkerParams(16384, 65536, 262144),
        content_type="image/jpeg",
        user_meta={"author": "Zoë", "empty": ""},
        system_meta={"Cache-Control": "no-cache", "Content-Encoding": "gzip"},
        tags={"project": "x", "team": "ünï"},
        chunks=(ChunkRef(cid(1), 0, 100), ChunkRef(cid(2), 100, 100), ChunkRef(cid(1), 200, 100)),
    )


def inline() -> ObjectVersion:
    return ObjectVersion(
        bucket_id=BucketId(1),
        key="tiny",
        version_id=VersionId("000000000000001234567890abcdef"),
        size=5,
        etag="e" * 32,
        created_at=AT,
        storage_class=StorageClass(1, 0),
        chunker=ChunkerParams(),
        inline_data=bytes(range(256)) + b"\x00\xff",
        chunks=(ChunkRef(cid(9), 0, 5),),
    )


@pytest.mark.parametrize("make", [chunked, inline])
def test_version_round_trip(make) -> None:
    v = make()
    doc = catalog.version_to_doc(v)
    assert catalog.version_from_doc(doc) == v
    # Through JSON, as the journal stores it.
    assert catalog.version_from_doc(json.loads(json.dumps(doc))) == v


def test_delete_marker_and_empty_version_round_trip() -> None:
    v = ObjectVersion(
        bucket_id=BucketId(3),
        key="gone",
        version_id=VersionId("v"),
        size=0,
        etag="",
        created_at=AT,
        storage_class=StorageClass(2, 1),
        chunker=ChunkerParams(),
        is_delete_marker=True,
    )
    assert catalog.version_from_doc(json.loads(json.dumps(catalog.version_to_doc(v)))) == v
    # Documents written before the field existed read as "not a delete marker".
    doc = catalog.version_to_doc(chunked())
    del doc["delete_marker"]
    assert catalog.version_from_doc(doc).is_delete_marker is False


def test_chunk_round_trip() -> None:
    c = ChunkRecord(
        domain_id=DomainId(1),
        chunk_id=cid(5),
        generation=(1 << 63) - 1,
        plain_size=1_048_576,
        sealed_size=1_048_620,
        k=4,
        m=2,
        refcount=0,
        created_at=AT,
        placement=tuple(DiskId(f"{i:032x}") for i in range(6)),
    )
    doc = json.loads(json.dumps(catalog.chunk_to_doc(c)))
    assert catalog.chunk_from_doc(DomainId(1), doc) == c


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("key"),
        lambda d: d.update(size="lots"),
        lambda d: d.update(ec=[0, 2]),  # not a storage class
        lambda d: d.update(chunker=[1, 2]),
        lambda d: d.update(chunks=[["zz", 0, 1]]),
        lambda d: d.update(inline="***not base64***"),
        lambda d: d.update(created_at="yesterday"),
    ],
)
def test_malformed_version_doc_is_corrupt_frame(mutate) -> None:
    doc = catalog.version_to_doc(chunked())
    mutate(doc)
    with pytest.raises(CorruptFrame, match="malformed object version"):
        catalog.version_from_doc(doc)


def test_refs_of() -> None:
    assert catalog.refs_of(chunked()) == Counter({cid(1): 2, cid(2): 1})
    assert catalog.refs_of(inline()) == Counter()


def test_bucket_doc() -> None:
    b = BucketRecord(BucketId(4), DomainId(1), "photos", AT, StorageClass(1, 2))
    doc = json.loads(json.dumps(catalog.bucket_create_doc(b)))
    assert doc == {
        "op": "bucket.create",
        "bucket_id": 4,
        "domain_id": 1,
        "name": "photos",
        "created_at": AT.isoformat(),
        "ec": [1, 2],
    }
    assert catalog.bucket_create_doc(BucketRecord(BucketId(5), DomainId(1), "plain", AT))["ec"] is None


def test_version_ids_are_unique_and_time_ordered() -> None:
    ids = [catalog.new_version_id(AT + timedelta(microseconds=i)) for i in range(200)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    same_instant = {catalog.new_version_id(AT) for _ in range(200)}
    assert len(same_instant) == 200
    assert all(len(v) == 30 and int(v, 16) >= 0 for v in ids)
