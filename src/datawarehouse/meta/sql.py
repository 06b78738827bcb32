"""``SqlMetaRepo``: the metadata repository on SQLAlchemy Core (SQLite; PostgreSQL passes the same contract).

Why it is built the way it is:

* **Schema only through Alembic.** Opening a repository migrates it to head, in one transaction on
  the repository's own engine; ``schema.py`` is what queries are written against, and a test
  keeps the two equal.
* **SQLite transactions are ``BEGIN IMMEDIATE``.** Every ``transaction()`` may write, so it takes
  the write lock up front: a deferred transaction that reads first and writes later can fail with
  ``SQLITE_BUSY`` without waiting (the upgrade deadlock). pysqlite's own transaction handling is
  switched off (``isolation_level = None``) and the ``begin`` event emits the BEGIN, the recipe
  from the SQLAlchemy SQLite dialect documentation.
* **Writers in this process queue on a lock** before asking SQLite: SQLite admits one writer at a
  time anyway, and its busy handler polls with sleeps of up to 100 ms, which wastes most of the
  throughput when threads of one process contend. ``busy_timeout`` still covers other processes
  (the CLI next to a running server).
* **PostgreSQL keeps the same promise** with a transaction-scoped advisory lock taken right
  after BEGIN: the engine's read-then-write sequences need serialised writers on every backend.
* **WAL + synchronous=FULL**: a committed transaction survives power loss; readers of other
  processes are never blocked by the writer.
* **Foreign exceptions stop here**: every SQLAlchemy/Alembic error leaves as ``MetadataError``
  (or the specific ``DwhError`` the contract names), without SQL parameters in the message.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from datawarehouse.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    DwhError,
    InvalidInput,
    MetadataError,
    NoSuchBucket,
    NoSuchDisk,
    NoSuchKey,
)
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, TenantId, UserId, VersionId, split_bucket_name
from datawarehouse.meta import schema as s
from datawarehouse.meta.keyrange import bounds, key_range
from datawarehouse.meta.rawread import RawBulkStatement, RawSqliteReader, RawStatement
from datawarehouse.meta.repo import DomainSecretRecord, HealItem, ObjectRead, ObjectSummary
from datawarehouse.meta.sql_iam import IamMixin
from datawarehouse.meta.sql_uploads import UploadsMixin
from datawarehouse.meta.sql_uploads import dump_json as _dump_meta
from datawarehouse.meta.sql_uploads import load_json as _load_meta
from datawarehouse.meta.sql_usage import UsageMixin
from datawarehouse.meta.sql_versions import VersionsMixin
from datawarehouse.records import (
    BucketRecord,
    ChunkerParams,
    ChunkRecord,
    ChunkRef,
    DiskRecord,
    DiskState,
    ObjectVersion,
    StorageClass,
)

if TYPE_CHECKING:
    from datawarehouse.meta.repo import MetaRepo, MetaTx

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT: Final = 30.0  # seconds a writer waits for another process's write lock
_BATCH: Final = 500  # rows per IN (...) list / per page of iter_all_versions


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


# --- the transaction ---------------------------------------------------------------------------

_Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class SqlMetaTx(IamMixin, UploadsMixin, UsageMixin, VersionsMixin):
    """One transaction on one connection (see ``MetaTx`` in ``repo.py`` for the contract).

    Every statement goes through ``_x`` so that errors are translated in one place and a
    transaction used after its ``with`` block fails loudly instead of autocommitting.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self._closed = False

    # --- plumbing ------------------------------------------------------------------------------

    def _close(self) -> None:
        self._closed = True

    def _x(self, stmt: sa.Executable, params: _Params = None) -> sa.CursorResult[Any]:
        if self._closed:
            raise MetadataError("metadata: the transaction is finished; open a new one")
        try:
            if params is None:
                return self._conn.execute(stmt)
            if isinstance(params, Mapping):
                return self._conn.execute(stmt, params)
            return self._conn.execute(stmt, list(params))
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e, "statement failed") from e

    def _x_many(
        self, stmt: sa.Insert | sa.Update, rows: list[dict[str, Any]], keys: tuple[str, ...] | None = None
    ) -> None:
        """``executemany`` of ``stmt`` over ``rows`` (each with every parameter, ``keys`` naming
        an INSERT's columns). SQLite: straight on the transaction's DB-API connection with the
        statement compiled once (``RawBulkStatement``); PostgreSQL: through SQLAlchemy."""
        if self._closed:
            raise MetadataError("metadata: the transaction is finished; open a new one")
        if self._pg or not rows:
            if rows:
                self._x(stmt, rows)
            return
        raw = _bulk_statement(stmt, self._conn.dialect, keys)
        with self._raw_cursor("bulk write") as cursor:
            cursor.executemany(raw.sql, raw.rows(rows))

    @contextmanager
    def _raw_cursor(self, what: str) -> Iterator[Any]:
        """A cursor on this transaction's DB-API connection (SQLite only): the statements of a
        group commit run there without SQLAlchemy's per-statement machinery, which cost several
        times what SQLite spent on them (a commit of eight small PUTs: ~4 ms of the committer's
        CPU through SQLAlchemy)."""
        if self._closed:
            raise MetadataError("metadata: the transaction is finished; open a new one")
        try:
            dbapi = self._conn.connection.dbapi_connection
            assert dbapi is not None
            cursor = dbapi.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            # Only the driver's message: parameters (keys, ids) stay out of errors.
            raise MetadataError(f"metadata: {what} failed: {type(exc).__name__}: {exc}") from exc
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e, what) from e

    def _rows(self, stmt: sa.Executable, params: _Params = None) -> list[sa.Row[Any]]:
        result = self._x(stmt, params)
        try:
            return list(result.all())
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e, "fetch failed") from e

    def _first(self, stmt: sa.Executable, params: _Params = None) -> sa.Row[Any] | None:
        rows = self._rows(stmt, params)
        return rows[0] if rows else None

    def _upsert(self, table: sa.Table, keys: tuple[str, ...], values: Mapping[str, Any]) -> None:
        self._x(_upsert_stmt(table, keys, self._pg), values)

    def _insert_ignore(self, table: sa.Table, keys: tuple[str, ...], values: Mapping[str, Any]) -> bool:
        """``True`` if a row was inserted."""
        return self._x(_insert_ignore_stmt(table, keys, self._pg), values).rowcount == 1

    def _tenant_of(self, domain_id: DomainId) -> int:
        tenant = self._first(_TENANT_OF, {"p_domain": domain_id})
        if tenant is None:
            raise MetadataError(f"metadata: domain {domain_id} does not exist")
        return int(tenant.tenant_id)

    # --- settings ------------------------------------------------------------------------------

    def get_setting(self, name: str) -> str | None:
        row = self._first(_GET_SETTING, {"p_name": name})
        return None if row is None else str(row.value)

    def set_setting(self, name: str, value: str) -> None:
        self._upsert(s.settings, ("name",), {"name": name, "value": value})

    # --- domains and their secrets -------------------------------------------------------------

    def put_domain_secret(self, rec: DomainSecretRecord) -> None:
        self._tenant_of(rec.domain_id)  # a clear error instead of a foreign key failure
        self._upsert(
            s.domain_secrets,
            ("domain_id", "key_version"),
            {
                "domain_id": rec.domain_id,
                "key_version": rec.key_version,
                "wrapped": rec.wrapped,
                "master_key_id": rec.master_key_id,
                "created_at": rec.created_at,
            },
        )

    def list_domain_secrets(self) -> list[DomainSecretRecord]:
        return [
            DomainSecretRecord(
                domain_id=DomainId(r.domain_id),
                key_version=r.key_version,
                wrapped=bytes(r.wrapped),
                master_key_id=r.master_key_id,
                created_at=r.created_at,
            )
            for r in self._rows(_LIST_SECRETS)
        ]

    # --- disks ---------------------------------------------------------------------------------

    def upsert_disk(self, rec: DiskRecord) -> None:
        self._upsert(
            s.disks,
            ("disk_id",),
            {
                "disk_id": rec.disk_id,
                "path": rec.path,
                "weight": rec.weight,
                "state": DiskState(rec.state).value,
                "added_at": rec.added_at,
            },
        )

    def list_disks(self) -> list[DiskRecord]:
        """In the order disks were added (then by id), so listings are stable."""
        return [
            DiskRecord(
                disk_id=DiskId(r.disk_id),
                path=r.path,
                weight=float(r.weight),
                state=DiskState(r.state),
                added_at=r.added_at,
            )
            for r in self._rows(_LIST_DISKS)
        ]

    def set_disk_state(self, disk_id: DiskId, state: DiskState) -> None:
        """Raise ``NoSuchDisk`` for an unknown disk."""
        result = self._x(_SET_DISK_STATE, {"p_disk": disk_id, "p_state": DiskState(state).value})
        if result.rowcount != 1:
            raise NoSuchDisk(f"disk {disk_id} is not recorded")

    # --- buckets -------------------------------------------------------------------------------

    def _bucket_values(self, rec: BucketRecord, tenant_id: int) -> dict[str, Any]:
        sc = rec.storage_class
        return {
            "tenant_id": tenant_id,
            "domain_id": rec.domain_id,
            "name": rec.name,
            "created_at": rec.created_at,
            "ec_k": None if sc is None else sc.k,
            "ec_m": None if sc is None else sc.m,
            "owner_user_id": rec.owner_user_id,
        }

    def create_bucket(
        self,
        domain_id: DomainId,
        name: str,
        created_at: datetime,
        storage_class: StorageClass | None,
        owner_user_id: UserId | None = None,
    ) -> BucketRecord:
        tenant_id = self._tenant_of(domain_id)
        if self._first(_BUCKET_IN_TENANT, {"p_tenant_id": tenant_id, "p_name": name}) is not None:
            raise BucketAlreadyExists(f"bucket {name!r} already exists")
        rec = BucketRecord(BucketId(0), domain_id, name, created_at, storage_class, owner_user_id, TenantId(tenant_id))
        pk = self._x(_INSERT_BUCKET, self._bucket_values(rec, tenant_id)).inserted_primary_key
        if pk is None:
            raise MetadataError("metadata: create_bucket: no id was generated")
        return dataclasses.replace(rec, bucket_id=BucketId(int(pk[0])))

    def insert_bucket(self, rec: BucketRecord) -> None:
        """Raise ``BucketAlreadyExists`` if another id holds the name in the same tenant."""
        if self._first(_BUCKET_BY_ID, {"p_bucket": rec.bucket_id}) is not None:
            return
        tenant_id = self._tenant_of(rec.domain_id)
        if self._first(_BUCKET_IN_TENANT, {"p_tenant_id": tenant_id, "p_name": rec.name}) is not None:
            raise BucketAlreadyExists(f"bucket {rec.name!r} already exists with another id")
        self._x(_INSERT_BUCKET, {"bucket_id": rec.bucket_id, **self._bucket_values(rec, tenant_id)})
        if self._pg:
            self._x(_PG_ADVANCE_BUCKET_SEQ, {"p_id": rec.bucket_id})

    def get_bucket(self, name: str) -> BucketRecord:
        """``name`` is tenant-qualified (``tenant:bucket``; bare: the default tenant)."""
        tenant, bare = split_bucket_name(name)
        row = self._first(_BUCKET_BY_NAME, {"p_tenant": tenant, "p_name": bare})
        if row is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist")
        return _bucket(row)

    def get_bucket_by_id(self, bucket_id: BucketId) -> BucketRecord | None:
        row = self._first(_BUCKET_BY_ID, {"p_bucket": bucket_id})
        return None if row is None else _bucket(row)

    def list_buckets(self, tenant: str | None = None) -> list[BucketRecord]:
        """The buckets of one tenant (by name), or of every tenant (``None``), by name then id."""
        if tenant is None:
            return [_bucket(r) for r in self._rows(_LIST_BUCKETS)]
        return [_bucket(r) for r in self._rows(_LIST_TENANT_BUCKETS, {"p_tenant": tenant})]

    def delete_bucket(self, bucket_id: BucketId) -> None:
        """No-op for an unknown id (replay). In-progress multipart uploads also keep a bucket:
        they hold chunk references that only aborting the upload releases."""
        params = {"p_bucket": bucket_id}
        if self._first(_ANY_VERSION, params) is not None:
            raise BucketNotEmpty(f"bucket {bucket_id} still holds object versions")
        if self._first(_ANY_UPLOAD, params) is not None:
            raise BucketNotEmpty(f"bucket {bucket_id} still has multipart uploads in progress")
        self._x(_DELETE_BUCKET, params)

    # --- object versions -----------------------------------------------------------------------

    def insert_version(self, version: ObjectVersion) -> None:
        """Raise ``NoSuchBucket`` if the bucket is not recorded."""
        if self._first(_VERSION_PK_BY_ID, {"p_version": version.version_id}) is not None:
            return
        if self._first(_BUCKET_BY_ID, {"p_bucket": version.bucket_id}) is None:
            raise NoSuchBucket(f"bucket {version.bucket_id} does not exist")
        self._x(_UNSET_LATEST, {"p_bucket": version.bucket_id, "p_key": version.key})
        result = self._x(_INSERT_VERSION, _version_values(version, is_latest=True))
        pk = result.inserted_primary_key
        if pk is None:
            raise MetadataError("metadata: insert_version: no id was generated")
        if version.chunks:
            self._x(_INSERT_MANIFEST, _manifest_values(pk[0], version))

    def latest_keys(self, bucket_id: BucketId, keys: Sequence[str]) -> set[str] | None:
        """Those of ``keys`` that have a latest version in the bucket (a delete marker counts), or
        ``None`` if the bucket does not exist."""
        unique = list(dict.fromkeys(keys))
        found: set[str] = set()
        for i in range(0, max(len(unique), 1), _BATCH):
            page = unique[i : i + _BATCH]
            if self._pg:
                got = [r.key for r in self._rows(_LATEST_KEYS, {"p_bucket": bucket_id, "p_keys": page})]
            else:
                raw = _latest_keys_raw(len(page), self._conn.dialect)
                with self._raw_cursor("latest keys") as cursor:
                    got = [r[1] for r in cursor.execute(raw.sql, (*page, bucket_id)).fetchall()]
            if not got:
                return None
            found.update(k for k in got if k is not None)
        return found

    def insert_new_versions(self, versions: Sequence[ObjectVersion]) -> None:
        """Store many versions of keys that have no latest version (``latest_keys``) with their
        manifests, in two statements (group commit); each becomes the latest of its key. Unlike
        ``insert_version``, nothing is looked up: a key given twice or one that has a latest
        version breaks the index (the caller checks), and a version id that exists already or a
        bucket that does not is a ``MetadataError`` (constraints). For fresh versions, never for
        replay."""
        if not versions:
            return
        rows = [_version_values(v, is_latest=True) for v in versions]
        if self._pg:
            pks: dict[str, int] = {r.version_id: r.version_pk for r in self._rows(_INSERT_VERSIONS, rows)}
        else:
            raw = _bulk_statement(_INSERT_VERSION, self._conn.dialect, tuple(rows[0]))
            pks = {}
            with self._raw_cursor("insert versions") as cursor:
                for v, params in zip(versions, raw.rows(rows), strict=True):
                    cursor.execute(raw.sql, params)
                    if cursor.lastrowid is None:
                        raise MetadataError("metadata: insert_new_versions: SQLite gave no row id")
                    pks[v.version_id] = int(cursor.lastrowid)
        if len(pks) != len(versions):
            raise MetadataError("metadata: insert_new_versions: not every version was stored")
        manifest = [m for v in versions if v.chunks for m in _manifest_values(pks[v.version_id], v)]
        if manifest:
            self._x(_INSERT_MANIFEST, manifest)

    def _manifest(self, version_pk: int) -> tuple[ChunkRef, ...]:
        return tuple(_chunk_ref(r) for r in self._rows(_MANIFEST, {"p_pk": version_pk}))

    def _version_row(self, bucket_id: BucketId, key: str, version_id: VersionId | None) -> sa.Row[Any] | None:
        if version_id is None:
            return self._first(_LATEST_VERSION, {"p_bucket": bucket_id, "p_key": key})
        return self._first(_NAMED_VERSION, {"p_bucket": bucket_id, "p_key": key, "p_version": version_id})

    def get_version(self, bucket_id: BucketId, key: str, version_id: VersionId | None = None) -> ObjectVersion:
        """The latest version may be a delete marker: it is returned as such
        (``is_delete_marker``) so that the caller can answer like S3 does."""
        row = self._version_row(bucket_id, key, version_id)
        if row is None:
            which = "" if version_id is None else f" version {version_id}"
            raise NoSuchKey(f"key {key!r}{which} does not exist in bucket {bucket_id}")
        return _version(row, self._manifest(row.version_pk))

    def delete_version(self, bucket_id: BucketId, key: str, version_id: VersionId) -> ObjectVersion | None:
        row = self._version_row(bucket_id, key, version_id)
        if row is None:
            return None
        version = _version(row, self._manifest(row.version_pk))
        self._x(_DELETE_MANIFEST, {"p_pk": row.version_pk})
        self._x(_DELETE_VERSION, {"p_pk": row.version_pk})
        if row.is_latest:
            nxt = self._first(_NEXT_NEWEST, {"p_bucket": bucket_id, "p_key": key})
            if nxt is not None:
                self._x(_SET_LATEST, {"p_pk": nxt.version_pk})
        return version

    def list_objects(
        self, bucket_id: BucketId, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectSummary]:
        """Keys under ``prefix`` after ``start_after``: one index range scan (``KeyRange``),
        never LIKE, never OFFSET."""
        rng = key_range(prefix, start_after)
        if limit <= 0 or rng is None:
            return []
        params = {"p_bucket": bucket_id, "p_limit": limit, **rng.params()}
        inclusive, has_end = rng.inclusive, rng.end is not None
        stmt = _list_objects_stmt(inclusive, has_end)
        if self._pg:
            rows = cast("list[tuple[Any, ...]]", self._rows(stmt, params))
        else:
            # SQLite: on the transaction's own connection without SQLAlchemy's result machinery,
            # which cost ~70 % of a page's read (listing with a delimiter reads many such pages).
            raw = _list_objects_raw(inclusive, has_end, self._conn.dialect)
            with self._raw_cursor("list objects") as cursor:
                rows = raw.process(cursor.execute(raw.sql, raw.bind(params)).fetchall())
        # positional unpacking: a page is up to thousands of rows, and Row attribute access costs
        return [ObjectSummary(key, VersionId(vid), size, etag, at) for key, vid, size, etag, at in rows]

    def count_versions(self, bucket_id: BucketId) -> int:
        """Every version, delete markers included."""
        row = self._first(_COUNT_VERSIONS, {"p_bucket": bucket_id})
        return 0 if row is None else int(row.n)

    def iter_all_versions(self) -> Iterator[ObjectVersion]:
        """Pages of ``_BATCH`` versions by primary key; each page's manifests come from one range
        scan of ``manifest_entries``. Consume it inside the transaction."""
        after = -1
        while True:
            rows = self._rows(_VERSION_PAGE, {"p_after": after, "p_limit": _BATCH})
            if not rows:
                return
            first, last = rows[0].version_pk, rows[-1].version_pk
            refs: dict[int, list[ChunkRef]] = {}
            for e in self._rows(_MANIFEST_RANGE, {"p_first": first, "p_last": last}):
                refs.setdefault(e.version_pk, []).append(_chunk_ref(e))
            for r in rows:
                yield _version(r, tuple(refs.get(r.version_pk, ())))
            after = last

    # --- chunks --------------------------------------------------------------------------------

    def _placements(self, keys: Sequence[tuple[int, bytes]]) -> dict[tuple[int, bytes], tuple[DiskId, ...]]:
        """Placement of many chunks: one ``chunk_id IN (...)`` query per domain and batch."""
        by_domain: dict[int, list[bytes]] = {}
        for domain_id, chunk_id in keys:
            by_domain.setdefault(domain_id, []).append(chunk_id)
        out: dict[tuple[int, bytes], list[DiskId]] = {}
        for domain_id, ids in by_domain.items():
            for i in range(0, len(ids), _BATCH):
                params = {"p_domain": domain_id, "p_chunks": ids[i : i + _BATCH]}
                for r in self._rows(_PLACEMENTS, params):
                    # Positional: a shard with no row (lost, not yet healed) leaves "" at its
                    # index, so later shards keep theirs.
                    disks = out.setdefault((domain_id, bytes(r.chunk_id)), [])
                    disks.extend([DiskId("")] * (r.shard_index + 1 - len(disks)))
                    disks[r.shard_index] = DiskId(r.disk_id)
        return {k: tuple(v) for k, v in out.items()}

    def _chunks_with_placement(self, rows: list[sa.Row[Any]]) -> list[ChunkRecord]:
        keys = [(int(r.domain_id), bytes(r.chunk_id)) for r in rows]
        placements = self._placements(keys)
        out = []
        for r, k in zip(rows, keys, strict=True):
            placement = placements.get(k, ())
            width = int(r.ec_k) + int(r.ec_m)
            if placement and len(placement) < width:  # trailing missing shards read as "" too
                placement += (DiskId(""),) * (width - len(placement))
            out.append(_chunk(r, placement))
        return out

    def get_chunk(self, domain_id: DomainId, chunk_id: ChunkId) -> ChunkRecord | None:
        row = self._first(_GET_CHUNK, {"p_domain": domain_id, "p_chunk": chunk_id})
        return None if row is None else self._chunks_with_placement([row])[0]

    def get_chunks(self, domain_id: DomainId, chunk_ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkRecord]:
        unique = list(dict.fromkeys(chunk_ids))
        rows: list[sa.Row[Any]] = []
        for i in range(0, len(unique), _BATCH):
            rows += self._rows(_GET_CHUNKS, {"p_domain": domain_id, "p_chunks": unique[i : i + _BATCH]})
        return {rec.chunk_id: rec for rec in self._chunks_with_placement(rows)}

    def insert_chunk(self, rec: ChunkRecord) -> bool:
        return self.insert_chunks([rec]) == 1

    def insert_chunks(self, recs: Sequence[ChunkRecord]) -> int:
        new: dict[tuple[DomainId, ChunkId], ChunkRecord] = {}
        by_domain: dict[DomainId, list[ChunkRecord]] = {}
        for rec in recs:
            by_domain.setdefault(rec.domain_id, []).append(rec)
        for domain_id, group in by_domain.items():
            existing = self._existing_chunks(domain_id, [r.chunk_id for r in group])
            for rec in group:
                if rec.chunk_id not in existing:
                    new.setdefault((domain_id, rec.chunk_id), rec)
        if not new:
            return 0
        self._x_many(_INSERT_CHUNK, [_chunk_row(r) for r in new.values()], _CHUNK_COLUMNS)
        self._x_many(_INSERT_SHARDS, [row for r in new.values() for row in _placement_rows(r)], _SHARD_COLUMNS)
        return len(new)

    def incref_many(self, domain_id: DomainId, counts: Mapping[ChunkId, int]) -> list[ChunkId]:
        for count in counts.values():
            _check_count(count, "incref")
        existing = self._existing_chunks(domain_id, list(counts))
        updates = [
            {"p_domain": domain_id, "p_chunk": chunk_id, "p_count": count}
            for chunk_id, count in counts.items()
            if count and chunk_id in existing
        ]
        self._x_many(_INCREF, updates)
        return [chunk_id for chunk_id in counts if chunk_id not in existing]

    def _existing_chunks(self, domain_id: DomainId, chunk_ids: Sequence[ChunkId]) -> set[ChunkId]:
        unique = list(dict.fromkeys(chunk_ids))
        found: set[ChunkId] = set()
        for i in range(0, len(unique), _BATCH):
            rows = self._rows(_EXISTING_CHUNKS, {"p_domain": domain_id, "p_chunks": unique[i : i + _BATCH]})
            found.update(ChunkId(bytes(r.chunk_id)) for r in rows)
        return found

    def _insert_placement(self, rec: ChunkRecord) -> None:
        self._x_many(_INSERT_SHARDS, _placement_rows(rec), _SHARD_COLUMNS)

    def incref(self, domain_id: DomainId, chunk_id: ChunkId, count: int) -> bool:
        _check_count(count, "incref")
        params = {"p_domain": domain_id, "p_chunk": chunk_id}
        if count == 0:
            return self._first(_CHUNK_EXISTS, params) is not None
        return self._x(_INCREF, {**params, "p_count": count}).rowcount == 1

    def decref(self, domain_id: DomainId, chunk_id: ChunkId, count: int, at: datetime) -> int:
        """Raise ``MetadataError`` for an unknown chunk or a count that would go below zero:
        both mean the index is inconsistent, and silently clamping could free live data."""
        _check_count(count, "decref")
        params = {"p_domain": domain_id, "p_chunk": chunk_id}
        row = self._first(_REFCOUNT_FOR_UPDATE, params)
        if row is None:
            raise MetadataError(f"metadata: decref of unrecorded chunk {chunk_id.hex()} (domain {domain_id})")
        current = int(row.refcount)
        if count == 0:
            return current
        new = current - count
        if new < 0:
            raise MetadataError(
                f"metadata: refcount of chunk {chunk_id.hex()} would drop below zero ({current} - {count})"
            )
        if new == 0:
            self._x(_SET_COUNT_AND_ZERO, {**params, "p_refcount": 0, "p_zero": at})
        else:
            self._x(_SET_COUNT, {**params, "p_refcount": new})
        return new

    def touch_unreferenced(self, domain_id: DomainId, chunk_id: ChunkId, at: datetime) -> None:
        self._x(_TOUCH, {"p_domain": domain_id, "p_chunk": chunk_id, "p_at": at})

    def set_placement(self, domain_id: DomainId, chunk_id: ChunkId, index: int, disk_id: DiskId) -> None:
        """Raise ``MetadataError`` for an unknown chunk or a shard index outside ``[0, k+m)``."""
        row = self._first(_CHUNK_WIDTH, {"p_domain": domain_id, "p_chunk": chunk_id})
        if row is None:
            raise MetadataError(f"metadata: placement for unrecorded chunk {chunk_id.hex()} (domain {domain_id})")
        if not 0 <= index < row.ec_k + row.ec_m:
            raise MetadataError(
                f"metadata: shard index {index} outside EC({row.ec_k},{row.ec_m}) of chunk {chunk_id.hex()}"
            )
        if not disk_id:  # the shard is gone: no row, reads back as ""
            self._x(_DELETE_SHARD, {"p_domain": domain_id, "p_chunk": chunk_id, "p_index": index})
            return
        self._upsert(
            _SH,
            ("domain_id", "chunk_id", "shard_index"),
            {"domain_id": domain_id, "chunk_id": chunk_id, "shard_index": index, "disk_id": disk_id},
        )

    def set_refcount(self, domain_id: DomainId, chunk_id: ChunkId, count: int, at: datetime) -> None:
        """Raise ``MetadataError`` for an unknown chunk."""
        _check_count(count, "set_refcount")
        params = {"p_domain": domain_id, "p_chunk": chunk_id, "p_refcount": count, "p_zero": at if count == 0 else None}
        if self._x(_SET_COUNT_AND_ZERO, params).rowcount != 1:
            raise MetadataError(f"metadata: set_refcount of unrecorded chunk {chunk_id.hex()} (domain {domain_id})")

    def list_chunks(self, after: tuple[DomainId, ChunkId] | None = None, limit: int = 1000) -> list[ChunkRecord]:
        if limit <= 0:
            return []
        if after is None:
            rows = self._rows(_LIST_CHUNKS_FIRST, {"p_limit": limit})
        else:
            rows = self._rows(_LIST_CHUNKS_AFTER, {"p_domain": after[0], "p_chunk": after[1], "p_limit": limit})
        return self._chunks_with_placement(rows)

    def collectable_chunks(self, zero_before: datetime, limit: int = 1000) -> list[ChunkRecord]:
        """Oldest first, so that a limited GC pass frees the longest-dead chunks."""
        if limit <= 0:
            return []
        return self._chunks_with_placement(self._rows(_COLLECTABLE, {"p_before": zero_before, "p_limit": limit}))

    def delete_chunk_if_collectable(self, domain_id: DomainId, chunk_id: ChunkId, zero_before: datetime) -> bool:
        """The heal request of a deleted chunk goes with it (it has nothing left to heal)."""
        params = {"p_domain": domain_id, "p_chunk": chunk_id}
        if self._first(_STILL_COLLECTABLE, {**params, "p_before": zero_before}) is None:
            return False
        self._x(_DELETE_SHARDS, params)
        self._x(_DELETE_HEAL, params)
        self._x(_DELETE_CHUNK, params)
        return True

    def shard_counts_by_disk(self) -> dict[DiskId, int]:
        return {DiskId(r.disk_id): int(r.n) for r in self._rows(_SHARD_COUNTS)}

    def chunk_count(self) -> int:
        row = self._first(_CHUNK_COUNT)
        return 0 if row is None else int(row.n)

    def stored_size_total(self) -> int:
        row = self._first(_STORED_TOTAL)
        return 0 if row is None else int(row.n)

    # Not (yet) in the MetaTx protocol of repo.py; the engine calls them.

    def max_chunk_width(self) -> int | None:
        """The widest k+m of any stored chunk (``None`` without chunks): a disk set may not shrink
        below it."""
        row = self._first(sa.select(sa.func.max(_CH.c.ec_k + _CH.c.ec_m).label("n")))
        return None if row is None or row.n is None else int(row.n)

    def update_chunk(self, rec: ChunkRecord) -> None:
        """Rebuild's truth from the disks: keep the refcount, overwrite everything else."""
        values = {
            "generation": rec.generation,
            "plain_size": rec.plain_size,
            "sealed_size": rec.sealed_size,
            "ec_k": rec.k,
            "ec_m": rec.m,
            "created_at": rec.created_at,
        }
        key = (_CH.c.domain_id == rec.domain_id) & (_CH.c.chunk_id == rec.chunk_id)
        if self._x(sa.update(_CH).where(key).values(**values)).rowcount == 0:
            self.insert_chunk(rec)
            return
        self._x(_DELETE_SHARDS, {"p_domain": rec.domain_id, "p_chunk": rec.chunk_id})
        self._insert_placement(rec)

    # --- heal queue ----------------------------------------------------------------------------

    def enqueue_heal(self, item: HealItem) -> None:
        """A second request for a queued chunk keeps the first (its reason and queue time)."""
        self._insert_ignore(
            _HQ,
            ("domain_id", "chunk_id"),
            {
                "domain_id": item.domain_id,
                "chunk_id": item.chunk_id,
                "reason": item.reason,
                "queued_at": item.queued_at,
            },
        )

    def list_heal(self, limit: int = 1000) -> list[HealItem]:
        """Oldest request first."""
        if limit <= 0:
            return []
        return [
            HealItem(
                domain_id=DomainId(r.domain_id),
                chunk_id=ChunkId(bytes(r.chunk_id)),
                reason=r.reason,
                queued_at=r.queued_at,
            )
            for r in self._rows(_LIST_HEAL, {"p_limit": limit})
        ]

    def remove_heal(self, domain_id: DomainId, chunk_id: ChunkId) -> None:
        self._x(_DELETE_HEAL, {"p_domain": domain_id, "p_chunk": chunk_id})

    # --- journal position ----------------------------------------------------------------------

    def get_journal_positions(self) -> dict[str, int]:
        return {r.segment: int(r.applied_offset) for r in self._rows(_JOURNAL_POSITIONS)}

    def set_journal_position(self, segment: str, offset: int) -> None:
        values = {"segment": segment, "applied_offset": offset}
        if self._pg:
            self._upsert(s.journal_positions, ("segment",), values)
        else:  # once per commit: the raw path
            upsert = cast(sa.Insert, _upsert_stmt(s.journal_positions, ("segment",), False))
            self._x_many(upsert, [values], ("segment", "applied_offset"))


