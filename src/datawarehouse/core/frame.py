"""Shard files and journal records: pack and parse (format.md, "Shard file", "Journal record").

Parsers treat their input as hostile: whatever the bytes, they raise only ``CorruptFrame`` (shard
parsers) or nothing at all (the journal parser, which must find the end of a torn log instead of
failing on it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import xxhash

from datawarehouse.core.digest import CHUNK_ID_SIZE, xxh3_64
from datawarehouse.errors import CorruptFrame, InvalidInput

FORMAT_VERSION: Final = 1
SHARD_HEADER_SIZE: Final = 96
JOURNAL_HEADER_SIZE: Final = 20
MAX_SHARDS: Final = 32
MAX_JOURNAL_PAYLOAD: Final = 64 * 1024 * 1024

SHARD_MAGIC: Final = b"DWHS"
JOURNAL_MAGIC: Final = b"DWHJ"

SCHEME_REPLICA: Final = 0
SCHEME_ISA_L_RS_VAND: Final = 1

# magic, version, scheme, k, m, index, reserved(3), domain, chunk id, generation, sealed size,
# payload size, payload xxh3, reserved(8)  -> 88 bytes, then the header checksum.
_SHARD_BODY = struct.Struct(">4sBBBBB3sI32sQQQQQ")
_U64 = struct.Struct(">Q")
_JOURNAL_HEAD = struct.Struct(">4sBBHI")  # the 12 bytes covered by the checksum with the payload
_JOURNAL_FULL = struct.Struct(">4sBBHIQ")
_RESERVED3: Final = b"\x00\x00\x00"
_U32_MAX: Final = 0xFFFFFFFF
_U64_MAX: Final = 0xFFFFFFFFFFFFFFFF

assert _SHARD_BODY.size + _U64.size == SHARD_HEADER_SIZE
assert _JOURNAL_FULL.size == JOURNAL_HEADER_SIZE


@dataclass(frozen=True)
class ShardHeader:
    scheme: int
    k: int
    m: int
    index: int
    domain_id: int
    chunk_id: bytes
    generation: int
    sealed_size: int
    payload_size: int
    payload_xxh3: int
    version: int = FORMAT_VERSION


def _shard_fields_problem(scheme: int, k: int, m: int, index: int) -> str | None:
    """Why (scheme, k, m, index) is not a valid combination, or ``None`` when it is."""
    if scheme not in (SCHEME_REPLICA, SCHEME_ISA_L_RS_VAND):
        return f"unknown scheme {scheme}"
    if k < 1 or m < 0 or k + m > MAX_SHARDS:
        return f"impossible EC({k},{m})"
    if scheme == SCHEME_REPLICA and k != 1:
        return f"replica scheme with k={k}"
    if scheme == SCHEME_ISA_L_RS_VAND and (k < 2 or m < 1):
        return f"erasure-coded scheme with EC({k},{m})"
    if not 0 <= index < k + m:
        return f"shard index {index} outside EC({k},{m})"
    return None


def shard_header(
    scheme: int,
    k: int,
    m: int,
    index: int,
    domain_id: int,
    chunk_id: bytes,
    generation: int,
    sealed_size: int,
    payload: bytes | memoryview,
) -> bytes:
    """The 96-byte header of the shard whose payload is ``payload``; a shard's bytes are this
    header followed by the payload (stores write them without joining them:
    ``BlobStore.stage(..., prefix=header)``)."""
    problem = _shard_fields_problem(scheme, k, m, index)
    if problem is not None:
        raise InvalidInput(f"shard: {problem}")
    if len(chunk_id) != CHUNK_ID_SIZE:
        raise InvalidInput(f"shard: chunk id must be {CHUNK_ID_SIZE} bytes")
    if not 0 <= domain_id <= _U32_MAX:
        raise InvalidInput(f"shard: domain id {domain_id} does not fit in 32 bits")
    if not 0 <= generation <= _U64_MAX or not 0 <= sealed_size <= _U64_MAX:
        raise InvalidInput("shard: generation and sealed size must fit in 64 bits")
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    if scheme == SCHEME_REPLICA and size != sealed_size:
        raise InvalidInput("shard: a replica payload is the whole sealed frame")
    body = _SHARD_BODY.pack(
        SHARD_MAGIC,
        FORMAT_VERSION,
        scheme,
        k,
        m,
        index,
        _RESERVED3,
        domain_id,
        chunk_id,
        generation,
        sealed_size,
        size,
        xxh3_64(payload),
        0,
    )
    return body + _U64.pack(xxh3_64(body))


def parse_shard_header(data: bytes | memoryview) -> ShardHeader:
    """Parse and check the 96-byte header at the start of ``data`` (the payload is not read)."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size < SHARD_HEADER_SIZE:
        raise CorruptFrame(f"shard: {size} bytes is shorter than the {SHARD_HEADER_SIZE}-byte header")
    with memoryview(data) as view:
        body = view[: _SHARD_BODY.size]
        (stored_sum,) = _U64.unpack_from(view, _SHARD_BODY.size)
        actual_sum = xxh3_64(body)
        fields = _SHARD_BODY.unpack_from(view)
        body.release()
    (magic, version, scheme, k, m, index, reserved3, domain_id, chunk_id) = fields[:9]
    generation, sealed_size, payload_size, payload_xxh3, reserved8 = fields[9:]
    if magic != SHARD_MAGIC:
        raise CorruptFrame("shard: bad magic")
    if version != FORMAT_VERSION:
        raise CorruptFrame(f"shard: unsupported format version {version}")
    if stored_sum != actual_sum:
        raise CorruptFrame("shard: header checksum mismatch")
    if reserved3 != _RESERVED3 or reserved8 != 0:
        raise CorruptFrame("shard: reserved header bytes are not zero")
    problem = _shard_fields_problem(scheme, k, m, index)
    if problem is not None:
        raise CorruptFrame(f"shard: {problem}")
    if scheme == SCHEME_REPLICA and payload_size != sealed_size:
        raise CorruptFrame("shard: replica payload size differs from the sealed frame size")
    return ShardHeader(
        scheme=scheme,
        k=k,
        m=m,
        index=index,
        domain_id=domain_id,
        chunk_id=chunk_id,
        generation=generation,
        sealed_size=sealed_size,
        payload_size=payload_size,
        payload_xxh3=payload_xxh3,
        version=version,
    )


