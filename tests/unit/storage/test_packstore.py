"""PackStore specifics: recovery after crashes and damage, tombstones, compaction, v1 files, the
byte format (golden vector), concurrency, and a stateful model test including reopen."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from datawarehouse.errors import BlobNotFound, InvalidInput, StorageError, WouldBlock
from datawarehouse.storage import packformat as fmt
from datawarehouse.storage import packstore, prealloc
from datawarehouse.storage.localdisk import LocalDiskStore
from datawarehouse.storage.packstore import DIRECT_WINDOW, PACK_DIR, PackedLocation, PackStore, scan_locations

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vectors"))
import make_pack_vectors

VECTOR_DIR = Path(__file__).resolve().parents[2] / "vectors" / "pack_v3"
V2_VECTOR_DIR = VECTOR_DIR.with_name("pack_v2")
VECTOR_KEYS = [
    (fmt.KIND_PUT, "shards/1/ab/cd/abcd01.0000000000000001.0", 10, 0),
    (fmt.KIND_PUT, "shards/x", 16, 0),
    (fmt.KIND_TOMBSTONE, "shards/x", 0, 1),
]


@pytest.fixture
def opened(root: Path) -> Iterator[list[PackStore]]:
    """Stores a test opens, closed at teardown whatever happened."""
    stores: list[PackStore] = []
    yield stores
    for s in stores:
        s.close()


def _open(root: Path, opened: list[PackStore], **kw: object) -> PackStore:
    store = PackStore(root, **kw)  # type: ignore[arg-type]
    opened.append(store)
    return store


def _packs(root: Path) -> list[Path]:
    return sorted((root / PACK_DIR).glob("*.pack"))


def _crash_copy(root: Path, dest: Path) -> Path:
    """What a crash leaves: the files as they are now (the active pack without an index)."""
    shutil.copytree(root, dest)
    return dest


def _blob(i: int, n: int = 300) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (n // 32) + bytes([i % 256]) * (n % 32)


# --- reopen and crashes ----------------------------------------------------------------------------


def test_reopen_keeps_everything_flushed(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened, pack_limit=2000)
    for i in range(20):
        s.stage(f"shards/k{i}", _blob(i))
    s.flush()
    s.put("shards/direct", b"d")
    s.close()
    assert len(_packs(root)) > 2  # small limit: several sealed packs
    assert all(p.with_suffix(".idx").exists() for p in _packs(root))
    s2 = _open(root, opened)
    for i in range(20):
        assert s2.get(f"shards/k{i}") == _blob(i)
    assert s2.get("shards/direct") == b"d"
    assert sorted(s2.list("shards/")) == sorted([f"shards/k{i}" for i in range(20)] + ["shards/direct"])


def test_a_memory_only_read_does_not_load_the_packs(tmp_path: Path, opened: list[PackStore]) -> None:
    """A store opened before its disk was there (not mounted yet) loads its packs at its first
    use, reading every pack's index: a ``cached_only`` read (an event loop's) refuses to be that
    first use; once loaded, the blob is read from memory."""
    late = tmp_path / "late"
    s2 = _open(late, opened)  # the root is missing: nothing loaded
    late.mkdir()
    s = _open(late, opened)
    s.stage("shards/k", _blob(1, 4096))
    s.flush()
    s.close()
    dest = memoryview(bytearray(4000))
    with pytest.raises(WouldBlock):
        s2.get_into("shards/k", 96, dest, cached_only=True)
    assert s2.get("shards/k") == _blob(1, 4096)  # an ordinary read loads them
    assert s2.get_into("shards/k", 96, dest, cached_only=True) == _blob(1, 4096)[:96]
    assert bytes(dest) == _blob(1, 4096)[96:]


def test_staged_but_unflushed_blob_is_invisible(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened)
    s.stage("shards/a", b"x")
    with pytest.raises(BlobNotFound):
        s.get("shards/a")
    assert list(s.list()) == []
    s.flush()
    assert s.get("shards/a") == b"x"


def test_crash_at_every_byte_of_the_last_record(root: Path, tmp_path: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened)
    s.put("shards/first", b"one" * 10)
    s.put("shards/second", b"two" * 10)
    s.put("shards/last", b"three" * 10)
    crashed = _crash_copy(root, tmp_path / "crashed")
    (pack,) = _packs(crashed)
    assert not pack.with_suffix(".idx").exists()
    full = pack.read_bytes()
    last = s.locate("shards/last")
    start = last.offset - fmt.RECORD_HEADER - len("shards/last")
    assert start % fmt.ALIGN == 0 and len(full) % fmt.ALIGN == 0

    def reopen_cut_at(cut: int) -> tuple[Path, PackStore]:
        trial = tmp_path / f"trial{cut}"
        shutil.copytree(crashed, trial)
        (trial / PACK_DIR / pack.name).write_bytes(full[:cut])
        return trial, PackStore(trial)

    for cut in range(start, len(full)):
        whole = cut >= last.offset + last.length  # only the zero gap after the record is cut
        if whole and cut % 97:
            continue  # a sample of such cuts: the scan is the same for each
        trial, t = reopen_cut_at(cut)
        try:
            assert t.get("shards/first") == b"one" * 10
            assert t.get("shards/second") == b"two" * 10
            if whole:
                assert t.get("shards/last") == b"three" * 10
                continue
            with pytest.raises(BlobNotFound):
                t.get("shards/last")
            assert (trial / PACK_DIR / pack.name).stat().st_size == start  # torn record cut off
            t.put("shards/after", b"new")  # writes go to a new pack, never behind the tear
            assert t.get("shards/after") == b"new"
        finally:
            t.close()
            shutil.rmtree(trial)


def test_garbage_tail_is_dropped(root: Path, tmp_path: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened)
    s.put("shards/a", b"aaa")
    crashed = _crash_copy(root, tmp_path / "crashed")
    (pack,) = _packs(crashed)
    with pack.open("ab") as f:
        f.write(b"DWPR" + os.urandom(200))
    t = _open(crashed, opened)
    assert t.get("shards/a") == b"aaa"
    assert sorted(t.list()) == ["shards/a"]
    assert pack.with_suffix(".idx").exists()  # the scanned pack is sealed


def test_flipped_payload_byte_in_unsealed_pack_drops_that_record_and_later(
    root: Path, tmp_path: Path, opened: list[PackStore]
) -> None:
    s = _open(root, opened)
    s.put("shards/a", b"aaa")
    s.put("shards/b", b"bbb")
    loc = s.locate("shards/b")
    crashed = _crash_copy(root, tmp_path / "crashed")
    data = bytearray(loc.path.read_bytes())
    data[loc.offset] ^= 0xFF
    (crashed / PACK_DIR / loc.path.name).write_bytes(bytes(data))
    t = _open(crashed, opened)
    assert t.get("shards/a") == b"aaa"
    with pytest.raises(BlobNotFound):
        t.get("shards/b")


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_bad_index_falls_back_to_scanning(root: Path, opened: list[PackStore], damage: str) -> None:
    s = PackStore(root)
    for i in range(5):
        s.put(f"shards/k{i}", _blob(i))
    s.delete("shards/k3")
    s.close()
    (pack,) = _packs(root)
    idx = pack.with_suffix(".idx")
    if damage == "missing":
        idx.unlink()
    elif damage == "corrupt":
        data = bytearray(idx.read_bytes())
        data[40] ^= 1
        idx.write_bytes(bytes(data))
    else:
        idx.write_bytes(idx.read_bytes()[:30])
    t = _open(root, opened)
    assert sorted(t.list()) == [f"shards/k{i}" for i in (0, 1, 2, 4)]
    assert t.get("shards/k4") == _blob(4)
    assert scan_locations(root) == {k: t.locate(k) for k in t.list()}


def test_index_entries_past_end_of_pack_are_dropped(root: Path, opened: list[PackStore]) -> None:
    s = PackStore(root)
    s.put("shards/a", b"a" * 100)
    s.put("shards/b", b"b" * 100)
    b = s.locate("shards/b")
    s.close()
    (pack,) = _packs(root)
    with pack.open("r+b") as f:
        f.truncate(b.offset + 90)
    t = _open(root, opened)
    assert t.get("shards/a") == b"a" * 100
    with pytest.raises(BlobNotFound):
        t.get("shards/b")


def test_foreign_file_in_pack_dir_is_ignored(root: Path, opened: list[PackStore]) -> None:
    s = PackStore(root)
    s.put("shards/a", b"a")
    s.close()
    (root / PACK_DIR / "00000000000000ff.pack").write_bytes(b"not a pack at all, just text here")
    t = _open(root, opened)
    assert t.get("shards/a") == b"a"
    t.put("shards/b", b"b")  # new pack ids stay above every file present
    assert t.locate("shards/b").path.name > "00000000000000ff.pack"


# --- tombstones and compaction ---------------------------------------------------------------------


def test_tombstone_survives_reopen(root: Path, opened: list[PackStore]) -> None:
    s = PackStore(root)
    s.put("shards/a", b"a")
    assert s.delete("shards/a") is True
    s.flush()
    s.close()
    t = _open(root, opened)
    with pytest.raises(BlobNotFound):
        t.get("shards/a")
    assert t.delete("shards/a") is False


def test_unflushed_delete_may_be_lost_but_flushed_one_is_not(
    root: Path, tmp_path: Path, opened: list[PackStore]
) -> None:
    s = _open(root, opened)
    s.put("shards/a", b"a")
    s.delete("shards/a")
    s.flush()
    crashed = _crash_copy(root, tmp_path / "c")
    t = _open(crashed, opened)
    with pytest.raises(BlobNotFound):
        t.get("shards/a")


def test_compacting_tombstone_pack_before_put_pack_does_not_resurrect(root: Path, opened: list[PackStore]) -> None:
    s = PackStore(root)
    s.put("shards/victim", b"old")
    s.put("shards/keep", b"k" * 5000)  # keeps the put's pack mostly live
    s.close()
    s = PackStore(root)
    s.delete("shards/victim")
    s.put("shards/junk", b"j" * 100_000)
    s.delete("shards/junk")
    s.close()  # pack 2: the victim's tombstone (still needed) and a lot of dead bytes
    s = PackStore(root)
    report = s.compact(min_dead_fraction=0.9)
    assert report.packs_compacted == 1  # pack 2 only: pack 1 is mostly live
    s.close()
    s = PackStore(root)
    with pytest.raises(BlobNotFound):
        s.get("shards/victim")
    s.compact(min_dead_fraction=0.0)  # now pack 1 too
    s.close()
    t = _open(root, opened)
    with pytest.raises(BlobNotFound):
        t.get("shards/victim")
    assert t.get("shards/keep") == b"k" * 5000


def test_tombstone_covers_every_older_put_of_its_key(root: Path, opened: list[PackStore]) -> None:
    """put in pack 1, overwrite in pack 2, delete in pack 3: compacting 3 then 2 then the rest
    must never bring back pack 1's version."""
    for step in ("put-1", "put-2", "delete"):
        s = PackStore(root)
        s.put("shards/k", step.encode()) if step != "delete" else s.delete("shards/k")
        s.put(f"shards/filler-{step}", b"f" * 4000)
        s.close()
    for threshold in (0.5, 0.0, 0.0):
        s = PackStore(root)
        s.compact(min_dead_fraction=threshold)
        s.close()
        t = PackStore(root)
        with pytest.raises(BlobNotFound):
            t.get("shards/k")
        t.close()


