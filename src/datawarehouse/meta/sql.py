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

This module holds the repository and the hot read of GET/HEAD; the transaction is
``sql_tx.SqlMetaTx`` (with its mixins ``sql_iam``, ``sql_uploads``, ``sql_usage``,
``sql_versions``), and the statements, row conversions and error translation they share are in
``sql_statements``.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
from sqlalchemy.engine import URL, make_url

from datawarehouse.errors import InvalidInput, MetadataError, NoSuchBucket, NoSuchKey
from datawarehouse.ids import ChunkId, DiskId, DomainId, split_bucket_name
from datawarehouse.meta.rawread import RawSqliteReader, RawStatement
from datawarehouse.meta.repo import ObjectRead
from datawarehouse.meta.sql_statements import (
    _BK,
    _CH,
    _CHUNK_REFCOUNT,
    _ME,
    _OV,
    _P,
    _PG_WRITER_LOCK,
    _PG_WRITER_LOCK_KEY,
    _SH,
    _TENANT_ID_BY_NAME,
    _VERSION_COLUMNS,
    _bucket,
    _chunk,
    _translate,
    _version,
)
from datawarehouse.meta.sql_tx import SqlMetaTx
from datawarehouse.records import ChunkRecord, ChunkRef

if TYPE_CHECKING:
    from datawarehouse.meta.repo import MetaRepo, MetaTx

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT: Final = 30.0  # seconds a writer waits for another process's write lock


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
