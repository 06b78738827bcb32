"""The data directory: its identity, its lock, its key store and the recorded disk set.

Admin commands need only ``--data-dir``: the disk set is recorded in ``datadir.json`` and every
disk carries ``.dwh-disk.json`` naming the data directory it belongs to, so a swapped, missing or
foreign disk is recognised when the directory is opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datawarehouse.engine.keys import KeyStore
from datawarehouse.errors import DataDirError, DataDirLocked, DiskAlreadyPresent, ForeignDisk, NoSuchDisk
from datawarehouse.ids import DataDirId, DiskId, new_datadir_id, new_disk_id
from datawarehouse.records import DiskRecord, DiskState

FORMAT = 1
DATADIR_FILE = "datadir.json"
DISK_ID_FILE = ".dwh-disk.json"
DEFAULT_DISK_COUNT = 6


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, doc: dict[str, Any], mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + f".tmp{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, (json.dumps(doc, indent=1) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class DiskStatus:
    """What opening found about one recorded disk."""

    record: DiskRecord
    fresh: bool  # the directory came back empty (wiped or replaced): heal onto it


class DataDir:
    """An opened (and locked) data directory."""

    def __init__(self, root: Path, doc: dict[str, Any], lock_fd: int) -> None:
        self.root = root
        self._doc = doc
        self._lock_fd = lock_fd
        self.keys = KeyStore(root / "keys")
        self.disk_status: list[DiskStatus] = []

    # --- creation and opening ------------------------------------------------------------------

    @staticmethod
    def exists(root: Path) -> bool:
        return (root / DATADIR_FILE).exists()

    @classmethod
    def create(cls, root: Path, disk_paths: list[Path] | None = None) -> DataDir:
        """Create a data directory with its disk set (default: ``disks/d1..d6`` inside it)."""
        root = root.absolute()
        if cls.exists(root):
            raise DataDirError(f"{root} is already a data directory")
        root.mkdir(parents=True, exist_ok=True)
        if not disk_paths:
            disk_paths = [root / "disks" / f"d{i}" for i in range(1, DEFAULT_DISK_COUNT + 1)]
        resolved = [p.absolute() for p in disk_paths]
        if len(set(resolved)) != len(resolved):
            raise DataDirError("the same disk path is given twice")
        datadir_id = new_datadir_id()
        now = datetime.now(UTC)
        disks = []
        for path in resolved:
            disk_id = new_disk_id()
            _claim_disk(path, datadir_id, disk_id)
            disks.append(
                {"disk_id": disk_id, "path": str(path), "weight": 1.0, "state": "active", "added_at": now.isoformat()}
            )
        doc = {"format": FORMAT, "datadir_id": datadir_id, "created_at": now.isoformat(), "disks": disks}
        (root / "meta").mkdir(exist_ok=True)
        _write_json_atomic(root / DATADIR_FILE, doc)
        return cls.open(root)

    @classmethod
    def open(cls, root: Path, *, follower: bool = False) -> DataDir:
        """Lock and open ``root``. ``follower``: a process that only reads what the lock's holder
        writes (a read worker of ``dwh serve --workers``): no lock taken, and the disks are not
        checked (the holder did, and claims a wiped one); nothing is written."""
        root = root.absolute()
        path = root / DATADIR_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise DataDirError(f"{root} is not a data directory (run `dwh init` first)") from exc
        except (OSError, ValueError) as exc:
            raise DataDirError(f"{path} is unreadable or malformed") from exc
        if doc.get("format") != FORMAT:
            raise DataDirError(f"{path}: unknown format {doc.get('format')!r}")
        if follower:
            return cls(root, doc, -1)
        lock_fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(lock_fd)
            raise DataDirLocked(f"{root} is in use by another process (stop the server, or use the admin API)") from exc
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())
        datadir = cls(root, doc, lock_fd)
        try:
            datadir.disk_status = [datadir._check_disk(rec) for rec in datadir.disks()]
        except Exception:
            datadir.close()
            raise
        return datadir

    def close(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- facts ---------------------------------------------------------------------------------

    @property
    def datadir_id(self) -> DataDirId:
        return DataDirId(self._doc["datadir_id"])

    @property
    def meta_path(self) -> Path:
        return self.root / "meta" / "meta.sqlite3"

    def disks(self) -> list[DiskRecord]:
        return [
            DiskRecord(
                disk_id=DiskId(d["disk_id"]),
                path=d["path"],
                weight=float(d["weight"]),
                state=DiskState(d["state"]),
                added_at=datetime.fromisoformat(d["added_at"]),
            )
            for d in self._doc["disks"]
        ]

    def disk(self, disk_id_or_path: str) -> DiskRecord:
        target = str(Path(disk_id_or_path).absolute())
        for rec in self.disks():
            if disk_id_or_path == rec.disk_id or target == rec.path:
                return rec
        raise NoSuchDisk(f"no disk {disk_id_or_path!r} in this data directory")

    # --- changes to the disk set ---------------------------------------------------------------

    def add_disk(self, path: Path, weight: float = 1.0) -> DiskRecord:
        path = path.absolute()
        for rec in self.disks():
            if rec.path == str(path) and rec.state != DiskState.REMOVED:
                raise DiskAlreadyPresent(f"{path} is already a disk of this data directory")
        if weight <= 0:
            raise DataDirError("disk weight: must be > 0")
        disk_id = new_disk_id()
        _claim_disk(path, self.datadir_id, disk_id)
        rec = DiskRecord(disk_id, str(path), weight, DiskState.ACTIVE, datetime.now(UTC))
        self._save_disks([*self.disks(), rec])
        return rec

    def set_disk_state(self, disk_id: DiskId, state: DiskState) -> DiskRecord:
        out = []
        found: DiskRecord | None = None
        for rec in self.disks():
            if rec.disk_id == disk_id:
                rec = found = replace(rec, state=state)
            out.append(rec)
        if found is None:
            raise NoSuchDisk(f"no disk {disk_id}")
        if state == DiskState.REMOVED:
            out = [r for r in out if r.disk_id != disk_id]
        self._save_disks(out)
        return found

    def _save_disks(self, disks: list[DiskRecord]) -> None:
        self._doc["disks"] = [
            {
                "disk_id": d.disk_id,
                "path": d.path,
                "weight": d.weight,
                "state": d.state.value,
                "added_at": d.added_at.isoformat(),
            }
            for d in disks
        ]
        _write_json_atomic(self.root / DATADIR_FILE, self._doc)

    def _check_disk(self, rec: DiskRecord) -> DiskStatus:
        path = Path(rec.path)
        ident = path / DISK_ID_FILE
        try:
            doc = json.loads(ident.read_text())
        except FileNotFoundError:
            # Wiped or replaced: it comes back empty under the same id and is healed onto.
            _claim_disk(path, self.datadir_id, rec.disk_id, allow_nonempty=True)
            return DiskStatus(rec, fresh=True)
        except (OSError, ValueError) as exc:
            raise ForeignDisk(f"disk {path}: identity file unreadable ({exc.__class__.__name__})") from exc
        if doc.get("datadir_id") != self.datadir_id:
            raise ForeignDisk(f"disk {path} belongs to another data directory")
        if doc.get("disk_id") != rec.disk_id:
            raise ForeignDisk(f"disk {path} carries identity {doc.get('disk_id')}, expected {rec.disk_id} (swapped?)")
        return DiskStatus(rec, fresh=False)


def _claim_disk(path: Path, datadir_id: str, disk_id: str, allow_nonempty: bool = False) -> None:
    """Write the identity file of a disk; refuse a disk that belongs elsewhere or holds other data."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"disk {path}: cannot create the directory ({exc.strerror})") from exc
    ident = path / DISK_ID_FILE
    if ident.exists():
        try:
            other = json.loads(ident.read_text()).get("datadir_id")
        except (OSError, ValueError):
            other = "?"
        raise ForeignDisk(f"disk {path} already belongs to data directory {other}")
    if not allow_nonempty and any(path.iterdir()):
        raise ForeignDisk(f"disk {path} is not empty; give an empty directory")
    doc = {"format": FORMAT, "disk_id": disk_id, "datadir_id": datadir_id, "created_at": datetime.now(UTC).isoformat()}
    _write_json_atomic(ident, doc)


def read_disk_identity(path: Path) -> dict[str, Any] | None:
    """The identity of a disk directory, or ``None`` (used by rebuild when datadir.json is lost)."""
    try:
        doc: dict[str, Any] = json.loads((path / DISK_ID_FILE).read_text())
        return doc
    except (OSError, ValueError):
        return None
