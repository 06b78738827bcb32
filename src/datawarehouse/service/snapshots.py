"""Bucket snapshots: a point-in-time, read-only view of a bucket that costs metadata only.

A snapshot copies the bucket's current versions *by reference* (as CopyObject does: the new
versions share the source's chunks, whose reference counts go up; no data is read or written)
into a hidden bucket named ``<bucket>--snap--<name>``. The list of current versions is read from
one metadata snapshot, so the view is one point in time. The snapshot's own record (source,
name, creation time, retain-until, legal hold) is the hidden bucket's ``snapshot`` setting,
journaled like every setting, so rebuild-meta keeps it. The S3 layer refuses every write to a
snapshot bucket; ``delete`` refuses while retain-until is ahead or the legal hold is on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datawarehouse.errors import Conflict, InvalidInput, NoSuchBucket
from datawarehouse.meta.repo import MetaTx
from datawarehouse.records import ObjectVersion
from datawarehouse.service import catalog
from datawarehouse.service.naming import SNAPSHOT_MARK, check_bucket_name
from datawarehouse.service.warehouse import Warehouse, copied_version

SETTING = "snapshot"


class SnapshotProtected(Conflict):
    """A snapshot under legal hold or before its retain-until date cannot be deleted, and a
    snapshot view is never written to except through this module."""


def refuse_write(bucket: str) -> None:
    """For the admin commands that write objects or delete buckets (the S3 layer has its own
    check): a snapshot view is read-only; ``dwh snapshot delete`` is the way to remove one."""
    if is_snapshot_bucket(bucket):
        raise SnapshotProtected(f"bucket {bucket!r} is a snapshot view: read-only (use dwh snapshot delete)")


@dataclass(frozen=True)
class SnapshotInfo:
    bucket: str  # the source bucket
    name: str
    created_at: datetime
    retain_until: datetime | None = None
    legal_hold: bool = False
    objects: int = 0
    complete: bool = True  # False while ``create`` copies (or after a crash in the middle)

    @property
    def view(self) -> str:
        return snapshot_bucket(self.bucket, self.name)

    def to_json(self) -> str:
        return json.dumps(
            {
                "bucket": self.bucket,
                "name": self.name,
                "created_at": self.created_at.isoformat(),
                "retain_until": self.retain_until.isoformat() if self.retain_until else None,
                "legal_hold": self.legal_hold,
                "complete": self.complete,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, objects: int = 0) -> SnapshotInfo:
        d = json.loads(text)
        until = d.get("retain_until")
        return cls(
            bucket=d["bucket"],
            name=d["name"],
            created_at=datetime.fromisoformat(d["created_at"]),
            retain_until=datetime.fromisoformat(until) if until else None,
            legal_hold=bool(d.get("legal_hold")),
            objects=objects,
            complete=bool(d.get("complete", True)),
        )


def snapshot_bucket(bucket: str, name: str) -> str:
    """The hidden bucket that holds snapshot ``name`` of ``bucket`` (S3 name rules apply)."""
    return f"{bucket}{SNAPSHOT_MARK}{name}"


def is_snapshot_bucket(name: str) -> bool:
    return SNAPSHOT_MARK in name


def _check_name(bucket: str, name: str) -> str:
    if not name or SNAPSHOT_MARK in name or SNAPSHOT_MARK in bucket:
        raise InvalidInput(f"snapshot name {name!r}: must not be empty or contain {SNAPSHOT_MARK!r}")
    full = snapshot_bucket(bucket, name)
    try:
        check_bucket_name(full, allow_snapshot=True)
    except InvalidInput as exc:
        raise InvalidInput(f"snapshot bucket {full!r}: {exc}") from None
    return full


def create(wh: Warehouse, bucket: str, name: str | None = None, retain_until: datetime | None = None) -> SnapshotInfo:
    """Snapshot the current versions of ``bucket`` (delete markers excluded) by reference."""
    now = wh.engine.now()
    name = name or now.strftime("%Y%m%d-%H%M%S")
    full = _check_name(bucket, name)
    src = wh.get_bucket(bucket)
    if retain_until is not None and retain_until <= now:
        raise InvalidInput("--retain-until: must be in the future")
    # One read snapshot: the point in time.
    with wh.engine.repo.read() as tx:
        sources: list[ObjectVersion] = []
        after = ""
        while True:
            page = tx.list_objects(src.bucket_id, "", after, 1000)
            sources.extend(tx.get_version(src.bucket_id, s.key, s.version_id) for s in page)
            if len(page) < 1000:
                break
            after = page[-1].key
    dst = wh.create_bucket(full, domain_id=src.domain_id, snapshot_view=True)
    # Recorded first as incomplete and unprotected, so a crash in the middle leaves a snapshot
    # that ``delete`` removes; retain-until applies once every object is in.
    info = SnapshotInfo(bucket, name, now, None, False, len(sources), complete=False)
    wh.set_bucket_setting(full, SETTING, info.to_json())
    for source in sources:
        version = copied_version(source, dst, source.key, wh.engine.now(), None)
        doc: dict[str, Any] = {
            "op": "object.put",
            "domain_id": dst.domain_id,
            "replace": True,
            "version": catalog.version_to_doc(version),
            "new_chunks": [],
        }
        wh.engine.commit(_putter(doc), dst.domain_id, doc, announce=False)
    info = dataclasses.replace(info, retain_until=retain_until, complete=True)
    wh.set_bucket_setting(full, SETTING, info.to_json())
    return info


def _putter(doc: dict[str, Any]) -> Callable[[MetaTx], Any]:
    return lambda tx: catalog.apply_object_put(tx, doc, replay=False)


def get(wh: Warehouse, bucket: str, name: str) -> SnapshotInfo:
    full = snapshot_bucket(bucket, name)
    try:
        value = wh.get_bucket_setting(full, SETTING)
    except NoSuchBucket:
        value = None
    if value is None:
        raise NoSuchBucket(f"no snapshot {name!r} of bucket {bucket!r}")
    rec = wh.get_bucket(full)
    with wh.engine.repo.read() as tx:
        objects = tx.bucket_usage(rec.bucket_id).objects
    return SnapshotInfo.from_json(value, objects)


def list_snapshots(wh: Warehouse, bucket: str | None = None) -> list[SnapshotInfo]:
    """Snapshots of ``bucket`` (all buckets: ``None``), oldest first."""
    out = []
    for rec in wh.list_buckets():
        if not is_snapshot_bucket(rec.name):
            continue
        src, name = wh.qualified_name(rec).split(SNAPSHOT_MARK, 1)
        if bucket is not None and src != bucket:
            continue
        try:
            out.append(get(wh, src, name))
        except NoSuchBucket:
            continue
    return sorted(out, key=lambda s: (s.bucket, s.created_at, s.name))


def set_legal_hold(wh: Warehouse, bucket: str, name: str, on: bool) -> SnapshotInfo:
    info = get(wh, bucket, name)
    new = dataclasses.replace(info, legal_hold=on)
    wh.set_bucket_setting(info.view, SETTING, new.to_json())
    return new


def delete(wh: Warehouse, bucket: str, name: str) -> SnapshotInfo:
    """Remove the snapshot's versions, then its bucket (chunks other versions use stay; GC frees
    the rest). Refused under legal hold or before retain-until."""
    info = get(wh, bucket, name)
    if info.legal_hold:
        raise SnapshotProtected(f"snapshot {name!r} of {bucket!r} is under legal hold")
    now = wh.engine.now()
    if info.retain_until is not None and now < info.retain_until:
        raise SnapshotProtected(f"snapshot {name!r} of {bucket!r} is retained until {info.retain_until.isoformat()}")
    for summary in list(wh.iter_objects(info.view)):
        wh.delete_object(info.view, summary.key)
    wh.delete_bucket(info.view)
    return info


def restore(wh: Warehouse, bucket: str, name: str, target: str | None = None, prefix: str = "") -> int:
    """Copy the snapshot's objects (those under ``prefix``) by reference into ``target``
    (default: the source bucket) as new current versions; returns how many."""
    info = get(wh, bucket, name)
    if not info.complete:
        raise InvalidInput(f"snapshot {name!r} of {bucket!r} is incomplete (interrupted create): delete it")
    target = target or bucket
    if is_snapshot_bucket(target):
        raise InvalidInput("snapshots are read-only: restore into a regular bucket")
    wh.get_bucket(target)
    count = 0
    for summary in list(wh.iter_objects(info.view, prefix)):
        wh.copy_object(info.view, summary.key, target, summary.key)
        count += 1
    return count
