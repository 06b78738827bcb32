"""Store wrappers for tests and benchmarks.

``FaultyStore`` injects failures, corruption, truncation and latency into any ``BlobStore`` so the
engine's healing, degraded reads and error paths can be exercised deterministically.
``CountingStore`` counts calls and bytes per operation so tests can assert *how much* I/O an
operation did (for example that a range read touched only the shards it needed).
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Literal

from datawarehouse.errors import StorageError
from datawarehouse.storage.base import AppendFile, BlobStat, BlobStore, Capacity, get_into_via_get

__all__ = ["ALL_OPS", "CountingStore", "FaultAction", "FaultRule", "FaultyStore", "Op"]

Op = Literal["put", "get", "get_range", "delete", "list", "stat", "open_append", "append", "sync", "flush"]
"""Operations a rule can match. ``append`` and ``sync`` are ``AppendFile.write`` and ``.sync`` on
a handle returned by ``open_append``; ``list`` matches its prefix; ``flush`` matches key ``""``."""

ALL_OPS: frozenset[Op] = frozenset(
    {"put", "get", "get_range", "delete", "list", "stat", "open_append", "append", "sync", "flush"}
)
_READ_OPS: frozenset[Op] = frozenset({"get", "get_range"})

FaultAction = Literal["fail", "corrupt", "truncate", "delay"]


@dataclass(eq=False)
class FaultRule:
    """One injected fault.

    - ``fail``: raise ``error`` (a ``StorageError`` subclass, e.g. ``BlobNotFound`` to simulate a
      lost shard) instead of doing the operation.
    - ``corrupt``: XOR ``count`` bytes with ``mask`` at blob offset ``offset`` (random if
      ``None``) in what ``get``/``get_range`` return, in what ``put``/``append`` store.
    - ``truncate``: the blob looks ``keep`` bytes long (half its size if ``None``) to
      ``get``/``get_range``/``stat``; ``put`` stores only ``keep`` bytes; ``append`` writes
      ``keep`` bytes of the record and then fails (a torn write).
    - ``delay``: sleep ``seconds`` before the operation.

    ``times`` limits how often the rule fires (``None``: forever); ``fired`` counts firings.
    """

    action: FaultAction
    pattern: str = "*"
    ops: frozenset[Op] = ALL_OPS
    times: int | None = None
    error: type[StorageError] = StorageError
    offset: int | None = None
    count: int = 1
    mask: int = 0xFF
    keep: int | None = None
    seconds: float = 0.0
    fired: int = field(default=0, init=False)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, op: Op, key: str) -> bool:
        return op in self.ops and not self.exhausted and fnmatchcase(key, self.pattern)


class FaultyStore:
    """Wraps a ``BlobStore`` and applies matching ``FaultRule``s (in order) to each call.

    Thread-safe: rule matching and firing counts are updated under a lock (the delay itself and
    the wrapped call run outside it). ``seed`` makes random corruption offsets reproducible;
    ``sleep`` can be replaced so delay tests need not really sleep.
    """

    def __init__(self, inner: BlobStore, *, seed: int | None = 0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._inner = inner
        self._rules: builtins.list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._sleep = sleep

    @property
    def inner(self) -> BlobStore:
        return self._inner

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        with self._lock:
            return tuple(self._rules)

    # --- rule management -------------------------------------------------------------------------

    def add_rule(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def fail(
        self,
        pattern: str = "*",
        ops: Iterable[Op] = ALL_OPS,
        *,
        times: int | None = None,
        error: type[StorageError] = StorageError,
    ) -> FaultRule:
        return self.add_rule(FaultRule("fail", pattern, frozenset(ops), times, error=error))

    def corrupt(
        self,
        pattern: str = "*",
        ops: Iterable[Op] = _READ_OPS,
        *,
        offset: int | None = None,
        count: int = 1,
        mask: int = 0xFF,
        times: int | None = None,
    ) -> FaultRule:
        return self.add_rule(
            FaultRule("corrupt", pattern, frozenset(ops), times, offset=offset, count=count, mask=mask)
        )

    def truncate(
        self,
        pattern: str = "*",
        ops: Iterable[Op] = _READ_OPS,
        *,
        keep: int | None = None,
        times: int | None = None,
    ) -> FaultRule:
        return self.add_rule(FaultRule("truncate", pattern, frozenset(ops), times, keep=keep))

    def delay(
        self,
        pattern: str = "*",
        seconds: float = 0.1,
        ops: Iterable[Op] = ALL_OPS,
        *,
        times: int | None = None,
    ) -> FaultRule:
        return self.add_rule(FaultRule("delay", pattern, frozenset(ops), times, seconds=seconds))

    # --- BlobStore -------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"faulty({self._inner.describe()})"

    def close(self) -> None:
        """Close the wrapped store if it holds resources (a pack store seals its active pack)."""
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        self._inner.put(key, self._written("put", key, data), defer_dir_sync=defer_dir_sync)

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        # A staged blob is a put whose durability comes later: the same "put" rules apply, to the
        # whole blob (a corruption rule's offsets count from the prefix's first byte).
        blob = prefix + bytes(data) if prefix else data
        self._inner.stage(key, self._written("put", key, blob), cache=cache)

    def _written(self, op: Op, key: str, data: bytes | memoryview) -> bytes | memoryview:
        """Fire the rules of a write and return the bytes that reach the inner store."""
        for rule in self._fire(op, key):
            if rule.action == "corrupt":
                data = self._flip(bytes(data), rule, 0)
            elif rule.action == "truncate":
                data = bytes(data)[: self._keep(rule, len(data))]
        return data

    def flush(self) -> None:
        self._fire("flush", "")
        self._inner.flush()

    def get(self, key: str) -> bytes:
        rules = self._fire("get", key)
        data = self._inner.get(key)
        for rule in rules:
            if rule.action == "corrupt":
                data = self._flip(data, rule, 0)
            elif rule.action == "truncate":
                data = data[: self._keep(rule, len(data))]
        return data

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        # Through ``get``, so that its faults apply to these reads too.
        return get_into_via_get(self, key, head, dest, cached_only=cached_only)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        rules = self._fire("get_range", key)
        data = self._inner.get_range(key, offset, length)
        for rule in rules:
            if rule.action == "corrupt":
                data = self._flip(data, rule, offset)
            elif rule.action == "truncate":
                keep = rule.keep if rule.keep is not None else self._inner.stat(key).size // 2
                data = data[: max(0, keep - offset)]
        return data

    def delete(self, key: str) -> bool:
        self._fire("delete", key)
        return self._inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._fire("list", prefix)
        return self._inner.list(prefix)

    def stat(self, key: str) -> BlobStat:
        rules = self._fire("stat", key)
        st = self._inner.stat(key)
        for rule in rules:
            if rule.action == "truncate":
                st = BlobStat(size=min(st.size, self._keep(rule, st.size)), modified_at=st.modified_at)
        return st

    def open_append(self, key: str) -> AppendFile:
        self._fire("open_append", key)
        return _FaultyAppendFile(self, self._inner.open_append(key), key)

    def capacity(self) -> Capacity:
        return self._inner.capacity()

    # --- internals -------------------------------------------------------------------------------

    def _fire(self, op: Op, key: str) -> builtins.list[FaultRule]:
        """Select and count the rules that fire for this call; apply delays and failures now and
        return the rest (corrupt/truncate) for the caller to apply to the data."""
        with self._lock:
            fired = [r for r in self._rules if r.matches(op, key)]
            for rule in fired:
                rule.fired += 1
        for rule in fired:
            if rule.action == "delay":
                self._sleep(rule.seconds)
        for rule in fired:
            if rule.action == "fail":
                raise rule.error(f"injected fault: {op} {key!r} on {self.describe()}")
        return [r for r in fired if r.action in ("corrupt", "truncate")]

    def _flip(self, data: bytes, rule: FaultRule, base: int) -> bytes:
        """XOR ``rule.count`` bytes at blob offset ``rule.offset`` (``data`` starts at blob offset
        ``base``); bytes outside ``data`` are left alone."""
        if not data:
            return data
        if rule.offset is None:
            with self._lock:
                start = self._random.randrange(max(1, len(data) - rule.count + 1))
        else:
            start = rule.offset - base
        out = bytearray(data)
        for i in range(max(0, start), min(len(out), start + rule.count)):
            out[i] ^= rule.mask
        return bytes(out)

    @staticmethod
    def _keep(rule: FaultRule, size: int) -> int:
        return rule.keep if rule.keep is not None else size // 2


class _FaultyAppendFile:
    def __init__(self, store: FaultyStore, inner: AppendFile, key: str) -> None:
        self._store = store
        self._inner = inner
        self._key = key

    def write(self, data: bytes) -> int:
        rules = self._store._fire("append", self._key)
        for rule in rules:
            if rule.action == "corrupt":
                data = self._store._flip(bytes(data), rule, 0)
            elif rule.action == "truncate":
                keep = self._store._keep(rule, len(data))
                if keep < len(data):
                    if keep > 0:
                        self._inner.write(bytes(data[:keep]))
                    raise StorageError(f"injected torn write: append {self._key!r}")
        return self._inner.write(data)

    def sync(self) -> None:
        self._store._fire("sync", self._key)
        self._inner.sync()

    def close(self) -> None:
        self._inner.close()


@dataclass
class _Tally:
    calls: Counter[str] = field(default_factory=Counter)
    nbytes: Counter[str] = field(default_factory=Counter)
    log: builtins.list[tuple[str, str, int]] = field(default_factory=builtins.list)


class CountingStore:
    """Wraps a ``BlobStore`` and counts calls and bytes per operation.

    Bytes are what crossed the store boundary: written for ``put``/``append``, returned for
    ``get``/``get_range``. With ``record_keys`` every call is also logged as ``(op, key, bytes)``
    so tests can see exactly which blobs an operation touched; turn it off for long benchmarks.
    Calls are counted when they start, whether or not they succeed.
    """

    def __init__(self, inner: BlobStore, *, record_keys: bool = True) -> None:
        self._inner = inner
        self._record = record_keys
        self._lock = threading.Lock()
        self._tally = _Tally()

    @property
    def inner(self) -> BlobStore:
        return self._inner

    def calls(self, op: str | None = None) -> int:
        """Calls of ``op``, or of all operations."""
        with self._lock:
            return self._tally.calls[op] if op else sum(self._tally.calls.values())

    def nbytes(self, op: str | None = None) -> int:
        """Bytes moved by ``op``, or by all operations."""
        with self._lock:
            return self._tally.nbytes[op] if op else sum(self._tally.nbytes.values())

    def keys(self, op: str) -> builtins.list[str]:
        """Keys ``op`` was called with, in call order (needs ``record_keys``)."""
        with self._lock:
            return [k for o, k, _ in self._tally.log if o == op]

    @property
    def log(self) -> builtins.list[tuple[str, str, int]]:
        with self._lock:
            return builtins.list(self._tally.log)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """``{op: (calls, bytes)}``."""
        with self._lock:
            return {op: (n, self._tally.nbytes[op]) for op, n in self._tally.calls.items()}

    def reset(self) -> None:
        with self._lock:
            self._tally = _Tally()

    def _count(self, op: str, key: str, nbytes: int = 0) -> None:
        with self._lock:
            self._tally.calls[op] += 1
            if nbytes:
                self._tally.nbytes[op] += nbytes
            if self._record:
                self._tally.log.append((op, key, nbytes))

    def _add_bytes(self, op: str, nbytes: int) -> None:
        if nbytes:
            with self._lock:
                self._tally.nbytes[op] += nbytes

    # --- BlobStore -------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"counting({self._inner.describe()})"

    def close(self) -> None:
        """Close the wrapped store if it holds resources (a pack store seals its active pack)."""
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    def put(self, key: str, data: bytes | memoryview, *, defer_dir_sync: bool = False) -> None:
        self._count("put", key, memoryview(data).nbytes)
        self._inner.put(key, data, defer_dir_sync=defer_dir_sync)

    def stage(self, key: str, data: bytes | memoryview, *, cache: bool = True, prefix: bytes = b"") -> None:
        self._count("put", key, len(prefix) + memoryview(data).nbytes)
        self._inner.stage(key, data, cache=cache, prefix=prefix)

    def flush(self) -> None:
        self._count("flush", "")
        self._inner.flush()

    def get(self, key: str) -> bytes:
        self._count("get", key)
        data = self._inner.get(key)
        self._add_bytes("get", len(data))
        return data

    def get_into(self, key: str, head: int, dest: memoryview, *, cached_only: bool = False) -> bytes | None:
        self._count("get", key)
        got = self._inner.get_into(key, head, dest, cached_only=cached_only)
        if got is not None:
            self._add_bytes("get", head + dest.nbytes)
        return got

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._count("get_range", key)
        data = self._inner.get_range(key, offset, length)
        self._add_bytes("get_range", len(data))
        return data

    def delete(self, key: str) -> bool:
        self._count("delete", key)
        return self._inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._count("list", prefix)
        return self._inner.list(prefix)

    def stat(self, key: str) -> BlobStat:
        self._count("stat", key)
        return self._inner.stat(key)

    def open_append(self, key: str) -> AppendFile:
        self._count("open_append", key)
        return _CountingAppendFile(self, self._inner.open_append(key), key)

    def capacity(self) -> Capacity:
        self._count("capacity", "")
        return self._inner.capacity()


class _CountingAppendFile:
    def __init__(self, store: CountingStore, inner: AppendFile, key: str) -> None:
        self._store = store
        self._inner = inner
        self._key = key

    def write(self, data: bytes) -> int:
        self._store._count("append", self._key, len(data))
        return self._inner.write(data)

    def sync(self) -> None:
        self._store._count("sync", self._key)
        self._inner.sync()

    def close(self) -> None:
        self._inner.close()


if TYPE_CHECKING:
    from datawarehouse.storage.memory import MemoryStore

    _faulty_check: BlobStore = FaultyStore(MemoryStore())
    _counting_check: BlobStore = CountingStore(MemoryStore())