def test_compaction_reclaims_space_and_keeps_data(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened, pack_limit=200_000)
    for i in range(40):
        s.put(f"shards/k{i}", _blob(i, 20_000))
    for i in range(40):
        if i % 4:
            s.delete(f"shards/k{i}")
    s.flush()
    before = sum(p.stat().st_size for p in _packs(root))
    report = s.compact()
    after = sum(p.stat().st_size for p in _packs(root))
    assert report.packs_compacted >= 1 and report.bytes_reclaimed > 0
    assert after < before / 2
    for i in range(0, 40, 4):
        assert s.get(f"shards/k{i}") == _blob(i, 20_000)
    assert scan_locations(root) == {k: s.locate(k) for k in s.list()}
    s.close()
    t = _open(root, opened)
    assert sorted(t.list()) == sorted(f"shards/k{i}" for i in range(0, 40, 4))


def test_crash_between_compaction_copy_and_removal(root: Path, tmp_path: Path, opened: list[PackStore]) -> None:
    s = PackStore(root)
    s.put("shards/live", b"v1")
    s.put("shards/dead", b"x" * 1000)
    s.delete("shards/dead")
    s.close()
    saved = tmp_path / "saved"
    shutil.copytree(root / PACK_DIR, saved)
    s = PackStore(root)
    assert s.compact().packs_compacted == 1
    s.put("shards/live", b"v2")  # newer than the copy
    s.close()
    for f in saved.iterdir():  # the old pack "was never removed"
        shutil.copy(f, root / PACK_DIR / f.name)
    t = _open(root, opened)
    assert t.get("shards/live") == b"v2"
    with pytest.raises(BlobNotFound):
        t.get("shards/dead")


