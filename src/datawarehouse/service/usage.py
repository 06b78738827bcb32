"""Usage across buckets for the admin API: the trigger-maintained counters of every bucket (cheap:
one row each) and their totals. The stored (after dedup and compression) figures need a scan of a
bucket's chunks, so they are only computed for one bucket at a time (``Warehouse.bucket_usage``).
"""

from __future__ import annotations

from dataclasses import dataclass

from datawarehouse.meta.repo import BucketUsage
from datawarehouse.records import BucketRecord
from datawarehouse.service.quota import Quota
from datawarehouse.service.warehouse import Warehouse


@dataclass(frozen=True)
class BucketLine:
    name: str  # qualified: ``tenant:bucket`` outside the default tenant
    record: BucketRecord
    usage: BucketUsage
    quota: Quota | None


def bucket_lines(wh: Warehouse, tenant: str | None = None) -> list[BucketLine]:
    """Every (user) bucket of ``tenant`` (``None``: all tenants), sorted by qualified name."""
    records = wh.list_buckets(tenant)
    with wh.engine.repo.read() as tx:
        usages = [tx.bucket_usage(rec.bucket_id) for rec in records]
    lines = [
        BucketLine(wh.qualified_name(rec), rec, usage, wh.quota_for(rec))
        for rec, usage in zip(records, usages, strict=True)
    ]
    return sorted(lines, key=lambda line: line.name)


@dataclass(frozen=True)
class Totals:
    buckets: int
    objects: int
    logical_bytes: int
    upload_parts: int
    upload_bytes: int


def totals(lines: list[BucketLine]) -> Totals:
    return Totals(
        buckets=len(lines),
        objects=sum(line.usage.objects for line in lines),
        logical_bytes=sum(line.usage.bytes for line in lines),
        upload_parts=sum(line.usage.upload_parts for line in lines),
        upload_bytes=sum(line.usage.upload_bytes for line in lines),
    )
