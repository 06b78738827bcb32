from __future__ import annotations

import itertools
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.core.chunking import FastCDC, chunk_all
from datawarehouse.errors import InvalidInput
from datawarehouse.records import ChunkerParams

SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)

params_st = st.sampled_from(
    [
        ChunkerParams(64, 256, 1024),
        ChunkerParams(128, 512, 2048),
        ChunkerParams(256, 1024, 4096),
        ChunkerParams(1024, 1024, 1024),
        ChunkerParams(64, 4096, 8192),
    ]
)
data_st = st.one_of(
    st.binary(max_size=40_000),
    st.integers(0, 2**32).map(lambda seed: random.Random(seed).randbytes(30_000)),
    # low-entropy input: long runs never hit a gear-hash cut and exercise max_size cuts
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 5000)).map(lambda t: t[0] * t[1]),
)


def _check_bounds(chunks: list[bytes], params: ChunkerParams) -> None:
    for chunk in chunks[:-1]:
        assert params.min_size <= len(chunk) <= params.max_size
    if chunks:
        assert 0 < len(chunks[-1]) <= params.max_size


@settings(max_examples=150, deadline=None)
@given(data=data_st, params=params_st)
def test_chunks_cover_input_and_respect_bounds(data: bytes, params: ChunkerParams) -> None:
    chunks = chunk_all(data, params)
    assert b"".join(chunks) == data
    _check_bounds(chunks, params)


@settings(max_examples=150, deadline=None)
@given(data=data_st, params=params_st, cuts=st.lists(st.integers(0, 40_000), max_size=30), st_data=st.data())
def test_boundaries_do_not_depend_on_feed_splits(
    data: bytes, params: ChunkerParams, cuts: list[int], st_data: st.DataObject
) -> None:
    points = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    use_views = st_data.draw(st.booleans())
    chunker = FastCDC(params)
    streamed: list[bytes] = []
    for start, end in itertools.pairwise(points):
        piece = data[start:end]
        streamed += chunker.feed(memoryview(piece) if use_views else piece)
    streamed += chunker.finish()
    assert streamed == chunk_all(data, params)


def test_one_byte_insert_changes_few_chunks() -> None:
    params = ChunkerParams(min_size=2048, avg_size=8192, max_size=32768)
    data = random.Random(7).randbytes(8 * 1024 * 1024)
    before = chunk_all(data, params)
    after = chunk_all(b"!" + data, params)
    assert len(before) > 500
    assert 1 <= len(set(after) - set(before)) <= 3  # chunks that are new
    assert 1 <= len(set(before) - set(after)) <= 3  # chunks that are gone
    tail = len(before) - 10
    assert after[-tail:] == before[-tail:]  # resynchronised right after the insert


def test_empty_input_gives_no_chunks() -> None:
    chunker = FastCDC(SMALL)
    assert chunker.feed(b"") == []
    assert chunker.finish() == []
    assert chunk_all(b"", SMALL) == []


def test_finish_is_final() -> None:
    chunker = FastCDC(SMALL)
    assert chunker.feed(b"x" * 100) == []
    assert chunker.finish() == [b"x" * 100]
    assert chunker.finish() == []
    with pytest.raises(InvalidInput):
        chunker.feed(b"more")


def test_chunks_become_final_once_max_size_plus_batch_is_buffered() -> None:
    chunker = FastCDC(SMALL, batch=0)
    data = os.urandom(SMALL.max_size - 1)
    assert chunker.feed(data) == []
    out = chunker.feed(b"z")
    assert out and b"".join(out) == (data + b"z")[: sum(map(len, out))]
    batched = FastCDC(SMALL)  # default batch: max_size more before the first cut
    assert batched.feed(data + b"z") == []
    assert batched.feed(os.urandom(SMALL.max_size))


def test_chunks_are_read_only_views_and_input_buffers_may_be_reused() -> None:
    chunker = FastCDC(SMALL, batch=0)
    buf = bytearray(os.urandom(SMALL.max_size * 3))
    original = bytes(buf)
    out = chunker.feed(buf)
    buf[:] = bytes(len(buf))  # the caller reuses its buffer: what was fed must not change
    out += chunker.finish()
    assert b"".join(out) == original
    assert all(isinstance(c, memoryview) and c.readonly for c in out)


def test_streaming_buffers_stay_small() -> None:
    """A long stream fed in blocks never buffers more than 2 * max_size plus one block."""
    params = ChunkerParams()  # the defaults: 256 KiB / 1 MiB / 4 MiB
    chunker = FastCDC(params)
    block = 256 * 1024
    rng = random.Random(3)
    fed = emitted = 0
    for _ in range(256):  # 64 MiB
        piece = rng.randbytes(block)
        fed += block
        emitted += sum(map(len, chunker.feed(piece)))
        assert chunker._pending_size == fed - emitted
        assert chunker._pending_size < 2 * params.max_size + block
    emitted += sum(map(len, chunker.finish()))
    assert emitted == fed


@pytest.mark.parametrize(
    "sizes",
    [
        (64, 128, 8192),  # avg below pyfastcdc's 256
        (64, 256, 512),  # max below 1 KiB
        (2 * 1024 * 1024, 2 * 1024 * 1024, 8 * 1024 * 1024),  # min above 1 MiB
        (1024, 1024 * 1024, 32 * 1024 * 1024),  # max above 16 MiB
    ],
)
def test_unsupported_params_are_refused(sizes: tuple[int, int, int]) -> None:
    # Refused where the parameters are made (config, records), before any chunker exists.
    with pytest.raises(InvalidInput):
        FastCDC(ChunkerParams(*sizes))