def test_compaction_threshold_validated(root: Path, opened: list[PackStore]) -> None:
    with pytest.raises(InvalidInput):
        _open(root, opened).compact(min_dead_fraction=1.5)


# --- legacy v1 files, locate, stat -----------------------------------------------------------------


def test_v1_shard_files_readable_listable_deletable(root: Path, opened: list[PackStore]) -> None:
    v1 = LocalDiskStore(root)
    v1.put("shards/1/ab/cd/old.0000000000000001.0", b"v1 shard")
    v1.put("journal/seg-1", b"journal")
    s = _open(root, opened)
    assert s.get("shards/1/ab/cd/old.0000000000000001.0") == b"v1 shard"
    assert s.get_range("shards/1/ab/cd/old.0000000000000001.0", 3, 3) == b"sha"
    s.put("shards/1/ab/cd/new.0000000000000001.0", b"v2 shard")
    assert sorted(s.list("shards/")) == [
        "shards/1/ab/cd/new.0000000000000001.0",
        "shards/1/ab/cd/old.0000000000000001.0",
    ]
    loc = s.locate("shards/1/ab/cd/old.0000000000000001.0")
    assert loc == PackedLocation(root.resolve() / "shards/1/ab/cd/old.0000000000000001.0", 0, 8)
    assert s.delete("shards/1/ab/cd/old.0000000000000001.0") is True
    assert not (root / "shards/1/ab/cd/old.0000000000000001.0").exists()
    assert s.get("journal/seg-1") == b"journal"
    assert not (root / "shards/1/ab/cd/new.0000000000000001.0").exists()  # new shards are packed


