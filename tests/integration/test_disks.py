"""Changing the disk set: add (new writes use it, rebalance moves only what placement says),
remove (drain, then drop), refusals, status, and a wiped disk healed by scrub."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from dwh_testkit import drop_shards, shard_locations_on, zero_shard_record

from datawarehouse.config import EngineConfig
from datawarehouse.engine import diskops
from datawarehouse.engine.chunkstore import parse_shard_key, shard_key
from datawarehouse.engine.placement import place
from datawarehouse.engine.rebalance import rebalance
from datawarehouse.engine.scrub import scrub
from datawarehouse.errors import DiskAlreadyPresent, ForeignDisk, InvalidStorageClass, NoSuchDisk
from datawarehouse.records import DiskState
from datawarehouse.service.warehouse import OpenOptions, Warehouse
from datawarehouse.storage.packstore import PackedLocation

KiB = 1024
MiB = 1024 * KiB

SMALL = EngineConfig(
    chunk_min_size=16 * KiB,
    chunk_avg_size=64 * KiB,
    chunk_max_size=256 * KiB,
    inline_max_size=4 * KiB,
    threads=2,
)
OPTS = OpenOptions(config=SMALL)


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def chunk_rows(wh: Warehouse) -> list:
    with wh.engine.repo.transaction() as tx:
        return tx.list_chunks(None, limit=1_000_000)


def shard_counts(wh: Warehouse) -> dict[str, int]:
    with wh.engine.repo.transaction() as tx:
        return tx.shard_counts_by_disk()


def files_on(path: str | Path) -> dict[str, PackedLocation]:
    """Shards stored under a disk directory: key -> where its bytes are (pack, offset, length).
    A shard rewritten or moved is a new record: an unchanged location means untouched."""
    return shard_locations_on(Path(path))


def expected_files(wh: Warehouse) -> dict[str, set[str]]:
    """Shard keys per disk according to the index."""
    out: dict[str, set[str]] = {d.disk_id: set() for d in wh.engine.datadir.disks()}
    for c in chunk_rows(wh):
        for index, disk_id in enumerate(c.placement):
            out.setdefault(disk_id, set()).add(shard_key(c.domain_id, c.chunk_id, c.generation, index))
    return out


def assert_disks_match_index(wh: Warehouse) -> None:
    want = expected_files(wh)
    for rec in wh.engine.datadir.disks():
        assert set(files_on(rec.path)) == want[rec.disk_id], rec.path


def assert_placement_is_canonical(wh: Warehouse) -> None:
    active = wh.engine.disks.active()
    for c in chunk_rows(wh):
        assert len(set(c.placement)) == c.k + c.m
        assert set(c.placement) == set(place(c.chunk_id, active, c.k + c.m))


def datadir_doc(root: Path) -> dict:
    return json.loads((root / "datadir.json").read_text())


def make(tmp_path: Path, disks: int) -> tuple[Warehouse, dict[str, bytes], list[Path]]:
    paths = [tmp_path / "mnt" / f"d{i}" for i in range(1, disks + 1)]
    wh = Warehouse.init(tmp_path / "dwh", paths, OPTS)
    wh.create_bucket("bkt")
    wh.create_bucket("rep3", storage_class="replica-3")
    objects = {f"obj{i}": rand(1 * MiB + 1000 * i, i) for i in range(5)}
    for key, data in objects.items():
        wh.put_object("bkt", key, data)
    wh.put_object("rep3", "rep", rand(500 * KiB, 99))
    objects["rep3/rep"] = rand(500 * KiB, 99)
    return wh, objects, paths


def assert_all_read(wh: Warehouse, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        bucket, name = ("rep3", "rep") if key == "rep3/rep" else ("bkt", key)
        assert wh.get_object_bytes(bucket, name) == data, key


def test_add_disk_then_rebalance(tmp_path: Path) -> None:
    wh, objects, _ = make(tmp_path, 6)
    try:
        rows_before = chunk_rows(wh)
        total_shards = sum(c.k + c.m for c in rows_before)
        assert len(rows_before) > 60
        new_path = tmp_path / "mnt" / "d7"
        rec = diskops.add_disk(wh.engine, new_path)
        assert rec.state == DiskState.ACTIVE
        assert rec.disk_id in {d.disk_id for d in wh.engine.disks.active()}
        assert [d["path"] for d in datadir_doc(tmp_path / "dwh")["disks"]][-1] == str(new_path.absolute())
        assert json.loads((new_path / ".dwh-disk.json").read_text())["disk_id"] == rec.disk_id
        # The new disk got the closed journal segments, so it can serve a rebuild too.
        assert list((new_path / "journal").glob("*.log"))
        assert files_on(new_path) == {}

        # New writes use it at once.
        fresh = rand(2 * MiB, 1000)
        v = wh.put_object("bkt", "fresh", fresh)
        objects["fresh"] = fresh
        fresh_ids = {r.chunk_id for r in v.chunks}
        on_new = [c for c in chunk_rows(wh) if c.chunk_id in fresh_ids and rec.disk_id in c.placement]
        assert on_new
        assert len(files_on(new_path)) == len(on_new)
        fresh_rows = [c for c in chunk_rows(wh) if c.chunk_id in fresh_ids]
        active = wh.engine.disks.active()
        for c in fresh_rows:
            assert list(c.placement) == place(c.chunk_id, active, c.k + c.m)

        # Rebalance moves exactly the shards on disks that are no longer among a chunk's best.
        movers: set[str] = set()
        for c in rows_before:
            wanted = set(place(c.chunk_id, active, c.k + c.m))
            for index, disk_id in enumerate(c.placement):
                if disk_id not in wanted:
                    movers.add(shard_key(c.domain_id, c.chunk_id, c.generation, index))
        # Adding a 7th disk should move about 1/7 of the shards (its share), never all.
        assert total_shards / 7 * 0.5 < len(movers) < total_shards / 7 * 1.5
        before_files = {d.disk_id: files_on(d.path) for d in wh.engine.datadir.disks()}
        report = rebalance(wh.engine)
        assert report.failed == []
        assert report.shards_moved == len(movers)
        assert report.bytes_moved > 0
        assert report.chunks_checked == len(chunk_rows(wh))
        after_files = {d.disk_id: files_on(d.path) for d in wh.engine.datadir.disks()}
        for disk_id, files in before_files.items():
            for key, ident in files.items():
                if key in movers:
                    assert key not in after_files[disk_id]  # moved away
                else:
                    assert after_files[disk_id].get(key) == ident, key  # untouched, same record
        assert set(after_files[rec.disk_id]) - set(before_files[rec.disk_id]) == movers
        assert_placement_is_canonical(wh)
        assert_disks_match_index(wh)
        counts = shard_counts(wh)
        assert counts[rec.disk_id] == len(files_on(new_path))
        # Nothing left to move.
        again = rebalance(wh.engine)
        assert (again.shards_moved, again.failed) == (0, [])
        assert_all_read(wh, objects)
    finally:
        wh.close()
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        assert len(wh.engine.disks.active()) == 7
        assert_all_read(wh, objects)


def test_add_disk_refusals(tmp_path: Path) -> None:
    wh, _, paths = make(tmp_path, 6)
    try:
        with pytest.raises(DiskAlreadyPresent):
            diskops.add_disk(wh.engine, paths[0])
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "somebody-elses-file").write_text("x")
        with pytest.raises(ForeignDisk):
            diskops.add_disk(wh.engine, busy)
        other = tmp_path / "other"
        Warehouse.init(other, [tmp_path / "other-disk"]).close()
        with pytest.raises(ForeignDisk):
            diskops.add_disk(wh.engine, tmp_path / "other-disk")
        assert len(datadir_doc(tmp_path / "dwh")["disks"]) == 6
        with pytest.raises(NoSuchDisk):
            diskops.remove_disk(wh.engine, str(tmp_path / "not-a-disk"))
    finally:
        wh.close()


def test_remove_disk_drains_it(tmp_path: Path) -> None:
    wh, objects, paths = make(tmp_path, 7)
    try:
        victim = wh.engine.datadir.disk(str(paths[2]))
        on_victim = shard_counts(wh).get(victim.disk_id, 0)
        assert on_victim > 0
        assert len(files_on(victim.path)) == on_victim
        report = diskops.remove_disk(wh.engine, victim.disk_id)
        # Only the victim's shards moved.
        assert report.shards_moved == on_victim
        assert report.failed == []
        assert shard_counts(wh).get(victim.disk_id, 0) == 0
        assert files_on(victim.path) == {}
        doc = datadir_doc(tmp_path / "dwh")
        assert victim.disk_id not in {d["disk_id"] for d in doc["disks"]}
        assert len(doc["disks"]) == 6
        assert not wh.engine.disks.has(victim.disk_id)
        assert all(victim.disk_id not in c.placement for c in chunk_rows(wh))
        assert_placement_is_canonical(wh)
        assert_disks_match_index(wh)
        assert_all_read(wh, objects)
        # Writes go to the six that remain.
        wh.put_object("bkt", "after", rand(300 * KiB, 7))
        objects["after"] = rand(300 * KiB, 7)
        assert files_on(victim.path) == {}

        # Six disks hold EC(4,2) chunks: removing one more would leave too few.
        with pytest.raises(InvalidStorageClass) as exc:
            diskops.remove_disk(wh.engine, str(paths[0]))
        assert "cannot remove" in str(exc.value) and "5" in str(exc.value)
        doc = datadir_doc(tmp_path / "dwh")
        assert [d["state"] for d in doc["disks"]] == ["active"] * 6  # nothing was marked draining
        assert_all_read(wh, objects)
    finally:
        wh.close()
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        assert len(wh.engine.disks.active()) == 6
        assert_all_read(wh, objects)


def test_remove_refused_for_narrow_disk_sets(tmp_path: Path) -> None:
    # Three disks at the default EC(2,1): removing one would leave two, fewer than 2+1.
    paths = [tmp_path / f"d{i}" for i in range(3)]
    with Warehouse.init(tmp_path / "dwh", paths, OPTS) as wh:
        wh.create_bucket("bkt")
        wh.put_object("bkt", "k", rand(200 * KiB, 1))
        with pytest.raises(InvalidStorageClass):
            diskops.remove_disk(wh.engine, str(paths[1]))
        assert wh.get_object_bytes("bkt", "k") == rand(200 * KiB, 1)
        assert len(wh.engine.disks.active()) == 3


def test_disk_status(tmp_path: Path) -> None:
    wh, objects, paths = make(tmp_path, 6)
    try:
        rows = chunk_rows(wh)
        status = diskops.disk_status(wh.engine)
        assert [Path(r.record.path) for r in status] == [p.absolute() for p in paths]
        for r in status:
            assert r.reachable
            assert r.total_size > 0 and 0 < r.free_size <= r.total_size
            assert r.errors == 0
            assert r.shard_count == len(files_on(r.record.path))
            assert r.record.state == DiskState.ACTIVE
        assert sum(r.shard_count for r in status) == sum(c.k + c.m for c in rows)

        # A lost shard (its whole pack record zeroed in place, which the open store reads) shows
        # up as an error on its disk after a read that had to read around it.
        c = next(c for c in rows if c.k == 4)
        victim = c.placement[0]
        zero_shard_record(tmp_path / "dwh", c, 0)
        assert_all_read(wh, objects)
        status = {r.record.disk_id: r for r in diskops.disk_status(wh.engine)}
        assert status[victim].errors >= 1
        assert all(r.errors == 0 for d, r in status.items() if d != victim)
        diskops.persist_disk_errors(wh.engine)
    finally:
        wh.close()
    # Error counts are kept across restarts.
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        status = {r.record.disk_id: r for r in diskops.disk_status(wh.engine)}
        assert status[victim].errors >= 1


def test_wiped_disk_is_healed_by_scrub(tmp_path: Path) -> None:
    wh, objects, paths = make(tmp_path, 6)
    victim = wh.engine.datadir.disk(str(paths[3]))
    on_victim = shard_counts(wh)[victim.disk_id]
    assert on_victim > 0
    journal_files = sorted(p.name for p in (paths[3] / "journal").glob("*.log"))
    assert journal_files
    wh.close()

    # The disk is replaced by an empty one at the same mount point.
    shutil.rmtree(paths[3])
    paths[3].mkdir()
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        # It is recognised as the same (fresh) disk, and reads work around it.
        assert json.loads((paths[3] / ".dwh-disk.json").read_text())["disk_id"] == victim.disk_id
        assert_all_read(wh, objects)
        report = scrub(wh.engine)
        assert report.unrecoverable == []
        assert report.shards_bad == on_victim
        assert report.shards_repaired == on_victim
        assert report.journal_copies_repaired >= len(journal_files)
        assert len(files_on(paths[3])) == on_victim
        assert_disks_match_index(wh)
        for name in journal_files:
            assert (paths[3] / "journal" / name).read_bytes() == (paths[0] / "journal" / name).read_bytes()
        second = scrub(wh.engine)
        assert second.clean, second
        assert second.shards_checked == report.shards_checked
    # The healed disk alone with four others is enough: lose two *other* disks, still readable.
    for p in (paths[0], paths[1]):
        drop_shards(p)
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        assert_all_read(wh, objects)


def test_shard_keys_are_well_formed(tmp_path: Path) -> None:
    wh, _, paths = make(tmp_path, 6)
    try:
        for p in paths:
            for key in files_on(p):
                assert parse_shard_key(key) is not None, key
    finally:
        wh.close()


def test_replacing_every_disk_in_one_session_keeps_the_journal(tmp_path: Path) -> None:
    """A long-running process adds new disks and drains the old ones without restarting: the
    journal (the source of truth for the index) must end up on the new disks, so the index can
    still be rebuilt from them alone."""
    from datawarehouse.engine.rebuild import rebuild_meta
    from datawarehouse.service import catalog

    wh, objects, paths = make(tmp_path, 6)
    new_paths = [tmp_path / "new" / f"n{i}" for i in range(1, 7)]
    try:
        for p in new_paths:
            diskops.add_disk(wh.engine, p)
        for p in paths:
            diskops.remove_disk(wh.engine, str(p))
        assert {Path(d.path) for d in wh.engine.disks.active()} == {p.absolute() for p in new_paths}
        wh.put_object("bkt", "late", b"written after the swap")
        objects["late"] = b"written after the swap"
        assert_all_read(wh, objects)
    finally:
        wh.close()
    for p in paths:
        shutil.rmtree(p)  # the old disks leave the machine
    meta = tmp_path / "dwh" / "meta" / "meta.sqlite3"
    for side in (meta, Path(f"{meta}-wal"), Path(f"{meta}-shm")):
        side.unlink(missing_ok=True)
    report = rebuild_meta(tmp_path / "dwh", catalog.replay, config=SMALL)
    assert report.damaged_objects == []
    with Warehouse.open(tmp_path / "dwh", OPTS) as wh:
        assert sorted(b.name for b in wh.list_buckets()) == ["bkt", "rep3"]
        assert_all_read(wh, objects)
