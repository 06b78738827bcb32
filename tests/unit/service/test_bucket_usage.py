"""Bucket usage counters (kept by database triggers) against a recount of the rows, after every
kind of write: put, overwrite, copy, delete, multipart parts, complete, abort, bucket reuse,
and a rebuilt index."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from datawarehouse.config import EngineConfig
from datawarehouse.errors import NoSuchKey
from datawarehouse.meta import schema as s
from datawarehouse.meta.repo import BucketUsage
from datawarehouse.service import multipart as mp
from datawarehouse.service.multipart import CompletedPart, Multipart
from datawarehouse.service.warehouse import OpenOptions, Warehouse

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024
)
BUCKETS = ("alpha", "bravo")


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 50 * 1024)
    w = Warehouse.init(tmp_path / "dwh", None, OpenOptions(config=SMALL))
    for b in BUCKETS:
        w.create_bucket(b)
    try:
        yield w
    finally:
        w.close()


def counters(wh: Warehouse, bucket: str) -> BucketUsage:
    with wh.engine.repo.read() as tx:
        return tx.bucket_usage(tx.get_bucket(bucket).bucket_id)


def recount(wh: Warehouse, bucket: str) -> BucketUsage:
    """The same numbers by scanning the rows (what the counters must always equal)."""
    v, p, u = s.object_versions, s.multipart_parts, s.multipart_uploads
    with wh.engine.repo.read() as tx:
        bid = tx.get_bucket(bucket).bucket_id
        rows = tx._rows(  # type: ignore[attr-defined]
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(v.c.size), 0)).where(
                v.c.bucket_id == bid, v.c.is_delete_marker.is_(False)
            )
        )
        parts = tx._rows(  # type: ignore[attr-defined]
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(p.c.size), 0))
            .select_from(p.join(u, u.c.upload_id == p.c.upload_id))
            .where(u.c.bucket_id == bid)
        )
    return BucketUsage(int(rows[0][0]), int(rows[0][1]), int(parts[0][0]), int(parts[0][1]))


def check(wh: Warehouse) -> None:
    for b in BUCKETS:
        assert counters(wh, b) == recount(wh, b), b


def test_counters_follow_every_kind_of_write(wh: Warehouse) -> None:
    rng = random.Random(7)
    m = Multipart(wh)
    uploads: list[tuple[str, str, str, list[CompletedPart]]] = []
    for step in range(60):
        bucket = rng.choice(BUCKETS)
        key = f"k{rng.randrange(8)}"
        op = rng.choice(["put", "put", "copy", "delete", "part", "complete", "abort"])
        if op == "put":
            wh.put_object(bucket, key, os.urandom(rng.choice([0, 100, 3000, 70_000])))
        elif op == "copy":
            with contextlib.suppress(NoSuchKey):  # the source may not exist (yet)
                wh.copy_object(bucket, key, rng.choice(BUCKETS), f"c{rng.randrange(4)}")
        elif op == "delete":
            wh.delete_object(bucket, key)
        elif op == "part":
            up = m.create(bucket, key)
            done = []
            for n in range(1, rng.randint(1, 3) + 1):
                part = m.open_part(bucket, key, up.upload_id, n)
                part.write(os.urandom(60 * 1024))
                rec = part.finish()
                done.append(CompletedPart(n, rec.etag))
            uploads.append((bucket, key, up.upload_id, done))
        elif op in ("complete", "abort") and uploads:
            b, k, upload_id, done = uploads.pop(rng.randrange(len(uploads)))
            if op == "complete":
                m.complete(b, k, upload_id, done)
            else:
                m.abort(b, k, upload_id)
        check(wh)
    assert any(counters(wh, b).objects for b in BUCKETS)


def test_a_reused_bucket_id_starts_from_zero(wh: Warehouse) -> None:
    wh.create_bucket("charlie")
    wh.put_object("charlie", "x", b"12345")
    wh.delete_object("charlie", "x")
    wh.delete_bucket("charlie")
    wh.create_bucket("delta")
    assert counters(wh, "delta") == BucketUsage()


def test_counters_survive_a_rebuilt_index(tmp_path: Path, wh: Warehouse) -> None:
    from datawarehouse.engine.rebuild import rebuild_meta
    from datawarehouse.service import catalog

    wh.put_object("alpha", "a", os.urandom(100_000))
    wh.put_object("alpha", "b", b"small")
    wh.put_object("alpha", "a", os.urandom(10))
    before = counters(wh, "alpha")
    root = wh.engine.datadir.root
    wh.close()
    for p in (root / "meta").glob("meta.sqlite3*"):
        p.unlink()
    rebuild_meta(root, catalog.replay)
    reopened = Warehouse.open(root, OpenOptions(config=SMALL))
    try:
        assert counters(reopened, "alpha") == before == recount(reopened, "alpha")
        assert before == BucketUsage(objects=2, bytes=15)
    finally:
        reopened.close()


def test_stored_usage_counts_distinct_chunks_once(wh: Warehouse) -> None:
    data = os.urandom(200_000)
    wh.put_object("alpha", "one", data)
    with wh.engine.repo.read() as tx:
        first = tx.bucket_stored_usage(tx.get_bucket("alpha").bucket_id)
    wh.put_object("alpha", "two", data)  # dedups: no new chunk
    wh.put_object("alpha", "tiny", b"inline bytes")
    with wh.engine.repo.read() as tx:
        second = tx.bucket_stored_usage(tx.get_bucket("alpha").bucket_id)
        chunks = {c.chunk_id: c for c in tx.list_chunks(limit=1000)}
    assert first.chunks == second.chunks == len(chunks) > 1
    assert second.sealed_bytes == sum(c.sealed_size for c in chunks.values())
    assert second.raw_bytes == sum(c.sealed_size * (c.k + c.m) // c.k for c in chunks.values())
    assert second.inline_bytes > len(b"inline bytes")  # sealed: nonce, tag and header included
    assert counters(wh, "alpha").bytes == 2 * len(data) + len(b"inline bytes")
