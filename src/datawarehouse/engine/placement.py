"""Weighted rendezvous hashing: which disks hold the shards of a chunk.

Every (disk, chunk) pair gets a score ``-weight / ln(u)`` with ``u`` a uniform number derived
from a hash of both ids; a chunk's k+m shards go to the k+m best-scoring disks. Adding a disk
therefore moves only the chunks for which the new disk now scores among the best — its share —
and removing one moves only the chunks it held.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import xxhash

from datawarehouse.errors import InvalidStorageClass
from datawarehouse.ids import ChunkId, DiskId
from datawarehouse.records import DiskRecord, DiskState

_SCALE = float(1 << 64)


def _score(disk_id: str, chunk_id: bytes, weight: float) -> float:
    h = xxhash.xxh3_64_intdigest(chunk_id, seed=0) ^ xxhash.xxh3_64_intdigest(disk_id.encode(), seed=1)
    h = xxhash.xxh3_64_intdigest(h.to_bytes(8, "big"))
    u = (h + 0.5) / _SCALE  # strictly inside (0, 1)
    return -weight / math.log(u)


def place(chunk_id: ChunkId, disks: Sequence[DiskRecord], count: int) -> list[DiskId]:
    """The ``count`` active disks with the highest score for ``chunk_id``, best first."""
    active = [d for d in disks if d.state == DiskState.ACTIVE]
    if count > len(active):
        raise InvalidStorageClass(f"{count} shards need {count} active disks, only {len(active)} available")
    ranked = sorted(active, key=lambda d: _score(d.disk_id, chunk_id, d.weight), reverse=True)
    return [d.disk_id for d in ranked[:count]]
