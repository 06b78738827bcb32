"""Invariants 2 and 5 (docs/invariants.md): an acknowledged object survives the loss of any m
disks; every read is verified, bad shards are read around and queued for heal, and scrub rewrites
them byte-identically and restores lost journal copies.

Six disks at EC(4,2), a dataset of 20 mixed objects (see ``dwh_testkit.make_dataset``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
from pathlib import Path

import pytest
from dwh_testkit import (
    BUCKET,
    DISK_COUNT,
    Item,
    K,
    M,
    all_chunks,
    assert_dataset,
    assert_item,
    disk_dirs,
    disk_ids,
    disk_of,
    file_inventory,
    flip_shard_byte,
    init_wh,
    open_wh,
    shard_bytes,
    shard_inventory,
    shard_key_of,
    shard_keys_on,
    shard_locations_on,
    truncate_pack_inside,
    zero_shard_bytes,
    zero_shard_record,
)

from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.engine.scrub import scrub
from datawarehouse.errors import DataUnavailable, ForeignDisk
from datawarehouse.service import catalog

PAIRS = list(itertools.combinations(range(DISK_COUNT), 2))


def _shards_on(disks: list[Path]) -> int:
    return sum(len(shard_keys_on(d)) for d in disks)


def _segments(root: Path) -> int:
    return len(list((disk_dirs(root)[0] / "journal").glob("*.log")))


def _other_pair(lost: tuple[int, ...]) -> tuple[int, int]:
    rest = [i for i in range(DISK_COUNT) if i not in lost]
    return rest[0], rest[-1]


def test_dataset_is_spread_over_all_disks(populated: Path, dataset: list[Item]) -> None:
    """The premise of every test below: every chunk is EC(4,2) with one shard on each disk."""
    with open_wh(populated) as wh:
        assert wh.engine.default_storage_class().k == K
        assert wh.engine.default_storage_class().m == M
        chunks = all_chunks(wh.engine)
        assert len(chunks) >= 60, "the dataset should make many chunks"
        ids = set(disk_ids(populated).values())
        for rec in chunks:
            assert (rec.k, rec.m) == (K, M)
            assert set(rec.placement) == ids
        assert_dataset(wh, dataset)
    assert _segments(populated) >= 1


@pytest.mark.parametrize("lost", PAIRS, ids=[f"d{a + 1}+d{b + 1}" for a, b in PAIRS])
def test_any_two_disks_lost_then_scrub_restores_redundancy(
    populated: Path, dataset: list[Item], lost: tuple[int, int]
) -> None:
    root = populated
    disks = disk_dirs(root)
    shards_before = shard_inventory(root)
    journal_before = file_inventory(root, "journal")
    lost_shards = _shards_on([disks[i] for i in lost])
    assert lost_shards > 0
    for i in lost:
        shutil.rmtree(disks[i])

    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
        report = scrub(wh.engine)
        assert report.unrecoverable == []
        assert report.shards_bad == lost_shards
        assert report.shards_repaired == lost_shards
        assert report.journal_copies_repaired == 2 * _segments(root)
        again = scrub(wh.engine)
        assert again.clean, again
        assert again.shards_repaired == 0
        with wh.engine.repo.transaction() as tx:
            assert tx.list_heal() == []

    # The erasure code is deterministic: the rewritten shards are the lost ones, byte for byte,
    # under the same keys on the same disks; the journal copies too.
    assert shard_inventory(root) == shards_before
    assert file_inventory(root, "journal") == journal_before

    # Redundancy is really back: lose two other disks, everything still reads.
    for i in _other_pair(lost):
        shutil.rmtree(disks[i])
    with open_wh(root) as wh:
        assert_dataset(wh, dataset, ranges=False)


def _zero_packs(disk: Path) -> int:
    """Overwrite every pack holding shards of a disk with zeros, in place (same sizes)."""
    packs = sorted({loc.path for loc in shard_locations_on(disk).values()})
    for pack in packs:
        size = pack.stat().st_size
        with pack.open("r+b") as f:
            f.write(bytes(size))
    return len(packs)


def test_two_disks_lost_while_open_are_read_around_and_queued_for_heal(populated: Path, dataset: list[Item]) -> None:
    """Two disks go bad under an open warehouse. With packs, deleting a disk directory under an
    open store is not a loss the process can see (it reads the unlinked packs through the fds it
    holds, as a process does until a real disk starts failing its reads); what it sees of a
    failing disk is bytes that are no longer what it wrote: every pack of both disks is zeroed
    in place while open. Then the disks are lost for good (removed) and come back empty."""
    root = populated
    disks = disk_dirs(root)
    ids = disk_ids(root)
    lost = [disks[1], disks[4]]
    lost_ids = {ids[d] for d in lost}
    shards_before = shard_inventory(root)
    with open_wh(root) as wh:
        chunks = all_chunks(wh.engine)
        assert all(_zero_packs(d) > 0 for d in lost)
        assert_dataset(wh, dataset)
        # Reads take the data shards first: exactly the chunks that missed one of them are queued.
        expected = {rec.chunk_id for rec in chunks if lost_ids & set(rec.placement[:K])}
        assert expected, "some chunk must have lost a data shard"
        with wh.engine.repo.transaction() as tx:
            queued = {item.chunk_id for item in tx.list_heal(limit=10_000)}
        assert queued == expected
        assert all(wh.engine.disks.errors[i] > 0 for i in lost_ids)
    for d in lost:
        shutil.rmtree(d)

    # Once the disks are back (empty), scrub heals onto them and redundancy is whole again.
    with open_wh(root) as wh:
        report = scrub(wh.engine)
        assert report.unrecoverable == []
        assert report.shards_repaired == report.shards_bad > 0
        assert report.journal_copies_repaired >= 2
        assert scrub(wh.engine).clean
        with wh.engine.repo.transaction() as tx:
            assert tx.list_heal() == []
    assert shard_inventory(root) == shards_before
    for d in (disks[0], disks[5]):
        shutil.rmtree(d)
    with open_wh(root) as wh:
        assert_dataset(wh, dataset)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _assert_read_around_then_repaired_exactly(
    root: Path, dataset: list[Item], bad_by_chunk: dict[bytes, set[int]], bad_count: int, before: dict[str, str]
) -> None:
    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
        with wh.engine.repo.transaction() as tx:
            queued = {item.chunk_id for item in tx.list_heal(limit=10_000)}
        # A read stops after k good shards: a damaged data shard is always seen; a damaged parity
        # shard only when a data shard of the same chunk was bad too.
        must = {c for c, idx in bad_by_chunk.items() if min(idx) < K}
        assert must <= queued <= set(bad_by_chunk)

        report = scrub(wh.engine)
        assert report.unrecoverable == []
        assert report.shards_bad == bad_count
        assert report.shards_repaired == bad_count
        assert report.journal_copies_repaired == 0
        assert scrub(wh.engine).clean
        assert_dataset(wh, dataset)
    # Compared by key: a repaired shard is a new record (appended), with the lost bytes.
    assert shard_inventory(root) == before


def test_corrupt_and_zeroed_shards_are_read_around_and_repaired_exactly(populated: Path, dataset: list[Item]) -> None:
    """Damage inside shards, in place in their packs: a flipped byte in the shard header, in its
    checksum, in its payload, in its last byte; a shard zeroed from the middle to its end (the
    nearest a pack has to a shard file cut in half, which cannot exist: a shard is a range, and
    a cut pack loses every later record too, see the next test); and a shard's whole pack
    record zeroed, header and key included (the nearest to a shard file emptied)."""
    root = populated
    rng = random.Random(5)
    shards_before = shard_inventory(root)
    with open_wh(root) as wh:
        chunks = all_chunks(wh.engine)
    victims = rng.sample(chunks, 12)
    kinds = ["header-flip", "checksum-flip", "payload-flip", "record-zeroed", "zeroed-from-half", "payload-last-byte"]
    damaged: dict[str, bytes] = {}
    bad_by_chunk: dict[bytes, set[int]] = {}
    seen_kinds: set[str] = set()
    for n, rec in enumerate(victims):
        # Two chunks lose two shards (the most EC(4,2) tolerates); every chunk loses a data shard
        # or a parity shard by turns, so reads must go around some and scrub must find all.
        indexes = rng.sample(range(K + M), 2 if n < 2 else 1)
        if n % 3 == 0:
            indexes[0] = rng.randrange(K)
        for index in indexes:
            original = shard_bytes(root, rec, index)
            name = f"{disk_of(root, rec, index).name}/{shard_key_of(rec, index)}"
            damaged[name] = original
            kind = kinds[(n + index) % len(kinds)]
            seen_kinds.add(kind)
            if kind == "header-flip":
                flip_shard_byte(root, rec, index, rng.randrange(0, 88))
            elif kind == "checksum-flip":
                flip_shard_byte(root, rec, index, rng.randrange(88, 96))
            elif kind == "payload-flip":
                flip_shard_byte(root, rec, index, rng.randrange(96, len(original)))
            elif kind == "payload-last-byte":
                flip_shard_byte(root, rec, index, -1)
            elif kind == "record-zeroed":
                zero_shard_record(root, rec, index)
            else:
                zero_shard_bytes(root, rec, index, len(original) // 2)
            assert shard_bytes(root, rec, index) != original
            bad_by_chunk.setdefault(rec.chunk_id, set()).add(index)
    assert len(damaged) == 14
    assert seen_kinds == set(kinds)

    _assert_read_around_then_repaired_exactly(root, dataset, bad_by_chunk, len(damaged), shards_before)
    after = shard_inventory(root)
    for name, original in damaged.items():
        assert after[name] == hashlib.sha256(original).hexdigest(), f"{name} was not restored byte for byte"


@pytest.mark.parametrize("sealed", [True, False], ids=["indexed-pack", "unindexed-pack"])
def test_truncated_packs_lose_their_tail_which_is_read_around_and_repaired_exactly(
    populated: Path, dataset: list[Item], sealed: bool
) -> None:
    """A pack cut inside a shard (a torn write, a lost tail) loses that shard and every record
    after it. On two disks at once, cut at different points: chunks past both cuts lose two
    shards, the most EC(4,2) tolerates. ``indexed-pack``: the cut pack keeps its index, whose
    entries past the end are dropped; ``unindexed-pack``: its index is gone too (the active pack
    of a crashed process), so the open scans it and stops at the torn record."""
    root = populated
    rng = random.Random(6)
    shards_before = shard_inventory(root)
    with open_wh(root) as wh:
        chunks = all_chunks(wh.engine)
    names = {f"{disk_of(root, rec, i).name}/{shard_key_of(rec, i)}": (rec, i) for rec in chunks for i in range(K + M)}
    lost: set[str] = set()
    for disk_no, fraction in ((1, 0.3), (4, 0.6)):
        disk = disk_dirs(root)[disk_no]
        # In the order they were written: a cut at 30 % of one disk's records and at 60 % of
        # another's leaves the last 40 % of the chunks with two shards lost.
        in_order = sorted(shard_locations_on(disk).items(), key=lambda kv: (kv[1].path, kv[1].offset))
        key = in_order[int(len(in_order) * fraction) + rng.randrange(3)][0]
        rec, index = names[f"{disk.name}/{key}"]
        pack, cut, gone = truncate_pack_inside(root, rec, index)
        assert pack.stat().st_size == cut
        if not sealed:
            pack.with_suffix(".idx").unlink()
        assert len(gone) >= 2, "the cut loses the shard it goes through and the records after it"
        lost |= gone
    assert lost <= set(names)
    assert set(shard_inventory(root)) == set(shards_before) - lost, "exactly the records past the cuts are gone"
    bad_by_chunk: dict[bytes, set[int]] = {}
    for name in lost:
        rec, index = names[name]
        bad_by_chunk.setdefault(rec.chunk_id, set()).add(index)
    assert any(len(idx) == 2 for idx in bad_by_chunk.values()), "some chunk must be past both cuts"

    _assert_read_around_then_repaired_exactly(root, dataset, bad_by_chunk, len(lost), shards_before)


def test_three_disks_lost_is_data_unavailable_never_wrong_bytes(populated: Path, dataset: list[Item]) -> None:
    root = populated
    disks = disk_dirs(root)
    for i in (0, 2, 5):
        shutil.rmtree(disks[i])
    with open_wh(root) as wh:
        chunked = [item for item in dataset if not item.inline]
        inline = [item for item in dataset if item.inline]
        assert len(chunked) >= 10 and len(inline) >= 4
        for item in inline:
            # Inline objects live in the metadata (and in the journal on every disk).
            assert_item(wh, item)
        for item in chunked:
            with pytest.raises(DataUnavailable):
                wh.get_object_bytes(BUCKET, item.key)
            with pytest.raises(DataUnavailable):
                wh.get_object_bytes(BUCKET, item.key, len(item.data) // 2, len(item.data) // 2 + 10)
            # Metadata is intact: the object is known, only its bytes are unavailable.
            assert wh.head_object(BUCKET, item.key).size == len(item.data)
        report = scrub(wh.engine)
        assert report.shards_repaired == 0
        assert len(report.unrecoverable) == len(all_chunks(wh.engine))
        # Scrub wrote nothing wrong: still unavailable, still never wrong bytes.
        for item in chunked[:3]:
            with pytest.raises(DataUnavailable):
                wh.get_object_bytes(BUCKET, item.key)


def test_disk_replaced_by_empty_directory_is_fresh_and_healed(populated: Path, dataset: list[Item]) -> None:
    root = populated
    disk = disk_dirs(root)[3]
    identity = (disk / ".dwh-disk.json").read_text()
    shards_before = shard_inventory(root)
    journal_before = file_inventory(root, "journal")
    lost_shards = _shards_on([disk])
    shutil.rmtree(disk)
    disk.mkdir()
    with open_wh(root) as wh:
        status = {s.record.path: s.fresh for s in wh.engine.datadir.disk_status}
        assert status[str(disk)] is True
        assert sum(status.values()) == 1
        assert_dataset(wh, dataset)
        report = scrub(wh.engine)
        assert report.shards_repaired == lost_shards
        assert report.journal_copies_repaired == _segments(root)
        assert scrub(wh.engine).clean
    # Same identity as before (same disk id, same data directory), same shards, same files.
    assert json.loads((disk / ".dwh-disk.json").read_text())["disk_id"] == json.loads(identity)["disk_id"]
    assert shard_inventory(root) == shards_before
    assert file_inventory(root, "journal") == journal_before


def test_foreign_and_swapped_disks_are_refused(populated: Path, dataset: list[Item], tmp_path: Path) -> None:
    root = populated
    other = tmp_path / "other-data"
    init_wh(other).close()
    disks = disk_dirs(root)
    saved = tmp_path / "saved-d2"
    shutil.copytree(disks[1], saved)

    # A disk of another data directory in place of d2.
    shutil.rmtree(disks[1])
    shutil.copytree(disk_dirs(other)[1], disks[1])
    with pytest.raises(ForeignDisk, match="another data directory"):
        open_wh(root)
    # The refusal changed nothing and released the lock: put the right disk back and it opens.
    shutil.rmtree(disks[1])
    shutil.copytree(saved, disks[1])

    # Two disks of this data directory swapped.
    disks[0].rename(tmp_path / "swap")
    disks[1].rename(disks[0])
    (tmp_path / "swap").rename(disks[1])
    with pytest.raises(ForeignDisk, match="swapped"):
        open_wh(root)
    disks[0].rename(tmp_path / "swap")
    disks[1].rename(disks[0])
    (tmp_path / "swap").rename(disks[1])

    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
        assert scrub(wh.engine).clean


def test_damaged_journal_copies_are_restored_by_scrub(populated: Path, dataset: list[Item]) -> None:
    root = populated
    disks = disk_dirs(root)
    journal_before = file_inventory(root, "journal")
    segments = sorted((disks[2] / "journal").glob("*.log"))
    assert segments
    segment = segments[0].name
    # One copy with a flipped byte in the middle, one cut in half, one gone.
    flipped = disks[2] / "journal" / segment
    _flip(flipped, flipped.stat().st_size // 2)
    halved = disks[4] / "journal" / segment
    halved.write_bytes(halved.read_bytes()[: halved.stat().st_size // 2])
    (disks[5] / "journal" / segment).unlink()

    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
        report = scrub(wh.engine)
        assert report.journal_copies_repaired == 3
        assert report.shards_bad == 0
        again = scrub(wh.engine)
        assert again.clean
    assert file_inventory(root, "journal") == journal_before

    # The restored copy is complete: with only it left (and no database), everything rebuilds.
    for d in disks:
        if d != disks[2]:
            shutil.rmtree(d / "journal")
    for name in ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"):
        (root / "meta" / name).unlink(missing_ok=True)
    rebuild_meta(root, catalog.replay)
    with open_wh(root) as wh:
        assert_dataset(wh, dataset)
