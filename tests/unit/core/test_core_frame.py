from __future__ import annotations

import os
import struct

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.core import frame
from datawarehouse.core.frame import (
    JOURNAL_HEADER_SIZE,
    SHARD_HEADER_SIZE,
    ShardHeader,
    pack_journal_record,
    parse_journal,
    parse_shard,
    parse_shard_header,
    shard_header,
)
from datawarehouse.errors import CorruptFrame, InvalidInput

CID = bytes(range(32))


def pack_shard(
    scheme: int, k: int, m: int, index: int, domain: int, cid: bytes, gen: int, sealed: int, payload: bytes
) -> bytes:
    """A shard's bytes as a store holds them: the header, then the payload."""
    return shard_header(scheme, k, m, index, domain, cid, gen, sealed, payload) + payload


def _replica_shard(payload: bytes = b"sealed frame bytes " * 3, index: int = 1) -> bytes:
    return pack_shard(0, 1, 2, index, 7, CID, 0xDEADBEEF, len(payload), payload)


def test_shard_round_trip() -> None:
    payload = os.urandom(300)
    data = pack_shard(1, 4, 2, 5, 9, CID, 2**63 - 1, 1111, payload)
    assert len(data) == SHARD_HEADER_SIZE + 300
    assert data[:4] == b"DWHS"
    header, body = parse_shard(data)
    assert header == ShardHeader(
        scheme=1,
        k=4,
        m=2,
        index=5,
        domain_id=9,
        chunk_id=CID,
        generation=2**63 - 1,
        sealed_size=1111,
        payload_size=300,
        payload_xxh3=xxhash.xxh3_64_intdigest(payload),
    )
    assert bytes(body) == payload
    assert parse_shard_header(data) == header
    assert parse_shard_header(data[:SHARD_HEADER_SIZE]) == header
    assert parse_shard(memoryview(data))[0] == header
    assert parse_shard(bytearray(data))[0] == header  # type: ignore[arg-type]


def test_header_layout_matches_the_spec() -> None:
    data = pack_shard(1, 4, 2, 3, 0x01020304, CID, 0x1122334455667788, 1000, b"p" * 10)
    assert data[4:9] == bytes([1, 1, 4, 2, 3])
    assert data[9:12] == b"\x00\x00\x00"
    assert data[12:16] == bytes([1, 2, 3, 4])
    assert data[16:48] == CID
    assert struct.unpack(">QQQQQQ", data[48:96]) == (
        0x1122334455667788,
        1000,
        10,
        xxhash.xxh3_64_intdigest(b"p" * 10),
        0,
        xxhash.xxh3_64_intdigest(data[:88]),
    )


def test_every_bit_flip_in_a_shard_is_detected() -> None:
    data = _replica_shard()
    for pos in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            with pytest.raises(CorruptFrame):
                parse_shard(bytes(flipped))


def test_truncated_or_extended_shards_are_detected() -> None:
    data = _replica_shard()
    for cut in range(len(data)):
        with pytest.raises(CorruptFrame):
            parse_shard(data[:cut])
    with pytest.raises(CorruptFrame):
        parse_shard(data + b"\x00")


@pytest.mark.parametrize(
    "args",
    [
        (2, 1, 1, 0),  # unknown scheme
        (0, 2, 1, 0),  # replica with k=2
        (1, 1, 1, 0),  # EC with k=1
        (1, 2, 0, 0),  # EC without parity
        (1, 4, 2, 6),  # index out of range
        (1, 30, 3, 0),  # more than 32 shards
        (0, 0, 1, 0),  # k=0
    ],
)
def test_pack_refuses_impossible_fields(args: tuple[int, int, int, int]) -> None:
    scheme, k, m, index = args
    with pytest.raises(InvalidInput):
        pack_shard(scheme, k, m, index, 1, CID, 1, 10, b"x" * 10)


def test_pack_refuses_bad_values() -> None:
    with pytest.raises(InvalidInput):
        pack_shard(1, 2, 1, 0, 1, CID[:5], 1, 10, b"x")
    with pytest.raises(InvalidInput):
        pack_shard(1, 2, 1, 0, 2**32, CID, 1, 10, b"x")
    with pytest.raises(InvalidInput):
        pack_shard(1, 2, 1, 0, 1, CID, 2**64, 10, b"x")
    with pytest.raises(InvalidInput):
        pack_shard(0, 1, 1, 0, 1, CID, 1, 10, b"x")  # replica payload must be the frame


