"""Pure helpers of the SQL repository: the prefix range used instead of LIKE, and UTC handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from datawarehouse.errors import InvalidInput, MetadataError
from datawarehouse.meta.keyrange import KeyRange, key_range
from datawarehouse.meta.keyrange import prefix_end as _prefix_end
from datawarehouse.meta.schema import UTCDateTime
from datawarehouse.meta.sql import _translate

# keys are valid Unicode: no surrogates (they cannot be encoded as UTF-8)
key_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)
SQLITE = SQLiteDialect_pysqlite()
PG = PGDialect()  # type: ignore[no-untyped-call]

edge_chars = st.sampled_from(["\x00", "a", "\u00ff", "\ud7ff", "\ue000", "\uffff", "\U0010ffff", "%", "_"])
edgy_text = st.lists(edge_chars, max_size=4).map("".join)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("", None),
        ("a", "b"),
        ("abc", "abd"),
        ("50%", "50&"),
        ("a_", "a`"),
        ("\ud7ff", "\ue000"),  # skips the surrogate block
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("é", "ê"),
    ],
)
def test_prefix_end_examples(prefix: str, end: str | None) -> None:
    assert _prefix_end(prefix) == end


@given(prefix=st.one_of(key_text, edgy_text), key=st.one_of(key_text, edgy_text))
def test_prefix_range_equals_startswith(prefix: str, key: str) -> None:
    end = _prefix_end(prefix)
    in_range = prefix <= key and (end is None or key < end)
    assert in_range == key.startswith(prefix)
    # code point order is UTF-8 byte order, which is what SQLite's BINARY collation compares
    if end is not None:
        assert (key < end) == (key.encode() < end.encode())


def test_utc_datetime_binds_utc_and_returns_aware() -> None:
    t = UTCDateTime()
    plus5 = timezone(timedelta(hours=5))
    local = datetime(2026, 1, 1, 5, 30, tzinfo=plus5)
    stored = t.process_bind_param(local, SQLITE)
    assert stored == datetime(2026, 1, 1, 0, 30) and stored.tzinfo is None
    on_pg = t.process_bind_param(local, PG)
    assert on_pg == local and on_pg is not None and on_pg.tzinfo == UTC
    back = t.process_result_value(stored, SQLITE)
    assert back == local and back is not None and back.tzinfo == UTC
    assert t.process_result_value(local, PG) == local
    assert t.process_bind_param(None, SQLITE) is None
    assert t.process_result_value(None, SQLITE) is None
    with pytest.raises(InvalidInput):
        t.process_bind_param(datetime(2026, 1, 1), SQLITE)


def test_translate_keeps_parameters_out_of_messages() -> None:
    import sqlite3

    from sqlalchemy import exc

    err = exc.IntegrityError("INSERT INTO x VALUES (?)", (b"secret-key-material",), sqlite3.IntegrityError("boom"))
    out = _translate(err, "insert")
    assert isinstance(out, MetadataError)
    assert "boom" in str(out) and "secret" not in str(out)
    locked = exc.OperationalError("BEGIN", (), sqlite3.OperationalError("database is locked"))
    assert "locked by another writer" in str(_translate(locked, "begin"))
    inner = InvalidInput("naive")
    assert _translate(exc.StatementError("bind", "SELECT", (), inner), "x") is inner


@given(prefix=st.one_of(key_text, edgy_text), after=st.one_of(key_text, edgy_text), key=st.one_of(key_text, edgy_text))
def test_key_range_is_the_keys_under_the_prefix_after_the_marker(prefix: str, after: str, key: str) -> None:
    """One lower bound (the tighter) and the prefix's end select exactly what a listing wants."""
    rng = key_range(prefix, after)
    wanted = key.startswith(prefix) and key > after
    if rng is None:
        assert not wanted
        return
    above = key >= rng.lower if rng.inclusive else key > rng.lower
    assert (above and (rng.end is None or key < rng.end)) == wanted
    assert rng.params() == {"p_lower": rng.lower, **({} if rng.end is None else {"p_end": rng.end})}


def test_key_range_picks_the_tighter_bound() -> None:
    assert key_range("d05/", "") == KeyRange(True, "d05/", "d050")
    assert key_range("d05/", "d05/f1") == KeyRange(False, "d05/f1", "d050")
    assert key_range("d05/", "d06") is None
    assert key_range("", "m") == KeyRange(False, "m", None)
