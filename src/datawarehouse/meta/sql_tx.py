"""``SqlMetaTx``: one metadata transaction on one SQLAlchemy connection (the ``MetaTx`` contract
of ``repo.py``). The repository (``sql.SqlMetaRepo``) opens it inside BEGIN IMMEDIATE (SQLite) or
with the writer lock (PostgreSQL); the statements come from ``sql_statements``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from datawarehouse.errors import BucketAlreadyExists, BucketNotEmpty, MetadataError, NoSuchBucket, NoSuchDisk, NoSuchKey
from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, TenantId, UserId, VersionId, split_bucket_name
from datawarehouse.meta import schema as s
from datawarehouse.meta.keyrange import key_range
from datawarehouse.meta.repo import DomainSecretRecord, HealItem, ObjectSummary
from datawarehouse.meta.sql_iam import IamMixin
from datawarehouse.meta.sql_statements import (
    _ANY_UPLOAD,
    _ANY_VERSION,
    _BUCKET_BY_ID,
    _BUCKET_BY_NAME,
    _BUCKET_IN_TENANT,
    _CH,
    _CHUNK_COLUMNS,
    _CHUNK_COUNT,
    _CHUNK_EXISTS,
    _CHUNK_WIDTH,
    _COLLECTABLE,
    _COUNT_VERSIONS,
    _DELETE_BUCKET,
    _DELETE_CHUNK,
    _DELETE_HEAL,
    _DELETE_MANIFEST,
    _DELETE_SHARD,
    _DELETE_SHARDS,
    _DELETE_VERSION,
    _EXISTING_CHUNKS,
    _GET_CHUNK,
    _GET_CHUNKS,
    _GET_SETTING,
    _HQ,
    _INCREF,
    _INSERT_BUCKET,
    _INSERT_CHUNK,
    _INSERT_MANIFEST,
    _INSERT_SHARDS,
    _INSERT_VERSION,
    _INSERT_VERSIONS,
    _JOURNAL_POSITIONS,
    _LATEST_KEYS,
    _LATEST_VERSION,
    _LIST_BUCKETS,
    _LIST_CHUNKS_AFTER,
    _LIST_CHUNKS_FIRST,
    _LIST_DISKS,
    _LIST_HEAL,
    _LIST_SECRETS,
    _LIST_TENANT_BUCKETS,
    _MANIFEST,
    _MANIFEST_RANGE,
    _NAMED_VERSION,
    _NEXT_NEWEST,
    _PG_ADVANCE_BUCKET_SEQ,
    _PLACEMENTS,
    _REFCOUNT_FOR_UPDATE,
    _SET_COUNT,
    _SET_COUNT_AND_ZERO,
    _SET_DISK_STATE,
    _SET_LATEST,
    _SH,
    _SHARD_COLUMNS,
    _SHARD_COUNTS,
    _STILL_COLLECTABLE,
    _STORED_TOTAL,
    _TENANT_OF,
    _TOUCH,
    _UNSET_LATEST,
    _VERSION_PAGE,
    _VERSION_PK_BY_ID,
    _bucket,
    _bulk_statement,
    _check_count,
    _chunk,
    _chunk_ref,
    _chunk_row,
    _insert_ignore_stmt,
    _latest_keys_raw,
    _list_objects_raw,
    _list_objects_stmt,
    _manifest_values,
    _placement_rows,
    _translate,
    _upsert_stmt,
    _version,
    _version_values,
)
from datawarehouse.meta.sql_uploads import UploadsMixin
from datawarehouse.meta.sql_usage import UsageMixin
from datawarehouse.meta.sql_versions import VersionsMixin
from datawarehouse.records import (
    BucketRecord,
    ChunkRecord,
    ChunkRef,
    DiskRecord,
    DiskState,
    ObjectVersion,
    StorageClass,
)

_BATCH: Final = 500  # rows per IN (...) list / per page of iter_all_versions


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
