from __future__ import annotations

import itertools
import os
import threading

import pytest

from datawarehouse.core import erasure
from datawarehouse.core.erasure import ErasureCoder
from datawarehouse.errors import CorruptFrame, DataUnavailable, InvalidInput, InvalidStorageClass

CLASSES = [(1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (4, 2), (3, 3), (8, 4)]
SIZES = [44, 45, 1000, 4097, 65_536 + 3]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("k", "m"), CLASSES)
def test_any_k_shards_decode(k: int, m: int, size: int) -> None:
    coder = ErasureCoder(k, m)
    sealed = os.urandom(size)
    shards = coder.encode(sealed)
    assert len(shards) == k + m
    assert coder.scheme == (erasure.SCHEME_REPLICA if k == 1 else erasure.SCHEME_ISA_L_RS_VAND)
    if k == 1:
        assert all(s == sealed for s in shards)
    else:
        assert len({len(s) for s in shards}) == 1
    for subset in itertools.combinations(range(k + m), k):
        assert coder.decode({i: shards[i] for i in subset}, size) == sealed
    assert coder.decode(dict(enumerate(shards)), size) == sealed
    for subset in itertools.combinations(range(k + m), k - 1):
        with pytest.raises(DataUnavailable):
            coder.decode({i: shards[i] for i in subset}, size)


@pytest.mark.parametrize("size", [44, 4097])
@pytest.mark.parametrize(("k", "m"), CLASSES)
def test_reconstruct_reproduces_exact_shards(k: int, m: int, size: int) -> None:
    coder = ErasureCoder(k, m)
    shards = coder.encode(os.urandom(size))
    n = k + m
    for available in itertools.combinations(range(n), k):
        missing = [i for i in range(n) if i not in available]
        rebuilt = coder.reconstruct({i: shards[i] for i in available}, list(reversed(missing)))
        assert rebuilt == {i: shards[i] for i in missing}
        for one in missing:  # healing a single shard
            assert coder.reconstruct({i: shards[i] for i in available}, [one]) == {one: shards[one]}
    if m:
        with pytest.raises(DataUnavailable):
            coder.reconstruct({i: shards[i] for i in range(k - 1)}, [n - 1])
    assert coder.reconstruct(dict(enumerate(shards)), []) == {}


def test_encode_is_deterministic() -> None:
    sealed = os.urandom(10_000)
    assert ErasureCoder(4, 2).encode(sealed) == ErasureCoder(4, 2).encode(bytes(bytearray(sealed)))


def test_buffers_other_than_bytes_are_accepted() -> None:
    coder = ErasureCoder(2, 1)
    sealed = os.urandom(999)
    shards = coder.encode(memoryview(sealed))  # type: ignore[arg-type]
    views = {0: memoryview(shards[0]), 2: bytearray(shards[2])}
    assert coder.decode(views, 999) == sealed  # type: ignore[arg-type]
    assert coder.reconstruct(views, [1]) == {1: shards[1]}  # type: ignore[arg-type]


@pytest.mark.parametrize(("k", "m"), [(0, 1), (-1, 2), (1, -1), (2, 0), (4, 0), (30, 3), (22, 4), (6, 5), (5, 6)])
def test_refused_classes(k: int, m: int) -> None:
    with pytest.raises(InvalidStorageClass):
        ErasureCoder(k, m)


def test_mds_table_boundary_decodes_everywhere() -> None:
    """The largest accepted class of each row of the table in erasure.py really is MDS."""
    for k, m in [(29, 3), (21, 4), (5, 5), (4, 16)]:
        assert erasure.isa_l_vand_is_mds(k, m)
        coder = ErasureCoder(k, m)
        sealed = os.urandom(500)
        shards = coder.encode(sealed)
        for subset in itertools.combinations(range(k + m), k):
            assert coder.decode({i: shards[i] for i in subset}, 500) == sealed


def test_corrupt_shards_raise_corrupt_frame() -> None:
    coder = ErasureCoder(4, 2)
    sealed = os.urandom(5000)
    shards = coder.encode(sealed)
    garbage = {i: os.urandom(len(shards[0])) for i in range(4)}
    with pytest.raises(CorruptFrame):
        coder.decode(garbage, 5000)
    with pytest.raises(CorruptFrame):
        coder.decode({0: shards[0], 1: shards[1], 2: shards[2], 3: shards[3][:100]}, 5000)
    with pytest.raises(CorruptFrame):
        coder.decode({i: shards[i] for i in range(4)}, 5001)  # not the size we stored
    with pytest.raises(CorruptFrame):
        coder.reconstruct(garbage, [5])
    replica = ErasureCoder(1, 2)
    with pytest.raises(CorruptFrame):
        replica.decode({0: b"abc"}, 5000)
    assert replica.decode({0: b"abc", 2: sealed}, 5000) == sealed


def test_bad_indexes_are_refused() -> None:
    coder = ErasureCoder(2, 1)
    shards = coder.encode(b"x" * 100)
    with pytest.raises(InvalidInput):
        coder.decode({0: shards[0], 3: shards[1]}, 100)
    with pytest.raises(InvalidInput):
        coder.reconstruct({0: shards[0], 1: shards[1]}, [1])
    with pytest.raises(InvalidInput):
        coder.reconstruct({0: shards[0], 1: shards[1]}, [5])


def test_concurrent_use_from_threads() -> None:
    coder = ErasureCoder(4, 2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                sealed = os.urandom(20_000)
                shards = coder.encode(sealed)
                assert coder.decode({i: shards[i] for i in (1, 2, 4, 5)}, len(sealed)) == sealed
                assert coder.reconstruct({i: shards[i] for i in (0, 2, 3, 5)}, [1, 4]) == {
                    1: shards[1],
                    4: shards[4],
                }
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 2), (8, 3)])
@pytest.mark.parametrize("size", [1, 63, 4096, 262_145, 1 << 20])
def test_data_shard_fast_path_matches_pyeclib(k: int, m: int, size: int) -> None:
    """All data shards present: the payloads are concatenated here, no pyeclib call; the bytes are
    exactly what pyeclib's own decode returns."""
    coder = ErasureCoder(k, m)
    data = os.urandom(size)
    shards = coder.encode(data)
    joined = erasure._join_data_fragments(shards[:k], size)
    assert joined == data
    driver, _lock = erasure._driver(k, m)
    assert driver.decode(shards[:k]) == data
    assert coder.decode(dict(enumerate(shards[:k])), size) == data


def test_data_shard_fast_path_declines_foreign_headers() -> None:
    """Fragments whose header is not the layout the fast path reads (wrong magic, index or size)
    are left to pyeclib, which then decides: decodes or raises CorruptFrame."""
    coder = ErasureCoder(4, 2)
    data = os.urandom(10_000)
    shards = coder.encode(data)
    assert erasure._join_data_fragments(shards[:4], len(data) + 1) is None
    assert erasure._join_data_fragments([shards[1], shards[0], shards[2], shards[3]], len(data)) is None
    bad_magic = bytearray(shards[0])
    bad_magic[59] ^= 0xFF
    assert erasure._join_data_fragments([bytes(bad_magic), *shards[1:4]], len(data)) is None
    with pytest.raises(CorruptFrame):
        coder.decode({0: bytes(bad_magic), 1: shards[1], 2: shards[2], 3: shards[3]}, len(data))
    # The parity shards still decode around it.
    assert coder.decode({1: shards[1], 2: shards[2], 3: shards[3], 4: shards[4]}, len(data)) == data
