"""Scrub: verify every shard of every chunk, rewrite the missing and corrupt ones, and restore
journal copies a disk lost. A second scrub right after finds nothing to do.

Checksums are always verified; ``deep`` also decodes and authenticates every chunk (AEAD tag and
chunk id), which costs a full decrypt. A chunk is always authenticated before it is re-encoded,
so corruption never spreads into the rewritten shards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from datawarehouse.core import frame
from datawarehouse.engine import journal as jr
from datawarehouse.engine.engine import Engine
from datawarehouse.errors import DwhError
from datawarehouse.records import ChunkRecord


@dataclass
class ScrubReport:
    chunks_checked: int = 0
    shards_checked: int = 0
    bytes_read: int = 0
    shards_bad: int = 0
    shards_repaired: int = 0
    journal_copies_repaired: int = 0
    unrecoverable: list[str] = field(default_factory=list)  # chunk ids (hex) with fewer than k good shards

    @property
    def clean(self) -> bool:
        return self.shards_bad == 0 and self.journal_copies_repaired == 0 and not self.unrecoverable


Progress = Callable[[ScrubReport, int], None]  # (report so far, total chunks)


class RateLimiter:
    """Keeps an average of at most ``rate`` bytes per second (``None``: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def account(self, size: int) -> None:
        if not self.rate:
            return
        self.done += size
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def scrub(
    engine: Engine,
    *,
    deep: bool = False,
    repair: bool = True,
    rate: float | None = None,
    progress: Progress | None = None,
) -> ScrubReport:
    report = ScrubReport()
    limiter = RateLimiter(rate)
    total = engine.chunk_count()
    for rec in engine.iter_chunks():
        limiter.account(_scrub_chunk(engine, rec, deep, repair, report))
        if progress is not None:
            progress(report, total)
    report.journal_copies_repaired = heal_journal(engine) if repair else 0
    with engine.repo.transaction() as tx:
        for item in tx.list_heal(limit=100000):
            tx.remove_heal(item.domain_id, item.chunk_id)
    return report


def _scrub_chunk(engine: Engine, rec: ChunkRecord, deep: bool, repair: bool, report: ScrubReport) -> int:
    """Check (and repair) one chunk; return the bytes read."""
    check = engine.chunks.check(rec)
    size = sum(len(s) for s in check.good.values())
    report.chunks_checked += 1
    report.shards_checked += rec.k + rec.m
    report.bytes_read += size
    if deep and not check.bad:
        try:
            engine.chunks.verify_plaintext(rec, check)
        except DwhError:
            # Every checksum matched yet the chunk fails authentication: find the culprit by
            # decoding subsets is not possible without more redundancy; report it.
            report.unrecoverable.append(rec.chunk_id.hex())
            return size
    if not check.bad:
        return size
    report.shards_bad += len(check.bad)
    for index in check.bad:
        if index < len(rec.placement):
            engine.disks.record_error(rec.placement[index])
    if not repair:
        return size
    try:
        moved = engine.chunks.repair(rec, check)
    except DwhError:
        report.unrecoverable.append(rec.chunk_id.hex())
        return size
    report.shards_repaired += len(check.bad)
    with engine.repo.transaction() as tx:
        for index, disk_id in moved.items():
            tx.set_placement(rec.domain_id, rec.chunk_id, index, disk_id)
        tx.remove_heal(rec.domain_id, rec.chunk_id)
    return size


def heal_journal(engine: Engine) -> int:
    """Give every active disk a full copy of every closed journal segment; count copies written."""
    stores = engine.disks.active_stores()
    current = engine.journal.open_segment  # a rotated (closed) segment is copied too
    repaired = 0
    for segment in jr.segment_names(stores):
        if segment == current:
            continue
        key = f"{jr.PREFIX}{segment}.log"
        best, best_end = b"", -1
        ends = {}
        for disk_id, store in stores.items():
            try:
                data = store.get(key)
            except DwhError:
                ends[disk_id] = -1
                continue
            _, end = frame.parse_journal(data)
            ends[disk_id] = end if end == len(data) else -1  # trailing garbage: rewrite
            if end > best_end:
                best, best_end = data[:end], end
        for disk_id, end in ends.items():
            if end != best_end:
                stores[disk_id].put(key, best)
                repaired += 1
    return repaired
