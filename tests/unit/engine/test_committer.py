"""The committer's group commit: batch functions, refusals, operations left alone, queue order,
and what reaches the journal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from datawarehouse.engine import journal as jr
from datawarehouse.engine.committer import APPLY_ALONE, Committer, Refused, _Item
from datawarehouse.errors import InvalidInput, MetadataError, StorageError
from datawarehouse.ids import DiskId
from datawarehouse.meta.repo import MetaTx
from datawarehouse.meta.sql import SqlMetaRepo
from datawarehouse.storage.memory import MemoryStore


@pytest.fixture
def stores() -> dict[DiskId, MemoryStore]:
    return {DiskId(f"d{i}"): MemoryStore() for i in range(3)}


@pytest.fixture
def committer(tmp_path: Path, stores: dict[DiskId, MemoryStore]) -> Iterator[tuple[Committer, SqlMetaRepo]]:
    repo = SqlMetaRepo.for_sqlite(tmp_path / "meta.sqlite3")
    journal = jr.Journal(lambda: stores, lambda: 2)
    c = Committer(repo, journal)
    try:
        yield c, repo
    finally:
        c.close()
        journal.close()
        repo.close()


def setting(name: str, value: str) -> Any:
    def apply(tx: MetaTx) -> str:
        if value == "refuse":
            raise InvalidInput(f"{name} refused")
        tx.set_setting(name, value)
        return f"alone:{name}"

    return apply


class Batch:
    """A batch function over (name, value) payloads that records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, tx: MetaTx, payloads: Sequence[Any]) -> list[Any]:
        self.calls.append(list(payloads))
        out: list[Any] = []
        for name, value in payloads:
            if value == "no":
                out.append(Refused(InvalidInput(f"{name}: no")))
            elif value == "alone" or value == "refuse":
                out.append(APPLY_ALONE)
            elif value == "explode":
                raise RuntimeError("batch function failed")
            else:
                tx.set_setting(name, value)
                out.append(f"batched:{name}")
        return out


def item(name: str, value: str, batch: Batch | None) -> _Item:
    record = (jr.RECORD_OP, f"{name}={value}".encode())
    return _Item(setting(name, value), record, Future(), batch, (name, value))


def journaled(stores: dict[DiskId, MemoryStore]) -> list[bytes]:
    return [e.payload for e in jr.read_all(stores)]


def values(repo: SqlMetaRepo, *names: str) -> list[str | None]:
    with repo.transaction() as tx:
        return [tx.get_setting(n) for n in names]


def test_a_run_goes_to_the_batch_function_once(committer: tuple[Committer, SqlMetaRepo], stores: Any) -> None:
    c, repo = committer
    fn = Batch()
    items = [item(f"k{i}", f"v{i}", fn) for i in range(5)]
    c._commit(list(items))
    assert fn.calls == [[(f"k{i}", f"v{i}") for i in range(5)]]
    assert [it.future.result() for it in items] == [f"batched:k{i}" for i in range(5)]
    assert values(repo, "k0", "k4") == ["v0", "v4"]
    assert journaled(stores) == [f"k{i}=v{i}".encode() for i in range(5)]


def test_refused_and_alone_outcomes(committer: tuple[Committer, SqlMetaRepo], stores: Any) -> None:
    c, repo = committer
    fn = Batch()
    items = [item("a", "1", fn), item("b", "no", fn), item("c", "alone", fn), item("d", "refuse", fn)]
    items.append(item("e", "2", fn))
    c._commit(list(items))
    assert items[0].future.result() == "batched:a"
    with pytest.raises(InvalidInput, match="b: no"):
        items[1].future.result()
    assert items[2].future.result() == "alone:c"  # its own apply ran
    with pytest.raises(InvalidInput, match="d refused"):  # its own apply failed: dropped, rest kept
        items[3].future.result()
    assert items[4].future.result() == "batched:e"
    assert values(repo, "a", "b", "c", "d", "e") == ["1", None, "alone", None, "2"]
    assert journaled(stores) == [b"a=1", b"c=alone", b"e=2"]  # queue order, refused ones left out


def test_queue_order_is_kept_across_runs(committer: tuple[Committer, SqlMetaRepo], stores: Any) -> None:
    c, repo = committer
    fn = Batch()
    # Same name written by a batched, a plain, and a batched operation: the last one wins.
    items = [item("k", "first", fn), item("k", "second", None), item("k", "third", fn)]
    c._commit(list(items))
    assert fn.calls == [[("k", "first")], [("k", "third")]]  # the plain operation splits the runs
    assert values(repo, "k") == ["third"]
    assert journaled(stores) == [b"k=first", b"k=second", b"k=third"]


