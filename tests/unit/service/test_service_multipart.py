"""Multipart uploads through the service on a real (small) data directory: references held by
parts, completion by manifest concatenation, copy by reference, and journal replay idempotence."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datawarehouse.config import EngineConfig
from datawarehouse.errors import (
    BucketNotEmpty,
    EntityTooSmall,
    InvalidInput,
    InvalidPart,
    InvalidPartOrder,
    NoSuchKey,
    NoSuchUpload,
)
from datawarehouse.ids import BucketId, ChunkId, VersionId
from datawarehouse.records import ChunkerParams, ChunkRef, ObjectVersion, PartRecord, StorageClass
from datawarehouse.service import multipart as mp
from datawarehouse.service.multipart import CompletedPart, Multipart, whole_chunks
from datawarehouse.service.warehouse import OpenOptions, Warehouse
from datawarehouse.storage.packstore import PackedLocation, scan_locations

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024
)
B = "bucket"


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 100 * 1024)  # keep the data small
    w = Warehouse.init(tmp_path / "dwh", None, OpenOptions(config=SMALL))
    w.create_bucket(B)
    try:
        yield w
    finally:
        w.close()


def put_part(m: Multipart, key: str, upload_id: str, number: int, data: bytes) -> PartRecord:
    part = m.open_part(B, key, upload_id, number)
    for i in range(0, len(data), 50_000):
        part.write(data[i : i + 50_000])
    return part.finish()


def refcounts(wh: Warehouse) -> dict[bytes, int]:
    with wh.engine.repo.read() as tx:
        return {c.chunk_id: c.refcount for c in tx.list_chunks(limit=1_000_000)}


def shard_files(wh: Warehouse) -> dict[tuple[str, str], PackedLocation]:
    """Every stored shard (disk, key) -> where its record is: equal results mean no shard was
    written (a rewrite of the same key is a new record elsewhere)."""
    return {
        (rec.disk_id, key): loc for rec in wh.engine.datadir.disks() for key, loc in scan_locations(rec.path).items()
    }


def state(wh: Warehouse) -> dict[str, Any]:
    """Everything multipart and object operations change in the index."""
    with wh.engine.repo.read() as tx:
        uploads = {u: (tx.get_upload(u), tx.get_parts(u)) for u in tx.all_upload_ids()}
        versions = sorted((v.key, v.version_id, v.etag, v.chunks, v.tags) for v in tx.iter_all_versions())
        chunks = {c.chunk_id: (c.refcount, c.zero_since is None) for c in tx.list_chunks(limit=1_000_000)}
        bucket = tx.get_bucket(B)
        settings = tx.get_bucket_setting(bucket.bucket_id, "cors")
    return {"uploads": uploads, "versions": versions, "chunks": chunks, "settings": settings}


def test_complete_concatenates_manifests_without_writing(wh: Warehouse) -> None:
    m = Multipart(wh)
    up = m.create(B, "obj", content_type="x/y", user_meta={"a": "1"}, tags={"t": "v"})
    data = [os.urandom(300 * 1024), os.urandom(200 * 1024 + 7), os.urandom(1000)]
    parts = [put_part(m, "obj", up.upload_id, i + 1, d) for i, d in enumerate(data)]
    assert all(p.etag == hashlib.md5(d).hexdigest() for p, d in zip(parts, data, strict=True))
    with wh.engine.repo.read() as tx:
        assert tx.get_upload(up.upload_id) is not None
    with pytest.raises(NoSuchKey):
        wh.head_object(B, "obj")  # invisible until completed
    files_before = shard_files(wh)
    version = m.complete(B, "obj", up.upload_id, [CompletedPart(p.part_number, p.etag) for p in parts])
    assert files_before and shard_files(wh) == files_before  # no byte written again
    whole = b"".join(data)
    want = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in data)).hexdigest() + "-3"
    assert version.etag == want and version.size == len(whole) and version.inline_data is None
    assert version.chunker == up.chunker and version.storage_class == up.storage_class
    assert wh.get_object_bytes(B, "obj") == whole
    assert wh.get_object_bytes(B, "obj", 300 * 1024 - 5, 300 * 1024 + 5) == whole[300 * 1024 - 5 : 300 * 1024 + 5]
    got = wh.head_object(B, "obj")
    assert got.content_type == "x/y" and got.user_meta == {"a": "1"} and got.tags == {"t": "v"}
    # The version holds exactly one reference per manifest entry; the parts hold none any more.
    counts = refcounts(wh)
    for c in version.chunks:
        assert counts[c.chunk_id] == sum(1 for x in version.chunks if x.chunk_id == c.chunk_id)
    with wh.engine.repo.read() as tx:
        assert tx.get_upload(up.upload_id) is None and tx.get_parts(up.upload_id) == []
    with pytest.raises(NoSuchUpload):
        m.complete(B, "obj", up.upload_id, [CompletedPart(1, parts[0].etag)])
    # Deleting the object leaves every chunk unreferenced.
    wh.delete_object(B, "obj")
    assert set(refcounts(wh).values()) == {0}


def test_subset_of_parts_and_unused_parts_released(wh: Warehouse) -> None:
    m = Multipart(wh)
    up = m.create(B, "k")
    p1 = put_part(m, "k", up.upload_id, 1, os.urandom(150 * 1024))
    p2 = put_part(m, "k", up.upload_id, 2, os.urandom(150 * 1024))
    p3 = put_part(m, "k", up.upload_id, 3, os.urandom(10))
    version = m.complete(B, "k", up.upload_id, [CompletedPart(1, p1.etag), CompletedPart(3, f'"{p3.etag}"')])
    assert version.size == p1.size + p3.size and version.etag.endswith("-2")
    used = {c.chunk_id for c in version.chunks}
    counts = refcounts(wh)
    assert all(counts[c.chunk_id] == 0 for c in p2.chunks if c.chunk_id not in used)
    assert all(counts[c] >= 1 for c in used)


def test_parts_are_never_inline(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 0)
    m = Multipart(wh)
    up = m.create(B, "tiny")
    a = put_part(m, "tiny", up.upload_id, 1, b"hello ")
    b = put_part(m, "tiny", up.upload_id, 2, b"world")
    assert a.chunks and b.chunks  # below inline_max_size, chunked all the same
    empty = put_part(m, "tiny", up.upload_id, 3, b"")
    assert empty.size == 0 and empty.chunks == ()
    parts = [CompletedPart(1, a.etag), CompletedPart(2, b.etag), CompletedPart(3, empty.etag)]
    v = m.complete(B, "tiny", up.upload_id, parts)
    assert v.inline_data is None and wh.get_object_bytes(B, "tiny") == b"hello world"


def test_replacing_a_part_releases_the_old_one(wh: Warehouse) -> None:
    m = Multipart(wh)
    up = m.create(B, "k")
    old = put_part(m, "k", up.upload_id, 1, os.urandom(200 * 1024))
    new = put_part(m, "k", up.upload_id, 1, os.urandom(120 * 1024))
    counts = refcounts(wh)
    assert all(counts[c.chunk_id] == 0 for c in old.chunks)
    assert all(counts[c.chunk_id] == 1 for c in new.chunks)
    listed = m.list_parts(B, "k", up.upload_id, 0, 100)[1]
    assert [(p.part_number, p.etag, p.size) for p in listed] == [(1, new.etag, new.size)]


def test_abort_releases_every_reference(wh: Warehouse) -> None:
    m = Multipart(wh)
    up = m.create(B, "k")
    for n in (1, 2):
        put_part(m, "k", up.upload_id, n, os.urandom(120 * 1024))
    assert any(refcounts(wh).values())
    with pytest.raises(BucketNotEmpty):
        wh.delete_bucket(B)
    m.abort(B, "k", up.upload_id)
    assert set(refcounts(wh).values()) == {0}
    with pytest.raises(NoSuchUpload):
        m.abort(B, "k", up.upload_id)
    with pytest.raises(NoSuchUpload):
        m.open_part(B, "k", up.upload_id, 1)
    wh.delete_bucket(B)


def test_completion_errors(wh: Warehouse) -> None:
    m = Multipart(wh)
    up = m.create(B, "k")
    small = put_part(m, "k", up.upload_id, 1, b"x" * 1000)
    big = put_part(m, "k", up.upload_id, 2, os.urandom(150 * 1024))
    uid = up.upload_id
    with pytest.raises(InvalidPart):
        m.complete(B, "k", uid, [CompletedPart(2, "0" * 32)])
    with pytest.raises(InvalidPart):
        m.complete(B, "k", uid, [CompletedPart(7, big.etag)])
    with pytest.raises(InvalidPartOrder):
        m.complete(B, "k", uid, [CompletedPart(2, big.etag), CompletedPart(1, small.etag)])
    with pytest.raises(InvalidPartOrder):
        m.complete(B, "k", uid, [CompletedPart(2, big.etag), CompletedPart(2, big.etag)])
    with pytest.raises(EntityTooSmall):
        m.complete(B, "k", uid, [CompletedPart(1, small.etag), CompletedPart(2, big.etag)])
    with pytest.raises(InvalidInput):
        m.complete(B, "k", uid, [])
    for number in (0, 10_001):
        with pytest.raises(InvalidInput):
            m.open_part(B, "k", uid, number)
    with pytest.raises(NoSuchUpload):
        m.open_part(B, "other-key", uid, 1)  # an upload id belongs to one key
    with pytest.raises(NoSuchUpload):
        m.list_parts(B, "k", "no-such-upload", 0, 10)
    # Failed completions changed nothing.
    assert m.complete(B, "k", uid, [CompletedPart(2, big.etag)]).size == big.size


def test_list_uploads(wh: Warehouse) -> None:
    m = Multipart(wh)
    ids = {key: m.create(B, key).upload_id for key in ("b", "a/2", "a/1")}
    again = m.create(B, "a/1").upload_id
    listed = [(u.key, u.upload_id) for u in m.list_uploads(B, "", "", "", 100)]
    assert [k for k, _ in listed] == ["a/1", "a/1", "a/2", "b"]
    assert listed[:2] == [("a/1", ids["a/1"]), ("a/1", again)]  # by initiation within a key
    assert [u.key for u in m.list_uploads(B, "a/", "", "", 100)] == ["a/1", "a/1", "a/2"]
    assert [u.key for u in m.list_uploads(B, "", "a/2", "", 100)] == ["b"]


def test_list_uploads_page_with_delimiter(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp, "_PAGE", 2)  # make the seeks and page refills happen
    m = Multipart(wh)
    for key in ["a", "d/1", "d/2", "d/3", "d/sub/x", "e/1", "f"]:
        m.create(B, key)

    def page(prefix: str = "", delimiter: str = "/", marker: str = "", upload: str = "", n: int = 100) -> Any:
        got = m.list_uploads_page(B, prefix, delimiter, marker, upload, n)
        return [u.key for u in got.uploads], got.common_prefixes, got.is_truncated, got.next_key_marker

    assert page() == (["a", "f"], ["d/", "e/"], False, "f")
    assert page(n=2) == (["a"], ["d/"], True, "d/")
    assert page(marker="d/", n=2) == (["f"], ["e/"], False, "f")
    assert page(marker="d/2") == (["f"], ["e/"], False, "f")  # a marker inside d/: not repeated
    assert page(prefix="d/") == (["d/1", "d/2", "d/3"], ["d/sub/"], False, "d/sub/")
    assert page(delimiter="")[0] == ["a", "d/1", "d/2", "d/3", "d/sub/x", "e/1", "f"]
    assert page(n=0) == ([], [], True, None)
    first = m.list_uploads_page(B, "d/", "", "", "", 2)
    rest = m.list_uploads_page(B, "d/", "", first.next_key_marker or "", first.next_upload_id_marker or "", 100)
    assert [u.key for u in first.uploads + rest.uploads] == ["d/1", "d/2", "d/3", "d/sub/x"]


def test_whole_chunks() -> None:
    refs = tuple(ChunkRef(ChunkId(bytes([i]) * 32), i * 10, 10) for i in range(4))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    v = ObjectVersion(BucketId(1), "k", VersionId("v"), 40, "e", at, StorageClass(1, 0), ChunkerParams(), chunks=refs)
    assert whole_chunks(v, 0, 40) == tuple(ChunkRef(r.chunk_id, r.offset, 10) for r in refs)
    assert whole_chunks(v, 10, 30) == (ChunkRef(refs[1].chunk_id, 0, 10), ChunkRef(refs[2].chunk_id, 10, 10))
    assert whole_chunks(v, 10, 25) is None and whole_chunks(v, 5, 20) is None and whole_chunks(v, 10, 10) is None


def test_upload_part_copy_by_reference_and_by_reading(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 0)  # the chunk-aligned part is as small as two chunks
    source = os.urandom(400 * 1024)
    src = wh.put_object(B, "source", source, md5_etag=True)
    m = Multipart(wh)
    up = m.create(B, "copy")
    chunks_before, files_before = len(refcounts(wh)), shard_files(wh)
    whole = m.upload_part_copy(B, "copy", up.upload_id, 1, B, "source")
    assert whole.etag == src.etag and whole.chunks == src.chunks
    # A source without an MD5 ETag (written through the Python API): the part's MD5 is computed
    # from the bytes, and the chunks are still shared.
    plain = wh.put_object(B, "plain-source", source)
    assert plain.etag != src.etag
    again = m.upload_part_copy(B, "copy", up.upload_id, 1, B, "plain-source")
    assert again.etag == src.etag and again.chunks == src.chunks
    aligned = src.chunks[1].offset, src.chunks[3].offset
    ranged = m.upload_part_copy(B, "copy", up.upload_id, 2, B, "source", aligned)
    assert [c.chunk_id for c in ranged.chunks] == [c.chunk_id for c in src.chunks[1:3]]
    assert ranged.etag == hashlib.md5(source[aligned[0] : aligned[1]]).hexdigest()
    assert len(refcounts(wh)) == chunks_before and shard_files(wh) == files_before  # nothing written
    cut = m.upload_part_copy(B, "copy", up.upload_id, 3, B, "source", (5, 150_005))  # cuts chunks: rewritten
    assert cut.etag == hashlib.md5(source[5:150_005]).hexdigest() and cut.size == 150_000
    tiny = wh.put_object(B, "tiny", b"inline object")
    assert tiny.inline_data is not None
    last = m.upload_part_copy(B, "copy", up.upload_id, 4, B, "tiny", (0, 6))
    with pytest.raises(InvalidInput):
        m.upload_part_copy(B, "copy", up.upload_id, 5, B, "source", (0, len(source) + 1))
    with pytest.raises(NoSuchKey):
        m.upload_part_copy(B, "copy", up.upload_id, 5, B, "missing")
    parts = [CompletedPart(p.part_number, p.etag) for p in (whole, ranged, cut, last)]
    m.complete(B, "copy", up.upload_id, parts)
    want = source + source[aligned[0] : aligned[1]] + source[5:150_005] + b"inline"
    assert wh.get_object_bytes(B, "copy") == want
    wh.delete_object(B, "copy")
    wh.delete_object(B, "source")
    wh.delete_object(B, "plain-source")
    assert set(refcounts(wh).values()) == {0}


def test_source_conditions_refuse_a_copy(wh: Warehouse) -> None:
    wh.put_object(B, "source", b"x" * 10_000)
    m = Multipart(wh)
    up = m.create(B, "copy")

    def refuse(_: object) -> None:
        raise InvalidInput("refused")

    with pytest.raises(InvalidInput):
        m.upload_part_copy(B, "copy", up.upload_id, 1, B, "source", source_conditions=refuse)
    assert m.list_parts(B, "copy", up.upload_id, 0, 10)[1] == []


def test_part_chunker_comes_from_the_upload(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    with Warehouse.init(root, None, OpenOptions(config=SMALL)) as w:
        w.create_bucket(B)
        up = Multipart(w).create(B, "k")
    other = EngineConfig(chunk_min_size=64 * 1024, chunk_avg_size=128 * 1024, chunk_max_size=256 * 1024)
    with Warehouse.open(root, OpenOptions(config=other)) as w:
        m = Multipart(w)
        data = os.urandom(300 * 1024)
        part = put_part(m, "k", up.upload_id, 1, data)
        assert max(c.plain_size for c in part.chunks) <= SMALL.chunk_max_size
        v = m.complete(B, "k", up.upload_id, [CompletedPart(1, part.etag)])
        assert v.chunker == SMALL.chunker and w.get_object_bytes(B, "k") == data


def test_replaying_the_whole_journal_changes_nothing(wh: Warehouse) -> None:
    """Every multipart operation (and the tag/setting ones) replayed again on top of the index it
    built — as catch-up after a crash or a rebuild may — leaves the same state, references
    included: a part replayed twice is not counted twice."""
    m = Multipart(wh)
    done = m.create(B, "done")
    d1 = put_part(m, "done", done.upload_id, 1, os.urandom(150 * 1024))
    put_part(m, "done", done.upload_id, 2, os.urandom(50 * 1024))
    d2 = put_part(m, "done", done.upload_id, 2, os.urandom(60 * 1024))  # replaced
    m.complete(B, "done", done.upload_id, [CompletedPart(1, d1.etag), CompletedPart(2, d2.etag)])
    aborted = m.create(B, "aborted")
    put_part(m, "aborted", aborted.upload_id, 1, os.urandom(120 * 1024))
    m.abort(B, "aborted", aborted.upload_id)
    still_open = m.create(B, "open", system_meta={"cache-control": "no-cache"})
    put_part(m, "open", still_open.upload_id, 1, os.urandom(120 * 1024))
    put_part(m, "open", still_open.upload_id, 3, os.urandom(120 * 1024))
    put_part(m, "open", still_open.upload_id, 3, os.urandom(10))
    replaced = m.create(B, "replaced-later")
    r1 = put_part(m, "replaced-later", replaced.upload_id, 1, os.urandom(90 * 1024))
    m.complete(B, "replaced-later", replaced.upload_id, [CompletedPart(1, r1.etag)])
    wh.put_object(B, "replaced-later", os.urandom(80 * 1024))
    deleted = m.create(B, "deleted")
    e1 = put_part(m, "deleted", deleted.upload_id, 1, os.urandom(90 * 1024))
    m.complete(B, "deleted", deleted.upload_id, [CompletedPart(1, e1.etag)])
    wh.delete_object(B, "deleted")
    wh.put_object_tags(B, "done", {"k": "v"})
    wh.set_bucket_setting(B, "cors", "<CORSConfiguration/>")
    before = state(wh)
    assert before["uploads"] and any(n for n, _ in before["chunks"].values())
    for _ in range(2):
        with wh.engine.repo.transaction() as tx:
            for segment in tx.get_journal_positions():
                tx.set_journal_position(segment, 0)
        assert wh.engine.catch_up() > 10
        assert state(wh) == before
