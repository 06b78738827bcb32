"""Helpers shared by the IAM tests: a warehouse on a manual clock, and writes into a bucket of
any tenant (the name look-up of ``Warehouse.put_object`` is the default tenant's)."""

from __future__ import annotations

from pathlib import Path

from datawarehouse.clock import ManualClock
from datawarehouse.config import EngineConfig
from datawarehouse.records import BucketRecord, ObjectVersion
from datawarehouse.service.warehouse import ObjectSpec, ObjectUpload, OpenOptions, Warehouse

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024, threads=2
)


def open_options(clock: ManualClock) -> OpenOptions:
    return OpenOptions(config=SMALL, clock=clock)


def init_wh(root: Path, clock: ManualClock) -> Warehouse:
    return Warehouse.init(root, None, open_options(clock))


def put_in(wh: Warehouse, bucket: BucketRecord, key: str, data: bytes) -> ObjectVersion:
    """A PUT through the warehouse's own write path into ``bucket`` (whatever its tenant)."""
    sc = wh.storage_class_for(bucket)
    upload = ObjectUpload(wh, bucket, key, wh.engine.new_writer(bucket.domain_id, sc), sc, ObjectSpec())
    upload.write(data)
    return upload.finish()