# --- the hot read of GET/HEAD ------------------------------------------------------------------
#
# One statement: bucket by name, its current version for the key, the whole manifest, and for the
# first ``p_head`` manifest entries the chunk row and its shards (LEFT JOINs all the way, so a
# missing bucket gives no row, a missing key gives one row of NULL version columns, and entries
# past the head carry NULL chunk columns). One row per manifest entry: a head chunk's shards come
# as one text column, "index:disk,index:disk,..." (disk ids are hex, ``ids.new_disk_id``). Joined
# instead, every shard was a row repeating the ~45 columns of the bucket, version and chunk: on a
# 1 MiB GET six rows, and the SELECT alone took twice as long (33.6 against 15.4 us; the whole
# ``read_object`` 120 against 104 us with the caches cold, as they are after a GET's megabyte).

_RO_BUCKET: Final = [
    _BK.c.bucket_id,
    _BK.c.domain_id,
    _BK.c.name,
    _BK.c.created_at,
    _BK.c.ec_k,
    _BK.c.ec_m,
    _BK.c.tenant_id,
    _BK.c.owner_user_id,
]
_RO_MANIFEST: Final = [_ME.c.seq, _ME.c.chunk_id, _ME.c.offset, _ME.c.plain_size]
_RO_CHUNK: Final = [
    _CH.c.generation,
    _CH.c.plain_size,
    _CH.c.sealed_size,
    _CH.c.ec_k,
    _CH.c.ec_m,
    _CH.c.refcount,
    _CH.c.created_at,
    _CH.c.zero_since,
]
_RO_SHARDS: Final = (
    sa.select(
        sa.func.aggregate_strings(
            # Separators as SQL literals: the raw reader binds only the named parameters.
            sa.cast(_SH.c.shard_index, sa.String).concat(sa.literal_column("':'")).concat(_SH.c.disk_id),
            # Typed as str, which SQLAlchemy would bind as a parameter; SQL text works the same.
            sa.literal_column("','"),  # type: ignore[arg-type]
        )
    )
    .where(_SH.c.domain_id == _CH.c.domain_id, _SH.c.chunk_id == _CH.c.chunk_id)
    .scalar_subquery()
    .label("shard_list")
)
_READ_OBJECT: Final = (
    sa.select(*_RO_BUCKET, *_VERSION_COLUMNS, *_RO_MANIFEST, *_RO_CHUNK, _RO_SHARDS)
    .select_from(
        _BK.outerjoin(
            _OV, sa.and_(_OV.c.bucket_id == _BK.c.bucket_id, _OV.c.key == _P("p_key"), _OV.c.is_latest == sa.true())
        )
        .outerjoin(_ME, _ME.c.version_pk == _OV.c.version_pk)
        .outerjoin(
            _CH,
            sa.and_(_ME.c.seq < _P("p_head"), _CH.c.domain_id == _BK.c.domain_id, _CH.c.chunk_id == _ME.c.chunk_id),
        )
    )
    .where(_BK.c.tenant_id == _TENANT_ID_BY_NAME, _BK.c.name == _P("p_name"))
)


