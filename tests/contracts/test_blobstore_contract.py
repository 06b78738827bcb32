"""The ``BlobStore`` contract: every store implementation (and every wrapper around one) must pass
this suite unchanged. Implementation-specific behaviour lives in ``tests/unit/storage``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datawarehouse.errors import BlobNotFound, StorageError, UnsafePath, WouldBlock
from datawarehouse.storage.base import BlobStore
from datawarehouse.storage.localdisk import LocalDiskStore
from datawarehouse.storage.memory import MemoryStore
from datawarehouse.storage.packstore import PackStore
from datawarehouse.storage.wrappers import CountingStore, FaultyStore

STORE_FACTORIES: dict[str, Callable[[Path], BlobStore]] = {
    "localdisk": lambda p: LocalDiskStore(p),
    "memory": lambda p: MemoryStore(),
    "faulty-memory": lambda p: FaultyStore(MemoryStore()),
    "counting-localdisk": lambda p: CountingStore(LocalDiskStore(p)),
    # Default prefix: the ``shards/`` keys of the listing tests are packed, the rest are files.
    "packstore": lambda p: PackStore(p),
    # Every key written with put/stage is packed (open_append blobs stay files).
    "packstore-all-packed": lambda p: PackStore(p, packed_prefix=""),
    # The same bytes written through the page cache (where O_DIRECT is refused).
    "packstore-buffered": lambda p: PackStore(p, direct_io=False),
    "counting-packstore-small-packs": lambda p: CountingStore(PackStore(p, packed_prefix="", pack_limit=4096)),
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    root = tmp_path / "store"
    root.mkdir()
    made = STORE_FACTORIES[request.param](root)
    yield made
    inner = made.inner if isinstance(made, CountingStore) else made
    if isinstance(inner, PackStore):
        inner.close()


UNSAFE_KEYS = [
    "../x",
    "/abs",
    "a/../b",
    "a//b",
    "",
    "a\\b",
    ".hidden",
    "a/.hidden",
    "a/./b",
    "x\0y",
    "a/",
    "/",
    "..",
    "-dash-first",
    "a b",
    "x" * 201,
    "/".join(["a"] * 17),
    "/".join(["abcdefghi"] * 103),  # 1029 characters
]


# --- round trips -----------------------------------------------------------------------------------


def test_put_get_bytes(store: BlobStore) -> None:
    store.put("a/b/c.bin", b"hello")
    assert store.get("a/b/c.bin") == b"hello"


def test_put_get_memoryview(store: BlobStore) -> None:
    buf = bytearray(b"0123456789" * 1000)
    store.put("mv", memoryview(buf)[10:20])
    buf[10:20] = b"X" * 10  # the store must not keep a reference to the caller's buffer
    assert store.get("mv") == b"0123456789"


def test_put_empty_blob(store: BlobStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.stat("empty").size == 0
    assert store.get_range("empty", 0, 10) == b""


def test_put_large_blob(store: BlobStore) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of any block size
    store.put("shards/1/ab/cd/large.0", data)
    assert store.get("shards/1/ab/cd/large.0") == data


def test_put_deferred_then_flush(store: BlobStore) -> None:
    for i in range(5):
        store.put(f"d/{i}/blob", bytes([i]) * 10, defer_dir_sync=True)
    store.flush()
    store.flush()  # nothing pending: a no-op
    assert all(store.get(f"d/{i}/blob") == bytes([i]) * 10 for i in range(5))


def test_stage_then_flush(store: BlobStore) -> None:
    """Staged blobs (a chunk's shards) are all there, whole, once ``flush`` returns; staging over
    an existing key replaces it at that flush."""
    store.put("s/0/blob", b"old")
    blobs = {f"s/{i}/blob": bytes([i + 1]) * (1000 + i) for i in range(5)}
    for key, data in blobs.items():
        store.stage(key, data)
    store.flush()
    store.flush()  # nothing pending: a no-op
    assert all(store.get(key) == data for key, data in blobs.items())
    assert sorted(store.list("s/")) == sorted(blobs)


def test_stage_with_prefix_and_cache_hint(store: BlobStore) -> None:
    """``prefix`` is stored in front of the data (one blob, as if joined); ``cache=False`` changes
    nothing a reader can see; views are accepted as data. Under ``shards/`` so pack stores pack
    them (their direct-write path included)."""
    payload = bytes(range(256)) * 1000
    store.stage("shards/p/one", memoryview(payload)[7:], prefix=b"HEADER")
    store.stage("shards/p/two", payload, cache=False, prefix=b"H" * 96)
    store.stage("shards/p/three", payload, cache=False)
    store.stage("shards/p/empty", b"", prefix=b"only a prefix")
    store.flush()
    assert store.get("shards/p/one") == b"HEADER" + payload[7:]
    assert store.get("shards/p/two") == b"H" * 96 + payload
    assert store.get("shards/p/three") == payload
    assert store.get("shards/p/empty") == b"only a prefix"
    assert store.get_range("shards/p/two", 90, 10) == b"H" * 6 + payload[:4]
    assert store.stat("shards/p/one").size == 6 + len(payload) - 7


def test_get_into_splits_a_blob_between_head_and_buffer(store: BlobStore) -> None:
    """``get_into``: the first ``head`` bytes returned, the rest written into the caller's buffer
    (at an offset inside a larger one, as a chunk's data shards are read side by side); a blob of
    another length gives ``None``; a missing one ``BlobNotFound``. Packed (``shards/``) and plain
    keys alike."""
    payload = bytes(range(256)) * 1000
    for key in ("shards/g/one", "plain-blob"):
        store.stage(key, payload, prefix=b"HEAD" * 44)
        store.flush()
        big = bytearray(b"." * (len(payload) + 20))
        dest = memoryview(big)[10 : 10 + len(payload)]
        assert store.get_into(key, 176, dest) == b"HEAD" * 44
        assert bytes(big) == b"." * 10 + payload + b"." * 10
        # Other splits of the same blob.
        assert store.get_into(key, 0, memoryview(bytearray(176 + len(payload)))) == b""
        assert store.get_into(key, 176 + len(payload), memoryview(bytearray(0))) == b"HEAD" * 44 + payload
        # Longer or shorter than the blob: None, never a partial answer.
        assert store.get_into(key, 176, memoryview(bytearray(len(payload) + 1))) is None
        assert store.get_into(key, 176, memoryview(bytearray(len(payload) - 1))) is None
    with pytest.raises(BlobNotFound):
        store.get_into("shards/g/missing", 10, memoryview(bytearray(10)))
    with pytest.raises(BlobNotFound):
        store.get_into("missing", 10, memoryview(bytearray(10)))


def test_get_into_cached_only_answers_the_same_or_would_block(store: BlobStore) -> None:
    """``cached_only``: the same answer as an ordinary ``get_into``, or ``WouldBlock`` (a store
    that cannot tell, bytes not in memory); never other bytes, never a wait."""
    payload = bytes(range(256)) * 1000
    for key in ("shards/c/one", "plain-blob"):
        store.stage(key, payload, prefix=b"HEAD" * 44)
        store.flush()
        dest = bytearray(len(payload))
        try:
            head = store.get_into(key, 176, memoryview(dest), cached_only=True)
        except WouldBlock:
            continue
        assert head == b"HEAD" * 44 and bytes(dest) == payload
        try:
            assert store.get_into(key, 176, memoryview(bytearray(len(payload) + 1)), cached_only=True) is None
        except WouldBlock:
            pass
    for key in ("shards/c/missing", "missing"):
        with pytest.raises((BlobNotFound, WouldBlock)):
            store.get_into(key, 10, memoryview(bytearray(10)), cached_only=True)


def test_overwrite_returns_new_content(store: BlobStore) -> None:
    store.put("k", b"old content, longer")
    store.put("k", b"new")
    assert store.get("k") == b"new"
    assert store.stat("k").size == 3
    assert sorted(store.list("")) == ["k"]


def test_top_level_and_deep_keys(store: BlobStore) -> None:
    deep = "/".join(f"s{i}" for i in range(16))
    store.put("top", b"1")
    store.put(deep, b"2")
    assert store.get("top") == b"1"
    assert store.get(deep) == b"2"
    assert sorted(store.list()) == sorted(["top", deep])


# --- ranges ----------------------------------------------------------------------------------------


def test_get_range_inside(store: BlobStore) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 0, 4) == b"0123"
    assert store.get_range("r", 3, 4) == b"3456"
    assert store.get_range("r", 0, 10) == b"0123456789"
    assert store.get_range("r", 5, 0) == b""


def test_get_range_crossing_end_is_short(store: BlobStore) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 8, 100) == b"89"
    assert store.get_range("r", 9, 1) == b"9"


def test_get_range_past_end_is_empty(store: BlobStore) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 10, 5) == b""
    assert store.get_range("r", 1000, 5) == b""


def test_get_range_missing(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.get_range("missing", 0, 1)


def test_get_range_negative_refused(store: BlobStore) -> None:
    store.put("r", b"0123456789")
    with pytest.raises(StorageError):
        store.get_range("r", -1, 2)
    with pytest.raises(StorageError):
        store.get_range("r", 0, -2)


# --- missing, delete ------------------------------------------------------------------------------


def test_get_missing(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.get("nope")
    with pytest.raises(BlobNotFound):
        store.get("no/such/dir/blob")


def test_stat_missing(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.stat("nope")


def test_blob_not_found_is_a_storage_error(store: BlobStore) -> None:
    with pytest.raises(StorageError):
        store.get("nope")


def test_directory_is_not_a_blob(store: BlobStore) -> None:
    store.put("dir/blob", b"x")
    with pytest.raises(BlobNotFound):
        store.get("dir")
    with pytest.raises(BlobNotFound):
        store.stat("dir")
    assert store.delete("dir") is False


def test_key_under_a_blob_is_not_found(store: BlobStore) -> None:
    store.put("file", b"x")
    with pytest.raises(BlobNotFound):
        store.get("file/child")
    assert store.delete("file/child") is False


def test_delete(store: BlobStore) -> None:
    store.put("a/b", b"x")
    assert store.delete("a/b") is True
    assert store.delete("a/b") is False
    assert store.delete("never/was") is False
    with pytest.raises(BlobNotFound):
        store.get("a/b")
    assert list(store.list()) == []
    store.put("a/b", b"again")  # the kept directory is reused
    assert store.get("a/b") == b"again"


# --- listing ---------------------------------------------------------------------------------------

KEYS = [
    "shards/1/ab/cd/abcd01.0000000000000001.0",
    "shards/1/ab/cd/abcd01.0000000000000001.1",
    "shards/1/ab/ef/abef02.0000000000000001.0",
    "shards/1/ac/00/ac0003.0000000000000001.0",
    "shards/2/ab/cd/abcd04.0000000000000001.0",
    "journal/w1-00000001.log",
    "journal/w1-00000002.log",
    "top-level",
]


@pytest.fixture
def populated(store: BlobStore) -> BlobStore:
    for key in KEYS:
        store.put(key, key.encode())
    return store


def test_list_empty_prefix_lists_all(populated: BlobStore) -> None:
    assert sorted(populated.list("")) == sorted(KEYS)
    assert sorted(populated.list()) == sorted(KEYS)


def test_list_whole_segment_prefix(populated: BlobStore) -> None:
    assert sorted(populated.list("shards/1/ab/")) == sorted(k for k in KEYS if k.startswith("shards/1/ab/"))
    assert sorted(populated.list("journal/")) == ["journal/w1-00000001.log", "journal/w1-00000002.log"]


def test_list_prefix_ending_mid_segment(populated: BlobStore) -> None:
    assert sorted(populated.list("shards/1/a")) == sorted(k for k in KEYS if k.startswith("shards/1/a"))
    assert sorted(populated.list("shards/1/ab/cd/abcd01.0000000000000001.")) == [
        "shards/1/ab/cd/abcd01.0000000000000001.0",
        "shards/1/ab/cd/abcd01.0000000000000001.1",
    ]
    assert sorted(populated.list("journal/w1-00000002")) == ["journal/w1-00000002.log"]
    assert sorted(populated.list("t")) == ["top-level"]
    assert sorted(populated.list("shards")) == sorted(k for k in KEYS if k.startswith("shards"))


def test_list_prefix_without_slash_matches_directory(populated: BlobStore) -> None:
    # "shards/1" is a plain string prefix: it covers shards/1/... but not shards/2/...
    assert sorted(populated.list("shards/1")) == sorted(k for k in KEYS if k.startswith("shards/1"))


def test_list_exact_key_as_prefix(populated: BlobStore) -> None:
    assert list(populated.list("top-level")) == ["top-level"]


def test_list_no_match(populated: BlobStore) -> None:
    assert list(populated.list("nothing/")) == []
    assert list(populated.list("shards/9/")) == []
    assert list(populated.list("zz")) == []


@pytest.mark.parametrize("prefix", ["../", "/", "/shards", "a//", "..", "shards/../", "\\"])
def test_list_odd_prefix_matches_nothing(populated: BlobStore, prefix: str) -> None:
    # A plain prefix that no valid key can start with: nothing, and nothing outside is walked.
    assert list(populated.list(prefix)) == []


def test_list_excludes_deleted(populated: BlobStore) -> None:
    populated.delete("journal/w1-00000001.log")
    assert sorted(populated.list("journal/")) == ["journal/w1-00000002.log"]


def test_list_never_shows_unfinished_puts(store: BlobStore) -> None:
    for i in range(20):
        store.put(f"p/{i}", b"x" * 100)
    assert sorted(store.list()) == sorted(f"p/{i}" for i in range(20))


# --- stat ------------------------------------------------------------------------------------------


def test_stat(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put("s/blob", b"x" * 1234)
    st = store.stat("s/blob")
    assert st.size == 1234
    assert st.modified_at.tzinfo is not None
    assert st.modified_at.utcoffset() == timedelta(0)
    assert before <= st.modified_at <= datetime.now(UTC) + timedelta(seconds=5)


# --- append files ----------------------------------------------------------------------------------


def test_open_append_offsets(store: BlobStore) -> None:
    f = store.open_append("journal/w1-00000001.log")
    try:
        assert f.write(b"abc") == 3
        assert f.write(b"") == 3
        assert f.write(b"defgh") == 8
        f.sync()
    finally:
        f.close()
    assert store.get("journal/w1-00000001.log") == b"abcdefgh"
    assert store.stat("journal/w1-00000001.log").size == 8


def test_open_append_creates_empty(store: BlobStore) -> None:
    f = store.open_append("j/new.log")
    f.close()
    assert store.get("j/new.log") == b""
    assert list(store.list("j/")) == ["j/new.log"]


def test_open_append_reopen_continues(store: BlobStore) -> None:
    f = store.open_append("j/seg")
    f.write(b"first;")
    f.sync()
    f.close()
    g = store.open_append("j/seg")
    assert g.write(b"second") == len(b"first;second")
    g.sync()
    g.close()
    assert store.get("j/seg") == b"first;second"
    assert store.get_range("j/seg", 6, 100) == b"second"


def test_open_append_on_existing_put_blob(store: BlobStore) -> None:
    store.put("j/x", b"12345")
    f = store.open_append("j/x")
    assert f.write(b"67") == 7
    f.close()
    assert store.get("j/x") == b"1234567"


def test_open_append_visible_before_close(store: BlobStore) -> None:
    f = store.open_append("j/live")
    f.write(b"abc")
    assert store.get("j/live") == b"abc"
    f.close()


def test_append_after_close_fails(store: BlobStore) -> None:
    f = store.open_append("j/closed")
    f.close()
    f.close()  # idempotent
    with pytest.raises(StorageError):
        f.write(b"x")


def test_append_concurrent_writers_offsets(store: BlobStore) -> None:
    f = store.open_append("j/concurrent")
    offsets: list[int] = []
    lock = threading.Lock()

    def writer(tag: int) -> None:
        for _ in range(50):
            end = f.write(bytes([tag]) * 7)
            with lock:
                offsets.append(end)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()
    data = store.get("j/concurrent")
    assert len(data) == 4 * 50 * 7
    assert sorted(offsets) == list(range(7, len(data) + 1, 7))
    # each record is whole: every 7-byte slot holds a single tag
    assert all(len(set(data[i : i + 7])) == 1 for i in range(0, len(data), 7))


# --- unsafe keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=lambda k: repr(k)[:30])
def test_unsafe_keys_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(UnsafePath):
        store.put(key, b"x")
    with pytest.raises(UnsafePath):
        store.get(key)
    with pytest.raises(UnsafePath):
        store.get_range(key, 0, 1)
    with pytest.raises(UnsafePath):
        store.delete(key)
    with pytest.raises(UnsafePath):
        store.stat(key)
    with pytest.raises(UnsafePath):
        store.open_append(key)
    assert list(store.list()) == []


def test_longest_valid_key_accepted(store: BlobStore) -> None:
    key = "/".join(["a" * 63] * 16)  # 16 segments, 1023 characters
    assert len(key) <= 1024
    store.put(key, b"long")
    assert store.get(key) == b"long"
    assert list(store.list()) == [key]


# --- capacity, describe ---------------------------------------------------------------------------


def test_capacity(store: BlobStore) -> None:
    cap = store.capacity()
    assert cap.total_size > 0
    assert 0 <= cap.free_size <= cap.total_size


def test_describe(store: BlobStore) -> None:
    assert isinstance(store.describe(), str)
    assert store.describe()


# --- concurrency -----------------------------------------------------------------------------------


def test_concurrent_distinct_and_shared_keys(store: BlobStore) -> None:
    n_threads, rounds = 8, 25
    # Distinct lengths make a mix of two writes detectable even if bytes happened to agree.
    values = {t: bytes([65 + t]) * (4096 + 512 * t) for t in range(n_threads)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                own = f"own/{t}/blob-{r % 3}"
                store.put(own, values[t] + r.to_bytes(2, "big"), defer_dir_sync=bool(r % 2))
                assert store.get(own) == values[t] + r.to_bytes(2, "big")
                store.put("shared/blob", values[t])
                seen = store.get("shared/blob")
                assert seen in values.values(), "a reader saw a mix of two writes"
                part = store.get_range("shared/blob", 100, 50)
                assert len(part) == 50 and len(set(part)) == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.flush()
    assert not errors, errors[0]
    assert store.get("shared/blob") in values.values()
    for t in range(n_threads):
        for i in range(3):
            last_round = max(r for r in range(rounds) if r % 3 == i)
            assert store.get(f"own/{t}/blob-{i}") == values[t] + last_round.to_bytes(2, "big")
    expected = {"shared/blob"} | {f"own/{t}/blob-{i}" for t in range(n_threads) for i in range(3)}
    assert set(store.list()) == expected


def test_concurrent_readers_never_see_partial_overwrite(store: BlobStore) -> None:
    a, b = b"A" * 300_000, b"B" * 200_000
    store.put("x", a)
    stop = threading.Event()
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = store.get("x")
            if data not in (a, b):
                bad.append(len(data))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for th in readers:
        th.start()
    try:
        for i in range(30):
            store.put("x", b if i % 2 == 0 else a)
    finally:
        stop.set()
        for th in readers:
            th.join()
    assert not bad
