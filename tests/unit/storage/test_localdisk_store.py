"""LocalDiskStore specifics beyond the shared contract: atomicity, temp files, symlinks,
permissions, directory fsyncs and OSError translation."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from datawarehouse.errors import BlobNotFound, StorageError, UnsafePath, WouldBlock
from datawarehouse.storage import localdisk
from datawarehouse.storage.localdisk import TEMP_DIR, LocalDiskStore


@pytest.fixture
def store(root: Path) -> LocalDiskStore:
    return LocalDiskStore(root)


@pytest.fixture
def fsync_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record the path of every fd passed to os.fsync (and still do the fsync)."""
    log: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        log.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    yield log


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


# --- construction ---------------------------------------------------------------------------------


def test_missing_root_degrades_without_creating_it(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    s = LocalDiskStore(absent)  # opening never fails: one missing disk must not stop the engine
    with pytest.raises(StorageError, match="root is missing") as info:
        s.get("shards/x")
    assert not isinstance(info.value, BlobNotFound)  # not "the blob is gone": the disk is
    with pytest.raises(StorageError, match="root is missing"):
        s.put("shards/x", b"x")
    with pytest.raises(StorageError, match="root is missing"):
        list(s.list())
    with pytest.raises(StorageError, match="root is missing"):
        s.open_append("journal/seg")
    with pytest.raises(StorageError):
        s.capacity()
    assert not absent.exists()


def test_create_root(tmp_path: Path) -> None:
    s = LocalDiskStore(tmp_path / "new" / "disk", create=True)
    s.put("a", b"1")
    assert (tmp_path / "new" / "disk" / "a").read_bytes() == b"1"


def test_root_through_symlink(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(root)
    s = LocalDiskStore(link)
    s.put("x/y", b"via link")
    assert (root / "x" / "y").read_bytes() == b"via link"
    assert s.describe() == str(link)
    assert s.root == root.resolve()


def test_path_for(store: LocalDiskStore, root: Path) -> None:
    assert store.path_for("a/b") == root.resolve() / "a" / "b"
    with pytest.raises(UnsafePath):
        store.path_for("../a")


# --- atomicity and temp files ---------------------------------------------------------------------


def test_layout_and_temp_dir(store: LocalDiskStore, root: Path) -> None:
    store.put("shards/1/ab/cd/x.0", b"data")
    assert (root / "shards" / "1" / "ab" / "cd" / "x.0").read_bytes() == b"data"
    assert store.temp_dir == root.resolve() / TEMP_DIR
    assert list((root / TEMP_DIR).iterdir()) == []  # the temp file was renamed away


def test_unfinished_put_never_listed(store: LocalDiskStore, root: Path) -> None:
    store.put("a/complete", b"whole")
    # What a crash mid-put leaves behind: a partial temp file.
    (root / TEMP_DIR / "put-deadbeef-1").write_bytes(b"par")
    assert list(store.list()) == ["a/complete"]
    assert list(store.list(".")) == []


def test_failed_write_leaves_nothing(store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("k", b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="EIO") as info:
        store.put("k", b"new content")
    assert "'k'" in str(info.value)
    monkeypatch.undo()
    assert store.get("k") == b"old"  # the failed overwrite did not touch the blob
    assert list((root / TEMP_DIR).iterdir()) == []
    assert list(store.list()) == ["k"]


def test_failed_rename_removes_temp(store: LocalDiskStore, root: Path) -> None:
    (root / "isdir").mkdir()
    with pytest.raises(StorageError):
        store.put("isdir", b"x")  # a directory sits at the key
    assert list((root / TEMP_DIR).iterdir()) == []


def test_put_below_a_file_fails(store: LocalDiskStore) -> None:
    store.put("f", b"x")
    with pytest.raises(StorageError):
        store.put("f/child", b"y")


def test_cleanup_temp(store: LocalDiskStore, root: Path) -> None:
    assert store.cleanup_temp(0) == 0  # no temp dir yet
    store.put("a", b"1")
    tmp = root / TEMP_DIR
    old1, old2, fresh = tmp / "put-aaaa-1", tmp / "put-aaaa-2", tmp / "put-bbbb-1"
    for p in (old1, old2, fresh):
        p.write_bytes(b"partial")
    long_ago = time.time() - 3600
    os.utime(old1, (long_ago, long_ago))
    os.utime(old2, (long_ago, long_ago))
    assert store.cleanup_temp(600) == 2
    assert sorted(p.name for p in tmp.iterdir()) == ["put-bbbb-1"]
    assert store.cleanup_temp(600) == 0
    assert store.get("a") == b"1"
    assert list(store.list()) == ["a"]


# --- symlinks -------------------------------------------------------------------------------------


def test_symlinked_dir_escaping_root_refused(store: LocalDiskStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "evil").symlink_to(outside)
    with pytest.raises(UnsafePath):
        store.get("evil/secret")
    with pytest.raises(UnsafePath):
        store.get_range("evil/secret", 0, 1)
    with pytest.raises(UnsafePath):
        store.stat("evil/secret")
    with pytest.raises(UnsafePath):
        store.put("evil/new", b"x")
    with pytest.raises(UnsafePath):
        store.delete("evil/secret")
    with pytest.raises(UnsafePath):
        store.open_append("evil/log")
    with pytest.raises(UnsafePath):
        list(store.list("evil/"))
    assert list(store.list()) == []  # the walk does not follow the link
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_deeper_symlink_escaping_root_refused(store: LocalDiskStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "b").symlink_to(outside)
    with pytest.raises(UnsafePath):
        store.put("a/b/sub/x", b"x")
    assert list((outside / "sub").iterdir()) == []


def test_symlinked_file_refused(store: LocalDiskStore, root: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"outside")
    (root / "link").symlink_to(target)
    with pytest.raises(UnsafePath):
        store.get("link")
    with pytest.raises(UnsafePath):
        store.stat("link")
    with pytest.raises(UnsafePath):
        store.open_append("link")
    assert list(store.list()) == []
    # put replaces the link itself and never writes through it
    store.put("link", b"inside")
    assert target.read_bytes() == b"outside"
    assert store.get("link") == b"inside"


def test_symlinked_temp_dir_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / TEMP_DIR).symlink_to(outside)
    store = LocalDiskStore(root)
    with pytest.raises((UnsafePath, StorageError)):
        store.put("a", b"x")
    assert list(outside.iterdir()) == []


def test_symlink_inside_root_allowed(store: LocalDiskStore, root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    store.put("alias/x", b"1")
    assert (root / "real" / "x").read_bytes() == b"1"
    assert store.get("alias/x") == b"1"


# --- listing --------------------------------------------------------------------------------------


def test_list_skips_foreign_names(store: LocalDiskStore, root: Path) -> None:
    store.put("shards/1/ok", b"x")
    (root / ".dwh-disk.json").write_text("{}")
    (root / "shards" / "1" / "has space").write_bytes(b"x")
    (root / "shards" / "1" / ".hidden").write_bytes(b"x")
    os.mkfifo(root / "shards" / "fifo")
    assert list(store.list()) == ["shards/1/ok"]


def test_list_walks_only_the_prefix_subtree(store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for a in ("aa", "ab", "ba"):
        for b in ("00", "01"):
            store.put(f"shards/1/{a}/{b}/blob", b"x")
    scanned: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        scanned.append(os.path.relpath(path, root.resolve()))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    assert sorted(store.list("shards/1/ab/")) == ["shards/1/ab/00/blob", "shards/1/ab/01/blob"]
    assert sorted(scanned) == ["shards/1/ab", "shards/1/ab/00", "shards/1/ab/01"]
    scanned.clear()
    assert sorted(store.list("shards/1/a")) == sorted(
        f"shards/1/{a}/{b}/blob" for a in ("aa", "ab") for b in ("00", "01")
    )
    assert "shards/1/ba" not in scanned and "shards/1/ba/00" not in scanned


def test_list_missing_prefix_dir(store: LocalDiskStore) -> None:
    assert list(store.list("no/such/dir/")) == []


# --- stat -----------------------------------------------------------------------------------------


def test_stat_modified_at_follows_mtime(store: LocalDiskStore, root: Path) -> None:
    store.put("orphan", b"x")
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    os.utime(root / "orphan", (when.timestamp(), when.timestamp()))
    assert store.stat("orphan").modified_at == when


# --- permissions ----------------------------------------------------------------------------------


def test_permissions(store: LocalDiskStore, root: Path) -> None:
    old = os.umask(0o022)
    try:
        store.put("p/q/blob", b"x")
        store.open_append("j/log").close()
    finally:
        os.umask(old)
    for f in (root / "p" / "q" / "blob", root / "j" / "log"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in (root / "p", root / "p" / "q", root / "j", root / TEMP_DIR):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# --- directory fsyncs -----------------------------------------------------------------------------


@needs_proc
def test_put_fsyncs_file_and_new_dir_chain(store: LocalDiskStore, root: Path, fsync_log: list[str]) -> None:
    r = str(root.resolve())
    store.put("a/b/blob", b"x")
    assert fsync_log[0].startswith(f"{r}/{TEMP_DIR}/")  # the file's data first
    assert set(fsync_log[1:]) == {f"{r}/a/b", f"{r}/a", r}
    fsync_log.clear()
    store.put("a/b/blob2", b"y")  # chain already durable: only the file and its directory
    assert fsync_log[1:] == [f"{r}/a/b"]


@needs_proc
def test_flush_fsyncs_deferred_dirs(store: LocalDiskStore, root: Path, fsync_log: list[str]) -> None:
    r = str(root.resolve())
    store.put("d/1/x", b"1", defer_dir_sync=True)
    store.put("d/1/y", b"2", defer_dir_sync=True)
    store.put("d/2/z", b"3", defer_dir_sync=True)
    # only the temp files were fsynced so far
    assert all(p.startswith(f"{r}/{TEMP_DIR}/") for p in fsync_log)
    assert len(fsync_log) == 3
    fsync_log.clear()
    store.flush()
    assert set(fsync_log) == {f"{r}/d/1", f"{r}/d/2", f"{r}/d", r}
    assert len(fsync_log) == len(set(fsync_log))  # each directory once
    fsync_log.clear()
    store.flush()
    assert fsync_log == []


@needs_proc
def test_nondeferred_put_syncs_pending_parent_of_deferred_dir(
    store: LocalDiskStore, root: Path, fsync_log: list[str]
) -> None:
    """A deferred put created ``n/1``; a later synchronous put into ``n/1`` must not return before
    the entry naming ``n/1`` (in ``n``) is durable too."""
    r = str(root.resolve())
    store.put("n/1/a", b"1", defer_dir_sync=True)
    fsync_log.clear()
    store.put("n/1/b", b"2")
    assert set(fsync_log[1:]) == {f"{r}/n/1", f"{r}/n", r}


@needs_proc
def test_open_append_creation_fsyncs_parent(store: LocalDiskStore, root: Path, fsync_log: list[str]) -> None:
    r = str(root.resolve())
    store.open_append("journal/seg").close()
    assert set(fsync_log) == {f"{r}/journal", r}
    fsync_log.clear()
    store.open_append("journal/seg").close()  # existed: nothing to make durable
    assert fsync_log == []


def test_recreated_directory_after_external_removal(store: LocalDiskStore, root: Path) -> None:
    store.put("x/y/z", b"1")
    shutil.rmtree(root / "x")
    store.put("x/y/z", b"2")
    assert store.get("x/y/z") == b"2"


# --- error translation ----------------------------------------------------------------------------


def _raise(code: int) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(code, os.strerror(code))

    return fail


def test_enospc_on_put(store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("warm", b"x")  # create the temp dir first
    monkeypatch.setattr(os, "write", _raise(errno.ENOSPC))
    with pytest.raises(StorageError, match="disk full") as info:
        store.put("shards/1/blob", b"x" * 1000)
    assert "shards/1/blob" in str(info.value)
    assert not isinstance(info.value, BlobNotFound)
    monkeypatch.undo()
    assert list((root / TEMP_DIR).iterdir()) == []
    assert list(store.list()) == ["warm"]


def test_enospc_on_append(store: LocalDiskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    f = store.open_append("j/log")
    f.write(b"ok")
    monkeypatch.setattr(os, "write", _raise(errno.ENOSPC))
    with pytest.raises(StorageError, match="disk full"):
        f.write(b"more")
    monkeypatch.undo()
    assert f.write(b"!") == 3
    f.close()


def test_eio_on_read(store: LocalDiskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("k", b"data")
    monkeypatch.setattr(os, "read", _raise(errno.EIO))
    with pytest.raises(StorageError, match="EIO") as info:
        store.get("k")
    assert not isinstance(info.value, BlobNotFound)
    assert "'k'" in str(info.value)


def test_eacces_on_open(store: LocalDiskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("k", b"data")
    monkeypatch.setattr(os, "open", _raise(errno.EACCES))
    with pytest.raises(StorageError, match="EACCES"):
        store.get("k")


def test_missing_is_blob_not_found_with_key(store: LocalDiskStore) -> None:
    with pytest.raises(BlobNotFound, match="shards/9/x"):
        store.get("shards/9/x")


# --- reads ----------------------------------------------------------------------------------------


def test_get_range_reads_only_the_range(store: LocalDiskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(1 << 20)
    store.put("big", data)
    preads: list[tuple[int, int]] = []
    real_pread = os.pread

    def recording_pread(fd: int, n: int, off: int) -> bytes:
        preads.append((n, off))
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, "pread", recording_pread)
    monkeypatch.setattr(os, "read", _raise(errno.EIO))  # a whole-file read would blow up
    assert store.get_range("big", 4096, 100) == data[4096:4196]
    assert preads == [(100, 4096)]


def test_append_offset_property(store: LocalDiskStore) -> None:
    store.put("j/x", b"12345")
    with store.open_append("j/x") as f:
        assert f.offset == 5
        f.write(b"6")
        assert f.offset == 6


# --- staged puts ----------------------------------------------------------------------------------


def _temp_files(root: Path) -> list[str]:
    tmp = root / TEMP_DIR
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-fallback"])
def test_staged_blob_appears_whole_at_flush(
    store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    """Until ``flush`` a staged blob is only a temp file (what a crash leaves: GC removes it);
    after it, the blob is at its key with its full content, and nothing is left in ``.tmp``."""
    if not syncfs:
        monkeypatch.setattr(localdisk, "_SYNCFS", None)
    elif localdisk._SYNCFS is None:
        pytest.skip("no syncfs here")
    store.stage("shards/1/ab/x.0", b"A" * 5000)
    store.stage("shards/1/cd/y.1", b"B" * 7000)
    with pytest.raises(BlobNotFound):
        store.get("shards/1/ab/x.0")
    assert len(_temp_files(root)) == 2
    store.flush()
    assert store.get("shards/1/ab/x.0") == b"A" * 5000 and store.get("shards/1/cd/y.1") == b"B" * 7000
    assert _temp_files(root) == []


@needs_proc
def test_staged_blobs_cost_no_fsync_each_with_syncfs(store: LocalDiskStore, fsync_log: list[str]) -> None:
    if localdisk._SYNCFS is None:
        pytest.skip("no syncfs here")
    calls: list[int] = []
    real = localdisk._SYNCFS
    assert real is not None

    def counting(fd: int) -> int:
        calls.append(fd)
        return int(real(fd))

    localdisk._SYNCFS = counting  # type: ignore[assignment]
    try:
        for i in range(20):
            store.stage(f"shards/1/{i:02x}/c.{i}", bytes([i]) * 100)
        store.flush()
    finally:
        localdisk._SYNCFS = real
    assert fsync_log == []  # neither the 20 files nor their 20 new directories
    assert len(calls) == 2  # data before the renames, the renames after
    assert all(store.get(f"shards/1/{i:02x}/c.{i}") == bytes([i]) * 100 for i in range(20))


def test_staged_put_fsyncs_each_file_without_syncfs(
    store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch, fsync_log: list[str]
) -> None:
    monkeypatch.setattr(localdisk, "_SYNCFS", None)
    r = str(root.resolve())
    store.stage("n/1/a", b"1")
    assert len(fsync_log) == 1 and fsync_log[0].startswith(f"{r}/{TEMP_DIR}/")  # data durable before rename
    fsync_log.clear()
    store.flush()
    assert set(fsync_log) == {f"{r}/n/1", f"{r}/n", r}  # then the new entries


def test_failed_flush_keeps_staged_blobs_for_a_retry(
    store: LocalDiskStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.stage("f/1/a", b"first")
    store.stage("f/2/b", b"second")
    real_replace = os.replace
    calls = {"n": 0}

    def failing_second(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "injected")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second)
    with pytest.raises(StorageError, match="EIO"):
        store.flush()
    monkeypatch.setattr(os, "replace", real_replace)
    store.flush()
    assert store.get("f/1/a") == b"first" and store.get("f/2/b") == b"second"
    assert _temp_files(root) == []


def test_staging_refuses_a_symlinked_directory(store: LocalDiskStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "shards").mkdir()
    (root / "shards" / "evil").symlink_to(outside)
    with pytest.raises(UnsafePath):
        store.stage("shards/evil/x.0", b"data")
    assert list(outside.iterdir()) == []


def test_filesystem_sync_is_shared_by_concurrent_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve flushes at once on one filesystem: a caller is covered by any sync that started
    after it asked, so far fewer syncs run than callers, and every caller returns only after one
    such sync completed."""
    import threading

    started: list[float] = []
    finished: list[float] = []

    def slow_sync(fd: int) -> int:
        started.append(time.monotonic())
        time.sleep(0.05)
        finished.append(time.monotonic())
        return 0

    monkeypatch.setattr(localdisk, "_SYNCFS", slow_sync)
    shared = localdisk._FilesystemSync()
    asked: dict[int, float] = {}
    returned: dict[int, float] = {}

    def caller(i: int) -> None:
        asked[i] = time.monotonic()
        shared.sync(0)
        returned[i] = time.monotonic()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(started) <= 3
    for i in range(12):  # some sync began after the caller asked and ended before it returned
        assert any(s >= asked[i] and f <= returned[i] for s, f in zip(started, finished, strict=True))


def test_filesystem_sync_failure_reaches_every_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> int:
        import ctypes

        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(localdisk, "_SYNCFS", failing)
    shared = localdisk._FilesystemSync()
    with pytest.raises(OSError) as info:
        shared.sync(0)
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError):  # not "covered" by the failed sync
        shared.sync(0)


def test_preadv_full_reads_head_and_buffer_and_continues_short_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``preadv_full``: head returned, the rest in the caller's buffer; a read the kernel cuts
    short is continued where it stopped (in the head or in the buffer); a file that ends first
    gives ``None``."""
    path = tmp_path / "f"
    data = bytes(range(256)) * 64
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        dest = bytearray(1000)
        assert localdisk.preadv_full(fd, 100, memoryview(dest), 50) == data[50:150]
        assert bytes(dest) == data[150:1150]

        real = os.preadv

        def at_most_7(fd_: int, buffers: list[memoryview | bytearray], offset: int, flags: int = 0) -> int:
            # Hand the kernel only the first 7 bytes of the request.
            first = memoryview(buffers[0])
            return real(fd_, [first[: min(7, first.nbytes)]], offset, flags)

        monkeypatch.setattr(localdisk.os, "preadv", at_most_7)
        dest = bytearray(30)
        assert localdisk.preadv_full(fd, 20, memoryview(dest), 3) == data[3:23]
        assert bytes(dest) == data[23:53]
        monkeypatch.setattr(localdisk.os, "preadv", real)
        assert localdisk.preadv_full(fd, 100, memoryview(bytearray(len(data))), 0) is None
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv2 RWF_NOWAIT (Linux)")
def test_preadv_full_cached_only_reads_memory_and_never_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cached_only``: bytes in the page cache are read; bytes on the disk raise ``WouldBlock``
    (the ordinary read then brings them in); the end of the file is still ``None``; a platform
    or file system without ``RWF_NOWAIT`` cannot promise it, so it refuses too."""
    path = tmp_path / "f"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        dest = bytearray(len(data) - 100)
        assert localdisk.preadv_full(fd, 100, memoryview(dest), 0, cached_only=True) == data[:100]
        assert bytes(dest) == data[100:]
        past_end = memoryview(bytearray(len(data)))
        assert localdisk.preadv_full(fd, 100, past_end, 0, cached_only=True) is None

        os.fsync(fd)  # dirty pages are never dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
            pytest.skip("this file system keeps every page in memory (tmpfs)")
        except BlockingIOError:
            pass
        with pytest.raises(WouldBlock):
            localdisk.preadv_full(fd, 100, memoryview(dest), 0, cached_only=True)
        assert localdisk.preadv_full(fd, 100, memoryview(dest), 0) == data[:100]  # waits, and caches
        assert localdisk.preadv_full(fd, 100, memoryview(dest), 0, cached_only=True) == data[:100]

        real = os.preadv

        def no_nowait(fd_: int, buffers: list[memoryview | bytearray], offset: int, flags: int = 0) -> int:
            if flags:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            return real(fd_, buffers, offset)

        monkeypatch.setattr(localdisk.os, "preadv", no_nowait)
        with pytest.raises(WouldBlock):
            localdisk.preadv_full(fd, 100, memoryview(dest), 0, cached_only=True)
        monkeypatch.setattr(localdisk.os, "preadv", real)
        monkeypatch.setattr(localdisk, "_RWF_NOWAIT", None)
        with pytest.raises(WouldBlock):
            localdisk.preadv_full(fd, 100, memoryview(dest), 0, cached_only=True)
        assert localdisk.preadv_full(fd, 100, memoryview(dest), 0) == data[:100]
    finally:
        os.close(fd)