def test_scan_locations_agrees_with_locate(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened, pack_limit=3000)
    for i in range(30):
        s.stage(f"shards/k{i % 12}", _blob(i))
    s.flush()
    s.delete("shards/k5")
    s.flush()
    locs = scan_locations(root)
    assert locs == {k: s.locate(k) for k in s.list()}
    for key, loc in locs.items():
        with loc.path.open("rb") as f:
            f.seek(loc.offset)
            assert f.read(loc.length) == s.get(key)
    names = sorted(p.name for p in (root / PACK_DIR).iterdir())
    scan_locations(root)
    assert sorted(p.name for p in (root / PACK_DIR).iterdir()) == names  # read-only


def test_scan_locations_of_empty_or_missing_dir(tmp_path: Path) -> None:
    assert scan_locations(tmp_path) == {}
    assert scan_locations(tmp_path / "nope") == {}


def test_locate_missing(root: Path, opened: list[PackStore]) -> None:
    with pytest.raises(BlobNotFound):
        _open(root, opened).locate("shards/none")


def test_stat_modified_at_is_write_time(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened)
    before = datetime.now(UTC)
    s.put("shards/a", b"abc")
    after = datetime.now(UTC)
    st = s.stat("shards/a")
    assert st.size == 3
    assert before - timedelta(seconds=1) <= st.modified_at <= after + timedelta(seconds=1)
    s.close()
    assert _open(root, opened).stat("shards/a") == st  # survives reopen (and compaction copies)


def test_missing_root_degrades_then_recovers(tmp_path: Path, opened: list[PackStore]) -> None:
    root = tmp_path / "unmounted"
    s = _open(root, opened)
    with pytest.raises(StorageError, match="missing"):
        s.get("shards/a")
    root.mkdir()
    s.put("shards/a", b"a")
    assert s.get("shards/a") == b"a"


@pytest.mark.parametrize("replaced", [False, True], ids=["deleted", "replaced-by-empty"])
def test_disk_directory_removed_under_an_open_store_fails_the_flush(root: Path, replaced: bool) -> None:
    """The open pack keeps working on its unlinked file, so without a check a flush would
    "succeed" and publish records a restart cannot find; it must fail instead."""
    s = PackStore(root)
    try:
        s.put("shards/before", b"b" * 1000)
        shutil.rmtree(root)
        if replaced:
            root.mkdir()
        s.stage("shards/after", b"a" * 1000)
        with pytest.raises(StorageError, match="flush"):
            s.flush()
        with pytest.raises((BlobNotFound, StorageError)):  # never published
            s.get("shards/after")
        if replaced:
            s.put("shards/again", b"x")  # a new pack in the new directory works
            t = PackStore(root)
            assert t.get("shards/again") == b"x"
            assert list(t.list()) == ["shards/again"]
            t.close()
    finally:
        with contextlib.suppress(StorageError):
            s.close()


