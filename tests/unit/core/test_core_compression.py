from __future__ import annotations

import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.core import compression
from datawarehouse.core.compression import NONE, ZSTD, compress, decompress
from datawarehouse.errors import CorruptFrame, InvalidInput


@settings(max_examples=100, deadline=None)
@given(data=st.one_of(st.binary(max_size=5000), st.binary(max_size=50).map(lambda b: b * 100)))
def test_round_trip(data: bytes) -> None:
    codec, payload = compress(data)
    assert codec in (NONE, ZSTD)
    if codec == ZSTD:
        assert len(payload) <= len(data) - len(data) // 32
    else:
        assert payload == data
    assert decompress(codec, payload, len(data)) == data


def test_random_data_stays_raw_and_text_is_compressed() -> None:
    raw = os.urandom(100_000)
    assert compress(raw) == (NONE, raw)
    text = b"the quick brown fox jumps over the lazy dog\n" * 1000
    codec, payload = compress(memoryview(text))
    assert codec == ZSTD and len(payload) < len(text) // 10
    assert decompress(codec, payload, len(text)) == text
    assert compress(b"") == (NONE, b"")


def test_gain_below_one_32nd_is_not_kept() -> None:
    # Random bytes followed by a short compressible run: zstd saves a little, under 1/32.
    data = os.urandom(32_000) + b"\x00" * 600
    codec, payload = compress(data)
    assert codec == NONE and payload == data


def test_compress_view_does_not_copy_raw_data() -> None:
    view = memoryview(os.urandom(10_000))
    codec, payload = compression.compress_view(view)
    assert codec == NONE and payload is view


def test_levels() -> None:
    text = b"abc" * 10_000
    for level in (1, 3, 19):
        codec, payload = compress(text, level)
        assert codec == ZSTD and decompress(codec, payload, len(text)) == text
    for level in (0, 23, -1):
        with pytest.raises(InvalidInput):
            compress(text, level)


def test_decompress_failures_are_corrupt_frame() -> None:
    text = b"hello " * 1000
    _, payload = compress(text)
    with pytest.raises(CorruptFrame):
        decompress(7, payload, len(text))
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, payload, len(text) + 1)
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, payload, len(text) - 1)
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, b"garbage garbage", 10)
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, payload[:-3], len(text))
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, payload + b"trailing", len(text))
    with pytest.raises(CorruptFrame):
        decompress(NONE, b"abc", 4)


def test_bomb_is_refused_before_allocation() -> None:
    """A frame declaring 1 GiB is refused from its header when 100 bytes were promised."""
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * (64 * 1024 * 1024))
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, bomb, 100)
    # no content size recorded at all: refused too (our writer always records it)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 1000)
    with pytest.raises(CorruptFrame):
        decompress(ZSTD, unsized, 1000)


@settings(max_examples=200, deadline=None)
@given(codec=st.integers(0, 3), payload=st.binary(max_size=300), size=st.integers(0, 10_000))
def test_decompress_garbage_only_raises_corrupt_frame(codec: int, payload: bytes, size: int) -> None:
    try:
        decompress(codec, payload, size)
    except CorruptFrame:
        pass
