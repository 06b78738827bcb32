"""Per-bucket hard quotas on logical bytes and on stored objects.

A quota is a bucket setting (``SETTING``, JSON), so it is journaled and survives a rebuilt index.
Usage comes from the trigger-maintained counters (``MetaTx.bucket_usage``): stored versions that
are not delete markers, their bytes, and the parts of unfinished multipart uploads, which take
space too. A write is checked twice:

- before any data is stored, against the size the client announced (``check_room``), so an
  upload that cannot fit is refused at once;
- in the commit's transaction, after the operation was applied (``check_within``), which is the
  race-free verdict: two uploads that each fit alone cannot both commit past the limit. A write
  refused there rolls back; the shards it staged become orphans that GC removes.

Only writes that add usage are checked; deleting is always allowed, even over quota.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from datawarehouse.errors import InvalidInput, QuotaExceeded
from datawarehouse.ids import BucketId
from datawarehouse.meta.repo import BucketUsage, MetaTx

SETTING = "quota"


@dataclass(frozen=True)
class Quota:
    max_bytes: int | None = None
    max_objects: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("max_bytes", self.max_bytes), ("max_objects", self.max_objects)):
            if value is not None and value < 0:
                raise InvalidInput(f"quota {name} must not be negative")

    @property
    def unlimited(self) -> bool:
        return self.max_bytes is None and self.max_objects is None

    def to_json(self) -> str:
        return json.dumps({"max_bytes": self.max_bytes, "max_objects": self.max_objects}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Quota:
        doc = json.loads(text)
        return cls(doc.get("max_bytes"), doc.get("max_objects"))


def _refuse(bucket: str, what: str, used: int, adding: int, limit: int) -> QuotaExceeded:
    return QuotaExceeded(f"bucket {bucket!r}: {what} quota {limit} would be exceeded ({used} used, {adding} more)")


def check_room(bucket: str, quota: Quota, usage: BucketUsage, *, add_bytes: int, add_objects: int) -> None:
    """Refuse a write whose announced size cannot fit (before its data is stored)."""
    used_bytes = usage.bytes + usage.upload_bytes
    if quota.max_bytes is not None and add_bytes > 0 and used_bytes + add_bytes > quota.max_bytes:
        raise _refuse(bucket, "bytes", used_bytes, add_bytes, quota.max_bytes)
    if quota.max_objects is not None and add_objects > 0 and usage.objects + add_objects > quota.max_objects:
        raise _refuse(bucket, "objects", usage.objects, add_objects, quota.max_objects)


def check_within(tx: MetaTx, bucket: str, bucket_id: BucketId, quota: Quota) -> None:
    """In the commit's transaction, after the write was applied: the bucket must be within its
    quota, or the write is refused (and its transaction rolled back)."""
    usage = tx.bucket_usage(bucket_id)
    used_bytes = usage.bytes + usage.upload_bytes
    if quota.max_bytes is not None and used_bytes > quota.max_bytes:
        raise _refuse(bucket, "bytes", used_bytes, 0, quota.max_bytes)
    if quota.max_objects is not None and usage.objects > quota.max_objects:
        raise _refuse(bucket, "objects", usage.objects, 0, quota.max_objects)
