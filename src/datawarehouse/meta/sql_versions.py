"""SQL for bucket versioning: the "null" version of a key, and the versions of a bucket in
ListObjectVersions order (key, then newest first).

A mixin of ``SqlMetaTx`` (as ``sql_uploads.py``): it relies on the transaction's helpers and
adds the ``MetaTx`` methods of this area. Version ids are time-ordered (microseconds, then random
bits), so "newest first" is ``version_id`` descending — one range scan of the
(bucket_id, key, version_id) index.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from datawarehouse.errors import NoSuchKey
from datawarehouse.ids import BucketId, VersionId
from datawarehouse.meta import schema as s
from datawarehouse.meta.keyrange import bounds, key_range
from datawarehouse.meta.repo import VersionSummary
from datawarehouse.records import ObjectVersion

_P = sa.bindparam
_OV = s.object_versions

_NULL_VERSION_ID = sa.select(_OV.c.version_id).where(
    _OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.is_null == sa.true()
)
_SET_LOCK = (
    sa.update(_OV)
    .where(_OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.version_id == _P("p_version"))
    .values(lock_mode=_P("p_mode"), lock_until=_P("p_until", type_=s.UTCDateTime), legal_hold=_P("p_hold"))
)
_SUMMARY_COLUMNS = (
    _OV.c.key,
    _OV.c.version_id,
    _OV.c.is_null,
    _OV.c.is_latest,
    _OV.c.is_delete_marker,
    _OV.c.size,
    _OV.c.etag,
    _OV.c.created_at,
)
# the rest of one key's versions, older than a version id
_OLDER_OF_KEY = (
    sa.select(*_SUMMARY_COLUMNS)
    .where(_OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.version_id < _P("p_version"))
    .order_by(_OV.c.version_id.desc())
    .limit(_P("p_limit", type_=sa.Integer))
)


@functools.cache
def _keys_after(inclusive_lower: bool, has_end: bool) -> sa.Select[Any]:
    """One range scan of ix (bucket_id, key, version_id) over a ``KeyRange``."""
    conds = [_OV.c.bucket_id == _P("p_bucket"), *bounds(_OV.c.key, inclusive_lower, has_end)]
    return (
        sa.select(*_SUMMARY_COLUMNS)
        .where(*conds)
        .order_by(_OV.c.key, _OV.c.version_id.desc())
        .limit(_P("p_limit", type_=sa.Integer))
    )


def _summary(row: sa.Row[Any]) -> VersionSummary:
    return VersionSummary(
        key=row.key,
        version_id=VersionId(row.version_id),
        null_version=bool(row.is_null),
        is_latest=bool(row.is_latest),
        is_delete_marker=bool(row.is_delete_marker),
        size=int(row.size),
        etag=row.etag,
        created_at=row.created_at,
    )


class VersionsMixin:
    """MetaTx methods for versioned buckets."""

    if TYPE_CHECKING:  # provided by SqlMetaTx

        def _x(self, stmt: sa.Executable, params: Any = None) -> sa.CursorResult[Any]: ...
        def _rows(self, stmt: sa.Executable, params: Any = None) -> list[sa.Row[Any]]: ...
        def _first(self, stmt: sa.Executable, params: Any = None) -> sa.Row[Any] | None: ...
        def get_version(self, bucket_id: BucketId, key: str, version_id: VersionId | None = None) -> ObjectVersion: ...

    def get_null_version(self, bucket_id: BucketId, key: str) -> ObjectVersion | None:
        """The key's "null" version (current or not), manifest included; ``None`` if it has none."""
        row = self._first(_NULL_VERSION_ID, {"p_bucket": bucket_id, "p_key": key})
        return None if row is None else self.get_version(bucket_id, key, VersionId(row.version_id))

    def set_version_lock(
        self,
        bucket_id: BucketId,
        key: str,
        version_id: VersionId,
        mode: str | None,
        until: datetime | None,
        legal_hold: bool | None,
    ) -> None:
        """Set a version's retention and legal hold. Raise ``NoSuchKey`` if it does not exist."""
        params = {
            "p_bucket": bucket_id,
            "p_key": key,
            "p_version": version_id,
            "p_mode": mode,
            "p_until": until,
            "p_hold": legal_hold,
        }
        if self._x(_SET_LOCK, params).rowcount == 0:
            raise NoSuchKey(f"key {key!r} version {version_id} does not exist in bucket {bucket_id}")

    def list_versions(
        self,
        bucket_id: BucketId,
        prefix: str = "",
        after_key: str = "",
        after_version: VersionId | None = None,
        limit: int = 1000,
    ) -> list[VersionSummary]:
        """Versions and delete markers under ``prefix`` ordered by key, then newest first,
        strictly after the cursor: with ``after_version``, the older versions of ``after_key``
        come first; without, every version of ``after_key`` is skipped."""
        if limit <= 0:
            return []
        out: list[VersionSummary] = []
        if after_version is not None and after_key.startswith(prefix):
            params = {"p_bucket": bucket_id, "p_key": after_key, "p_version": after_version, "p_limit": limit}
            out.extend(_summary(r) for r in self._rows(_OLDER_OF_KEY, params))
        rng = key_range(prefix, after_key)
        if len(out) < limit and rng is not None:
            params2 = {"p_bucket": bucket_id, "p_limit": limit - len(out), **rng.params()}
            stmt = _keys_after(rng.inclusive, rng.end is not None)
            out.extend(_summary(r) for r in self._rows(stmt, params2))
        return out
