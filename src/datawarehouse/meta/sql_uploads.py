"""SQL for multipart uploads, their parts, object tags and per-bucket settings documents.

A mixin of ``SqlMetaTx`` (kept apart so that ``sql.py`` stays readable): it relies on the
transaction's ``_x``/``_rows``/``_first`` helpers and adds the ``MetaTx`` methods of those areas.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from datawarehouse.errors import MetadataError, NoSuchKey
from datawarehouse.ids import BucketId, ChunkId, VersionId
from datawarehouse.meta import schema as s
from datawarehouse.records import ChunkerParams, ChunkRef, PartRecord, StorageClass, UploadRecord

_P = sa.bindparam
_MU = s.multipart_uploads
_MP = s.multipart_parts
_PE = s.part_entries
_BS = s.bucket_settings
_OV = s.object_versions

_GET_UPLOAD = sa.select(_MU).where(_MU.c.upload_id == _P("p_upload"))
_GET_PART = sa.select(_MP).where(_MP.c.upload_id == _P("p_upload"), _MP.c.part_number == _P("p_part"))
_PARTS_AFTER = (
    sa.select(_MP)
    .where(_MP.c.upload_id == _P("p_upload"), _MP.c.part_number > _P("p_after"))
    .order_by(_MP.c.part_number)
    .limit(_P("p_limit"))
)
_PART_ENTRIES = (
    sa.select(_PE.c.part_number, _PE.c.chunk_id, _PE.c.offset, _PE.c.plain_size)
    .where(_PE.c.upload_id == _P("p_upload"))
    .order_by(_PE.c.part_number, _PE.c.seq)
)
_ONE_PART_ENTRIES = (
    sa.select(_PE.c.chunk_id, _PE.c.offset, _PE.c.plain_size)
    .where(_PE.c.upload_id == _P("p_upload"), _PE.c.part_number == _P("p_part"))
    .order_by(_PE.c.seq)
)
_DELETE_PART_ENTRIES = sa.delete(_PE).where(_PE.c.upload_id == _P("p_upload"), _PE.c.part_number == _P("p_part"))
_DELETE_PART = sa.delete(_MP).where(_MP.c.upload_id == _P("p_upload"), _MP.c.part_number == _P("p_part"))
_DELETE_ALL_ENTRIES = sa.delete(_PE).where(_PE.c.upload_id == _P("p_upload"))
_DELETE_ALL_PARTS = sa.delete(_MP).where(_MP.c.upload_id == _P("p_upload"))
_DELETE_UPLOAD = sa.delete(_MU).where(_MU.c.upload_id == _P("p_upload"))
_ALL_UPLOAD_IDS = sa.select(_MU.c.upload_id).order_by(_MU.c.upload_id)
_GET_SETTING = sa.select(_BS.c.value).where(_BS.c.bucket_id == _P("p_bucket"), _BS.c.name == _P("p_name"))
_DELETE_SETTING = sa.delete(_BS).where(_BS.c.bucket_id == _P("p_bucket"), _BS.c.name == _P("p_name"))


def dump_json(meta: Mapping[str, str]) -> str:
    """A string-to-string map as compact, stable JSON (metadata, tags, checksums columns)."""
    return json.dumps(dict(meta), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_json(text: str) -> dict[str, str]:
    if text == "{}":  # most versions have no metadata, tags or checksums: skip the parser
        return {}
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise MetadataError("metadata: a JSON column does not hold an object")
    return {str(k): str(v) for k, v in loaded.items()}


def _upload(row: sa.Row[Any]) -> UploadRecord:
    return UploadRecord(
        upload_id=row.upload_id,
        bucket_id=BucketId(row.bucket_id),
        key=row.key,
        created_at=row.created_at,
        storage_class=StorageClass(row.ec_k, row.ec_m),
        chunker=ChunkerParams(row.chunk_min, row.chunk_avg, row.chunk_max),
        content_type=row.content_type,
        user_meta=load_json(row.user_meta),
        system_meta=load_json(row.system_meta),
        tags=load_json(row.tags),
    )


def _part(row: sa.Row[Any], chunks: tuple[ChunkRef, ...] = ()) -> PartRecord:
    return PartRecord(
        upload_id=row.upload_id,
        part_number=int(row.part_number),
        size=int(row.size),
        etag=row.etag,
        created_at=row.created_at,
        chunks=chunks,
        checksums=load_json(row.checksums),
    )


def _ref(row: sa.Row[Any]) -> ChunkRef:
    return ChunkRef(ChunkId(bytes(row.chunk_id)), int(row.offset), int(row.plain_size))


class UploadsMixin:
    """MetaTx methods for multipart uploads, tags and bucket settings."""

    if TYPE_CHECKING:  # provided by SqlMetaTx

        def _x(self, stmt: sa.Executable, params: Any = None) -> sa.CursorResult[Any]: ...
        def _rows(self, stmt: sa.Executable, params: Any = None) -> list[sa.Row[Any]]: ...
        def _first(self, stmt: sa.Executable, params: Any = None) -> sa.Row[Any] | None: ...

    # --- uploads -------------------------------------------------------------------------------

    def create_upload(self, rec: UploadRecord) -> None:
        """No-op when the upload id exists already (journal replay)."""
        if self._first(_GET_UPLOAD, {"p_upload": rec.upload_id}) is not None:
            return
        self._x(
            sa.insert(_MU),
            {
                "upload_id": rec.upload_id,
                "bucket_id": rec.bucket_id,
                "key": rec.key,
                "created_at": rec.created_at,
                "content_type": rec.content_type,
                "user_meta": dump_json(rec.user_meta),
                "system_meta": dump_json(rec.system_meta),
                "tags": dump_json(rec.tags),
                "ec_k": rec.storage_class.k,
                "ec_m": rec.storage_class.m,
                "chunk_min": rec.chunker.min_size,
                "chunk_avg": rec.chunker.avg_size,
                "chunk_max": rec.chunker.max_size,
            },
        )

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self._first(_GET_UPLOAD, {"p_upload": upload_id})
        return None if row is None else _upload(row)

    def list_uploads(
        self, bucket_id: BucketId, prefix: str = "", key_marker: str = "", upload_id_marker: str = "", limit: int = 1000
    ) -> list[UploadRecord]:
        """In-progress uploads ordered by (key, created_at, upload id), after the markers: keys
        after ``key_marker``, and with ``upload_id_marker`` (an upload of that key) the uploads of
        ``key_marker`` listed after it."""
        stmt = sa.select(_MU).where(_MU.c.bucket_id == bucket_id)
        if prefix:
            stmt = stmt.where(_MU.c.key >= prefix)
        if key_marker:
            after = _MU.c.key > key_marker
            marker = self._first(_GET_UPLOAD, {"p_upload": upload_id_marker}) if upload_id_marker else None
            if marker is not None and marker.key == key_marker and marker.bucket_id == bucket_id:
                later = (_MU.c.created_at > marker.created_at) | (
                    (_MU.c.created_at == marker.created_at) & (_MU.c.upload_id > marker.upload_id)
                )
                after = after | ((_MU.c.key == key_marker) & later)
            stmt = stmt.where(after)
        # Rows past the prefix end the listing (keys are ordered), so the limit can go to SQL.
        stmt = stmt.order_by(_MU.c.key, _MU.c.created_at, _MU.c.upload_id).limit(limit)
        out: list[UploadRecord] = []
        for row in self._rows(stmt):
            if prefix and not row.key.startswith(prefix):
                break
            out.append(_upload(row))
            if len(out) >= limit:
                break
        return out

    def delete_upload(self, upload_id: str) -> list[PartRecord]:
        """Remove the upload and its parts; return the parts (with their chunks) to release."""
        parts = self.get_parts(upload_id)
        params = {"p_upload": upload_id}
        self._x(_DELETE_ALL_ENTRIES, params)
        self._x(_DELETE_ALL_PARTS, params)
        self._x(_DELETE_UPLOAD, params)
        return parts

    def all_upload_ids(self) -> list[str]:
        return [r.upload_id for r in self._rows(_ALL_UPLOAD_IDS)]

    # --- parts ---------------------------------------------------------------------------------

    def put_part(self, part: PartRecord) -> PartRecord | None:
        """Store a part; return the part it replaced (same number), with its chunks, if any."""
        params = {"p_upload": part.upload_id, "p_part": part.part_number}
        old_row = self._first(_GET_PART, params)
        old = None
        if old_row is not None:
            old = _part(old_row, tuple(_ref(r) for r in self._rows(_ONE_PART_ENTRIES, params)))
            self._x(_DELETE_PART_ENTRIES, params)
            self._x(_DELETE_PART, params)
        self._x(
            sa.insert(_MP),
            {
                "upload_id": part.upload_id,
                "part_number": part.part_number,
                "size": part.size,
                "etag": part.etag,
                "created_at": part.created_at,
                "checksums": dump_json(part.checksums),
            },
        )
        if part.chunks:
            self._x(
                sa.insert(_PE),
                [
                    {
                        "upload_id": part.upload_id,
                        "part_number": part.part_number,
                        "seq": i,
                        "chunk_id": c.chunk_id,
                        "offset": c.offset,
                        "plain_size": c.plain_size,
                    }
                    for i, c in enumerate(part.chunks)
                ],
            )
        return old

    def get_part(self, upload_id: str, part_number: int) -> PartRecord | None:
        params = {"p_upload": upload_id, "p_part": part_number}
        row = self._first(_GET_PART, params)
        if row is None:
            return None
        return _part(row, tuple(_ref(r) for r in self._rows(_ONE_PART_ENTRIES, params)))

    def list_parts(self, upload_id: str, after: int = 0, limit: int = 1000) -> list[PartRecord]:
        """Parts numbered above ``after``, without their chunks."""
        return [_part(r) for r in self._rows(_PARTS_AFTER, {"p_upload": upload_id, "p_after": after, "p_limit": limit})]

    def get_parts(self, upload_id: str) -> list[PartRecord]:
        """Every part with its chunks, by part number."""
        entries: dict[int, list[ChunkRef]] = {}
        for row in self._rows(_PART_ENTRIES, {"p_upload": upload_id}):
            entries.setdefault(int(row.part_number), []).append(_ref(row))
        rows = self._rows(_PARTS_AFTER, {"p_upload": upload_id, "p_after": 0, "p_limit": 100_000})
        return [_part(r, tuple(entries.get(int(r.part_number), []))) for r in rows]

    # --- tags and bucket settings ----------------------------------------------------------------

    def set_version_tags(self, bucket_id: BucketId, key: str, version_id: VersionId, tags: dict[str, str]) -> None:
        stmt = (
            sa.update(_OV)
            .where(_OV.c.bucket_id == bucket_id, _OV.c.key == key, _OV.c.version_id == version_id)
            .values(tags=dump_json(tags))
        )
        if self._x(stmt).rowcount != 1:
            raise NoSuchKey(f"key {key!r} version {version_id} does not exist")

    def get_bucket_setting(self, bucket_id: BucketId, name: str) -> str | None:
        row = self._first(_GET_SETTING, {"p_bucket": bucket_id, "p_name": name})
        return None if row is None else str(row.value)

    def put_bucket_setting(self, bucket_id: BucketId, name: str, value: str) -> None:
        self._x(_DELETE_SETTING, {"p_bucket": bucket_id, "p_name": name})
        self._x(sa.insert(_BS), {"bucket_id": bucket_id, "name": name, "value": value})

    def delete_bucket_setting(self, bucket_id: BucketId, name: str) -> bool:
        return bool(self._x(_DELETE_SETTING, {"p_bucket": bucket_id, "p_name": name}).rowcount)