def _row_type(name: str, columns: Sequence[str]) -> Callable[[Iterable[Any]], Any]:
    """A tuple type whose fields are the columns, for positional rows read raw: the shared
    converters (``_bucket``, ``_version``, ``_chunk``) read attributes, and a named tuple's are
    C-level item lookups (a ``__getattr__`` in Python cost ~40 calls per GET)."""
    row_type = collections.namedtuple(name, columns)  # type: ignore[misc]
    return cast(Callable[[Iterable[Any]], Any], row_type._make)


_BucketRow: Final = _row_type("_BucketRow", [c.name for c in _RO_BUCKET])
_VersionRow: Final = _row_type("_VersionRow", [c.name for c in _VERSION_COLUMNS])
_ChunkRow: Final = _row_type("_ChunkRow", ["domain_id", "chunk_id", *(c.name for c in _RO_CHUNK)])
_M0: Final = len(_RO_BUCKET) + len(_VERSION_COLUMNS)
_C0: Final = _M0 + len(_RO_MANIFEST)
_S0: Final = _C0 + len(_RO_CHUNK)


def _object_read(rows: Sequence[tuple[Any, ...]], bucket: str, key: str, raw: RawStatement | None = None) -> ObjectRead:
    """``raw``: the rows are as SQLite returned them; only the columns used are converted (the
    bucket's and version's of the first row, each head chunk's of its first row), not every
    column of every manifest row."""
    if not rows:
        raise NoSuchBucket(f"bucket {bucket!r} does not exist")
    first = rows[0] if raw is None else raw.process_columns(rows[0], 0, _M0)
    rec = _bucket(_BucketRow(first[: len(_RO_BUCKET)]))
    vrow = _VersionRow(first[len(_RO_BUCKET) : _M0])
    if vrow.version_pk is None:
        raise NoSuchKey(f"key {key!r} does not exist in bucket {bucket!r}")
    refs: dict[int, ChunkRef] = {}
    found: dict[bytes, tuple[Any, ...]] = {}
    for r in rows:
        seq = r[_M0]
        if seq is None:  # no manifest (an empty or delete-marker version)
            continue
        cid = bytes(r[_M0 + 1])
        refs[seq] = ChunkRef(chunk_id=ChunkId(cid), offset=r[_M0 + 2], plain_size=r[_M0 + 3])
        if r[_C0] is not None and cid not in found:  # NULL: past the head, or not in the index
            found[cid] = r
    version = _version(vrow, tuple(refs[seq] for seq in sorted(refs)))
    chunks: dict[ChunkId, ChunkRecord] = {}
    for cid, r in found.items():
        placement = _shard_list_placement(r[_S0])
        width = int(r[_C0 + 3]) + int(r[_C0 + 4])
        if placement and len(placement) < width:
            placement += (DiskId(""),) * (width - len(placement))
        if raw is not None:
            r = raw.process_columns(r, _C0, _S0)
        row = _ChunkRow((rec.domain_id, cid, *r[_C0:_S0]))
        chunks[ChunkId(cid)] = _chunk(row, placement)
    return ObjectRead(rec, version, chunks)


