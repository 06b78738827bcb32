"""Golden vector for on-disk format version 3 (pack file and pack index, docs/format.md).

Built from fixed inputs (keys, payloads, timestamps), so the output is deterministic.
``pack_v3/0000000000000001.pack`` and ``.idx`` are the frozen result; ``tests/unit/storage/
test_packstore.py`` parses them and rebuilds them with the current code, demanding byte equality.
``pack_v2/`` holds the same records as version 2 wrote them (back to back, no alignment), frozen
when version 3 replaced it; it is only read, to prove old packs stay readable.
Regenerate only for a deliberate format change (which bumps the format version):
``PYTHONPATH=src python tests/vectors/make_pack_vectors.py``.
"""

from __future__ import annotations

from pathlib import Path

from datawarehouse.storage import packformat as fmt

OUT = Path(__file__).with_name(f"pack_v{fmt.FORMAT_VERSION}")
PACK_ID = 1
TIMESTAMP_NS = 1_700_000_000_123_456_789
# (kind, key, payload, tombstone target)
RECORDS: list[tuple[int, str, bytes, int]] = [
    (fmt.KIND_PUT, "shards/1/ab/cd/abcd01.0000000000000001.0", b"hello pack", 0),
    (fmt.KIND_PUT, "shards/x", bytes(range(16)), 0),
    (fmt.KIND_TOMBSTONE, "shards/x", b"", 1),
]


def build() -> tuple[bytes, bytes]:
    """``(pack bytes, index bytes)`` of the vector."""
    parts = [fmt.encode_file_header(PACK_ID)]
    records = []
    pos = fmt.first_record(fmt.FORMAT_VERSION)
    for i, (kind, key, payload, target) in enumerate(RECORDS):
        ts = TIMESTAMP_NS + i
        head = fmt.encode_record_header(kind, key.encode(), len(payload), ts, fmt.payload_checksum(payload), target)
        span = fmt.record_span(fmt.FORMAT_VERSION, len(key.encode()), len(payload))
        parts += [head, payload, bytes(span - len(head) - len(payload))]
        records.append(fmt.Record(kind, key, pos + len(head), len(payload), ts, target))
        pos += span
    return b"".join(parts), fmt.encode_index(PACK_ID, pos, records)


def main() -> None:
    pack, index = build()
    OUT.mkdir(exist_ok=True)
    (OUT / fmt.pack_name(PACK_ID)).write_bytes(pack)
    (OUT / fmt.index_name(PACK_ID)).write_bytes(index)


if __name__ == "__main__":
    main()
