"""The statements of the SQL metadata repository, compiled once at import, and the conversions
between their rows and the records of ``datawarehouse.records``.

Shared by the transaction (``sql_tx``) and the repository's hot read (``sql``); package-private,
hence the leading underscores. Error translation lives here too, so that every module of the
repository maps SQLAlchemy errors the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from datawarehouse.errors import DwhError, InvalidInput, MetadataError
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, TenantId, UserId, VersionId
from datawarehouse.meta import schema as s
from datawarehouse.meta.keyrange import bounds
from datawarehouse.meta.rawread import RawBulkStatement, RawStatement
from datawarehouse.meta.sql_uploads import dump_json as _dump_meta
from datawarehouse.meta.sql_uploads import load_json as _load_meta
from datawarehouse.records import BucketRecord, ChunkerParams, ChunkRecord, ChunkRef, ObjectVersion, StorageClass

# --- error translation -------------------------------------------------------------------------


def _translate(exc: BaseException, doing: str) -> DwhError:
    """Map a SQLAlchemy/DBAPI error to the DwhError tree (once, here).

    Only the driver's message is kept: ``str(exc)`` of a SQLAlchemy error includes bound
    parameters, which may be wrapped key material.
    """
    orig = getattr(exc, "orig", None)
    if isinstance(orig, DwhError):  # raised by a type's bind processor (e.g. a naive datetime)
        return orig
    detail = str(orig) if orig is not None else type(exc).__name__
    if isinstance(exc, sa_exc.OperationalError) and ("locked" in detail or "busy" in detail):
        return MetadataError(f"metadata: {doing}: database is locked by another writer ({detail})")
    return MetadataError(f"metadata: {doing}: {type(orig or exc).__name__}: {detail}")


# --- small conversions -------------------------------------------------------------------------


def _storage_class(k: int | None, m: int | None) -> StorageClass | None:
    return None if k is None or m is None else _class_of(k, m)


@functools.lru_cache(maxsize=32)
def _bulk_statement(stmt: sa.Insert | sa.Update, dialect: sa.Dialect, keys: tuple[str, ...] | None) -> RawBulkStatement:
    return RawBulkStatement(stmt, dialect, keys)


@functools.lru_cache(maxsize=256)
def _class_of(k: int, m: int) -> StorageClass:
    """Frozen records shared between rows: every read of a version builds one, and validating
    the same (k, m) and chunker bounds again each time cost more than the SQL of a small GET."""
    return StorageClass(k, m)


@functools.lru_cache(maxsize=256)
def _chunker_of(min_size: int, avg_size: int, max_size: int) -> ChunkerParams:
    return ChunkerParams(min_size, avg_size, max_size)


def _bucket(row: sa.Row[Any]) -> BucketRecord:
    return BucketRecord(
        bucket_id=BucketId(row.bucket_id),
        domain_id=DomainId(row.domain_id),
        name=row.name,
        created_at=row.created_at,
        storage_class=_storage_class(row.ec_k, row.ec_m),
        tenant_id=TenantId(row.tenant_id),
        owner_user_id=None if row.owner_user_id is None else UserId(row.owner_user_id),
    )


def _chunk(row: sa.Row[Any], placement: tuple[DiskId, ...]) -> ChunkRecord:
    return ChunkRecord(
        domain_id=DomainId(row.domain_id),
        chunk_id=ChunkId(bytes(row.chunk_id)),
        generation=row.generation,
        plain_size=row.plain_size,
        sealed_size=row.sealed_size,
        k=row.ec_k,
        m=row.ec_m,
        refcount=row.refcount,
        created_at=row.created_at,
        zero_since=row.zero_since,
        placement=placement,
    )


def _version(row: sa.Row[Any], chunks: tuple[ChunkRef, ...]) -> ObjectVersion:
    return ObjectVersion(
        bucket_id=BucketId(row.bucket_id),
        key=row.key,
        version_id=VersionId(row.version_id),
        size=row.size,
        etag=row.etag,
        created_at=row.created_at,
        storage_class=_class_of(row.ec_k, row.ec_m),
        chunker=_chunker_of(row.chunk_min, row.chunk_avg, row.chunk_max),
        content_type=row.content_type,
        user_meta=_load_meta(row.user_meta),
        inline_data=None if row.inline_data is None else bytes(row.inline_data),
        chunks=chunks,
        is_delete_marker=bool(row.is_delete_marker),
        system_meta=_load_meta(row.system_meta),
        tags=_load_meta(row.tags),
        null_version=bool(row.is_null),
        lock_mode=row.lock_mode,
        lock_until=row.lock_until,
        legal_hold=None if row.legal_hold is None else bool(row.legal_hold),
    )


def _chunk_ref(row: sa.Row[Any]) -> ChunkRef:
    return ChunkRef(chunk_id=ChunkId(bytes(row.chunk_id)), offset=row.offset, plain_size=row.plain_size)


def _version_values(version: ObjectVersion, *, is_latest: bool) -> dict[str, Any]:
    """The ``object_versions`` row of a version (its primary key is generated)."""
    return {
        "bucket_id": version.bucket_id,
        "key": version.key,
        "version_id": version.version_id,
        "is_latest": is_latest,
        "is_delete_marker": version.is_delete_marker,
        "size": version.size,
        "etag": version.etag,
        "content_type": version.content_type,
        "user_meta": _dump_meta(version.user_meta),
        "created_at": version.created_at,
        "ec_k": version.storage_class.k,
        "ec_m": version.storage_class.m,
        "chunk_min": version.chunker.min_size,
        "chunk_avg": version.chunker.avg_size,
        "chunk_max": version.chunker.max_size,
        "inline_data": version.inline_data,
        "system_meta": _dump_meta(version.system_meta),
        "tags": _dump_meta(version.tags),
        "is_null": version.null_version,
        "lock_mode": version.lock_mode,
        "lock_until": version.lock_until,
        "legal_hold": version.legal_hold,
    }


def _manifest_values(version_pk: int, version: ObjectVersion) -> list[dict[str, Any]]:
    return [
        {
            "version_pk": version_pk,
            "seq": seq,
            "chunk_id": ref.chunk_id,
            "offset": ref.offset,
            "plain_size": ref.plain_size,
        }
        for seq, ref in enumerate(version.chunks)
    ]


def _check_count(count: int, what: str) -> None:
    if count < 0:
        raise InvalidInput(f"{what}: reference count change must be >= 0 (got {count})")


# --- statements --------------------------------------------------------------------------------
#
# Built once, with bound parameters (``:p_*``) supplied at execution. Building a Core statement
# per call costs more than executing it (coercion and cache-key generation dominate a profile);
# a prebuilt one hits SQLAlchemy's compiled cache directly.

_P = sa.bindparam
_OV = s.object_versions
_ME = s.manifest_entries
_CH = s.chunks
_SH = s.shards
_BK = s.buckets
_HQ = s.heal_queue
_VERSION_COLUMNS: Final = list(_OV.c)
_PK_CHUNK = sa.and_(_CH.c.domain_id == _P("p_domain"), _CH.c.chunk_id == _P("p_chunk"))

_GET_SETTING = sa.select(s.settings.c.value).where(s.settings.c.name == _P("p_name"))
_TENANT_OF = sa.select(s.domains.c.tenant_id).where(s.domains.c.domain_id == _P("p_domain"))
_LIST_SECRETS = sa.select(s.domain_secrets).order_by(s.domain_secrets.c.domain_id, s.domain_secrets.c.key_version)
_LIST_DISKS = sa.select(s.disks).order_by(s.disks.c.added_at, s.disks.c.disk_id)
_SET_DISK_STATE = sa.update(s.disks).where(s.disks.c.disk_id == _P("p_disk")).values(state=_P("p_state"))

# Buckets are named within a tenant, and callers name the tenant (ids.split_bucket_name): one
# statement resolves both.
_TENANT_ID_BY_NAME = sa.select(s.tenants.c.tenant_id).where(s.tenants.c.name == _P("p_tenant")).scalar_subquery()
_BUCKET_BY_NAME = sa.select(_BK).where(_BK.c.tenant_id == _TENANT_ID_BY_NAME, _BK.c.name == _P("p_name"))
_BUCKET_IN_TENANT = sa.select(_BK.c.bucket_id).where(_BK.c.tenant_id == _P("p_tenant_id"), _BK.c.name == _P("p_name"))
_BUCKET_BY_ID = sa.select(_BK).where(_BK.c.bucket_id == _P("p_bucket"))
_LIST_BUCKETS = sa.select(_BK).order_by(_BK.c.name, _BK.c.bucket_id)
_LIST_TENANT_BUCKETS = sa.select(_BK).where(_BK.c.tenant_id == _TENANT_ID_BY_NAME).order_by(_BK.c.name, _BK.c.bucket_id)
_INSERT_BUCKET = sa.insert(_BK)
_DELETE_BUCKET = sa.delete(_BK).where(_BK.c.bucket_id == _P("p_bucket"))
_ANY_VERSION = sa.select(_OV.c.version_pk).where(_OV.c.bucket_id == _P("p_bucket")).limit(1)
_ANY_UPLOAD = (
    sa.select(s.multipart_uploads.c.upload_id).where(s.multipart_uploads.c.bucket_id == _P("p_bucket")).limit(1)
)

_VERSION_PK_BY_ID = sa.select(_OV.c.version_pk).where(_OV.c.version_id == _P("p_version"))
_UNSET_LATEST = (
    sa.update(_OV)
    .where(_OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.is_latest == sa.true())
    .values(is_latest=False)
)
_INSERT_VERSION = sa.insert(_OV)
_INSERT_MANIFEST = sa.insert(_ME)


# Group commit of new versions: in one statement, whether the bucket exists and which keys of a
# batch have a latest version (no row: no bucket; a NULL key: none of them); then the versions:
# on PostgreSQL one multi-row INSERT .. RETURNING for the whole batch (SQLAlchemy's
# "insertmanyvalues"), on SQLite one raw INSERT per version, its key from ``lastrowid``.
def _latest_keys_stmt(key_matches: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(_BK.c.bucket_id, _OV.c.key)
        .select_from(
            _BK.outerjoin(_OV, sa.and_(_OV.c.bucket_id == _BK.c.bucket_id, key_matches, _OV.c.is_latest == sa.true()))
        )
        .where(_BK.c.bucket_id == _P("p_bucket"))
    )


_LATEST_KEYS = _latest_keys_stmt(_OV.c.key.in_(_P("p_keys", expanding=True)))
_INSERT_VERSIONS = sa.insert(_OV).returning(_OV.c.version_pk, _OV.c.version_id)


@functools.lru_cache(maxsize=1024)
def _latest_keys_raw(count: int, dialect: sa.Dialect) -> RawStatement:
    """``_LATEST_KEYS`` for exactly ``count`` keys, compiled once (the raw path cannot expand an
    IN list at execution). Parameters: the keys in order, then the bucket id."""
    keys: list[sa.BindParameter[Any]] = [sa.bindparam(f"p_k{i}") for i in range(count)]
    # No keys: the statement only tells whether the bucket exists.
    raw = RawStatement(_latest_keys_stmt(_OV.c.key.in_(keys) if keys else sa.false()), dialect)
    if raw.params != (*(f"p_k{i}" for i in range(count)), "p_bucket"):
        raise MetadataError("metadata: unexpected parameter order in the latest-keys statement")
    return raw


_MANIFEST = (
    sa.select(_ME.c.chunk_id, _ME.c.offset, _ME.c.plain_size).where(_ME.c.version_pk == _P("p_pk")).order_by(_ME.c.seq)
)
_LATEST_VERSION = sa.select(*_VERSION_COLUMNS).where(
    _OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.is_latest == sa.true()
)
_NAMED_VERSION = sa.select(*_VERSION_COLUMNS).where(
    _OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"), _OV.c.version_id == _P("p_version")
)
_DELETE_MANIFEST = sa.delete(_ME).where(_ME.c.version_pk == _P("p_pk"))
_DELETE_VERSION = sa.delete(_OV).where(_OV.c.version_pk == _P("p_pk"))
_NEXT_NEWEST = (
    sa.select(_OV.c.version_pk)
    .where(_OV.c.bucket_id == _P("p_bucket"), _OV.c.key == _P("p_key"))
    .order_by(_OV.c.created_at.desc(), _OV.c.version_id.desc())
    .limit(1)
)
_SET_LATEST = sa.update(_OV).where(_OV.c.version_pk == _P("p_pk")).values(is_latest=True)
_COUNT_VERSIONS = sa.select(sa.func.count().label("n")).select_from(_OV).where(_OV.c.bucket_id == _P("p_bucket"))
_VERSION_PAGE = (
    sa.select(*_VERSION_COLUMNS)
    .where(_OV.c.version_pk > _P("p_after"))
    .order_by(_OV.c.version_pk)
    .limit(_P("p_limit", type_=sa.Integer))
)
_MANIFEST_RANGE = (
    sa.select(_ME.c.version_pk, _ME.c.chunk_id, _ME.c.offset, _ME.c.plain_size)
    .where(_ME.c.version_pk >= _P("p_first"), _ME.c.version_pk <= _P("p_last"))
    .order_by(_ME.c.version_pk, _ME.c.seq)
)


@functools.lru_cache(maxsize=8)
def _list_objects_raw(inclusive_lower: bool, has_end: bool, dialect: sa.Dialect) -> RawStatement:
    return RawStatement(_list_objects_stmt(inclusive_lower, has_end), dialect)


@functools.cache
def _list_objects_stmt(inclusive_lower: bool, has_end: bool) -> sa.Select[Any]:
    """One range scan of ix (bucket_id, is_latest, key) over a ``KeyRange``."""
    conds: list[sa.ColumnElement[bool]] = [_OV.c.bucket_id == _P("p_bucket"), _OV.c.is_latest == sa.true()]
    conds += bounds(_OV.c.key, inclusive_lower, has_end)
    conds.append(_OV.c.is_delete_marker == sa.false())
    return (
        sa.select(_OV.c.key, _OV.c.version_id, _OV.c.size, _OV.c.etag, _OV.c.created_at)
        .where(*conds)
        .order_by(_OV.c.key)
        .limit(_P("p_limit", type_=sa.Integer))
    )


_GET_CHUNK = sa.select(_CH).where(_PK_CHUNK)
_CHUNK_REFCOUNT = sa.select(_CH.c.refcount).where(_PK_CHUNK)
_GET_CHUNKS = sa.select(_CH).where(
    _CH.c.domain_id == _P("p_domain"), _CH.c.chunk_id.in_(_P("p_chunks", expanding=True))
)
_INSERT_SHARDS = sa.insert(_SH)
_PLACEMENTS = (
    sa.select(_SH.c.chunk_id, _SH.c.shard_index, _SH.c.disk_id)
    .where(_SH.c.domain_id == _P("p_domain"), _SH.c.chunk_id.in_(_P("p_chunks", expanding=True)))
    .order_by(_SH.c.chunk_id, _SH.c.shard_index)
)
_INCREF = (
    sa.update(_CH)
    .where(_PK_CHUNK)
    .values(refcount=_CH.c.refcount + _P("p_count", type_=sa.BigInteger), zero_since=None)
)
_CHUNK_EXISTS = sa.select(_CH.c.refcount).where(_PK_CHUNK)
_EXISTING_CHUNKS = sa.select(_CH.c.chunk_id).where(
    _CH.c.domain_id == _P("p_domain"), _CH.c.chunk_id.in_(_P("p_chunks", expanding=True))
)
_INSERT_CHUNK = sa.insert(_CH)
_CHUNK_COLUMNS = (
    "domain_id",
    "chunk_id",
    "generation",
    "plain_size",
    "sealed_size",
    "ec_k",
    "ec_m",
    "refcount",
    "created_at",
    "zero_since",
)
_SHARD_COLUMNS = ("domain_id", "chunk_id", "shard_index", "disk_id")


def _chunk_row(rec: ChunkRecord) -> dict[str, Any]:
    return {
        "domain_id": rec.domain_id,
        "chunk_id": rec.chunk_id,
        "generation": rec.generation,
        "plain_size": rec.plain_size,
        "sealed_size": rec.sealed_size,
        "ec_k": rec.k,
        "ec_m": rec.m,
        "refcount": rec.refcount,
        "created_at": rec.created_at,
        "zero_since": rec.zero_since,
    }


def _placement_rows(rec: ChunkRecord) -> list[dict[str, Any]]:
    """One row per placed shard; an empty disk id (a shard that is missing) gets no row and reads
    back as "" at its index."""
    return [
        {"domain_id": rec.domain_id, "chunk_id": rec.chunk_id, "shard_index": i, "disk_id": disk}
        for i, disk in enumerate(rec.placement)
        if disk
    ]


_REFCOUNT_FOR_UPDATE = sa.select(_CH.c.refcount).where(_PK_CHUNK).with_for_update()
_SET_COUNT = sa.update(_CH).where(_PK_CHUNK).values(refcount=_P("p_refcount", type_=sa.BigInteger))
_SET_COUNT_AND_ZERO = (
    sa.update(_CH)
    .where(_PK_CHUNK)
    .values(refcount=_P("p_refcount", type_=sa.BigInteger), zero_since=_P("p_zero", type_=s.UTCDateTime))
)
_TOUCH = sa.update(_CH).where(_PK_CHUNK, _CH.c.refcount == 0).values(zero_since=_P("p_at", type_=s.UTCDateTime))
_CHUNK_WIDTH = sa.select(_CH.c.ec_k, _CH.c.ec_m).where(_PK_CHUNK)
_LIST_CHUNKS_FIRST = sa.select(_CH).order_by(_CH.c.domain_id, _CH.c.chunk_id).limit(_P("p_limit", type_=sa.Integer))
_LIST_CHUNKS_AFTER = (
    sa.select(_CH)
    .where(
        sa.tuple_(_CH.c.domain_id, _CH.c.chunk_id)
        > sa.tuple_(_P("p_domain", type_=sa.BigInteger), _P("p_chunk", type_=sa.LargeBinary))
    )
    .order_by(_CH.c.domain_id, _CH.c.chunk_id)
    .limit(_P("p_limit", type_=sa.Integer))
)
_COLLECTABLE = (
    sa.select(_CH)
    .where(_CH.c.refcount == 0, _CH.c.zero_since < _P("p_before", type_=s.UTCDateTime))
    .order_by(_CH.c.zero_since, _CH.c.domain_id, _CH.c.chunk_id)
    .limit(_P("p_limit", type_=sa.Integer))
)
_STILL_COLLECTABLE = (
    sa.select(_CH.c.refcount)
    .where(
        _PK_CHUNK,
        _CH.c.refcount == 0,
        _CH.c.zero_since.is_not(None),
        _CH.c.zero_since < _P("p_before", type_=s.UTCDateTime),
    )
    .with_for_update()
)
_DELETE_SHARDS = sa.delete(_SH).where(_SH.c.domain_id == _P("p_domain"), _SH.c.chunk_id == _P("p_chunk"))
_DELETE_SHARD = sa.delete(_SH).where(
    _SH.c.domain_id == _P("p_domain"), _SH.c.chunk_id == _P("p_chunk"), _SH.c.shard_index == _P("p_index")
)
_DELETE_HEAL = sa.delete(_HQ).where(_HQ.c.domain_id == _P("p_domain"), _HQ.c.chunk_id == _P("p_chunk"))
_DELETE_CHUNK = sa.delete(_CH).where(_PK_CHUNK)
_SHARD_COUNTS = sa.select(_SH.c.disk_id, sa.func.count().label("n")).group_by(_SH.c.disk_id)
_CHUNK_COUNT = sa.select(sa.func.count().label("n")).select_from(_CH)
_STORED_TOTAL = sa.select(sa.func.coalesce(sa.func.sum(_CH.c.sealed_size), 0).label("n"))
_LIST_HEAL = (
    sa.select(_HQ).order_by(_HQ.c.queued_at, _HQ.c.domain_id, _HQ.c.chunk_id).limit(_P("p_limit", type_=sa.Integer))
)
_JOURNAL_POSITIONS = sa.select(s.journal_positions)

# PostgreSQL only. A sequence does not move when a row is inserted with an explicit id (journal
# replay of a bucket): advance it past that id, never backwards, so ids are never handed out twice.
_PG_ADVANCE_BUCKET_SEQ = sa.text(
    "SELECT setval(pg_get_serial_sequence('buckets', 'bucket_id'), :p_id) "
    "WHERE :p_id > COALESCE(pg_sequence_last_value(pg_get_serial_sequence('buckets', 'bucket_id')::regclass), 0)"
).bindparams(sa.bindparam("p_id", type_=sa.BigInteger))
# Every transaction may write, and the contract promises that writers serialise (as SQLite's
# BEGIN IMMEDIATE does): all transactions take one transaction-scoped advisory lock first.
_PG_WRITER_LOCK_KEY: Final = 0x4457_484D_4554_41  # "DWHMETA"
_PG_WRITER_LOCK = sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("p_key", type_=sa.BigInteger)))


@functools.cache
def _upsert_stmt(table: sa.Table, keys: tuple[str, ...], pg: bool) -> sa.Executable:
    """INSERT .. ON CONFLICT (keys) DO UPDATE SET <other columns> = excluded.<column>: one
    statement on both backends; the row's values are bound at execution."""
    ins = postgresql.insert(table) if pg else sqlite.insert(table)
    return ins.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in keys},
    )


@functools.cache
def _insert_ignore_stmt(table: sa.Table, keys: tuple[str, ...], pg: bool) -> sa.Executable:
    """INSERT .. ON CONFLICT (keys) DO NOTHING."""
    ins = postgresql.insert(table) if pg else sqlite.insert(table)
    # rowcount tells whether the row went in; SQLAlchemy keeps it for INSERT only when asked
    return ins.on_conflict_do_nothing(index_elements=list(keys)).execution_options(preserve_rowcount=True)
