"""Byte format of pack files and pack indexes (on-disk format version 3; version 2 is read).

Kept apart from ``packstore`` so the format has one definition that the store, the read-only
``scan_locations`` and the golden-vector test all share. Everything is little-endian; checksums
are xxh3-64 (``xxhash.xxh3_64_intdigest``). See ``docs/format.md`` for the field tables.

Pack file: a 16-byte file header, then records:

    record = header (48 bytes) | key (UTF-8, key_len bytes) | payload (payload_len bytes)

Version 3 starts the first record at offset ``ALIGN`` and every record at a multiple of
``ALIGN``, zero-filling the gap after each one, so each record can be written with ``O_DIRECT``
(no copy into the page cache) and no two records share a filesystem block. Version 2 packs hold
records back to back after the 16-byte header; they are still read and indexed, never appended to.

The header checksum covers the header's first 40 bytes and the key, so a torn or rotted header or
key is never trusted; the payload checksum covers the payload. A tombstone has no payload and
names, in ``target``, the oldest pack that may still hold a put of its key (see ``packstore``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import xxhash

__all__ = [
    "ALIGN",
    "FILE_HEADER",
    "INDEX_SUFFIX",
    "KIND_PUT",
    "KIND_TOMBSTONE",
    "PACK_SUFFIX",
    "READABLE_VERSIONS",
    "RECORD_HEADER",
    "Record",
    "align_up",
    "decode_index",
    "encode_file_header",
    "encode_index",
    "encode_record_header",
    "first_record",
    "read_file_header",
    "record_span",
    "scan_records",
]

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
ALIGN = 4096  # version 3: every record, the first included, starts at a multiple of this
PACK_MAGIC = b"DWPK"
RECORD_MAGIC = b"DWPR"
INDEX_MAGIC = b"DWPI"
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"

KIND_PUT = 1
KIND_TOMBSTONE = 2

_FILE_HEADER = struct.Struct("<4sHHQ")  # magic, version, reserved, pack id
FILE_HEADER = _FILE_HEADER.size  # 16

# magic, kind, flags, key_len, payload_len, timestamp_ns, payload_xxh3, target | header_xxh3
_RECORD_FIELDS = struct.Struct("<4sBBHQqQQ")
_CHECKSUM = struct.Struct("<Q")
RECORD_HEADER = _RECORD_FIELDS.size + _CHECKSUM.size  # 48

# magic, version, reserved, pack id, pack size covered, entry count, reserved
_INDEX_HEADER = struct.Struct("<4sHHQQII")  # 32 bytes
# kind, reserved, key_len, reserved, payload offset, payload length, timestamp_ns, target
_INDEX_ENTRY = struct.Struct("<BBHIQQqQ")  # 40 bytes

_MAX_KEY_BYTES = 1024
_EMPTY_XXH3 = xxhash.xxh3_64_intdigest(b"")
_SCAN_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a pack as its index (or a scan) describes it."""

    kind: int
    key: str
    offset: int  # where the payload starts in the pack file
    length: int  # payload length (0 for a tombstone)
    timestamp_ns: int
    target: int  # tombstone: oldest pack that may hold a put of the key; put: 0

    @property
    def record_offset(self) -> int:
        return self.offset - RECORD_HEADER - len(self.key.encode())

    def span(self, version: int) -> int:
        """Bytes the record occupies in a pack of ``version`` (see ``record_span``)."""
        return record_span(version, len(self.key.encode()), self.length)


def payload_checksum(payload: bytes | memoryview, prefix: bytes = b"") -> int:
    """xxh3-64 of ``prefix + payload`` (computed without joining them)."""
    if prefix:
        hasher = xxhash.xxh3_64(prefix)
        hasher.update(payload)
        return int(hasher.intdigest())
    return _EMPTY_XXH3 if not len(payload) else xxhash.xxh3_64_intdigest(payload)


