"""FaultyStore rules and CountingStore tallies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from datawarehouse.errors import BlobNotFound, StorageError
from datawarehouse.storage.memory import MemoryStore
from datawarehouse.storage.wrappers import CountingStore, FaultRule, FaultyStore

DATA = bytes(range(100))


@pytest.fixture
def inner() -> MemoryStore:
    s = MemoryStore()
    s.put("shards/1/a.0", DATA)
    s.put("shards/1/a.1", DATA)
    s.put("journal/seg", b"journal")
    return s


@pytest.fixture
def faulty(inner: MemoryStore) -> FaultyStore:
    return FaultyStore(inner, seed=42)


# --- fail -----------------------------------------------------------------------------------------


def test_fail_matches_pattern_and_ops(faulty: FaultyStore) -> None:
    faulty.fail("shards/*.0", ops={"get"})
    with pytest.raises(StorageError, match=r"injected fault: get 'shards/1/a\.0'"):
        faulty.get("shards/1/a.0")
    assert faulty.get("shards/1/a.1") == DATA  # other key
    assert faulty.get_range("shards/1/a.0", 0, 2) == DATA[:2]  # other op
    assert faulty.stat("shards/1/a.0").size == 100


def test_fail_times(faulty: FaultyStore) -> None:
    rule = faulty.fail("*", times=2)
    for _ in range(2):
        with pytest.raises(StorageError):
            faulty.get("journal/seg")
    assert faulty.get("journal/seg") == b"journal"
    assert rule.fired == 2
    assert rule.exhausted


def test_fail_with_blob_not_found(faulty: FaultyStore) -> None:
    faulty.fail("shards/1/a.1", error=BlobNotFound)
    with pytest.raises(BlobNotFound):
        faulty.get("shards/1/a.1")


@pytest.mark.parametrize("op", ["put", "delete", "list", "stat", "open_append", "flush", "get_range"])
def test_fail_each_op(faulty: FaultyStore, inner: MemoryStore, op: str) -> None:
    faulty.fail("*", ops={op})  # type: ignore[arg-type]
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: faulty.put("new", b"x"),
        "delete": lambda: faulty.delete("journal/seg"),
        "list": lambda: list(faulty.list("shards/")),
        "stat": lambda: faulty.stat("journal/seg"),
        "open_append": lambda: faulty.open_append("journal/seg"),
        "flush": faulty.flush,
        "get_range": lambda: faulty.get_range("journal/seg", 0, 1),
    }
    with pytest.raises(StorageError):
        calls[op]()
    assert "new" not in inner.keys()
    assert inner.get("journal/seg") == b"journal"


def test_list_rule_matches_prefix(faulty: FaultyStore) -> None:
    faulty.fail("shards/*", ops={"list"})
    with pytest.raises(StorageError):
        faulty.list("shards/1/")
    assert list(faulty.list("journal/")) == ["journal/seg"]


def test_append_and_sync_faults(faulty: FaultyStore, inner: MemoryStore) -> None:
    f = faulty.open_append("journal/seg")
    faulty.fail("journal/*", ops={"sync"}, times=1)
    assert f.write(b"+1") == 9
    with pytest.raises(StorageError):
        f.sync()
    f.sync()
    faulty.fail("journal/*", ops={"append"}, times=1)
    with pytest.raises(StorageError):
        f.write(b"+2")
    f.close()
    assert inner.get("journal/seg") == b"journal+1"


# --- corrupt --------------------------------------------------------------------------------------


def test_corrupt_at_offset(faulty: FaultyStore, inner: MemoryStore) -> None:
    faulty.corrupt("shards/1/a.0", offset=10)
    got = faulty.get("shards/1/a.0")
    assert len(got) == len(DATA)
    assert [i for i in range(100) if got[i] != DATA[i]] == [10]
    assert got[10] == DATA[10] ^ 0xFF
    assert inner.get("shards/1/a.0") == DATA  # the stored blob is intact


def test_corrupt_get_range_uses_blob_offsets(faulty: FaultyStore) -> None:
    faulty.corrupt("*", offset=50, count=2)
    got = faulty.get_range("shards/1/a.0", 45, 10)
    assert [i for i in range(10) if got[i] != DATA[45 + i]] == [5, 6]
    assert faulty.get_range("shards/1/a.0", 0, 10) == DATA[:10]  # range misses the offset


def test_corrupt_random_is_reproducible(inner: MemoryStore) -> None:
    a = FaultyStore(inner, seed=7)
    b = FaultyStore(inner, seed=7)
    a.corrupt()
    b.corrupt()
    got_a, got_b = a.get("shards/1/a.0"), b.get("shards/1/a.0")
    assert got_a == got_b != DATA
    assert sum(x != y for x, y in zip(got_a, DATA, strict=True)) == 1


def test_corrupt_on_put_stores_bad_bytes(faulty: FaultyStore, inner: MemoryStore) -> None:
    faulty.corrupt("new", ops={"put"}, offset=0, mask=0x01)
    faulty.put("new", b"\x00abc")
    assert inner.get("new") == b"\x01abc"


def test_corrupt_on_append(faulty: FaultyStore, inner: MemoryStore) -> None:
    faulty.corrupt("j", ops={"append"}, offset=1, times=1)
    f = faulty.open_append("j")
    f.write(b"\x00\x00")
    f.write(b"\x00")
    assert inner.get("j") == b"\x00\xff\x00"


# --- truncate -------------------------------------------------------------------------------------


def test_truncate_get(faulty: FaultyStore) -> None:
    faulty.truncate("shards/1/a.0", keep=30)
    assert faulty.get("shards/1/a.0") == DATA[:30]
    assert faulty.get_range("shards/1/a.0", 20, 50) == DATA[20:30]
    assert faulty.get_range("shards/1/a.0", 40, 5) == b""


def test_truncate_default_half(faulty: FaultyStore) -> None:
    faulty.truncate("shards/1/a.0", ops={"get", "get_range", "stat"})
    assert faulty.get("shards/1/a.0") == DATA[:50]
    assert faulty.get_range("shards/1/a.0", 40, 30) == DATA[40:50]
    assert faulty.stat("shards/1/a.0").size == 50


def test_truncate_put_is_a_short_write(faulty: FaultyStore, inner: MemoryStore) -> None:
    faulty.truncate("torn", ops={"put"}, keep=3)
    faulty.put("torn", b"abcdef")
    assert inner.get("torn") == b"abc"


def test_truncate_append_is_a_torn_write(faulty: FaultyStore, inner: MemoryStore) -> None:
    f = faulty.open_append("j")
    f.write(b"whole;")
    faulty.truncate("j", ops={"append"}, keep=2, times=1)
    with pytest.raises(StorageError, match="torn"):
        f.write(b"record")
    assert inner.get("j") == b"whole;re"


# --- delay ----------------------------------------------------------------------------------------


def test_delay_uses_sleep(inner: MemoryStore) -> None:
    slept: list[float] = []
    faulty = FaultyStore(inner, sleep=slept.append)
    faulty.delay("shards/*", 0.25, ops={"get"}, times=2)
    for _ in range(3):
        assert faulty.get("shards/1/a.0") == DATA
    faulty.get("journal/seg")
    assert slept == [0.25, 0.25]


def test_delay_really_sleeps(inner: MemoryStore) -> None:
    import time

    faulty = FaultyStore(inner)
    faulty.delay(seconds=0.05)
    t0 = time.monotonic()
    faulty.get("journal/seg")
    assert time.monotonic() - t0 >= 0.045


# --- rule management ------------------------------------------------------------------------------


def test_rules_add_remove_clear(faulty: FaultyStore) -> None:
    r1 = faulty.fail("a")
    r2 = faulty.add_rule(FaultRule("delay", "b", seconds=0.0))
    assert faulty.rules == (r1, r2)
    faulty.remove_rule(r1)
    assert list(faulty.rules) == [r2]
    faulty.clear_rules()
    assert list(faulty.rules) == []
    assert faulty.get("journal/seg") == b"journal"


def test_rules_apply_in_order(faulty: FaultyStore) -> None:
    faulty.truncate("*", keep=10)
    faulty.corrupt("*", offset=5)
    got = faulty.get("shards/1/a.0")
    assert len(got) == 10 and got[5] == DATA[5] ^ 0xFF


def test_describe_and_inner(faulty: FaultyStore, inner: MemoryStore) -> None:
    assert faulty.describe() == "faulty(memory)"
    assert faulty.inner is inner


# --- CountingStore --------------------------------------------------------------------------------


def test_counting(inner: MemoryStore) -> None:
    c = CountingStore(inner)
    c.put("x", memoryview(b"12345"))
    c.get("x")
    c.get_range("shards/1/a.0", 10, 20)
    c.get_range("shards/1/a.1", 95, 20)
    c.stat("x")
    c.delete("x")
    list(c.list("shards/"))
    with pytest.raises(BlobNotFound):
        c.get("missing")
    assert c.calls("put") == 1 and c.nbytes("put") == 5
    assert c.calls("get") == 2 and c.nbytes("get") == 5
    assert c.calls("get_range") == 2 and c.nbytes("get_range") == 25
    assert c.keys("get_range") == ["shards/1/a.0", "shards/1/a.1"]
    assert c.calls() == 8
    assert c.snapshot()["get_range"] == (2, 25)
    c.reset()
    assert c.calls() == 0 and c.nbytes() == 0 and c.log == []


def test_counting_append(inner: MemoryStore) -> None:
    c = CountingStore(inner, record_keys=False)
    f = c.open_append("j")
    f.write(b"abc")
    f.write(b"de")
    f.sync()
    f.close()
    assert c.calls("append") == 2 and c.nbytes("append") == 5
    assert c.calls("sync") == 1
    assert c.log == []
    assert inner.get("j") == b"abcde"
    assert c.describe() == "counting(memory)"
