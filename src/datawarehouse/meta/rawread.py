"""Hot reads on raw DB-API connections: a prebuilt Core statement compiled once, executed without
SQLAlchemy's per-statement machinery.

A GET needs one read of metadata. Through ``SqlMetaRepo.read()`` that read costs a pool
checkout, a BEGIN, the statement's execution context, a ROLLBACK and a checkin — about ten times
what SQLite itself spends answering it. Here a statement is compiled once per dialect to SQL text
and its columns' result processors (datetimes, booleans, binaries) are looked up once; executing
it is one ``cursor.execute`` on a connection taken from a free list. On SQLite a single SELECT
in autocommit mode is its own consistent snapshot (WAL: it never waits for, nor blocks, the
writer), and the connections are opened with ``query_only`` so they cannot write.

Only for single-statement reads; anything that needs several statements in one snapshot uses
``SqlMetaRepo.read()``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import sqlalchemy as sa

from datawarehouse.errors import MetadataError

MAX_IDLE: Final = 32  # connections kept open between reads (more are closed after use)


class RawStatement:
    """A Core SELECT compiled for one dialect: SQL text, parameter order, result processors."""

    def __init__(self, stmt: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        positions = compiled.positiontup
        if positions is None:
            raise MetadataError("metadata: raw reads need a positional (qmark) dialect")
        self.params: tuple[str, ...] = tuple(positions)
        # Values SQLAlchemy bound itself (SQLite's ``LIMIT ? OFFSET ?`` adds an OFFSET of 0).
        self._defaults = {name: value for name, value in compiled.params.items() if value is not None}
        processors: list[Callable[[Any], Any] | None] = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in stmt.selected_columns
        ]
        self._convert = tuple((i, p) for i, p in enumerate(processors) if p is not None)

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] if name in values else self._defaults[name] for name in self.params)

    def process_columns(self, row: tuple[Any, ...], lo: int, hi: int) -> tuple[Any, ...]:
        """``row`` with the result processors of columns ``[lo, hi)`` applied (the others as read):
        for a caller that uses only some columns of some rows of a join (``process`` converts
        every row)."""
        values: list[Any] | None = None  # copied only when a column in range needs converting
        for i, proc in self._convert:
            if lo <= i < hi and row[i] is not None:
                if values is None:
                    values = list(row)
                values[i] = proc(row[i])
        return row if values is None else tuple(values)

    def process(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Apply the result processors. Joined rows repeat the same values (a version's
        timestamp on every row of its manifest), so each distinct value is converted once."""
        if not self._convert or not rows:
            return rows
        seen: dict[tuple[int, Any], Any] = {}
        out = []
        for row in rows:
            values = list(row)
            for i, proc in self._convert:
                raw = values[i]
                if raw is not None:
                    key = (i, raw)
                    done = seen.get(key, seen)
                    if done is seen:
                        done = seen[key] = proc(raw)
                    values[i] = done
            out.append(tuple(values))
        return out


class RawBulkStatement:
    """A Core INSERT or UPDATE compiled once for ``executemany`` on the raw DB-API connection of
    a transaction: SQL text, parameter order and the bind processors SQLAlchemy would apply
    (datetimes, binaries). For the few large batches of a commit (a 1 GiB object's chunk rows),
    where SQLAlchemy's per-row parameter handling cost twice what SQLite spent on the rows."""

    def __init__(self, stmt: sa.Insert | sa.Update, dialect: sa.Dialect, keys: tuple[str, ...] | None = None) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql = compiled.string
        positions = compiled.positiontup
        if positions is None:
            raise MetadataError("metadata: raw bulk writes need a positional (qmark) dialect")
        self.params: tuple[str, ...] = tuple(positions)
        binds = [compiled.binds[name] for name in positions]
        # Binary columns skip their processor: it only wraps ``bytes`` in the driver's Binary
        # (``memoryview`` for sqlite3), which binds as the same BLOB, at ~4 us a value.
        self._processors = tuple(
            None if isinstance(b.type, sa.LargeBinary) else b.type.dialect_impl(dialect).bind_processor(dialect)
            for b in binds
        )
        # Values written into the statement itself (``.values(zero_since=None)``): no row names them.
        self._fixed = {
            n: b.value for n, b in zip(positions, binds, strict=True) if not b.required and n not in (keys or ())
        }

    def rows(self, values: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        named = tuple(zip(self.params, self._processors, strict=True))
        fixed = self._fixed
        out = []
        for v in values:
            row = {**fixed, **v} if fixed else v
            out.append(tuple(row[n] if p is None or row[n] is None else p(row[n]) for n, p in named))
        return out


class RawSqliteReader:
    """Read-only SQLite connections in a free list (``list.pop``/``append`` are atomic: no lock on
    the hot path). Connections are shared across threads one at a time (``check_same_thread``
    off); one that saw an error is closed, never reused."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._free: list[sqlite3.Connection] = []
        self._closed = False
        self._lock = threading.Lock()  # only for close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, check_same_thread=False, isolation_level=None)
        try:
            # PRAGMA takes no bound parameters; the value is an int computed here.
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def rows(self, stmt: RawStatement, values: Mapping[str, Any], *, process: bool = True) -> list[tuple[Any, ...]]:
        """The rows of ``stmt``; ``process=False``: as SQLite returned them (the caller applies
        ``stmt.process_columns`` to what it uses)."""
        if self._closed:
            raise MetadataError("metadata: the repository is closed")
        try:
            conn = self._free.pop()
        except IndexError:
            conn = None
        try:
            if conn is None:
                conn = self._connect()
            rows: list[tuple[Any, ...]] = conn.execute(stmt.sql, stmt.bind(values)).fetchall()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            # Only the driver's message: parameters (names, keys) stay out of errors.
            raise MetadataError(f"metadata: read failed: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if self._closed or len(self._free) >= MAX_IDLE:
            conn.close()
        else:
            self._free.append(conn)
        return stmt.process(rows) if process else rows

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._free:
                self._free.pop().close()
