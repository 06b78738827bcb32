"""PackFollower: a read-only view of packs another store writes — it catches up on a miss, keeps
the replay order, survives rotation, sealing and compaction, waits out a write in progress, and
never changes a file."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from datawarehouse.errors import BlobNotFound, StorageError, WouldBlock
from datawarehouse.storage import packfollow
from datawarehouse.storage import packformat as fmt
from datawarehouse.storage.packfollow import PackFollower
from datawarehouse.storage.packstore import PACK_DIR, PackStore


def _blob(i: int, n: int = 300) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (n // 32) + bytes([i % 256]) * (n % 32)


@pytest.fixture
def writer(root: Path) -> Iterator[PackStore]:
    store = PackStore(root, pack_limit=64 * 1024)
    yield store
    store.close()


@pytest.fixture
def follower(root: Path, writer: PackStore) -> Iterator[PackFollower]:
    store = PackFollower(root)
    yield store
    store.close()


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / PACK_DIR).iterdir()}


def _deleted_files_held() -> list[str]:
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".pack (deleted)"):
            held.append(target)
    return held


def test_reads_what_the_writer_flushed_after_it_started(writer: PackStore, follower: PackFollower) -> None:
    writer.put("shards/a", _blob(1))
    assert follower.get("shards/a") == _blob(1)
    writer.put("shards/b", _blob(2, 5000))  # unknown to the follower until it catches up
    assert follower.get("shards/b") == _blob(2, 5000)
    assert follower.get_range("shards/b", 100, 50) == _blob(2, 5000)[100:150]
    dest = memoryview(bytearray(4000))
    head = follower.get_into("shards/b", 1000, dest)
    assert head == _blob(2, 5000)[:1000] and bytes(dest) == _blob(2, 5000)[1000:]
    assert follower.get_into("shards/b", 10, memoryview(bytearray(5))) is None  # another length
    assert follower.stat("shards/b").size == 5000
    assert sorted(follower.list("shards/")) == ["shards/a", "shards/b"]
    with pytest.raises(BlobNotFound):
        follower.get("shards/never")


def test_a_memory_only_read_never_catches_up(writer: PackStore, follower: PackFollower) -> None:
    """``cached_only``: a key the follower has located is read (its bytes were just written,
    so they are in the page cache); a key it has not is ``WouldBlock``, without a refresh (that
    reads the packs' files); an ordinary read then catches up."""
    writer.put("shards/a", _blob(1, 4096))
    follower.refresh()
    dest = memoryview(bytearray(4000))
    assert follower.get_into("shards/a", 96, dest, cached_only=True) == _blob(1, 4096)[:96]
    assert bytes(dest) == _blob(1, 4096)[96:]
    assert follower.get_into("shards/a", 10, memoryview(bytearray(5)), cached_only=True) is None
    writer.put("shards/b", _blob(2, 4096))
    refreshes = follower.refreshes
    with pytest.raises(WouldBlock):
        follower.get_into("shards/b", 96, dest, cached_only=True)
    assert follower.refreshes == refreshes
    assert follower.get_into("shards/b", 96, dest) == _blob(2, 4096)[:96]
    assert follower.get_into("shards/b", 96, dest, cached_only=True) == _blob(2, 4096)[:96]


def test_a_staged_blob_is_invisible_until_written(writer: PackStore, follower: PackFollower) -> None:
    writer.put("shards/x", b"old")
    writer.put("shards/x", b"new")
    assert follower.get("shards/x") == b"new"  # the later record of a key wins
    writer.delete("shards/x")
    assert follower.get("shards/x") == b"new"  # known: no refresh until asked
    follower.refresh()
    with pytest.raises(BlobNotFound):
        follower.get("shards/x")
    writer.put("shards/x", b"again")
    assert follower.get("shards/x") == b"again"


def test_plain_files_are_read_through(root: Path, writer: PackStore, follower: PackFollower) -> None:
    f = writer.open_append("journal/seg.log")
    f.write(b"record")
    f.sync()
    f.close()
    assert follower.get("journal/seg.log") == b"record"
    assert "journal/seg.log" in list(follower.list())


def test_follows_rotation_and_sealing(root: Path, writer: PackStore, follower: PackFollower) -> None:
    for i in range(60):  # ~6 packs of 64 KiB
        writer.put(f"shards/k{i}", _blob(i, 9000))
        if i % 7 == 0:
            assert follower.get(f"shards/k{i}") == _blob(i, 9000)
    assert len(list((root / PACK_DIR).glob("*.idx"))) >= 3
    for i in range(60):
        assert follower.get(f"shards/k{i}") == _blob(i, 9000)


def test_follows_compaction(root: Path, writer: PackStore, follower: PackFollower) -> None:
    for i in range(40):
        writer.put(f"shards/k{i}", _blob(i, 9000))
    for i in range(40):
        assert follower.get(f"shards/k{i}") == _blob(i, 9000)  # every pack's descriptor is open now
    cold = PackFollower(root)
    cold.refresh()  # knows every location, has opened no pack
    for i in range(40):
        if i % 4:
            writer.delete(f"shards/k{i}")
    writer.flush()
    packs_before = set((root / PACK_DIR).glob("*.pack"))
    assert writer.compact(min_dead_fraction=0.5).packs_compacted >= 1
    assert packs_before - set((root / PACK_DIR).glob("*.pack"))  # some packs were removed
    live = range(0, 40, 4)
    for i in live:  # old locations, still readable through the open descriptors
        assert follower.get(f"shards/k{i}") == _blob(i, 9000)
    try:
        for i in live:  # old locations in removed packs: found again in the pack they moved to
            assert cold.get(f"shards/k{i}") == _blob(i, 9000)
    finally:
        cold.close()
    follower.refresh()  # a pack vanished: start over from the files as they are
    assert not _deleted_files_held(), "a removed pack's space is still held by a descriptor"
    for i in live:
        assert follower.get(f"shards/k{i}") == _blob(i, 9000)
    with pytest.raises(BlobNotFound):
        follower.get("shards/k1")
    late = PackFollower(root)  # one that never saw the removed packs
    try:
        assert sorted(late.list("shards/")) == sorted(f"shards/k{i}" for i in live)
    finally:
        late.close()


def test_waits_out_a_write_in_progress(root: Path, writer: PackStore, follower: PackFollower) -> None:
    writer.put("shards/first", b"1" * 100)
    assert follower.get("shards/first") == b"1" * 100
    (active,) = sorted((root / PACK_DIR).glob("*.pack"))[-1:]
    size = active.stat().st_size
    # What a reader sees while the next record is being written: its header, no payload yet.
    header = fmt.encode_record_header(fmt.KIND_PUT, b"shards/second", 100, 1, 0, 0)
    with open(active, "r+b") as f:
        f.seek(size)
        f.write(header)
    with pytest.raises(BlobNotFound):
        follower.get("shards/second")
    writer.put("shards/second", b"2" * 100)  # the writer writes the record over it, whole
    assert follower.get("shards/second") == b"2" * 100
    assert follower.get("shards/first") == b"1" * 100


def test_never_changes_a_file(root: Path, writer: PackStore) -> None:
    for i in range(20):
        writer.put(f"shards/k{i}", _blob(i, 9000))
    (active,) = sorted((root / PACK_DIR).glob("*.pack"))[-1:]
    with open(active, "ab") as f:
        f.write(b"torn tail: a PackStore opening this would truncate it")
    before = _files(root)
    follower = PackFollower(root)
    try:
        for i in range(20):
            assert follower.get(f"shards/k{i}") == _blob(i, 9000)
        follower.refresh()
        assert len(list(follower.list("shards/"))) == 20
        for op in (
            lambda: follower.put("shards/n", b"x"),
            lambda: follower.stage("shards/n", b"x"),
            lambda: follower.delete("shards/k1"),
            lambda: follower.open_append("journal/x"),
        ):
            with pytest.raises(StorageError, match="read-only"):
                op()
        follower.flush()  # nothing staged: a no-op
    finally:
        follower.close()
    assert _files(root) == before


def test_an_older_record_seen_late_does_not_win(root: Path, writer: PackStore, follower: PackFollower) -> None:
    """Ranges are reserved in order but written concurrently, so a refresh can meet a newer
    pack's record before an older pack's: the position decides, not the order of arrival."""
    follower.refresh()
    newer_put = fmt.Record(fmt.KIND_PUT, "shards/k", 8192, 3, 1, 0)
    older_put = fmt.Record(fmt.KIND_PUT, "shards/k", 4096, 3, 1, 0)
    older_tomb = fmt.Record(fmt.KIND_TOMBSTONE, "shards/k", 4096, 0, 1, 1)
    follower._apply(2, newer_put)
    follower._apply(1, older_put)
    follower._apply(1, older_tomb)
    assert follower._where["shards/k"][:2] == (2, 8192)
    follower._apply(3, fmt.Record(fmt.KIND_TOMBSTONE, "shards/k", 4096, 0, 1, 1))
    assert "shards/k" not in follower._where
    follower._apply(2, newer_put)  # before the tombstone: stays deleted
    assert "shards/k" not in follower._where


def test_a_pack_sealed_while_the_follower_loads_it_loses_no_record(
    writer: PackStore, follower: PackFollower, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer appends to the active pack and seals it between the follower's look at the
    pack's size and its look for the pack's index (a race the writing-thread test below met once
    in CI): the appended record is found on the next refresh, not dropped for good with the pack
    counted as sealed."""
    writer.put("shards/a", _blob(1))
    assert follower.get("shards/a") == _blob(1)  # the active pack, followed unsealed
    real_fstat = os.fstat

    def size_then_append_and_seal(fd: int) -> os.stat_result:
        seen = real_fstat(fd)
        monkeypatch.setattr(os, "fstat", real_fstat)
        writer.put("shards/b", _blob(2, 5000))  # same pack (64 KiB limit)
        writer.close()  # seals it: its index now covers b
        return seen

    monkeypatch.setattr(os, "fstat", size_then_append_and_seal)
    follower.refresh()
    assert os.fstat is real_fstat, "the follower looked at the pack's size"
    follower.refresh()
    assert follower.get("shards/b") == _blob(2, 5000)


def test_reads_keep_up_with_a_writing_thread(root: Path, writer: PackStore, follower: PackFollower) -> None:
    """The way read workers use it: each blob is read right after its write was flushed."""
    written: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(300):
                writer.put(f"shards/k{i}", _blob(i, 1000 + i * 37 % 9000))
                written.append(i)
        finally:
            done.set()

    def read() -> None:
        try:
            seen = 0
            while not done.is_set() or seen < len(written):
                if seen < len(written):
                    i = written[seen]
                    assert follower.get(f"shards/k{i}") == _blob(i, 1000 + i * 37 % 9000)
                    seen += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert len(written) == 300


def test_missing_pack_dir_is_empty(tmp_path: Path) -> None:
    os.makedirs(tmp_path / "disk")
    follower = PackFollower(tmp_path / "disk")
    follower.refresh()
    assert list(follower.list()) == []
    with pytest.raises(BlobNotFound):
        follower.get("shards/a")


class _PausingLock:
    """Stands in for a follower's dictionary lock: the first time ``thread`` lets it go, runs
    ``pause`` before returning (the moment between a reader's miss and what it does next)."""

    def __init__(self, real: threading.Lock, pause: Callable[[], None]) -> None:
        self._real, self._pause, self.thread = real, pause, None
        self._paused = False

    def __enter__(self) -> bool:
        return self._real.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._real.__exit__(*exc)
        if threading.current_thread() is self.thread and not self._paused:
            self._paused = True
            self._pause()


def test_a_refresh_that_began_before_a_write_does_not_stand_in_for_one_after(
    writer: PackStore, follower: PackFollower, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh listed the packs, then the writer acknowledged a blob, then a reader missed it,
    then that refresh completed (without the blob): the reader must still catch up itself, not
    take the completed refresh for one that saw the blob (a read worker answered 404 just after
    an acknowledged PUT)."""
    writer.put("shards/a", _blob(1))
    follower.refresh()
    scanned, go_on, done = threading.Event(), threading.Event(), threading.Event()
    real_load = packfollow.load_pack

    def load_then_wait(*args: Any, **kwargs: Any) -> Any:
        loaded = real_load(*args, **kwargs)
        if threading.current_thread().name == "early-refresh":
            scanned.set()
            assert go_on.wait(10)
        return loaded

    monkeypatch.setattr(packfollow, "load_pack", load_then_wait)

    def early_refresh() -> None:
        follower.refresh()
        done.set()

    def finish_early_refresh() -> None:  # between the reader's miss and its decision
        go_on.set()
        assert done.wait(10)

    lock = _PausingLock(follower._lock, finish_early_refresh)
    follower._lock = lock  # type: ignore[assignment]
    early = threading.Thread(target=early_refresh, name="early-refresh")
    early.start()
    assert scanned.wait(10)
    writer.put("shards/k", _blob(2))  # acknowledged after the early refresh read the pack
    got: dict[str, object] = {}

    def read() -> None:
        try:
            got["bytes"] = follower.get("shards/k")
        except BlobNotFound as exc:
            got["error"] = exc

    reader = threading.Thread(target=read)
    lock.thread = reader
    reader.start()
    reader.join(20)
    early.join(20)
    assert got == {"bytes": _blob(2)}
