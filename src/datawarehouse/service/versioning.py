"""Bucket versioning with S3's semantics.

A bucket starts unversioned; ``Enabled`` and ``Suspended`` are stored as the bucket setting
``versioning`` (journaled like every setting) and it never goes back to unversioned.

* Every write gets a unique, time-ordered version id. Written while the bucket is unversioned or
  suspended, the version is the key's "null" version (``ObjectVersion.null_version``; clients see
  the id ``null``) and replaces the key's previous null version; written while enabled, it is
  added and the previous latest becomes noncurrent. The decision is taken inside the commit
  (``catalog.apply_object_put``) and recorded in the journal document.
* A DELETE without a version id removes the null version of an unversioned bucket; otherwise it
  adds a delete marker (a "null" one when suspended, replacing the null version). A DELETE with a
  version id removes that version (or marker) permanently; the next newest becomes the latest.
* Reads of a key whose latest version is a delete marker answer "no such key"; reads that name a
  delete marker answer "method not allowed" (``DeleteMarkerFound``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datawarehouse.errors import (
    DeleteMarkerFound,
    InvalidBucketState,
    InvalidInput,
    InvalidVersionId,
    MetadataError,
    NoSuchKey,
    NoSuchVersion,
)
from datawarehouse.ids import BucketId, VersionId
from datawarehouse.meta.repo import MetaTx, ObjectRead, VersionSummary
from datawarehouse.records import BucketRecord, ObjectVersion, StorageClass
from datawarehouse.service import catalog
from datawarehouse.service.catalog import VERSIONING_ENABLED, VERSIONING_SETTING, VERSIONING_SUSPENDED
from datawarehouse.service.listing import group_entries

if TYPE_CHECKING:
    from datawarehouse.service.warehouse import Warehouse

NULL = "null"
STATES = (VERSIONING_ENABLED, VERSIONING_SUSPENDED)
_VERSION_ID = re.compile(r"^[0-9a-f]{30}$")  # catalog.new_version_id: 14 + 16 hex digits
MARKER_CLASS = StorageClass(1, 0)  # a delete marker has no bytes; any valid class will do


def parse_version_id(text: str) -> str:
    """``null`` or a version id this server could have issued; ``InvalidVersionId`` otherwise."""
    if text == NULL or _VERSION_ID.match(text):
        return text
    raise InvalidVersionId("Invalid version id specified")


@dataclass(frozen=True)
class DeleteOutcome:
    """What a delete did, as S3 reports it: the version id removed or created (``None``: no
    header) and whether that version is a delete marker."""

    version_id: str | None
    delete_marker: bool
    removed: bool  # something was removed or a marker added

    def __bool__(self) -> bool:
        return self.removed


def versioning_state(tx: MetaTx, bucket_id: BucketId) -> str | None:
    return tx.get_bucket_setting(bucket_id, VERSIONING_SETTING)


def get_versioning(wh: Warehouse, bucket: str) -> str | None:
    """``Enabled``, ``Suspended``, or ``None`` for a bucket that never had versioning enabled."""
    return wh.get_bucket_setting(bucket, VERSIONING_SETTING)


def set_versioning(wh: Warehouse, bucket: str, status: str) -> None:
    if status not in STATES:
        raise InvalidInput(f"versioning status must be Enabled or Suspended (got {status!r})")
    if status == VERSIONING_SUSPENDED:
        from datawarehouse.service import objectlock

        if objectlock.lock_enabled(wh, bucket):
            raise InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
            )
    wh.set_bucket_setting(bucket, VERSIONING_SETTING, status)


# --- deletes ---------------------------------------------------------------------------------------


def _marker(rec: BucketRecord, key: str, wh: Warehouse) -> ObjectVersion:
    now = wh.engine.now()
    return ObjectVersion(
        bucket_id=rec.bucket_id,
        key=key,
        version_id=catalog.new_version_id(now),
        size=0,
        etag="",
        created_at=now,
        storage_class=MARKER_CLASS,
        chunker=wh.engine.config.chunker,
        is_delete_marker=True,
        null_version=False,  # decided in the commit
    )


def delete_object(
    wh: Warehouse, bucket: str, key: str, version_id: str | None = None, *, bypass_governance: bool = False
) -> DeleteOutcome:
    """DeleteObject: see the module docstring. A version id that the key does not have (or a key
    with nothing to remove) is not an error, as in S3."""
    if version_id is not None:
        version_id = parse_version_id(version_id)
    rec = wh.get_bucket(bucket)
    now = wh.engine.now()
    docs: list[dict[str, Any]] = []

    def remove(tx: MetaTx, target: ObjectVersion) -> DeleteOutcome:
        doc = {
            "op": "object.delete",
            "domain_id": rec.domain_id,
            "bucket_id": rec.bucket_id,
            "key": key,
            "version_id": target.version_id,
            "at": now.isoformat(),
            "bypass_governance": bypass_governance,
        }
        docs.append(doc)
        catalog.apply_object_delete(tx, doc, replay=False)
        return DeleteOutcome(target.s3_version_id if version_id is not None else None, target.is_delete_marker, True)

    def apply(tx: MetaTx) -> DeleteOutcome:
        docs.clear()
        if version_id is not None:
            target = find_version(tx, rec.bucket_id, key, version_id)
            if target is None:
                raise NoSuchVersion("nothing to delete")
            return remove(tx, target)
        state = versioning_state(tx, rec.bucket_id)
        if state is None:
            current = tx.get_version(rec.bucket_id, key)  # NoSuchKey: nothing to delete
            return remove(tx, current)
        marker = _marker(rec, key, wh)
        doc = {
            "op": "object.put",
            "domain_id": rec.domain_id,
            "replace": True,
            "version": catalog.version_to_doc(marker),
            "new_chunks": [],
            "bypass_governance": bypass_governance,
        }
        docs.append(doc)
        stored = catalog.apply_object_put(tx, doc, replay=False)
        if stored is None:  # only replay skips
            raise MetadataError("delete marker was not stored")
        return DeleteOutcome(stored.s3_version_id, True, True)

    try:
        outcome: DeleteOutcome = wh.engine.commit(apply, rec.domain_id, lambda: docs[-1], announce=False)
    except NoSuchVersion:
        return DeleteOutcome(version_id, False, False)
    except NoSuchKey:
        return DeleteOutcome(None, False, False)
    return outcome


def find_version(tx: MetaTx, bucket_id: BucketId, key: str, version_id: str) -> ObjectVersion | None:
    """The version a client names (``null`` or an id), or ``None``."""
    if version_id == NULL:
        return tx.get_null_version(bucket_id, key)
    try:
        return tx.get_version(bucket_id, key, VersionId(version_id))
    except NoSuchKey:
        return None


# --- reads ---------------------------------------------------------------------------------------


def open_version(wh: Warehouse, bucket: str, key: str, version_id: str, chunk_head: int) -> ObjectRead:
    """Bucket, the named version and the records of its first ``chunk_head`` chunks, from one
    snapshot. ``NoSuchVersion`` for an id the key does not have; ``DeleteMarkerFound`` (named)
    for a delete marker."""
    version_id = parse_version_id(version_id)
    with wh.engine.repo.read() as tx:
        rec = tx.get_bucket(bucket)
        v = find_version(tx, rec.bucket_id, key, version_id)
        if v is None:
            raise NoSuchVersion(f"key {key!r} has no version {version_id}")
        if v.is_delete_marker:
            raise DeleteMarkerFound("the version is a delete marker", v.s3_version_id, named=True)
        head = [c.chunk_id for c in v.chunks[:chunk_head]] if v.inline_data is None else []
        chunks = tx.get_chunks(rec.domain_id, head) if head else {}
        return ObjectRead(rec, v, chunks)


# --- ListObjectVersions --------------------------------------------------------------------------------


@dataclass
class VersionPage:
    entries: list[VersionSummary] = field(default_factory=list)  # versions and markers, in order
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key: str | None = None
    next_version: str | None = None  # None after a common prefix

    @property
    def count(self) -> int:
        return len(self.entries) + len(self.common_prefixes)


def list_versions(
    wh: Warehouse, bucket: str, prefix: str, delimiter: str, key_marker: str, version_marker: str, max_keys: int
) -> VersionPage:
    """Up to ``max_keys`` versions, delete markers and common prefixes after the markers, from one
    snapshot: keys in UTF-8 binary order, each key's versions newest first."""
    if version_marker:
        version_marker = parse_version_id(version_marker)
    with wh.engine.repo.read() as tx:
        bucket_id = tx.get_bucket(bucket).bucket_id
        if max_keys <= 0:
            return VersionPage()
        after_version: VersionId | None = None
        if version_marker == NULL:
            null = tx.get_null_version(bucket_id, key_marker)
            after_version = null.version_id if null is not None else None
        elif version_marker:
            after_version = VersionId(version_marker)
        # The same grouping as ListObjects (batches that shrink while keys fold into a common
        # prefix, seeks past it), with a cursor of (key, version): ``None`` skips the whole key.
        page = group_entries(
            lambda cursor, limit: tx.list_versions(bucket_id, prefix, cursor[0], cursor[1], limit),
            prefix,
            delimiter,
            (key_marker, after_version),
            key_marker if after_version is None else None,
            max_keys,
            resume=_after_version,
            seek=_after_key,
        )
    last = page.last_entry
    return VersionPage(
        entries=page.contents,
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        next_key=page.last,
        next_version=None if last is None else last.s3_version_id,
    )


def _after_version(v: VersionSummary) -> tuple[str, VersionId | None]:
    return v.key, v.version_id


def _after_key(key: str) -> tuple[str, VersionId | None]:
    return key, None