def _shard_list_placement(shard_list: str | None) -> tuple[DiskId, ...]:
    """``"index:disk,..."`` (any order) -> disk ids by index; positional, as ``_placements``: a
    lost shard leaves "" at its index."""
    disks: list[DiskId] = []
    for item in shard_list.split(",") if shard_list else ():
        index_text, _, disk = item.partition(":")
        index = int(index_text)
        if index >= len(disks):
            disks.extend([DiskId("")] * (index + 1 - len(disks)))
        disks[index] = DiskId(disk)
    return tuple(disks)


# --- the repository ----------------------------------------------------------------------------


def _sqlite_on_connect(busy_timeout: float) -> Any:
    """A ``connect`` listener: per-connection pragmas, and pysqlite's BEGIN handling switched off
    (``isolation_level = None``) so that the ``begin`` listener can emit BEGIN IMMEDIATE."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            # PRAGMA takes no bound parameters; the value is an int computed here.
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise MetadataError(f"metadata: SQLite refused WAL journal mode (got {mode!r})")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    return on_connect


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # Writers take the write lock at BEGIN (no deadlock-prone upgrade later); readers begin a
    # deferred transaction: a WAL snapshot that neither waits for writers nor blocks them.
    read_only = conn.get_execution_options().get("dwh_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class SqlMetaRepo:
    """The metadata repository on a SQLAlchemy URL (``for_sqlite`` for the data directory's file).

    ``create=True`` creates the schema when the database is new; with ``create=False`` the
    database must exist already. Either way an existing database is migrated to head.
    ``read_only``: a second process reading what another one writes (a read worker of
    ``dwh serve --workers``): nothing is migrated — the schema must be at head already — and
    ``transaction()`` refuses.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        u = make_url(url)
        self._sqlite = u.get_backend_name() == "sqlite"
        self._busy_timeout = busy_timeout
        self.read_only = read_only
        self._watch: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        self._watch_version: int | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        if self._sqlite:
            db = u.database or ""
            if db in ("", ":memory:") or "mode=memory" in str(u.query):
                raise InvalidInput("metadata: an in-memory SQLite database cannot be shared by a pool; use a file")
            if not create and not Path(db).exists():
                raise MetadataError(f"metadata: database {db} does not exist")
            self._engine = sa.create_engine(
                u,
                poolclass=sa.QueuePool,
                pool_size=8,
                max_overflow=8,
                pool_timeout=busy_timeout,
                connect_args={"check_same_thread": False, "timeout": busy_timeout},
            )
            event.listen(self._engine, "connect", _sqlite_on_connect(busy_timeout))
            event.listen(self._engine, "begin", _sqlite_on_begin)
            self._raw: RawSqliteReader | None = RawSqliteReader(db, busy_timeout)
            self._raw_read_object = RawStatement(_READ_OBJECT, self._engine.dialect)
            self._raw_chunk_refcount = RawStatement(_CHUNK_REFCOUNT, self._engine.dialect)
        else:
            self._engine = sa.create_engine(u, pool_size=8, max_overflow=8, pool_pre_ping=True)
            self._raw = None
        try:
            if read_only:
                self._check_head()
                self.changed()  # the baseline: whatever is cached from now on is read after it
            else:
                self._migrate(create)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def for_sqlite(cls, path: str | Path, *, create: bool = True, read_only: bool = False) -> SqlMetaRepo:
        return cls(URL.create("sqlite+pysqlite", database=str(path)), create=create, read_only=read_only)

    @property
    def engine(self) -> sa.Engine:
        """For tests and diagnostics only; all metadata access goes through ``transaction()``."""
        return self._engine

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """A connection inside an open write transaction, committed on normal exit."""
        if self.read_only:
            raise MetadataError("metadata: this process only reads (writes go through the primary server process)")
        if getattr(self._local, "in_tx", False):
            raise MetadataError("metadata: nested transaction in one thread (it would wait for itself)")
        lock = self._write_lock if self._sqlite else None  # PostgreSQL: the advisory lock below
        if lock is not None and not lock.acquire(timeout=self._busy_timeout):
            raise MetadataError("metadata: timed out waiting for the write lock")
        self._local.in_tx = True
        try:
            try:
                conn = self._engine.connect()
            except sa_exc.SQLAlchemyError as e:
                raise _translate(e, "connect") from e
            try:
                try:
                    conn.begin()
                    if not self._sqlite:
                        conn.execute(_PG_WRITER_LOCK, {"p_key": _PG_WRITER_LOCK_KEY})
                except sa_exc.SQLAlchemyError as e:
                    self._rollback(conn)
                    raise _translate(e, "begin") from e
                try:
                    yield conn
                except BaseException:
                    self._rollback(conn)
                    raise
                try:
                    conn.commit()
                except sa_exc.SQLAlchemyError as e:
                    self._rollback(conn)
                    raise _translate(e, "commit") from e
            finally:
                conn.close()
        finally:
            self._local.in_tx = False
            if lock is not None:
                lock.release()

    @staticmethod
    def _rollback(conn: sa.Connection) -> None:
        try:
            conn.rollback()
        except sa_exc.SQLAlchemyError:
            conn.invalidate()  # never hand a connection in an unknown state back to the pool

    @contextmanager
    def transaction(self) -> Iterator[SqlMetaTx]:
        with self._connection() as conn:
            tx = SqlMetaTx(conn)
            try:
                yield tx
            finally:
                tx._close()

    @contextmanager
    def read(self) -> Iterator[SqlMetaTx]:
        """A read-only snapshot: no write lock, so reads run in parallel with each other and with
        the committer. Calling a writing method inside it is a programming error."""
        try:
            conn = self._engine.connect().execution_options(dwh_read_only=True)
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e, "connect") from e
        try:
            try:
                conn.begin()
            except sa_exc.SQLAlchemyError as e:
                self._rollback(conn)
                raise _translate(e, "begin") from e
            tx = SqlMetaTx(conn)
            try:
                yield tx
            finally:
                tx._close()
                self._rollback(conn)
        finally:
            conn.close()

    def read_object(self, bucket: str, key: str, chunk_head: int = 4) -> ObjectRead:
        """See ``MetaRepo.read_object``: one statement, on SQLite through the raw reader (no
        pool checkout, BEGIN or ROLLBACK: one SELECT is its own snapshot)."""
        tenant, bare = split_bucket_name(bucket)
        values = {"p_tenant": tenant, "p_name": bare, "p_key": key, "p_head": max(0, chunk_head)}
        if self._raw is not None:
            rows = self._raw.rows(self._raw_read_object, values, process=False)
            return _object_read(rows, bucket, key, self._raw_read_object)
        with self.read() as tx:
            rows = [tuple(r) for r in tx._rows(_READ_OBJECT, values)]
        return _object_read(rows, bucket, key)

    @property
    def reads_are_local(self) -> bool:
        return self._raw is not None

    def chunk_refcount(self, domain_id: DomainId, chunk_id: ChunkId) -> int | None:
        """See ``MetaRepo.chunk_refcount``: the dedup probe of every chunk a PUT cuts, so on
        SQLite it is one raw SELECT (a pooled ``read()`` cost ~0.7 ms per chunk here, ten times
        the query)."""
        values = {"p_domain": domain_id, "p_chunk": chunk_id}
        if self._raw is not None:
            rows = self._raw.rows(self._raw_chunk_refcount, values)
        else:
            with self.read() as tx:
                rows = [tuple(r) for r in tx._rows(_CHUNK_REFCOUNT, values)]
        return int(rows[0][0]) if rows else None

    def _migrate(self, create: bool) -> None:
        """Upgrade to head inside one write transaction (a concurrent opener waits, then finds
        nothing to do). Works from an installed wheel: the scripts are package data."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        cfg.set_main_option("path_separator", "os")
        with self._connection() as conn:
            if not create and not sa.inspect(conn).has_table("alembic_version"):
                raise MetadataError("metadata: the database holds no DataWarehouse schema")
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as e:
                raise MetadataError(
                    f"metadata: cannot migrate the database ({e}); was it written by a newer DataWarehouse?"
                ) from e
            except sa_exc.SQLAlchemyError as e:
                raise _translate(e, "migration") from e

    def _check_head(self) -> None:
        """A read-only repository: the database's revision must be the newest this code knows
        (the process that writes it migrates; a reader never does)."""
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        try:
            with self._engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e, "read the schema revision") from e
        if current != head:
            raise MetadataError(
                f"metadata: the database is at schema revision {current!r}, this code expects "
                f"{head!r} (start the primary server process first)"
            )

    def changed(self) -> bool:
        """Whether another connection committed since the last call (SQLite's ``PRAGMA
        data_version``, on one connection kept for it; the first call answers False). A process
        that only reads (a read worker) drops its caches of buckets, settings and identities
        when this is true: a revoked key is refused there as soon as the revocation returned.
        Costs one PRAGMA (a few microseconds). PostgreSQL: always True (no such signal)."""
        if not self._sqlite:
            return True
        with self._watch_lock:
            try:
                if self._watch is None:
                    db = self._engine.url.database or ""
                    self._watch = sqlite3.connect(db, timeout=self._busy_timeout, check_same_thread=False)
                row = self._watch.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as e:
                raise MetadataError(f"metadata: cannot read the data version ({e.__class__.__name__})") from e
            version = int(row[0])
            changed = self._watch_version is not None and version != self._watch_version
            self._watch_version = version
            return changed

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        self._engine.dispose()


if TYPE_CHECKING:

    def _conforms(repo: SqlMetaRepo, tx: SqlMetaTx) -> tuple[MetaRepo, MetaTx]:
        return repo, tx