def test_closed_store_refuses_writes(root: Path) -> None:
    s = PackStore(root)
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.put("shards/a", b"a")


# --- golden vector ---------------------------------------------------------------------------------


def test_golden_vector_parses_and_rebuilds() -> None:
    pack = (VECTOR_DIR / fmt.pack_name(1)).read_bytes()
    index = (VECTOR_DIR / fmt.index_name(1)).read_bytes()
    assert make_pack_vectors.build() == (pack, index)
    records = _check_vector(VECTOR_DIR, 3)
    # Version 3: the file header, zeros to the first aligned offset, records at aligned offsets.
    assert pack[:4] == b"DWPK" and pack[4:6] == (3).to_bytes(2, "little")
    assert pack[16 : fmt.ALIGN] == bytes(fmt.ALIGN - 16)
    assert [r.record_offset for r in records] == [fmt.ALIGN, 2 * fmt.ALIGN, 3 * fmt.ALIGN]
    assert len(pack) == 4 * fmt.ALIGN
    first = records[0]
    assert pack[first.offset + first.length : 2 * fmt.ALIGN] == bytes(2 * fmt.ALIGN - first.offset - first.length)
    head = fmt.ALIGN
    assert pack[head : head + 4] == b"DWPR" and pack[head + 4] == fmt.KIND_PUT
    assert int.from_bytes(pack[head + 6 : head + 8], "little") == len("shards/1/ab/cd/abcd01.0000000000000001.0")
    assert int.from_bytes(pack[head + 8 : head + 16], "little") == 10
    assert int.from_bytes(pack[head + 16 : head + 24], "little") == make_pack_vectors.TIMESTAMP_NS


def _check_vector(directory: Path, version: int) -> list[fmt.Record]:
    """Index and scan of a vector agree, and describe ``VECTOR_KEYS``."""
    pack = (directory / fmt.pack_name(1)).read_bytes()
    index = (directory / fmt.index_name(1)).read_bytes()
    assert fmt.read_file_header(pack) == (1, version)
    decoded = fmt.decode_index(index, 1, version)
    assert decoded is not None
    size, records = decoded
    assert size == len(pack)
    assert fmt.decode_index(index, 1, 5 - version) is None  # an index of the other version is refused
    fd = os.open(directory / fmt.pack_name(1), os.O_RDONLY)
    try:
        scanned, end = fmt.scan_records(fd, len(pack), version)
    finally:
        os.close(fd)
    assert scanned == records and end == len(pack)
    assert [(r.kind, r.key, r.length, r.target) for r in records] == VECTOR_KEYS
    assert pack[records[0].offset : records[0].offset + 10] == b"hello pack"
    return records


def test_version_2_vector_still_parses() -> None:
    """Packs written before version 3: records back to back right after the 16-byte header."""
    records = _check_vector(V2_VECTOR_DIR, 2)
    assert records[0].record_offset == fmt.FILE_HEADER
    assert records[1].record_offset == records[0].offset + records[0].length


@pytest.mark.parametrize("vector", [VECTOR_DIR, V2_VECTOR_DIR], ids=["v3", "v2"])
def test_golden_vector_opens_as_a_store(tmp_path: Path, opened: list[PackStore], vector: Path) -> None:
    root = tmp_path / "disk"
    shutil.copytree(vector, root / PACK_DIR)
    s = _open(root, opened)
    assert s.get("shards/1/ab/cd/abcd01.0000000000000001.0") == b"hello pack"
    with pytest.raises(BlobNotFound):
        s.get("shards/x")
    assert s.stat("shards/1/ab/cd/abcd01.0000000000000001.0").modified_at == datetime.fromtimestamp(
        make_pack_vectors.TIMESTAMP_NS / 1e9, UTC
    )
    # New writes go to a new pack of the current version, never behind an old one; compaction
    # moves the old pack's live records into it.
    s.put("shards/new", b"n" * 5000)
    new = s.locate("shards/new")
    assert new.path.name != fmt.pack_name(1)
    assert fmt.read_file_header(new.path.read_bytes()) == (int(new.path.stem, 16), 3)
    assert s.compact(min_dead_fraction=0.0).packs_compacted >= 1
    s.close()
    t = _open(root, opened)
    assert t.get("shards/1/ab/cd/abcd01.0000000000000001.0") == b"hello pack"
    assert t.get("shards/new") == b"n" * 5000
    assert not (root / PACK_DIR / fmt.pack_name(1)).exists()


