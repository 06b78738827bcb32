"""MemoryStore specifics: injected clock, capacity limit, append handle semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datawarehouse.clock import ManualClock
from datawarehouse.errors import BlobNotFound, StorageError
from datawarehouse.storage.memory import MemoryStore


def test_modified_at_from_clock() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    s = MemoryStore(clock=clock)
    s.put("a", b"x")
    clock.advance(timedelta(hours=1))
    f = s.open_append("j")
    f.write(b"1")
    assert s.stat("a").modified_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert s.stat("j").modified_at == datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_set_modified_at() -> None:
    s = MemoryStore()
    s.put("a", b"x")
    when = datetime(2020, 1, 1, tzinfo=UTC)
    s.set_modified_at("a", when)
    assert s.stat("a").modified_at == when
    with pytest.raises(BlobNotFound):
        s.set_modified_at("missing", when)


def test_capacity_limit_is_disk_full() -> None:
    s = MemoryStore(capacity_bytes=100)
    s.put("a", b"x" * 60)
    with pytest.raises(StorageError, match="disk full"):
        s.put("b", b"x" * 50)
    s.put("a", b"x" * 90)  # overwrite counts only the difference
    assert s.capacity().free_size == 10
    f = s.open_append("a")
    with pytest.raises(StorageError, match="disk full"):
        f.write(b"x" * 11)
    s.delete("a")
    assert s.capacity().free_size == 100
    assert s.used_size == 0


def test_append_handle_survives_replace_like_an_inode() -> None:
    s = MemoryStore()
    f = s.open_append("j")
    f.write(b"abc")
    s.put("j", b"replaced")
    assert f.write(b"def") == 6  # still the old "inode"
    assert s.get("j") == b"replaced"


def test_get_returns_independent_bytes() -> None:
    s = MemoryStore()
    f = s.open_append("j")
    f.write(b"abc")
    snap = s.get("j")
    f.write(b"def")
    assert snap == b"abc"
    assert isinstance(snap, bytes)


def test_keys_and_len() -> None:
    s = MemoryStore(label="mem-1")
    s.put("a/b", b"1")
    s.put("c", b"2")
    assert sorted(s.keys()) == ["a/b", "c"]
    assert len(s) == 2
    assert s.describe() == "mem-1"
