"""Rebuilding the metadata index from the disks alone.

The journal (on every disk) holds every metadata operation; replaying it restores buckets,
versions, manifests and keys. The shard files then say where each chunk really is (moves and
heals are not journaled) and which generation survived; reference counts are recomputed from the
manifests. The old database, if any, is kept aside, never deleted.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from datawarehouse.config import EngineConfig
from datawarehouse.core import frame
from datawarehouse.engine.chunkstore import iter_shard_files
from datawarehouse.engine.datadir import DataDir
from datawarehouse.engine.engine import Engine, Replay
from datawarehouse.errors import DwhError
from datawarehouse.ids import ChunkId, DiskId, DomainId
from datawarehouse.records import ChunkRecord

ScanKey = tuple[DomainId, ChunkId, int]  # (domain, chunk, generation)


@dataclass
class RebuildReport:
    journal_records: int = 0
    versions: int = 0
    chunks: int = 0
    shards_found: int = 0
    damaged_objects: list[str] = field(default_factory=list)
    old_database: str | None = None


def rebuild_meta(
    root: Path, replay: Replay, *, passphrase: str | None = None, config: EngineConfig | None = None
) -> RebuildReport:
    report = RebuildReport()
    datadir = DataDir.open(root)
    meta = datadir.meta_path
    datadir.close()
    if meta.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = meta.with_name(f"{meta.name}.before-rebuild-{stamp}")
        os.replace(meta, aside)
        for suffix in ("-wal", "-shm"):
            side = Path(str(meta) + suffix)
            if side.exists():
                os.replace(side, Path(str(aside) + suffix))
        report.old_database = str(aside)
    meta.parent.mkdir(parents=True, exist_ok=True)
    engine = Engine.open(root, replay, passphrase=passphrase, config=config, rebuilding=True)
    try:
        report.journal_records = engine.replayed
        reconcile_chunks(engine, report)
    finally:
        engine.close()
    return report


def scan_shards(engine: Engine) -> dict[ScanKey, dict[int, tuple[DiskId, frame.ShardHeader]]]:
    """Every shard file on every disk whose header parses, by (domain, chunk, generation)."""
    found: dict[ScanKey, dict[int, tuple[DiskId, frame.ShardHeader]]] = defaultdict(dict)
    for disk_id, store, key, parsed in iter_shard_files(engine.disks):
        try:
            header = frame.parse_shard_header(store.get_range(key, 0, frame.SHARD_HEADER_SIZE))
        except DwhError:
            continue
        domain_id, chunk_id, generation, index = parsed
        if header.chunk_id != chunk_id or header.generation != generation or header.index != index:
            continue
        found[(domain_id, chunk_id, generation)][index] = (disk_id, header)
    return found


def reconcile_chunks(engine: Engine, report: RebuildReport) -> None:
    found = scan_shards(engine)
    report.shards_found = sum(len(v) for v in found.values())
    by_chunk: dict[tuple[DomainId, ChunkId], list[ScanKey]] = defaultdict(list)
    for key, shards in found.items():
        header = next(iter(shards.values()))[1]
        if len(shards) >= header.k:
            by_chunk[(key[0], key[1])].append(key)
    refs: Counter[tuple[DomainId, ChunkId]] = Counter()
    with engine.repo.read() as tx:
        versions = list(tx.iter_all_versions())
        buckets = {b.bucket_id: b for b in tx.list_buckets()}
        # Parts of multipart uploads in progress hold references too.
        for upload_id in tx.all_upload_ids():
            upload = tx.get_upload(upload_id)
            bucket = buckets.get(upload.bucket_id) if upload is not None else None
            for part in tx.get_parts(upload_id):
                for c in part.chunks:
                    refs[(bucket.domain_id if bucket else DomainId(1), c.chunk_id)] += 1
    for v in versions:
        report.versions += 1
        if v.inline_data is not None:
            continue
        bucket = buckets.get(v.bucket_id)
        domain = bucket.domain_id if bucket else DomainId(1)
        for c in v.chunks:
            refs[(domain, c.chunk_id)] += 1
    now = engine.now()
    unreadable: set[tuple[DomainId, ChunkId]] = set()  # referenced, fewer than k shards on the disks
    with engine.repo.transaction() as tx:
        wanted = set(refs) | set(by_chunk)
        for ident in sorted(wanted):
            domain_id, chunk_id = ident
            rec = tx.get_chunk(domain_id, chunk_id)
            candidates = by_chunk.get(ident, [])
            pick = None
            if rec is not None and (domain_id, chunk_id, rec.generation) in candidates:
                pick = (domain_id, chunk_id, rec.generation)
            elif candidates:
                pick = candidates[0]
            if pick is None:
                unreadable.add(ident)
                if rec is not None:
                    tx.set_refcount(domain_id, chunk_id, refs[ident], now)
                continue
            shards = found[pick]
            header = next(iter(shards.values()))[1]
            placement = [DiskId("")] * (header.k + header.m)
            for index, (disk_id, _) in shards.items():
                placement[index] = disk_id
            fresh = ChunkRecord(
                domain_id=domain_id,
                chunk_id=chunk_id,
                generation=pick[2],
                plain_size=0,
                sealed_size=header.sealed_size,
                k=header.k,
                m=header.m,
                refcount=0,
                created_at=rec.created_at if rec else now,
                placement=tuple(placement),
            )
            if rec is not None:
                fresh = replace(fresh, plain_size=rec.plain_size)
            tx.update_chunk(fresh)
            tx.set_refcount(domain_id, chunk_id, refs.get(ident, 0), now)
            report.chunks += 1
        # Rows replayed from the journal that nothing references and whose shards are gone (GC
        # removed them before the index was lost): drop them, or scrub would call them lost.
        stale: list[ChunkRecord] = []
        after = None
        while page := tx.list_chunks(after, limit=1000):
            stale += [c for c in page if (c.domain_id, c.chunk_id) not in wanted]
            after = (page[-1].domain_id, page[-1].chunk_id)
        for gone in stale:
            tx.set_refcount(gone.domain_id, gone.chunk_id, 0, now)
            tx.delete_chunk_if_collectable(gone.domain_id, gone.chunk_id, now + timedelta(seconds=1))
        for v in versions:
            if v.inline_data is not None:
                continue
            bucket = buckets.get(v.bucket_id)
            domain = bucket.domain_id if bucket else DomainId(1)
            if any(tx.get_chunk(domain, c.chunk_id) is None or (domain, c.chunk_id) in unreadable for c in v.chunks):
                report.damaged_objects.append(f"{bucket.name if bucket else v.bucket_id}/{v.key}")