# --- direct I/O ------------------------------------------------------------------------------------


def _filesystem_takes_o_direct(directory: Path) -> bool:
    probe = directory / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return hasattr(os, "O_DIRECT")


@pytest.mark.parametrize("direct", [True, False], ids=["direct-store", "buffered-store"])
def test_records_of_every_size_round_trip(root: Path, opened: list[PackStore], direct: bool) -> None:
    """Sizes around the alignment and past the direct-write window (written in several windows),
    staged around the page cache and through it, alternately (both land in one pack)."""
    s = _open(root, opened, direct_io=direct)
    sizes = [0, 1, fmt.ALIGN - fmt.RECORD_HEADER - 12, fmt.ALIGN, 3 * fmt.ALIGN + 5, 2 * DIRECT_WINDOW + 123]
    blobs = {f"shards/s{n}-{cache}": os.urandom(n) for n in sizes for cache in (False, True)}
    for key, data in blobs.items():
        s.stage(key, data, cache=key.endswith("True"))
    s.flush()
    assert s.direct_io is (direct and _filesystem_takes_o_direct(root))
    offsets = [s.locate(key).offset for key in blobs]
    for key, data in blobs.items():
        assert s.get(key) == data
        start = s.locate(key).offset - fmt.RECORD_HEADER - len(key)
        assert start % fmt.ALIGN == 0
    assert len(set(offsets)) == len(offsets)
    s.close()
    (pack,) = _packs(root)
    assert pack.stat().st_size % fmt.ALIGN == 0
    t = _open(root, opened)
    for key, data in blobs.items():
        assert t.get(key) == data


