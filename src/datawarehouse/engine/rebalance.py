"""Rebalance and drain: move the shards whose placement changed, and only those.

For each chunk the wanted disk set is the k+m best-scoring active disks (``placement.place``). A
shard already on a wanted disk stays where it is, whatever its index; a shard on a disk that is no
longer wanted (a new disk outscored it, or its disk is draining) moves to a wanted disk that holds
no shard of the chunk. A move copies the verified shard, makes it durable, records the new
placement, and only then removes the old file — a crash at any point leaves a readable chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from datawarehouse.core import frame
from datawarehouse.engine.chunkstore import shard_key
from datawarehouse.engine.engine import Engine
from datawarehouse.engine.placement import place
from datawarehouse.engine.scrub import ScrubReport, _scrub_chunk
from datawarehouse.errors import DwhError
from datawarehouse.ids import DiskId
from datawarehouse.records import ChunkRecord


@dataclass
class RebalanceReport:
    chunks_checked: int = 0
    shards_moved: int = 0
    bytes_moved: int = 0
    failed: list[str] = field(default_factory=list)


def rebalance(engine: Engine, progress: Callable[[RebalanceReport, int], None] | None = None) -> RebalanceReport:
    report = RebalanceReport()
    total = engine.chunk_count()
    for rec in engine.iter_chunks():
        report.chunks_checked += 1
        try:
            _rebalance_chunk(engine, rec, report)
        except DwhError as exc:
            report.failed.append(f"{rec.chunk_id.hex()[:16]}: {exc}")
        if progress is not None:
            progress(report, total)
    return report


def _rebalance_chunk(engine: Engine, rec: ChunkRecord, report: RebalanceReport) -> None:
    active = engine.disks.active()
    wanted = place(rec.chunk_id, active, rec.k + rec.m)
    current = list(rec.placement)
    staying = {d for d in current if d in wanted}
    free = [d for d in wanted if d not in staying]
    movers = [i for i, d in enumerate(current) if d not in wanted]
    if not movers:
        return
    for index in movers:
        target: DiskId = free.pop(0)
        key = shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)
        source = current[index]
        try:
            blob = engine.disks.store(source).get(key)
            frame.parse_shard(blob)
        except DwhError:
            # The shard to move is itself missing or bad: rebuild it onto its new disk instead.
            _repair_onto(engine, rec, index, target)
            report.shards_moved += 1
            continue
        store = engine.disks.store(target)
        store.put(key, blob, defer_dir_sync=True)
        store.flush()
        with engine.repo.transaction() as tx:
            tx.set_placement(rec.domain_id, rec.chunk_id, index, target)
        with contextlib.suppress(DwhError):  # an unreachable old copy is an orphan for GC
            engine.disks.store(source).delete(key)
        report.shards_moved += 1
        report.bytes_moved += len(blob)


def _repair_onto(engine: Engine, rec: ChunkRecord, index: int, target: DiskId) -> None:
    placement = list(rec.placement)
    placement[index] = target
    moved = ChunkRecord(**{**rec.__dict__, "placement": tuple(placement)})
    with engine.repo.transaction() as tx:
        tx.set_placement(rec.domain_id, rec.chunk_id, index, target)
    _scrub_chunk(engine, moved, deep=False, repair=True, report=ScrubReport())
