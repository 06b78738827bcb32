"""Group commit of PUTs (``catalog.apply_object_puts``): many concurrent writers — new keys,
repeated keys, small and chunked objects, conditional writes, deletes — leave an index that is
exactly what replaying the journal builds (invariants 2 and 3), with one latest version per key.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dwh_testkit import BUCKET, init_wh, manifest_refcounts, open_wh, snapshot_index

from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.errors import NoSuchBucket, NoSuchKey, PreconditionFailed
from datawarehouse.service import catalog, versioning
from datawarehouse.service.warehouse import Warehouse

THREADS = 12


def _payload(rng: random.Random, i: int) -> bytes:
    size = rng.choice([0, 1, 100, 4096, 4096, 4096, 70_000, 200_000])  # inline up to 64 KiB
    return i.to_bytes(4, "big") + rng.randbytes(max(size - 4, 0))


def _work(wh: Warehouse, seed: int, written: dict[str, list[bytes]], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    for i in range(40):
        r = rng.random()
        key = f"hot/{rng.randrange(6)}" if r < 0.3 else f"t{seed}/{i}"
        data = _payload(rng, seed * 1000 + i)
        if rng.random() < 0.1:
            try:
                upload = wh.open_upload(BUCKET, key)
                upload.write(data)
                upload.finish(conditions={"if-none-match": "*"})
            except PreconditionFailed:
                continue
        elif rng.random() < 0.05:
            wh.delete_object(BUCKET, key)
            continue
        else:
            wh.put_object(BUCKET, key, data)
        with lock:
            written.setdefault(key, []).append(data)


def test_concurrent_puts_match_a_replay_of_the_journal(tmp_path: Path) -> None:
    root = tmp_path / "dwh"
    written: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    with init_wh(root) as wh:
        wh.create_bucket(BUCKET)
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda s: _work(wh, s, written, lock), range(THREADS)))
        keys = [o.key for o in wh.iter_objects(BUCKET)]
        assert len(keys) == len(set(keys))
        for key in keys:
            # The stored bytes are one of those written under the key; one version per key.
            assert wh.get_object_bytes(BUCKET, key) in written[key]
        with wh.engine.repo.transaction() as tx:
            bucket_id = wh.get_bucket(BUCKET).bucket_id
            assert tx.count_versions(bucket_id) == len(keys)
        refs = manifest_refcounts(wh.engine)
        before = snapshot_index(wh.engine)
    assert refs, "some objects were chunked"
    report = rebuild_meta(root, catalog.replay)
    assert report.damaged_objects == []
    with open_wh(root) as wh:
        after = snapshot_index(wh.engine)
    assert after.versions == before.versions
    # Referenced chunks agree (the rebuild also finds, unreferenced, the shards of refused writes).
    assert {k: v for k, v in after.chunks.items() if v[5]} == {k: v for k, v in before.chunks.items() if v[5]}


def test_a_database_many_operations_behind_the_journal_catches_up(tmp_path: Path) -> None:
    """The database lags the journal by many operations of several kinds (here it is put back
    to a copy taken in the middle of a run; no GC ran in between): the next open replays every
    later operation from the journal, and the index is the one the whole run built (invariant 3
    for more than the one operation a kill leaves)."""
    root = tmp_path / "dwh"
    written: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    earlier = tmp_path / "earlier.sqlite3"
    with init_wh(root) as wh:
        wh.create_bucket(BUCKET)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda s: _work(wh, s, written, lock), range(4)))
        meta_path = root / "meta" / "meta.sqlite3"
        live, copy = sqlite3.connect(meta_path), sqlite3.connect(earlier)
        try:
            live.backup(copy)  # the commits up to now
        finally:
            live.close()
            copy.close()  # the last connection: its WAL goes into the file
        # After the copy: more objects (new keys, overwrites, deletes, refused conditional
        # writes), a bucket, a versioned bucket with two versions of a key.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda s: _work(wh, s, written, lock), range(4, 8)))
        wh.create_bucket("later")
        versioning.set_versioning(wh, "later", "Enabled")
        first = wh.put_object("later", "k", b"one")
        wh.put_object("later", "k", b"two")
        before = snapshot_index(wh.engine)
        current = {o.key: wh.get_object_bytes(BUCKET, o.key) for o in wh.iter_objects(BUCKET)}
    for suffix in ("-wal", "-shm"):
        meta_path.with_name(meta_path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(earlier, meta_path)
    with open_wh(root) as wh:
        assert wh.engine.replayed > 0
        after = snapshot_index(wh.engine)
        assert after.buckets == before.buckets
        assert after.versions == before.versions
        assert after.chunks == before.chunks
        assert {o.key: wh.get_object_bytes(BUCKET, o.key) for o in wh.iter_objects(BUCKET)} == current
        assert wh.get_object_bytes("later", "k") == b"two"
        assert wh.head_object("later", "k", first.s3_version_id).version_id == first.version_id
    with open_wh(root) as wh:
        assert wh.engine.replayed == 0, "the replay is recorded: a second open applies nothing"


def test_group_commit_refusals(tmp_path: Path) -> None:
    with init_wh(tmp_path / "dwh") as wh:
        wh.create_bucket(BUCKET)
        wh.put_object(BUCKET, "exists", b"old")
        barrier = threading.Barrier(4)

        def conditional(key: str, conditions: dict[str, str]) -> str:
            upload = wh.open_upload(BUCKET, key)
            upload.write(b"new")
            barrier.wait()
            try:
                upload.finish(conditions=conditions)
            except (PreconditionFailed, NoSuchKey) as exc:
                return type(exc).__name__
            return "ok"

        cases = [
            ("exists", {"if-none-match": "*"}),
            ("fresh", {"if-none-match": "*"}),
            ("missing", {"if-match": '"abc"'}),
            ("fresh2", {}),
        ]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda c: conditional(*c), cases))
        assert got == ["PreconditionFailed", "ok", "NoSuchKey", "ok"]
        assert wh.get_object_bytes(BUCKET, "exists") == b"old"
        assert wh.get_object_bytes(BUCKET, "fresh") == b"new"
        with pytest.raises(NoSuchKey):
            wh.head_object(BUCKET, "missing")


def test_a_bucket_deleted_and_recreated_under_the_write_cache(tmp_path: Path) -> None:
    with init_wh(tmp_path / "dwh") as wh:
        wh.create_bucket("cached")
        wh.put_object("cached", "a", b"1")  # the bucket is now in the write cache
        upload = wh.open_upload("cached", "b")
        wh.delete_object("cached", "a")
        wh.delete_bucket("cached")
        upload.write(b"2")
        with pytest.raises(NoSuchBucket):
            upload.finish()
        wh.create_bucket("cached")  # a new bucket id under the same name
        wh.put_object("cached", "c", b"3")
        assert wh.get_object_bytes("cached", "c") == b"3"