def test_filesystem_refusing_o_direct_at_open_gets_buffered_writes(
    root: Path, opened: list[PackStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems (FUSE, older tmpfs) refuse O_DIRECT with EINVAL: the store writes the same
    layout through the page cache."""
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    s = _open(root, opened)
    s.stage("shards/a", b"a" * 10_000, cache=False)
    s.flush()
    assert s.direct_io is False
    assert s.get("shards/a") == b"a" * 10_000
    s.close()
    monkeypatch.undo()
    t = _open(root, opened)
    assert t.get("shards/a") == b"a" * 10_000
    assert t.locate("shards/a").offset == fmt.ALIGN + fmt.RECORD_HEADER + len("shards/a")


def test_direct_write_refused_mid_way_is_redone_through_the_page_cache(
    root: Path, opened: list[PackStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _filesystem_takes_o_direct(root):
        pytest.skip("the filesystem refuses O_DIRECT")
    s = _open(root, opened)
    s.stage("shards/a", b"a" * 10_000, cache=False)
    s.flush()
    assert s.direct_io is True

    def refusing_write(*args: object) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(packstore, "_write_direct", refusing_write)
    s.stage("shards/b", b"b" * 10_000, cache=False)
    s.flush()
    assert s.direct_io is False
    assert s.get("shards/b") == b"b" * 10_000
    s.close()
    t = _open(root, opened)
    assert t.get("shards/a") == b"a" * 10_000 and t.get("shards/b") == b"b" * 10_000


# --- concurrency -----------------------------------------------------------------------------------


def test_concurrent_stage_get_delete_compact(root: Path, opened: list[PackStore]) -> None:
    s = _open(root, opened, pack_limit=64 * 1024)
    errors: list[BaseException] = []
    stop = threading.Event()
    final: dict[str, bytes | None] = {}
    lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            for i in range(150):
                key = f"shards/w{w}/k{i % 20}"
                data = _blob(w * 1000 + i, 700)
                s.stage(key, data)
                if i % 5 == 4:
                    s.flush()
                if i % 7 == 0:
                    s.flush()
                    s.delete(key)
                    with lock:
                        final[key] = None
                else:
                    with lock:
                        final[key] = data
            s.flush()
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                for key in list(s.list("shards/")):
                    try:
                        data = s.get(key)
                    except BlobNotFound:
                        continue
                    assert len(data) == 700
        except BaseException as exc:
            errors.append(exc)

    def compactor() -> None:
        try:
            while not stop.is_set():
                s.compact(min_dead_fraction=0.3)
                time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    others = [threading.Thread(target=reader), threading.Thread(target=compactor)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    assert not errors, errors
    s.compact(min_dead_fraction=0.0)

    def check(store: PackStore) -> None:
        for key, data in final.items():
            if data is None:
                with pytest.raises(BlobNotFound):
                    store.get(key)
            else:
                assert store.get(key) == data

    check(s)
    s.close()
    check(_open(root, opened))


# --- stateful model --------------------------------------------------------------------------------

PACKED_ST = st.sampled_from([f"shards/{c}" for c in "abcde"])
KEYS_ST = st.one_of(PACKED_ST, st.just("journal/j"))


class PackStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"pk-model-{os.getpid()}-{id(self)}"
        self.dir.mkdir(parents=True)
        self.store = PackStore(self.dir, packed_prefix="shards/", pack_limit=400)
        self.model: dict[str, bytes] = {}
        self.staged: dict[str, bytes] = {}

    @rule(key=KEYS_ST, data=st.binary(max_size=120))
    def put(self, key: str, data: bytes) -> None:
        self.store.put(key, data)
        if key.startswith("shards/"):
            # A packed put flushes its packs, which publishes whatever was staged before it.
            self.model.update(self.staged)
            self.staged.clear()
        self.model[key] = data

    @rule(key=PACKED_ST, data=st.binary(max_size=120))
    def stage(self, key: str, data: bytes) -> None:
        self.store.stage(key, data)
        self.staged[key] = data

    @rule()
    def flush(self) -> None:
        self.store.flush()
        self.model.update(self.staged)
        self.staged.clear()

    @rule(key=KEYS_ST)
    def delete(self, key: str) -> None:
        self.store.flush()  # keep the model simple: deletes see every staged blob
        self.model.update(self.staged)
        self.staged.clear()
        assert self.store.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(threshold=st.sampled_from([0.0, 0.3, 0.9]))
    def compact(self, threshold: float) -> None:
        self.store.compact(min_dead_fraction=threshold)
        self.flush()  # compaction flushes (publishing staged blobs) whenever it removes a pack

    @rule()
    def reopen(self) -> None:
        self.store.close()  # close flushes the staged blobs
        self.model.update(self.staged)
        self.staged.clear()
        self.store = PackStore(self.dir, packed_prefix="shards/", pack_limit=400)

    @invariant()
    def matches_model(self) -> None:
        assert sorted(self.store.list()) == sorted(self.model)
        for key, data in self.model.items():
            assert self.store.get(key) == data
            assert self.store.stat(key).size == len(data)
        if self.staged:
            return  # staged records are already in the pack file, so a scan shows them
        packed = {k: v for k, v in self.model.items() if k.startswith("shards/")}
        assert {k: loc.length for k, loc in scan_locations(self.dir).items()} == {k: len(v) for k, v in packed.items()}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


PackStoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_pack_store_model = PackStoreMachine.TestCase


def test_space_is_reserved_ahead_and_handed_back_at_seal(tmp_path: Path) -> None:
    """The active pack has blocks reserved past its end (its size, and so the format, unchanged);
    sealing hands them back."""
    from datawarehouse.storage import packstore as ps

    store = PackStore(tmp_path, create=True)
    store.put("shards/a", b"x" * 100_000)
    pack = store.locate("shards/a").path
    st = os.stat(pack)
    assert st.st_size < 200_000
    if st.st_blocks * 512 < ps.PREALLOC_STEP // 2:
        pytest.skip("this filesystem does not reserve space (fallocate KEEP_SIZE)")
    assert store.get("shards/a") == b"x" * 100_000
    store.close()
    sealed = os.stat(pack)
    assert sealed.st_size == st.st_size
    assert sealed.st_blocks * 512 < 1_000_000
    again = PackStore(tmp_path)
    assert again.get("shards/a") == b"x" * 100_000
    again.close()


def test_reservation_left_by_a_crash_is_handed_back_on_open(tmp_path: Path) -> None:
    from datawarehouse.storage import packstore as ps

    store = PackStore(tmp_path, create=True)
    store.put("shards/a", b"y" * 50_000)
    pack = store.locate("shards/a").path
    if os.stat(pack).st_blocks * 512 < ps.PREALLOC_STEP // 2:
        pytest.skip("this filesystem does not reserve space (fallocate KEEP_SIZE)")
    crashed = tmp_path.parent / "crashed"
    shutil.copytree(tmp_path, crashed)  # the directory as a crash leaves it: no index, space reserved
    copied = crashed / pack.relative_to(tmp_path)
    with open(copied, "r+b") as f:  # copytree does not copy the reservation: make one
        assert prealloc.reserve(f.fileno(), os.stat(copied).st_size, ps.PREALLOC_STEP)
    assert os.stat(copied).st_blocks * 512 >= ps.PREALLOC_STEP
    reopened = PackStore(crashed)
    assert reopened.get("shards/a") == b"y" * 50_000
    assert os.stat(copied).st_blocks * 512 < 1_000_000
    reopened.close()
    store.close()


# --- the key directory's compact entries -----------------------------------------------------------


def test_packed_directory_round_trips_entries_and_finds_a_packs_keys() -> None:
    directory = packstore._PackedDirectory(packstore._Put)
    big = packstore._Put(7, 2**40 + 5, 262_144, time.time_ns(), 2**50, 3, 266_240)
    directory["shards/a"] = big
    directory["shards/b"] = packstore._Put(8, 4096, 10, 1, 2, 8, 8192)
    directory["shards/c"] = packstore._Put(7, 0, 0, 0, 0, 0, 4096)
    assert directory.get("shards/a") == big
    assert directory.get("shards/a") is not directory.get("shards/a")  # decoded per lookup: compare by value
    assert directory.get("shards/missing") is None
    assert sorted(k for k, _ in directory.in_pack(7)) == ["shards/a", "shards/c"]
    assert directory.in_pack(9) == []
    directory["shards/d"] = packstore._Put(7 + 2**56, 0, 0, 0, 0, 0, 4096)  # same first 7 bytes as pack 7
    assert sorted(k for k, _ in directory.in_pack(7)) == ["shards/a", "shards/c"]
    assert [k for k, _ in directory.in_pack(7 + 2**56)] == ["shards/d"]
    del directory["shards/d"]
    assert sorted(directory) == ["shards/a", "shards/b", "shards/c"]
    del directory["shards/b"]
    assert directory.get("shards/b") is None and sorted(directory) == ["shards/a", "shards/c"]
    directory["shards/a"] = big._replace(seq=big.seq + 1)
    assert directory.get("shards/a") == big._replace(seq=big.seq + 1) != big
    tombs = packstore._PackedDirectory(packstore._Tomb)
    tomb = packstore._Tomb(3, 8192, 2**60, 1, 4096, time.time_ns())
    tombs["shards/a"] = tomb
    assert tombs.get("shards/a") == tomb and tombs.in_pack(3) == [("shards/a", tomb)] and tombs.in_pack(7) == []


def test_compaction_copies_entries_that_lookups_return_as_new_objects(tmp_path: Path) -> None:
    """Compaction decides whether a key still has the record it copied by comparing entries; the
    directory returns a fresh object on every lookup, so the comparison must be by value: with an
    identity test no live record would ever be copied and the compacted pack's data would be lost."""
    store = PackStore(tmp_path, create=True, pack_limit=64 * 1024)
    payloads = {f"shards/k{i}": os.urandom(5000 + i) for i in range(40)}
    for key, data in payloads.items():
        store.put(key, data)
    for i in range(0, 40, 2):
        store.delete(f"shards/k{i}")
    report = store.compact(min_dead_fraction=0.3)
    assert report.packs_compacted > 0 and report.records_copied > 0
    store.close()
    reopened = PackStore(tmp_path)
    for i, (key, data) in enumerate(payloads.items()):
        if i % 2:
            assert reopened.get(key) == data
        else:
            with pytest.raises(BlobNotFound):
                reopened.get(key)
    reopened.close()


def test_compaction_forgets_tombstones_once_no_pack_can_hold_their_puts(tmp_path: Path) -> None:
    store = PackStore(tmp_path, create=True, pack_limit=64 * 1024)
    keys = [f"shards/t{i}" for i in range(30)]
    for key in keys:
        store.put(key, os.urandom(6000))
    for key in keys:
        store.delete(key)
    first = store.compact(min_dead_fraction=0.3)  # the packs of the puts go; their tombstones are carried
    assert first.packs_compacted > 0
    dropped = first.tombstones_dropped
    for _ in range(3):
        dropped += store.compact(min_dead_fraction=0.0).tombstones_dropped
    # Those in the active pack stay until it is sealed; every other one is forgotten.
    assert dropped > 0
    assert len(list(store._deleted)) == len(keys) - dropped
    store.close()
    reopened = PackStore(tmp_path)
    for key in keys:
        with pytest.raises(BlobNotFound):
            reopened.get(key)
    reopened.close()