def _header_with(fields: tuple[int, int, int, int, int, int]) -> bytes:
    """A header with a *valid checksum* around arbitrary field values."""
    version, scheme, k, m, index, reserved = fields
    body = struct.pack(
        ">4sBBBBB3sI32sQQQQQ", b"DWHS", version, scheme, k, m, index, bytes(3), 1, CID, 1, 10, 10, 0, reserved
    )
    return body + struct.pack(">Q", xxhash.xxh3_64_intdigest(body))


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: b"DWHS\x01" + b),
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 1),
        ).map(_header_with),
        st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 300)).map(
            lambda t: _header_with((1, t[0], 1 + t[1], 2, 0, 0)) + os.urandom(t[2])
        ),
    )
)
def test_parsers_raise_only_corrupt_frame(data: bytes) -> None:
    for parse in (parse_shard_header, parse_shard):
        try:
            parse(data)
        except CorruptFrame:
            pass


# --- journal -----------------------------------------------------------------------------------


RECORDS = [(1, b'{"domain":1}'), (2, b""), (2, os.urandom(1000)), (255, b"x")]


def _journal() -> bytes:
    return b"".join(pack_journal_record(t, p) for t, p in RECORDS)


def test_journal_round_trip() -> None:
    data = _journal()
    records, end = parse_journal(data)
    assert [(t, p) for _, t, p in records] == RECORDS
    assert end == len(data)
    assert [e for e, _, _ in records][-1] == end
    first_end = records[0][0]
    assert parse_journal(data, first_end) == (records[1:], end)
    assert parse_journal(memoryview(data)) == (records, end)
    record = pack_journal_record(3, b"abc")
    assert record[:12] == b"DWHJ\x01\x03\x00\x00\x00\x00\x00\x03"
    assert record[12:20] == xxhash.xxh3_64_intdigest(record[:12] + b"abc").to_bytes(8, "big")
    assert len(record) == JOURNAL_HEADER_SIZE + 3


def test_journal_torn_tail_keeps_complete_records() -> None:
    data = _journal()
    ends = [0] + [e for e, _, _ in parse_journal(data)[0]]
    for cut in range(len(data) + 1):
        records, end = parse_journal(data[:cut])
        complete = max(e for e in ends if e <= cut)
        assert end == complete
        assert [(t, p) for _, t, p in records] == RECORDS[: ends.index(complete)]


def test_journal_stops_at_a_damaged_record() -> None:
    data = bytearray(_journal())
    ends = [e for e, _, _ in parse_journal(bytes(data))[0]]
    data[ends[1] + 25] ^= 0x40  # inside the third record's payload
    records, end = parse_journal(bytes(data))
    assert end == ends[1] and len(records) == 2
    garbage_after = _journal() + os.urandom(500)
    assert parse_journal(garbage_after)[1] == len(_journal())


def test_journal_payload_cap() -> None:
    head = struct.pack(">4sBBHI", b"DWHJ", 1, 1, 0, frame.MAX_JOURNAL_PAYLOAD + 1)
    huge = head + struct.pack(">Q", xxhash.xxh3_64_intdigest(head)) + b"\x00" * 100
    assert parse_journal(huge) == ([], 0)
    with pytest.raises(InvalidInput):
        pack_journal_record(1, b"\x00" * (frame.MAX_JOURNAL_PAYLOAD + 1))
    with pytest.raises(InvalidInput):
        pack_journal_record(256, b"")


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: _journal() + b),
        st.binary(max_size=400).map(lambda b: b"DWHJ\x01" + b),
    ),
    start=st.integers(0, 500),
)
def test_parse_journal_never_raises(data: bytes, start: int) -> None:
    records, end = parse_journal(data, start)
    assert end >= start
    pos = start
    for record_end, _, payload in records:
        assert record_end - pos == JOURNAL_HEADER_SIZE + len(payload)
        pos = record_end
    assert pos == end