def parse_shard(data: bytes | memoryview) -> tuple[ShardHeader, memoryview]:
    """Header and payload of a whole shard file; the payload's size and xxh3 are verified.

    The payload is a view into ``data`` (no copy); it keeps ``data`` alive.
    """
    return parse_shard_split(data, b""), memoryview(data)[SHARD_HEADER_SIZE:]


def parse_shard_split(head: bytes | memoryview, rest: bytes | memoryview) -> ShardHeader:
    """The header of a shard read in two parts (``BlobStore.get_into``; ``rest`` empty for a
    whole shard): ``head`` holds the header and the payload's first bytes, ``rest`` the remainder
    of the payload. Both are checked as one: the header, the total size and the payload's xxh3."""
    header = parse_shard_header(head)
    with memoryview(head) as first, memoryview(rest) as second:
        total = first.nbytes + second.nbytes
        expected = SHARD_HEADER_SIZE + header.payload_size
        if total != expected:
            raise CorruptFrame(f"shard: file is {total} bytes, header says {expected}")
        hasher = xxhash.xxh3_64(first[SHARD_HEADER_SIZE:])
        hasher.update(second)
        if hasher.intdigest() != header.payload_xxh3:
            raise CorruptFrame("shard: payload checksum mismatch")
    return header


# --- journal records ---------------------------------------------------------------------------


def _journal_checksum(head: bytes | memoryview, payload: bytes | memoryview) -> int:
    hasher = xxhash.xxh3_64()
    hasher.update(head)
    hasher.update(payload)
    return int(hasher.intdigest())


def pack_journal_record(rtype: int, payload: bytes) -> bytes:
    """One journal record: the 20-byte header then ``payload``."""
    if not 0 <= rtype <= 0xFF:
        raise InvalidInput(f"journal record type {rtype} does not fit in one byte")
    if len(payload) > MAX_JOURNAL_PAYLOAD:
        # Refused here so that the writer never writes what the reader would treat as a torn tail.
        raise InvalidInput(f"journal record payload of {len(payload)} bytes exceeds {MAX_JOURNAL_PAYLOAD}")
    head = _JOURNAL_HEAD.pack(JOURNAL_MAGIC, FORMAT_VERSION, rtype, 0, len(payload))
    return b"".join((head, _U64.pack(_journal_checksum(head, payload)), payload))


def parse_journal(data: bytes | memoryview, start: int = 0) -> tuple[list[tuple[int, int, bytes]], int]:
    """Records of a journal segment from offset ``start``: ``([(end_offset, rtype, payload)], valid_end)``.

    Stops at the first record that is short, malformed or fails its checksum — after a crash the
    tail of the last segment may be torn, and everything before it stands. ``valid_end`` is where
    the next record may be appended after truncating. Never raises on any input bytes.
    """
    if start < 0:
        raise InvalidInput(f"journal: negative start offset {start}")
    records: list[tuple[int, int, bytes]] = []
    with memoryview(data) as view:
        total = view.nbytes
        pos = start
        while total - pos >= JOURNAL_HEADER_SIZE:
            magic, version, rtype, reserved, size, stored_sum = _JOURNAL_FULL.unpack_from(view, pos)
            if magic != JOURNAL_MAGIC or version != FORMAT_VERSION or reserved != 0:
                break
            if size > MAX_JOURNAL_PAYLOAD or total - pos - JOURNAL_HEADER_SIZE < size:
                break
            end = pos + JOURNAL_HEADER_SIZE + size
            head = view[pos : pos + _JOURNAL_HEAD.size]
            payload = view[pos + JOURNAL_HEADER_SIZE : end]
            ok = _journal_checksum(head, payload) == stored_sum
            record = (end, rtype, bytes(payload)) if ok else None
            head.release()
            payload.release()
            if record is None:
                break
            records.append(record)
            pos = end
    return records, pos
