from __future__ import annotations

import os

import blake3
import pytest
import xxhash

from datawarehouse.core import digest
from datawarehouse.errors import InvalidInput


def test_chunk_id_is_keyed_blake3() -> None:
    key = bytes(range(32))
    data = b"some chunk"
    cid = digest.chunk_id(key, data)
    assert len(cid) == 32
    assert cid == blake3.blake3(data, key=key).digest()
    assert digest.chunk_id(bytes(32), data) != cid
    assert digest.chunk_id(key, memoryview(data)) == cid


def test_parallel_path_gives_the_same_digest() -> None:
    key = os.urandom(32)
    data = os.urandom(3 * 1024 * 1024 + 5)
    assert digest.chunk_id(key, data) == blake3.blake3(data, key=key).digest()
    assert digest.chunk_id(key, memoryview(data)) == blake3.blake3(data, key=key).digest()


def test_chunk_id_key_size() -> None:
    with pytest.raises(InvalidInput):
        digest.chunk_id(b"short", b"data")


def test_xxh3() -> None:
    assert digest.xxh3_64(b"abc") == xxhash.xxh3_64_intdigest(b"abc")
    assert digest.xxh3_64(memoryview(b"abc")) == digest.xxh3_64(b"abc")


def test_master_key_id() -> None:
    master = bytes(range(32))
    kid = digest.master_key_id(master)
    assert len(kid) == 16 and int(kid, 16) >= 0
    expected = blake3.blake3(master, derive_key_context="dwh v1 master key id").digest()[:8].hex()
    assert kid == expected
    assert digest.master_key_id(bytes(32)) != kid
    with pytest.raises(InvalidInput):
        digest.master_key_id(b"x")