def test_a_failing_batch_function_falls_back_to_one_at_a_time(
    committer: tuple[Committer, SqlMetaRepo], stores: Any
) -> None:
    c, repo = committer
    fn = Batch()
    items = [item("a", "1", fn), item("b", "explode", fn), item("c", "refuse", fn)]
    c._commit(list(items))
    assert items[0].future.result() == "alone:a"
    assert items[1].future.result() == "alone:b"
    with pytest.raises(InvalidInput):
        items[2].future.result()
    assert values(repo, "a", "b") == ["1", "explode"]
    assert journaled(stores) == [b"a=1", b"b=explode"]


def test_all_refused_appends_nothing(committer: tuple[Committer, SqlMetaRepo], stores: Any) -> None:
    c, _ = committer
    fn = Batch()
    items = [item("a", "no", fn), item("b", "no", fn)]
    c._commit(list(items))
    for it in items:
        with pytest.raises(InvalidInput):
            it.future.result()
    assert journaled(stores) == []


def test_submit_with_a_record_built_after_apply(committer: tuple[Committer, SqlMetaRepo], stores: Any) -> None:
    c, repo = committer
    seen: list[str] = []

    def apply(tx: MetaTx) -> int:
        tx.set_setting("x", "1")
        seen.append("applied")
        return 7

    def record() -> tuple[int, bytes]:
        assert seen == ["applied"]
        return jr.RECORD_OP, b"late"

    assert c.submit(apply, record) == 7
    assert c.submit(setting("y", "2"), (jr.RECORD_OP, b"early"), batch=Batch(), payload=("y", "2")) == "batched:y"
    assert journaled(stores) == [b"late", b"early"]
    assert values(repo, "x", "y") == ["1", "2"]


def test_a_batch_function_must_answer_every_operation(committer: tuple[Committer, SqlMetaRepo]) -> None:
    c, _ = committer

    def short(tx: MetaTx, payloads: Sequence[Any]) -> list[Any]:
        return []

    it = _Item(setting("a", "1"), (jr.RECORD_OP, b"a"), Future(), short, ("a", "1"))
    c._commit([it])
    assert it.future.result() == "alone:a"  # the malformed answer failed the run: one at a time
    with pytest.raises(MetadataError, match="closed"):
        c.close()
        c.submit(setting("b", "1"), (jr.RECORD_OP, b"b"))


def test_shards_are_flushed_once_per_batch_before_the_journal(
    tmp_path: Path, stores: dict[DiskId, MemoryStore]
) -> None:
    """Operations naming disks with staged shards: the committer flushes the union of those
    disks once, before any record of the batch reaches the journal; when that flush fails,
    exactly the operations with shards fail and the others are committed."""
    repo = SqlMetaRepo.for_sqlite(tmp_path / "meta.sqlite3")
    journal = jr.Journal(lambda: stores, lambda: 2)
    flushes: list[tuple[frozenset[DiskId], int]] = []
    failing: set[DiskId] = set()

    def flush(disks: frozenset[DiskId]) -> None:
        flushes.append((disks, len(journaled(stores))))
        if disks & failing:
            raise StorageError("disk x: fdatasync failed")

    c = Committer(repo, journal, flush=flush)
    try:
        a, b, plain = item("a", "1", None), item("b", "2", None), item("p", "3", None)
        a.flush, b.flush = frozenset({DiskId("d0"), DiskId("d1")}), frozenset({DiskId("d1"), DiskId("d2")})
        c._commit([a, b, plain])
        assert flushes == [(frozenset({DiskId("d0"), DiskId("d1"), DiskId("d2")}), 0)]
        assert [f.result() for f in (a.future, b.future, plain.future)] == ["alone:a", "alone:b", "alone:p"]
        assert journaled(stores) == [b"a=1", b"b=2", b"p=3"]

        failing.add(DiskId("d2"))
        x, y = item("x", "4", None), item("y", "5", None)
        x.flush = frozenset({DiskId("d2")})
        c._commit([x, y])
        with pytest.raises(StorageError):
            x.future.result()
        assert y.future.result() == "alone:y"
        assert journaled(stores)[-1] == b"y=5" and b"x=4" not in journaled(stores)
        with repo.read() as tx:
            assert tx.get_setting("x") is None and tx.get_setting("y") == "5"
        unable = Committer(repo, journal)  # no flush function: naming disks is a programming error
        try:
            with pytest.raises(MetadataError):
                unable.enqueue(setting("z", "6"), (jr.RECORD_OP, b"z"), flush=frozenset({DiskId("d0")}))
        finally:
            unable.close()
    finally:
        c.close()
        journal.close()
        repo.close()
