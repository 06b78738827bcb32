"""SQL for bucket usage: the trigger-maintained counters (migration 0005) and the stored-bytes
scan. A mixin of ``SqlMetaTx`` like ``sql_uploads``: it relies on the transaction's ``_first``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from datawarehouse.ids import BucketId
from datawarehouse.meta import schema as s
from datawarehouse.meta.repo import BucketUsage, StoredUsage

_P = sa.bindparam
_BU = s.bucket_usage
_OV = s.object_versions
_ME = s.manifest_entries
_CH = s.chunks
_BK = s.buckets
_MU = s.multipart_uploads
_PE = s.part_entries

_USAGE = sa.select(_BU.c.objects, _BU.c.bytes, _BU.c.upload_parts, _BU.c.upload_bytes).where(
    _BU.c.bucket_id == _P("p_bucket")
)

# The distinct chunk ids the bucket references (versions' manifests and upload parts), joined to
# their chunk rows in the bucket's domain.
_REFERENCED = sa.union(
    sa.select(_ME.c.chunk_id).join(_OV, _OV.c.version_pk == _ME.c.version_pk).where(_OV.c.bucket_id == _P("p_bucket")),
    sa.select(_PE.c.chunk_id).join(_MU, _MU.c.upload_id == _PE.c.upload_id).where(_MU.c.bucket_id == _P("p_bucket")),
).subquery()
_STORED = (
    sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(_CH.c.sealed_size), 0),
        sa.func.coalesce(sa.func.sum(_CH.c.sealed_size * (_CH.c.ec_k + _CH.c.ec_m) // _CH.c.ec_k), 0),
    )
    .select_from(_REFERENCED)
    .join(_CH, _CH.c.chunk_id == _REFERENCED.c.chunk_id)
    .where(_CH.c.domain_id == sa.select(_BK.c.domain_id).where(_BK.c.bucket_id == _P("p_bucket")).scalar_subquery())
)
_INLINE = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(_OV.c.inline_data)), 0)).where(
    _OV.c.bucket_id == _P("p_bucket"), _OV.c.inline_data.is_not(None)
)


class UsageMixin:
    if TYPE_CHECKING:

        def _first(self, stmt: sa.Executable, params: Any = None) -> sa.Row[Any] | None: ...

    def bucket_usage(self, bucket_id: BucketId) -> BucketUsage:
        row = self._first(_USAGE, {"p_bucket": bucket_id})
        if row is None:
            return BucketUsage()
        objects, size, parts, part_bytes = tuple(row)
        return BucketUsage(int(objects), int(size), int(parts), int(part_bytes))

    def bucket_stored_usage(self, bucket_id: BucketId) -> StoredUsage:
        params = {"p_bucket": bucket_id}
        row = self._first(_STORED, params)
        inline = self._first(_INLINE, params)
        chunks, sealed, raw = tuple(row) if row is not None else (0, 0, 0)
        (inline_bytes,) = tuple(inline) if inline is not None else (0,)
        return StoredUsage(int(chunks), int(sealed), int(raw), int(inline_bytes))
