"""Changing the disk set: add a disk, drain and remove one, and report on each.

The disk set is recorded in ``datadir.json`` (and mirrored in the index). A new disk takes new
writes at once; ``rebalance`` then moves only the shards whose placement changed. Removing a disk
first drains it — marks it draining (read, never written), moves every shard off it — and drops
it from the set only when nothing is left on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datawarehouse.engine.engine import Engine
from datawarehouse.engine.rebalance import RebalanceReport, rebalance
from datawarehouse.engine.scrub import heal_journal
from datawarehouse.errors import DwhError, InvalidStorageClass
from datawarehouse.ids import DiskId
from datawarehouse.records import DiskRecord, DiskState


@dataclass(frozen=True)
class DiskReport:
    record: DiskRecord
    total_size: int
    free_size: int
    shard_count: int
    errors: int
    reachable: bool


def _sync_records(engine: Engine) -> None:
    engine.disks.update(engine.datadir.disks())
    with engine.repo.transaction() as tx:
        known = {d.disk_id for d in engine.datadir.disks()}
        for rec in tx.list_disks():
            if rec.disk_id not in known:
                tx.set_disk_state(rec.disk_id, DiskState.REMOVED)
        for rec in engine.datadir.disks():
            tx.upsert_disk(rec)
    engine.journal.rotate()


def add_disk(engine: Engine, path: Path, weight: float = 1.0) -> DiskRecord:
    rec = engine.datadir.add_disk(path, weight)
    _sync_records(engine)
    heal_journal(engine)  # the new disk gets a copy of the metadata journal too
    return rec


def remove_disk(engine: Engine, disk: str) -> RebalanceReport:
    """Drain ``disk`` (id or path) and drop it from the set; refuse if the rest cannot hold the data."""
    rec = engine.datadir.disk(disk)
    remaining = [d for d in engine.disks.active() if d.disk_id != rec.disk_id]
    widest = engine.widest_storage_class()
    if widest is not None and widest > len(remaining):
        raise InvalidStorageClass(
            f"cannot remove {rec.path}: stored chunks need {widest} disks, only {len(remaining)} would remain"
        )
    if engine.default_storage_class_for(len(remaining)).n > len(remaining):
        raise InvalidStorageClass(f"cannot remove {rec.path}: too few disks would remain")
    engine.datadir.set_disk_state(rec.disk_id, DiskState.DRAINING)
    _sync_records(engine)
    report = rebalance(engine)
    with engine.repo.transaction() as tx:
        left = tx.shard_counts_by_disk().get(rec.disk_id, 0)
    if left or report.failed:
        raise DwhError(
            f"disk {rec.path} still holds {left} shards ({len(report.failed)} moves failed); "
            "it stays draining — fix the errors and run `dwh disk remove` again"
        )
    engine.datadir.set_disk_state(rec.disk_id, DiskState.REMOVED)
    _sync_records(engine)
    return report


def disk_status(engine: Engine) -> list[DiskReport]:
    with engine.repo.transaction() as tx:
        counts = tx.shard_counts_by_disk()
        errors = {d.disk_id: _int(tx.get_setting(f"disk_errors.{d.disk_id}")) for d in engine.datadir.disks()}
    out = []
    for rec in engine.datadir.disks():
        reachable = True
        total = free = 0
        try:
            cap = engine.disks.store(rec.disk_id).capacity()
            total, free = cap.total_size, cap.free_size
            reachable = Path(rec.path).is_dir()
        except DwhError:
            reachable = False
        out.append(
            DiskReport(
                rec,
                total,
                free,
                counts.get(rec.disk_id, 0),
                errors.get(rec.disk_id, 0) + engine.disks.errors[rec.disk_id],
                reachable,
            )
        )
    return out


def persist_disk_errors(engine: Engine) -> None:
    """Add this process's error counts to the ones recorded in the index."""
    with engine.repo.transaction() as tx:
        for disk_id, count in list(engine.disks.errors.items()):
            if count:
                key = f"disk_errors.{disk_id}"
                tx.set_setting(key, str(_int(tx.get_setting(key)) + count))
    engine.disks.errors.clear()


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


__all__ = ["DiskId", "DiskReport", "add_disk", "disk_status", "persist_disk_errors", "remove_disk"]
