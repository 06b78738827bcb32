"""Bucket quotas through the service: refused before data is stored when the size is announced,
refused in the commit otherwise, parts count, deletes always allowed, settings survive rebuild."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from datawarehouse.config import EngineConfig
from datawarehouse.errors import InvalidInput, NoSuchKey, QuotaExceeded
from datawarehouse.service import multipart as mp
from datawarehouse.service.multipart import CompletedPart, Multipart
from datawarehouse.service.quota import Quota
from datawarehouse.service.warehouse import OpenOptions, Warehouse

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024
)
B = "quota-bucket"


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 50 * 1024)
    w = Warehouse.init(tmp_path / "dwh", None, OpenOptions(config=SMALL))
    w.create_bucket(B)
    w.create_bucket("other")
    try:
        yield w
    finally:
        w.close()


def chunk_rows(wh: Warehouse) -> int:
    with wh.engine.repo.read() as tx:
        return tx.chunk_count()


def put(wh: Warehouse, key: str, data: bytes, *, announce: bool = True) -> None:
    up = wh.open_upload(B, key, expected_size=len(data) if announce else None)
    up.write(data)
    up.finish()


def test_announced_size_over_quota_is_refused_before_any_data(wh: Warehouse) -> None:
    wh.set_bucket_quota(B, Quota(max_bytes=300_000))
    put(wh, "a", os.urandom(200_000))
    chunks = chunk_rows(wh)
    temp_and_shards = sum(1 for p in wh.engine.datadir.root.rglob("*") if p.is_file())
    with pytest.raises(QuotaExceeded, match="bytes quota 300000"):
        wh.open_upload(B, "b", expected_size=200_000)
    assert chunk_rows(wh) == chunks
    assert sum(1 for p in wh.engine.datadir.root.rglob("*") if p.is_file()) == temp_and_shards
    put(wh, "c", os.urandom(100_000))  # exactly up to the limit is allowed
    assert wh.bucket_usage(B)[0].bytes == 300_000


def test_unannounced_size_is_refused_at_commit_and_leaves_nothing_visible(wh: Warehouse) -> None:
    wh.set_bucket_quota(B, Quota(max_bytes=150_000))
    put(wh, "a", os.urandom(100_000), announce=False)
    with pytest.raises(QuotaExceeded):
        put(wh, "b", os.urandom(100_000), announce=False)
    with pytest.raises(NoSuchKey):
        wh.head_object(B, "b")
    assert wh.bucket_usage(B)[0].bytes == 100_000
    wh.put_object("other", "x", os.urandom(500_000))  # quotas are per bucket


def test_object_count_quota_and_overwrites(wh: Warehouse) -> None:
    wh.set_bucket_quota(B, Quota(max_objects=2))
    put(wh, "a", b"1")
    put(wh, "b", b"2")
    with pytest.raises(QuotaExceeded, match="objects quota 2"):
        put(wh, "c", b"3")
    with pytest.raises(QuotaExceeded):  # the pre-check counts a new object; the commit would too
        wh.copy_object(B, "a", B, "d")
    wh.delete_object(B, "a")
    put(wh, "c", b"3")
    assert wh.bucket_usage(B)[0].objects == 2


def test_deletes_are_allowed_over_quota(wh: Warehouse) -> None:
    put(wh, "a", os.urandom(10_000))
    put(wh, "b", os.urandom(10_000))
    wh.set_bucket_quota(B, Quota(max_bytes=5_000))  # lowered below the usage
    with pytest.raises(QuotaExceeded):
        put(wh, "c", b"x")
    assert wh.delete_object(B, "a")
    assert wh.bucket_usage(B)[0].bytes == 10_000


def test_multipart_parts_count_and_overflow_mid_upload(wh: Warehouse) -> None:
    wh.set_bucket_quota(B, Quota(max_bytes=200_000))
    m = Multipart(wh)
    up = m.create(B, "big")
    done = []
    for n in (1, 2, 3):
        part = m.open_part(B, "big", up.upload_id, n, 60_000)
        part.write(os.urandom(60_000))
        done.append(CompletedPart(n, part.finish().etag))
    usage = wh.bucket_usage(B)[0]
    assert (usage.upload_parts, usage.upload_bytes) == (3, 180_000)
    with pytest.raises(QuotaExceeded):  # announced: refused before the part's data is stored
        m.open_part(B, "big", up.upload_id, 4, 60_000)
    part = m.open_part(B, "big", up.upload_id, 4)  # not announced: refused at its commit
    part.write(os.urandom(60_000))
    with pytest.raises(QuotaExceeded):
        part.finish()
    m.complete(B, "big", up.upload_id, done)  # parts become the object: usage unchanged
    usage = wh.bucket_usage(B)[0]
    assert (usage.objects, usage.bytes, usage.upload_parts) == (1, 180_000, 0)


def test_quota_is_journaled_and_cleared(tmp_path: Path, wh: Warehouse) -> None:
    from datawarehouse.engine.rebuild import rebuild_meta
    from datawarehouse.service import catalog

    wh.set_bucket_quota(B, Quota(max_bytes=1000, max_objects=5))
    root = wh.engine.datadir.root
    wh.close()
    for p in (root / "meta").glob("meta.sqlite3*"):
        p.unlink()
    rebuild_meta(root, catalog.replay)
    with Warehouse.open(root, OpenOptions(config=SMALL)) as again:
        assert again.bucket_usage(B)[2] == Quota(1000, 5)
        again.set_bucket_quota(B, None)
        assert again.bucket_usage(B)[2] is None
        again.put_object(B, "free", os.urandom(5000))


def test_negative_limits_are_refused() -> None:
    with pytest.raises(InvalidInput):
        Quota(max_bytes=-1)


def test_a_setting_changed_while_it_is_read_is_not_cached(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quota set between another thread's read of the old value and its caching must win:
    the stale read is returned once but not kept."""
    from contextlib import contextmanager

    rec = wh.get_bucket(B)
    real_read = wh._read
    raced = []

    @contextmanager
    def racing_read():  # type: ignore[no-untyped-def]
        with real_read() as tx:
            yield tx
        if not raced:
            raced.append(True)
            monkeypatch.setattr(wh, "_read", real_read)
            wh.set_bucket_quota(B, Quota(max_objects=1))  # lands after the read, before caching

    monkeypatch.setattr(wh, "_read", racing_read)
    assert wh.quota_for(rec) is None  # what was read
    assert wh.quota_for(rec) == Quota(max_objects=1)  # not the stale value
    put(wh, "a", b"1")
    with pytest.raises(QuotaExceeded):
        put(wh, "b", b"2")
