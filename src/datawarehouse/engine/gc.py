"""Garbage collection: remove chunks nobody references, and shards nothing names.

A chunk row is deleted only inside a transaction that re-checks that its count is still zero and
has been zero for longer than the grace period; its shard files are removed after that commit (a
crash in between leaves orphan files, which the second pass collects). Orphan shards are files
whose (chunk, generation) has no row — left by a write that died before its commit, by a lost
race between two writers of the same chunk, or by an interrupted move — and they are removed
only once their file is older than the grace period, so a write still in flight is never
touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from datawarehouse.engine.chunkstore import iter_shard_files
from datawarehouse.engine.engine import Engine
from datawarehouse.errors import DwhError
from datawarehouse.storage.base import BlobStore
from datawarehouse.storage.localdisk import LocalDiskStore
from datawarehouse.storage.packstore import PackStore


@dataclass
class GcReport:
    chunks_removed: int = 0
    shards_removed: int = 0
    orphan_shards_removed: int = 0
    bytes_freed: int = 0
    temp_files_removed: int = 0
    packs_compacted: int = 0
    pack_bytes_reclaimed: int = 0


def collect(engine: Engine, grace: timedelta | None = None) -> GcReport:
    grace = timedelta(seconds=engine.config.gc_grace_seconds) if grace is None else grace
    now = engine.now()
    before = now - grace
    report = GcReport()
    while True:
        with engine.repo.transaction() as tx:
            candidates = tx.collectable_chunks(before, limit=500)
        if not candidates:
            break
        progressed = False
        for rec in candidates:
            with engine.repo.transaction() as tx:
                deleted = tx.delete_chunk_if_collectable(rec.domain_id, rec.chunk_id, before)
            if deleted:
                progressed = True
                report.chunks_removed += 1
                report.shards_removed += engine.chunks.delete(rec)
                report.bytes_freed += rec.sealed_size
        if not progressed:
            break
    _collect_orphans(engine, before, report)
    # Temp files (puts that died before their rename) age like orphan shards: by the injected
    # clock, so "older than the grace period" means the same for both.
    temp_age = max(0.0, time.time() - before.timestamp())
    for disk_id, wrapped in engine.disks.stores().items():
        store = _unwrap(wrapped)
        if isinstance(store, (LocalDiskStore, PackStore)):
            report.temp_files_removed += store.cleanup_temp(temp_age)
        if not isinstance(store, PackStore):
            continue
        try:
            # Removed shards only left dead records in packs: compaction gives the space back.
            compacted = store.compact()
        except DwhError:
            engine.disks.record_error(disk_id)
            continue
        report.packs_compacted += compacted.packs_compacted
        report.pack_bytes_reclaimed += compacted.bytes_reclaimed
    return report


def _unwrap(store: BlobStore) -> BlobStore:
    """The store under test wrappers (``FaultyStore``/``CountingStore`` expose ``inner``)."""
    while not isinstance(store, (LocalDiskStore, PackStore)):
        inner = getattr(store, "inner", None)
        if inner is None:
            break
        store = inner
    return store


def _collect_orphans(engine: Engine, before: datetime, report: GcReport) -> None:
    known: dict[tuple[int, bytes], int | None] = {}
    for disk_id, store, key, (domain_id, chunk_id, generation, _index) in iter_shard_files(engine.disks):
        ident = (domain_id, chunk_id)
        if ident not in known:
            rec = engine.get_chunk(domain_id, chunk_id)
            known[ident] = rec.generation if rec is not None else None
        if known[ident] == generation:
            continue
        try:
            stat = store.stat(key)
            if stat.modified_at >= before:
                continue
            if known[ident] is None:
                # Re-check: a commit may have inserted the chunk since the first look.
                rec = engine.get_chunk(domain_id, chunk_id)
                if rec is not None and rec.generation == generation:
                    known[ident] = generation
                    continue
            if store.delete(key):
                report.orphan_shards_removed += 1
                report.bytes_freed += stat.size
        except DwhError:
            engine.disks.record_error(disk_id)
