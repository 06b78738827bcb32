"""Snapshots at the service level: a point-in-time view that keeps the old bytes after overwrites
and deletes, costs metadata only (no chunk rows, no shard files), restores whole or by prefix,
refuses deletion under legal hold or before retain-until (ManualClock), survives rebuild-meta;
and the CLI's exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dwh_testkit import all_chunks, init_wh, open_wh, shard_locations

from datawarehouse.clock import ManualClock
from datawarehouse.engine import gc
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.errors import Conflict, InvalidBucketName, InvalidInput, NoSuchBucket, NoSuchKey
from datawarehouse.service import catalog, snapshots

B = "photos"
DAY = timedelta(days=1)
BIG = bytes(range(256)) * 2000  # chunked (512 KB)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "dwh"


def _fill(wh) -> None:  # type: ignore[no-untyped-def]
    wh.create_bucket(B)
    wh.put_object(B, "a/one", b"one-v1")
    wh.put_object(B, "a/big", BIG)
    wh.put_object(B, "b/two", b"two-v1")


def test_snapshot_keeps_the_old_bytes_and_costs_metadata_only(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        chunks_before = len(all_chunks(wh.engine))
        shards_before = shard_locations(root)
        info = snapshots.create(wh, B, "s1")
        assert info.view == "photos--snap--s1" and info.objects == 3
        assert len(all_chunks(wh.engine)) == chunks_before
        assert shard_locations(root) == shards_before
        wh.put_object(B, "a/one", b"one-v2")
        wh.delete_object(B, "a/big")
        wh.delete_object(B, "b/two")
        assert wh.get_object_bytes(info.view, "a/one") == b"one-v1"
        assert wh.get_object_bytes(info.view, "a/big") == BIG
        assert wh.get_object_bytes(info.view, "b/two") == b"two-v1"
        assert wh.get_object_bytes(B, "a/one") == b"one-v2"
        # GC keeps the chunks the snapshot references
        clock.advance(30 * DAY)
        gc.collect(wh.engine)
        assert wh.get_object_bytes(info.view, "a/big") == BIG
        listed = snapshots.list_snapshots(wh, B)
        assert [(s.name, s.objects, s.legal_hold) for s in listed] == [("s1", 3, False)]


def test_restore_whole_and_by_prefix(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        snapshots.create(wh, B, "s1")
        wh.put_object(B, "a/one", b"one-v2")
        wh.delete_object(B, "b/two")
        wh.create_bucket("other")
        assert snapshots.restore(wh, B, "s1", "other", prefix="a/") == 2
        assert sorted(o.key for o in wh.iter_objects("other")) == ["a/big", "a/one"]
        assert wh.get_object_bytes("other", "a/one") == b"one-v1"
        assert snapshots.restore(wh, B, "s1") == 3
        assert wh.get_object_bytes(B, "a/one") == b"one-v1"
        assert wh.get_object_bytes(B, "b/two") == b"two-v1"
        with pytest.raises(InvalidInput):
            snapshots.restore(wh, B, "s1", "photos--snap--s1")


def test_delete_refused_under_hold_and_before_retain_until(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        snapshots.create(wh, B, "kept", retain_until=clock.now() + 2 * DAY)
        with pytest.raises(Conflict, match="retained until"):
            snapshots.delete(wh, B, "kept")
        clock.advance(3 * DAY)
        snapshots.set_legal_hold(wh, B, "kept", True)
        with pytest.raises(Conflict, match="legal hold"):
            snapshots.delete(wh, B, "kept")
        snapshots.set_legal_hold(wh, B, "kept", False)
        snapshots.delete(wh, B, "kept")
        assert snapshots.list_snapshots(wh, B) == []
        with pytest.raises(NoSuchBucket):
            snapshots.get(wh, B, "kept")
        assert wh.get_object_bytes(B, "a/big") == BIG  # the source's chunks stay


def test_names_are_reserved_and_checked(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        with pytest.raises(InvalidBucketName):
            wh.create_bucket("x--snap--y")
        with pytest.raises(InvalidInput):
            snapshots.create(wh, B, "Bad_Name")
        with pytest.raises(InvalidInput):
            snapshots.create(wh, B, "s", retain_until=clock.now() - DAY)
        with pytest.raises(NoSuchBucket):
            snapshots.create(wh, "missing", "s")
        snapshots.create(wh, B, "s")
        with pytest.raises(Conflict):
            snapshots.create(wh, B, "s")


def test_snapshot_survives_rebuild_meta(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        snapshots.create(wh, B, "s1", retain_until=clock.now() + DAY)
        snapshots.set_legal_hold(wh, B, "s1", True)
        wh.put_object(B, "a/one", b"one-v2")
    for name in ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"):
        (root / "meta" / name).unlink(missing_ok=True)
    rebuild_meta(root, catalog.replay)
    with open_wh(root, clock) as wh:
        [info] = snapshots.list_snapshots(wh, B)
        assert (info.name, info.objects, info.legal_hold) == ("s1", 3, True)
        assert info.retain_until == clock.now() + DAY
        assert wh.get_object_bytes(info.view, "a/one") == b"one-v1"
        assert wh.get_object_bytes(info.view, "a/big") == BIG
        with pytest.raises(NoSuchKey):
            wh.get_object_bytes(info.view, "zzz")


def _dwh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DWH_DATA_DIR": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "from datawarehouse.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_cli_exit_codes_and_messages(root: Path) -> None:
    with init_wh(root) as wh:
        _fill(wh)
    r = _dwh(root, "snapshot", "create", B, "--name", "s1", "--retain-until", "2999-01-01")
    assert r.returncode == 0, r.stderr
    assert "photos--snap--s1" in r.stdout
    r = _dwh(root, "snapshot", "list", B)
    assert r.returncode == 0 and "s1" in r.stdout and "2999-01-01" in r.stdout
    r = _dwh(root, "snapshot", "delete", B, "s1")
    assert r.returncode == 5 and "retained until" in r.stderr and "Traceback" not in r.stderr
    r = _dwh(root, "snapshot", "hold", B, "s1", "--on")
    assert r.returncode == 0, r.stderr
    r = _dwh(root, "snapshot", "delete", B, "nope")
    assert r.returncode == 4 and "no snapshot" in r.stderr
    r = _dwh(root, "snapshot", "create", B, "--retain-until", "soon")
    assert r.returncode == 2 and "--retain-until" in r.stderr
    r = _dwh(root, "bucket", "create", "a--snap--b")
    assert r.returncode == 2 and "reserved" in r.stderr
    r = _dwh(root, "snapshot", "restore", B, "s1", "--to", "missing")
    assert r.returncode == 4 and "Traceback" not in r.stderr
    # The admin commands that write objects or delete buckets refuse a snapshot view too.
    for args in (("rm", "photos--snap--s1/a"), ("bucket", "delete", "photos--snap--s1")):
        r = _dwh(root, *args)
        assert r.returncode == 5 and "read-only" in r.stderr and "Traceback" not in r.stderr, args
    src = root.parent / "src.txt"
    src.write_text("x")
    r = _dwh(root, "put", str(src), "photos--snap--s1/new")
    assert r.returncode == 5 and "read-only" in r.stderr


def test_interrupted_create_leaves_a_deletable_incomplete_snapshot(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        _fill(wh)
        calls = 0
        real_commit = wh.engine.commit

        def failing_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 4:  # bucket, record, first object: the second object's commit fails
                raise RuntimeError("crash")
            return real_commit(*args, **kwargs)

        wh.engine.commit = failing_commit  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            snapshots.create(wh, B, "half", retain_until=clock.now() + DAY)
        wh.engine.commit = real_commit  # type: ignore[method-assign]
        [info] = snapshots.list_snapshots(wh, B)
        assert not info.complete and info.retain_until is None and info.objects == 1
        with pytest.raises(InvalidInput, match="incomplete"):
            snapshots.restore(wh, B, "half")
        snapshots.delete(wh, B, "half")
        assert snapshots.list_snapshots(wh, B) == []
