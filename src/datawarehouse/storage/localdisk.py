"""``LocalDiskStore``: blobs as files under one directory (one disk).

Every shard file and journal segment lives here, so this is the hot path of every write: a 1 MiB
chunk at EC(4, 2) becomes six ~256 KiB puts. The code therefore avoids syscalls it does not need
(no stat before open, directories created only when an open or rename reports them missing, known
directories cached) while keeping the durability contract exact: a put is atomic (temp file,
fsync, rename) and, once ``put`` (or, for deferred puts, ``flush``) returns, the blob and every
directory entry leading to it survive a crash.

Layout: ``<root>/<key>``; temporary files of unfinished puts live in ``<root>/.tmp/``. The dot
makes that directory impossible to reach through a key (``validate_key`` refuses segments that
start with ``.``), so a key can never collide with a temp file and listings skip it for free.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import os
import secrets
import stat as stat_mod
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from datawarehouse.errors import BlobNotFound, DwhError, StorageError, UnsafePath, WouldBlock
from datawarehouse.storage.base import BlobStat, Capacity, get_into_via_get, validate_key

if TYPE_CHECKING:
    from datawarehouse.storage.base import AppendFile, BlobStore

__all__ = ["TEMP_DIR", "LocalAppendFile", "LocalDiskStore", "pread_full"]

TEMP_DIR = ".tmp"
"""Directory (relative to the root) holding temp files of in-flight puts; never a valid key."""

_MAX_SEGMENTS = 16
_MAX_KEY = 1024

_FILE_MODE = 0o600
_DIR_MODE = 0o700

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | _O_CLOEXEC | _O_NOFOLLOW
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC

# Errors that mean "there is no blob at this key" on a read: the file is missing, a path component
# is a file rather than a directory, or the key names a directory.
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _load_syncfs() -> ctypes._FuncPointer | None:
    """``syncfs(2)`` (Linux): flush one filesystem's dirty data and commit its journal, reporting
    write-back errors (since Linux 5.8). ``None`` where the C library lacks it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_SYNCFS = _load_syncfs()