def align_up(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def first_record(version: int) -> int:
    """Offset of a pack's first record."""
    return ALIGN if version >= 3 else FILE_HEADER


def record_span(version: int, key_len: int, payload_len: int) -> int:
    """Bytes one record occupies in a pack of ``version``, its alignment gap included."""
    n = RECORD_HEADER + key_len + payload_len
    return align_up(n) if version >= 3 else n


def encode_file_header(pack_id: int) -> bytes:
    """The first ``first_record(FORMAT_VERSION)`` bytes of a new pack: header, then zeros."""
    return _FILE_HEADER.pack(PACK_MAGIC, FORMAT_VERSION, 0, pack_id).ljust(ALIGN, b"\0")


def read_file_header(data: bytes) -> tuple[int, int] | None:
    """``(pack id, format version)`` of a valid file header of a readable version, else ``None``."""
    if len(data) < FILE_HEADER:
        return None
    magic, version, _reserved, pack_id = _FILE_HEADER.unpack_from(data)
    if magic != PACK_MAGIC or version not in READABLE_VERSIONS:
        return None
    return int(pack_id), int(version)


def encode_record_header(
    kind: int, key_bytes: bytes, payload_len: int, timestamp_ns: int, payload_xxh3: int, target: int
) -> bytes:
    """Header and key of one record, ready to be written in front of its payload."""
    fields = _RECORD_FIELDS.pack(RECORD_MAGIC, kind, 0, len(key_bytes), payload_len, timestamp_ns, payload_xxh3, target)
    check = xxhash.xxh3_64_intdigest(fields + key_bytes)
    return fields + _CHECKSUM.pack(check) + key_bytes


def scan_records(
    fd: int, size: int, version: int = FORMAT_VERSION, *, start: int | None = None
) -> tuple[list[Record], int]:
    """Parse the records of a pack file (``size`` bytes, read through ``fd`` with ``pread``),
    from its first record or from ``start`` (where an earlier scan of it stopped).

    Returns the records that verify and the offset where the first one that does not starts
    (at most ``size``; ``size`` if all are whole). Stops at that first bad record: a record past
    a torn one cannot be found reliably, and in an unsealed pack everything flushed lies before
    any torn write. A version 3 record is whole once its payload is; its zero gap may be cut.
    """
    records: list[Record] = []
    pos = first_record(version) if start is None else start
    while pos + RECORD_HEADER <= size:
        head = os.pread(fd, RECORD_HEADER + _MAX_KEY_BYTES, pos)
        if len(head) < RECORD_HEADER:
            break
        magic, kind, flags, key_len, payload_len, ts, payload_xxh3, target = _RECORD_FIELDS.unpack_from(head)
        if magic != RECORD_MAGIC or kind not in (KIND_PUT, KIND_TOMBSTONE) or flags != 0 or key_len > _MAX_KEY_BYTES:
            break
        key_end = RECORD_HEADER + key_len
        if len(head) < key_end:
            break
        key_bytes = head[RECORD_HEADER:key_end]
        (check,) = _CHECKSUM.unpack_from(head, _RECORD_FIELDS.size)
        if xxhash.xxh3_64_intdigest(head[: _RECORD_FIELDS.size] + key_bytes) != check:
            break
        start = pos + key_end
        end = start + payload_len
        if end > size or (kind == KIND_TOMBSTONE and payload_len != 0):
            break
        if _checksum_range(fd, start, payload_len) != payload_xxh3:
            break
        try:
            key = key_bytes.decode()
        except UnicodeDecodeError:
            break
        records.append(Record(kind, key, start, payload_len, ts, target))
        pos = align_up(end) if version >= 3 else end
    return records, min(pos, size)


def _checksum_range(fd: int, offset: int, length: int) -> int:
    if length == 0:
        return _EMPTY_XXH3
    if length <= _SCAN_BLOCK:
        data = os.pread(fd, length, offset)
        return xxhash.xxh3_64_intdigest(data) if len(data) == length else -1
    hasher = xxhash.xxh3_64()
    done = 0
    while done < length:
        data = os.pread(fd, min(_SCAN_BLOCK, length - done), offset + done)
        if not data:
            return -1
        hasher.update(data)
        done += len(data)
    return hasher.intdigest()


def encode_index(pack_id: int, pack_size: int, records: list[Record], version: int = FORMAT_VERSION) -> bytes:
    """The index of a sealed pack: every record in file order, then a checksum of it all. Its
    version is the pack's."""
    parts = [_INDEX_HEADER.pack(INDEX_MAGIC, version, 0, pack_id, pack_size, len(records), 0)]
    for rec in records:
        kb = rec.key.encode()
        parts.append(_INDEX_ENTRY.pack(rec.kind, 0, len(kb), 0, rec.offset, rec.length, rec.timestamp_ns, rec.target))
        parts.append(kb)
    body = b"".join(parts)
    return body + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))


def decode_index(data: bytes, pack_id: int, version: int = FORMAT_VERSION) -> tuple[int, list[Record]] | None:
    """``(pack size covered, records)`` of a valid index of pack ``pack_id`` (whose file header
    says ``version``); ``None`` if the index is damaged, of another pack or another format
    version (the caller then scans)."""
    if len(data) < _INDEX_HEADER.size + _CHECKSUM.size:
        return None
    body = data[: -_CHECKSUM.size]
    (check,) = _CHECKSUM.unpack_from(data, len(body))
    if xxhash.xxh3_64_intdigest(body) != check:
        return None
    magic, idx_version, _r, idx_pack, pack_size, count, _r2 = _INDEX_HEADER.unpack_from(body)
    if magic != INDEX_MAGIC or idx_version != version or idx_pack != pack_id:
        return None
    records: list[Record] = []
    pos = _INDEX_HEADER.size
    try:
        for _ in range(count):
            kind, _a, key_len, _b, offset, length, ts, target = _INDEX_ENTRY.unpack_from(body, pos)
            pos += _INDEX_ENTRY.size
            key_bytes = body[pos : pos + key_len]
            if len(key_bytes) != key_len or kind not in (KIND_PUT, KIND_TOMBSTONE):
                return None
            key = key_bytes.decode()
            pos += key_len
            records.append(Record(kind, key, offset, length, ts, target))
    except (struct.error, UnicodeDecodeError):
        return None
    if pos != len(body):
        return None
    return int(pack_size), records


def iter_pack_ids(names: list[str]) -> Iterator[int]:
    """Pack ids of the ``<id:016x>.pack`` names among ``names``, in ascending order."""
    ids = []
    for name in names:
        if name.endswith(PACK_SUFFIX) and len(name) == 16 + len(PACK_SUFFIX):
            try:
                ids.append(int(name[:16], 16))
            except ValueError:
                continue
    yield from sorted(ids)


def pack_name(pack_id: int) -> str:
    return f"{pack_id:016x}{PACK_SUFFIX}"


def index_name(pack_id: int) -> str:
    return f"{pack_id:016x}{INDEX_SUFFIX}"