class _FilesystemSync:
    """Group commit of ``syncfs`` per filesystem, shared by every store of the process.

    Several disks may be directories of one filesystem (and several writers flush at once): a
    caller whose request arrived before a sync *started* is covered by it and needs no sync of
    its own. So concurrent flushes of six disk directories on one filesystem cost one sync, not
    six. A failed sync covers no one: each waiter then runs its own and sees the error itself.
    """

    _registry: dict[int, _FilesystemSync] = {}
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._done = 0  # every ticket up to this one is covered by a completed sync
        self._running = False

    @classmethod
    def of(cls, device: int) -> _FilesystemSync:
        with cls._registry_lock:
            return cls._registry.setdefault(device, cls())

    def sync(self, fd: int) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while True:
                if self._done >= ticket:
                    return
                if not self._running:
                    break
                self._cond.wait()
            self._running = True
            covers = self._requested
        ok = False
        try:
            assert _SYNCFS is not None
            if _SYNCFS(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            ok = True
        finally:
            with self._cond:
                self._running = False
                if ok:
                    self._done = max(self._done, covers)
                self._cond.notify_all()


def _is_valid_segment(name: str) -> bool:
    try:
        validate_key(name)
    except UnsafePath:
        return False
    return "/" not in name


def _split(key: str) -> tuple[str, str]:
    """``"a/b/c"`` -> ``("a/b", "c")``; a top-level key has directory ``""`` (the root)."""
    slash = key.rfind("/")
    if slash < 0:
        return "", key
    return key[:slash], key[slash + 1 :]


def _parent(rel: str) -> str:
    slash = rel.rfind("/")
    return "" if slash < 0 else rel[:slash]


def _with_ancestors(rels: set[str]) -> set[str]:
    out = set()
    for rel in rels:
        while rel not in out:
            out.add(rel)
            if not rel:
                break
            rel = _parent(rel)
    return out


class LocalDiskStore:
    """A ``BlobStore`` over a local directory. Thread-safe; meant to be shared by a thread pool.

    ``root`` must exist (a missing root usually means an unmounted disk, and creating it would
    silently write onto the parent filesystem) unless ``create=True``.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False) -> None:
        self._label = os.fspath(root)
        if create:
            try:
                os.makedirs(self._label, mode=_DIR_MODE, exist_ok=True)
            except OSError as exc:
                raise self._error(exc, "create root", self._label, not_found=False) from exc
        # A missing root is not refused here: the engine opens every disk of its set at start,
        # and one absent disk must degrade (each operation fails with StorageError) rather than
        # stop the whole server. The store never creates the root itself, so an unmounted disk
        # is not silently replaced by a directory on the parent filesystem.
        real = os.path.realpath(self._label)
        self._root = real
        self._root_prefix = real.rstrip(os.sep) + os.sep
        self._tmp_dir = self._root_prefix + TEMP_DIR
        # Temp file names: a per-instance random token (two processes or two stores on one root
        # never collide) plus a counter (next() on itertools.count is atomic under the GIL).
        self._token = secrets.token_hex(6)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Directories (relative, "" = root) known to exist with a real path inside the root.
        self._safe_dirs: set[str] = {""}
        # Directories whose whole chain of entries, from the root down, is known durable.
        self._durable_dirs: set[str] = {""}
        # Directories holding entries from deferred puts that the next flush() must fsync.
        self._dirty: set[str] = set()
        # Staged puts, (temp path, key), written but neither synced nor renamed: flush() does both.
        self._staged: list[tuple[str, str]] = []
        self._tmp_ready = False

    # --- introspection ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The resolved root directory (symlinks in the configured path followed once)."""
        return Path(self._root)

    @property
    def temp_dir(self) -> Path:
        return Path(self._tmp_dir)

    def describe(self) -> str:
        return self._label

    def path_for(self, key: str) -> Path:
        """The file a key maps to (no I/O). For tests and tools that need to touch a blob on disk,
        for example to flip a byte and check that corruption is detected."""
        validate_key(key)
        return Path(self._root_prefix + key)

    def __repr__(self) -> str:
        return f"LocalDiskStore({self._label!r})"

    # --- writes ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        final = self._root_prefix + key
        tmp = self._write_temp(key, data)
        try:
            try:
                os.replace(tmp, final)
            except FileNotFoundError:
                # The parent directory does not exist yet: create it lazily (cheaper than
                # checking before every put, since nearly all puts land in existing dirs).
                self._make_dirs(rel_dir, key)
                os.replace(tmp, final)
        except OSError as exc:
            self._unlink_quietly(tmp)
            raise self._error(exc, "put", key, not_found=False) from exc
        except BaseException:
            self._unlink_quietly(tmp)
            raise
        self._mark_safe(rel_dir)
        if defer_dir_sync:
            with self._lock:
                self._dirty.add(rel_dir)
        else:
            try:
                self._fsync_dir(rel_dir)
                self._sync_chain(rel_dir)
            except OSError as exc:
                raise self._error(exc, "put (directory sync)", key, not_found=False) from exc

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        tmp = self._write_temp(key, data, sync=_SYNCFS is None, prefix=prefix)
        with self._lock:
            self._staged.append((tmp, key))

    def flush(self) -> None:
        # Serialised: a flush that finds nothing pending because a concurrent flush just took it
        # must still wait until that flush's syncs are done before returning.
        with self._flush_lock:
            self._flush_staged()
            self._flush_locked()

    def _flush_staged(self) -> None:
        """Staged blobs: one filesystem sync makes every temp file's data durable, then each is
        renamed into place, then one more filesystem sync makes the renames (and any directory
        they created) durable. Without ``syncfs`` each temp file was fsynced when written, and
        the renamed-into directories join the deferred ones that ``_flush_locked`` fsyncs."""
        with self._lock:
            staged, self._staged = self._staged, []
        if not staged:
            return
        done = 0
        try:
            if _SYNCFS is not None:
                self._syncfs()
            for tmp, key in staged:
                rel_dir, _ = _split(key)
                try:
                    os.replace(tmp, self._root_prefix + key)
                except FileNotFoundError:
                    self._make_dirs(rel_dir, key)
                    os.replace(tmp, self._root_prefix + key)
                done += 1
                self._mark_safe(rel_dir)
                if _SYNCFS is None:
                    with self._lock:
                        self._dirty.add(rel_dir)
            if _SYNCFS is not None:
                self._syncfs()
        except OSError as exc:
            # What was not renamed stays staged: a retried flush completes the batch.
            with self._lock:
                self._staged[:0] = staged[done:]
                if _SYNCFS is not None:  # renamed, but the renames are not known durable
                    self._dirty.update(_split(key)[0] for _, key in staged[:done])
            raise self._error(exc, "flush (staged puts)", "/", not_found=False) from exc
        if _SYNCFS is not None:
            # The sync committed every entry on the way to the renamed blobs, including
            # directories they created: those chains are durable now.
            synced = _with_ancestors({_split(key)[0] for _, key in staged})
            with self._lock:
                self._durable_dirs.update(synced)

    def _syncfs(self) -> None:
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            _FilesystemSync.of(os.fstat(fd).st_dev).sync(fd)
        finally:
            os.close(fd)

    def _flush_locked(self) -> None:
        with self._lock:
            batch, self._dirty = self._dirty, set()
        if not batch:
            return
        # One fsync per distinct directory: the deferred dirs themselves, plus the parents of any
        # directory on their chains not yet known durable (siblings share those parents).
        to_sync = set(batch)
        new_durable: set[str] = set()
        for rel in batch:
            while rel not in self._durable_dirs and rel not in new_durable:
                new_durable.add(rel)
                rel = _parent(rel)
                to_sync.add(rel)
        try:
            for rel in sorted(to_sync, key=len, reverse=True):
                self._fsync_dir(rel)
        except OSError as exc:
            # Keep the batch so a retried flush still covers it.
            with self._lock:
                self._dirty.update(batch)
            raise self._error(exc, "flush", rel or "/", not_found=False) from exc
        with self._lock:
            self._durable_dirs.update(new_durable)

    def delete(self, key: str) -> bool:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        try:
            os.unlink(self._root_prefix + key)
        except OSError as exc:
            if exc.errno in _NOT_FOUND_ERRNOS:
                return False
            raise self._error(exc, "delete", key, not_found=False) from exc
        # Directories are kept on purpose: removing them would race with concurrent puts into
        # the same directory and buys little (empty directories are cheap).
        return True

    def open_append(self, key: str) -> LocalAppendFile:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        path = self._root_prefix + key
        created = False
        fd = -1
        try:
            for attempt in range(4):
                try:
                    # O_EXCL first so we know whether this call created the file (and must make
                    # the new directory entry durable) without a separate stat.
                    fd = os.open(path, _APPEND_FLAGS | os.O_CREAT | os.O_EXCL, _FILE_MODE)
                    created = True
                    break
                except FileExistsError:
                    try:
                        fd = os.open(path, _APPEND_FLAGS)
                        break
                    except FileNotFoundError:
                        continue  # deleted between the two opens; try creating again
                except FileNotFoundError:
                    if attempt > 0:
                        raise
                    self._make_dirs(rel_dir, key)
            else:
                raise StorageError(f"open_append {key!r} on {self._label}: file keeps vanishing")
            size = os.fstat(fd).st_size
            if created:
                self._fsync_dir(rel_dir)
                self._sync_chain(rel_dir)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise self._error(exc, "open_append", key, not_found=False) from exc
        self._mark_safe(rel_dir)
        return LocalAppendFile(fd, size, key, self._label)

    def cleanup_temp(self, older_than_seconds: float) -> int:
        """Remove temp files (crash leftovers) last modified more than ``older_than_seconds`` ago;
        return how many. The age limit protects puts still in flight, including those of another
        process sharing the root."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            with os.scandir(self._tmp_dir) as it:
                entries = list(it)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._error(exc, "cleanup_temp", TEMP_DIR, not_found=False) from exc
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue  # renamed into place or removed meanwhile
            except OSError as exc:
                raise self._error(exc, "cleanup_temp", f"{TEMP_DIR}/{entry.name}", not_found=False) from exc
        return removed

    # --- reads -----------------------------------------------------------------------------------

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        return get_into_via_get(self, key, head, dest, cached_only=cached_only)

    def get(self, key: str) -> bytes:
        fd = self._open_read(key)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return b""
            data = os.read(fd, size)
            if len(data) == size:
                return data
            # Short read (rare: signals, some filesystems): keep reading until EOF or size.
            parts = [data]
            got = len(data)
            while got < size:
                more = os.read(fd, size - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as exc:
            raise self._error(exc, "get", key) from exc
        finally:
            os.close(fd)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"get_range {key!r}: negative offset or length ({offset}, {length})")
        fd = self._open_read(key)
        try:
            return pread_full(fd, length, offset) if length else b""
        except OSError as exc:
            raise self._error(exc, "get_range", key) from exc
        finally:
            os.close(fd)

    def stat(self, key: str) -> BlobStat:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        try:
            st = os.stat(self._root_prefix + key, follow_symlinks=False)
        except OSError as exc:
            raise self._error(exc, "stat", key) from exc
        if stat_mod.S_ISLNK(st.st_mode):
            raise UnsafePath(f"blob {key!r} on {self._label}: is a symlink, refused")
        if not stat_mod.S_ISREG(st.st_mode):
            raise BlobNotFound(f"blob {key!r} not found on {self._label}")
        self._mark_safe(rel_dir)
        return BlobStat(size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[str]:
        base_rel, partial = _split(prefix)
        if "/" in prefix:
            parts = base_rel.split("/")
            # A prefix whose complete segments are not valid key segments (``..``, ``/abs``,
            # ``a//b``) cannot start any key: nothing matches, and nothing outside is walked.
            if len(parts) >= _MAX_SEGMENTS or not all(_is_valid_segment(p) for p in parts):
                return
            self._check_dir(base_rel, prefix)
            base_depth = len(parts)
            base_key = base_rel + "/"
        else:
            base_depth = 0
            base_key = ""
        # Iterative walk of only the subtree the prefix can reach. Names that are not valid key
        # segments (``.tmp``, ``.dwh-disk.json``, stray files) are skipped; symlinks are never
        # followed nor listed (they could not be read through this store anyway).
        stack: list[tuple[str, str, int]] = [(self._root_prefix + base_rel, base_key, base_depth)]
        first = True
        while stack:
            abs_dir, key_prefix, depth = stack.pop()
            try:
                with os.scandir(abs_dir) as it:
                    entries = list(it)
            except OSError as exc:
                if exc.errno in _NOT_FOUND_ERRNOS and self._root_present():
                    first = False
                    continue  # no such subtree (or it vanished mid-walk)
                raise self._error(exc, "list", prefix or "/", not_found=False) from exc
            for entry in entries:
                name = entry.name
                if first and partial and not name.startswith(partial):
                    continue
                if not _is_valid_segment(name):
                    continue
                key = key_prefix + name
                if len(key) > _MAX_KEY:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 < _MAX_SEGMENTS:
                            stack.append((entry.path, key + "/", depth + 1))
                    elif entry.is_file(follow_symlinks=False):
                        yield key
                except OSError:
                    continue  # entry vanished between scandir and its type check
            first = False

    def capacity(self) -> Capacity:
        try:
            st = os.statvfs(self._root)
        except OSError as exc:
            raise self._error(exc, "capacity", "/", not_found=False) from exc
        return Capacity(total_size=st.f_blocks * st.f_frsize, free_size=st.f_bavail * st.f_frsize)

    # --- internals -------------------------------------------------------------------------------

    def _open_read(self, key: str) -> int:
        validate_key(key)
        rel_dir, _ = _split(key)
        self._check_dir(rel_dir, key)
        try:
            fd = os.open(self._root_prefix + key, _READ_FLAGS)
        except OSError as exc:
            raise self._error(exc, "get", key) from exc
        self._mark_safe(rel_dir)
        return fd

    def _write_temp(self, key: str, data: bytes | memoryview, *, sync: bool = True, prefix: bytes = b"") -> str:
        """Write ``data`` to a fresh temp file, fsync it (unless ``sync`` is false: a staged put,
        synced with its batch), and return its path."""
        tmp = f"{self._tmp_dir}/put-{self._token}-{next(self._seq):x}"
        if not self._tmp_ready:
            self._check_dir(TEMP_DIR, key)
        try:
            try:
                fd = os.open(tmp, _TEMP_FLAGS, _FILE_MODE)
            except FileNotFoundError:
                self._make_tmp_dir(key)
                fd = os.open(tmp, _TEMP_FLAGS, _FILE_MODE)
            self._tmp_ready = True
        except OSError as exc:
            raise self._error(exc, "put", key, not_found=False) from exc
        try:
            for part in (prefix, data):
                view = memoryview(part).cast("B")
                written = 0
                while written < view.nbytes:
                    written += os.write(fd, view[written:])
            if sync:
                os.fsync(fd)
        except BaseException as exc:
            os.close(fd)
            self._unlink_quietly(tmp)
            if isinstance(exc, OSError):
                raise self._error(exc, "put", key, not_found=False) from exc
            raise
        try:
            os.close(fd)
        except OSError as exc:
            self._unlink_quietly(tmp)
            raise self._error(exc, "put", key, not_found=False) from exc
        return tmp

    def _make_tmp_dir(self, key: str) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self._tmp_dir, _DIR_MODE)

    def _check_dir(self, rel_dir: str, key: str) -> None:
        """Refuse a directory whose real path leaves the root (a symlinked component pointing
        outside). Keys are already validated (no ``..``, not absolute), so symlinks are the only
        way out; this is defence in depth against a tampered disk directory. Directories seen to
        exist are cached, and only the components below the deepest cached ancestor are looked
        at: one ``lstat`` each (a full ``realpath`` only for a component that is a symlink)."""
        if rel_dir in self._safe_dirs:
            return
        parent = _parent(rel_dir)
        if parent != rel_dir:
            self._check_dir(parent, key)
        path = self._root_prefix + rel_dir
        try:
            st = os.lstat(path)
        except OSError:
            return  # missing (created later by mkdir, which follows nothing) or unreadable
        if stat_mod.S_ISLNK(st.st_mode):
            real = os.path.realpath(path)
            if real != self._root and not real.startswith(self._root_prefix):
                raise UnsafePath(f"blob {key!r}: path leaves the store root {self._label} through a symlink")
        elif not stat_mod.S_ISDIR(st.st_mode):
            return  # a file where a directory is expected: the operation itself reports it
        self._mark_safe(rel_dir)

    def _mark_safe(self, rel_dir: str) -> None:
        if rel_dir not in self._safe_dirs:
            with self._lock:
                self._safe_dirs.add(rel_dir)

    def _make_dirs(self, rel_dir: str, key: str) -> None:
        """Create ``rel_dir`` and missing ancestors (mode 0700). Parents' new entries are made
        durable later by ``_sync_chain`` (each created directory is dropped from the durable
        cache, in case a directory was removed behind our back and is now recreated)."""
        if not rel_dir:
            return
        path = self._root_prefix + rel_dir
        try:
            os.mkdir(path, _DIR_MODE)
        except FileExistsError:
            return
        except FileNotFoundError:
            self._make_dirs(_parent(rel_dir), key)
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                return
        with self._lock:
            self._durable_dirs.discard(rel_dir)

    def _fsync_dir(self, rel_dir: str) -> None:
        fd = os.open(self._root_prefix + rel_dir if rel_dir else self._root, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_chain(self, rel_dir: str) -> None:
        """Make the entries naming ``rel_dir`` and each of its ancestors durable (fsync each
        parent once). A directory enters the durable cache only after its whole chain has been
        synced, so a concurrent put that finds it cached can rely on it."""
        pending: list[str] = []
        rel = rel_dir
        while rel not in self._durable_dirs:
            pending.append(rel)
            rel = _parent(rel)
        if not pending:
            return
        for rel in pending:
            self._fsync_dir(_parent(rel))
        with self._lock:
            self._durable_dirs.update(pending)

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _root_present(self) -> bool:
        return os.path.isdir(self._root)

    def _error(self, exc: OSError, op: str, key: str, *, not_found: bool = True) -> DwhError:
        """Translate an ``OSError`` into the project's tree, naming the key and the store root."""
        code = exc.errno
        name = errno.errorcode.get(code, str(code)) if code is not None else "E?"
        where = f"{key!r} on {self._label}"
        if code in _DISK_FULL_ERRNOS:
            return StorageError(f"{op} {where}: disk full ({name})")
        if code in _NOT_FOUND_ERRNOS and not self._root_present():
            # Checked only on this error path: tells "no such blob" from "no such disk", so an
            # unmounted disk is not mistaken for one that lost all its blobs.
            return StorageError(f"{op} {where}: store root is missing (disk not mounted?)")
        if not_found and code in _NOT_FOUND_ERRNOS:
            return BlobNotFound(f"blob {key!r} not found on {self._label}")
        if code == errno.ELOOP:
            return UnsafePath(f"blob {where}: is a symlink, refused")
        return StorageError(f"{op} {where}: {name} ({exc.strerror})")


def pread_full(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset``: ``pread`` again after a short read, stopping (short)
    only at the end of the file."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


# ``preadv2`` flag: answer EAGAIN rather than wait for the disk (Linux >= 4.14; absent elsewhere).
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def preadv_full(fd: int, head: int, dest: memoryview, offset: int, *, cached_only: bool = False) -> bytes | None:
    """``head`` bytes at ``offset`` returned, the next ``len(dest)`` bytes read into ``dest``
    (``preadv``: the kernel copies straight into the caller's buffer); ``None`` when the file
    ends first. Short reads are continued, as in :func:`pread_full`.

    ``cached_only``: every ``preadv`` carries ``RWF_NOWAIT``, so bytes not in the page cache
    raise ``WouldBlock`` instead of waiting for the disk (as does a kernel or file system
    without the flag); a part that was cached may already be in ``dest``."""
    flags = 0
    if cached_only:
        if _RWF_NOWAIT is None:
            raise WouldBlock("this platform cannot read from the page cache only (no RWF_NOWAIT)")
        flags = _RWF_NOWAIT
    first = bytearray(head)
    total = head + dest.nbytes
    try:
        got = os.preadv(fd, [first, dest], offset, flags)
        while got < total:
            if got < head:
                more = os.preadv(fd, [memoryview(first)[got:], dest], offset + got, flags)
            else:
                more = os.preadv(fd, [dest[got - head :]], offset + got, flags)
            if more <= 0:
                return None
            got += more
    except OSError as exc:
        if flags and exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP):
            raise WouldBlock("bytes not in the page cache") from None
        raise
    return bytes(first)


class LocalAppendFile:
    """An append-only file (journal segment). ``write`` goes to the OS page cache and returns the
    end offset; ``sync`` (fdatasync) makes everything written so far durable. Thread-safe: the
    lock keeps each write and its offset together."""

    def __init__(self, fd: int, size: int, key: str, label: str) -> None:
        self._fd = fd
        self._size = size
        self._key = key
        self._label = label
        self._lock = threading.Lock()
        self._closed = False

    @property
    def offset(self) -> int:
        """The end of the file as written through this handle."""
        return self._size

    def fileno(self) -> int:
        """The descriptor, for the journal's writer process (``engine.journal_process``); what is
        written through it is not counted in ``offset``."""
        self._check_open()
        return self._fd

    def write(self, data: bytes) -> int:
        with self._lock:
            self._check_open()
            view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
            total = len(view)
            written = 0
            try:
                while written < total:
                    written += os.write(self._fd, view[written:] if written else view)
            except OSError as exc:
                # Whatever reached the file stays (a torn tail the journal reader discards).
                self._size += written
                raise self._error(exc, "append") from exc
            self._size += total
            return self._size

    def sync(self) -> None:
        with self._lock:
            self._check_open()
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                raise self._error(exc, "sync") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.close(self._fd)
            except OSError as exc:
                raise self._error(exc, "close") from exc

    def __enter__(self) -> LocalAppendFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"append file {self._key!r} on {self._label}: already closed")

    def _error(self, exc: OSError, op: str) -> StorageError:
        code = exc.errno
        name = errno.errorcode.get(code, str(code)) if code is not None else "E?"
        if code in _DISK_FULL_ERRNOS:
            return StorageError(f"{op} {self._key!r} on {self._label}: disk full ({name})")
        return StorageError(f"{op} {self._key!r} on {self._label}: {name} ({exc.strerror})")


if TYPE_CHECKING:
    _store_check: BlobStore = LocalDiskStore(".")
    _append_check: AppendFile = LocalAppendFile(0, 0, "", "")
