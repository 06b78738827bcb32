"""The part layout a completed multipart upload records (``service.parts``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datawarehouse.errors import CorruptFrame
from datawarehouse.ids import BucketId, VersionId
from datawarehouse.records import ChunkerParams, ObjectVersion, PartRecord, StorageClass
from datawarehouse.service import parts

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def part(number: int, size: int, **checksums: str) -> PartRecord:
    return PartRecord("u", number, size, f"etag{number}", NOW, checksums=dict(checksums))


def version(size: int, meta: dict[str, str]) -> ObjectVersion:
    return ObjectVersion(
        BucketId("b"),
        "k",
        VersionId("v"),
        size,
        "e-2",
        NOW,
        StorageClass(4, 2),
        ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024),
        system_meta=meta,
    )


@given(st.lists(st.sampled_from([0, 1, 5 * 2**20, 5 * 2**20 + 1, 2**33]), min_size=1, max_size=300))
def test_sizes_round_trip(sizes: list[int]) -> None:
    text = parts.encode_sizes(sizes)
    assert parts.decode_sizes(text, sum(sizes)) == tuple(sizes)


def test_sizes_are_run_length_encoded() -> None:
    assert parts.encode_sizes([5, 5, 5, 2]) == "5*3,2"
    assert len(parts.encode_sizes([5 * 2**20] * 9_999 + [17])) < 20


@pytest.mark.parametrize("text", ["", "x", "5*", "5*0", "-1", "5*-2", "1.5", "5,,2", "1*10001", "9" * 5000])
def test_malformed_sizes_are_corruption(text: str) -> None:
    with pytest.raises(CorruptFrame):
        parts.decode_sizes(text)


def test_sizes_must_add_up_to_the_object() -> None:
    with pytest.raises(CorruptFrame):
        parts.decode_sizes("5*2", 11)


def test_layout_meta_and_byte_ranges() -> None:
    recorded = [part(1, 10, **{"x-amz-checksum-crc32": "AAAAAQ=="}), part(2, 10), part(3, 4)]
    meta = parts.layout_meta(recorded, {})
    assert meta == {"x-dwh-parts": "3", "x-dwh-part-sizes": "10*2,4"}  # no checksums asked for
    layout = parts.part_layout(version(24, meta))
    assert layout is not None and layout.count == 3 and layout.checksums is None
    assert [layout.byte_range(n) for n in (1, 2, 3)] == [(0, 10), (10, 20), (20, 24)]
    assert parts.parts_count(version(24, meta)) == 3


def test_part_checksums_only_when_every_part_has_one() -> None:
    header = "x-amz-checksum-sha256"
    object_meta = {header: "whole-3", "x-amz-checksum-type": "COMPOSITE"}
    some = parts.layout_meta([part(1, 5, **{header: "a"}), part(2, 5)], object_meta)
    assert parts.PART_CHECKSUMS_KEY not in some
    every = parts.layout_meta([part(1, 5, **{header: "a"}), part(2, 5, **{header: "b"})], object_meta)
    layout = parts.part_layout(version(10, {**object_meta, **every}))
    assert layout is not None and layout.checksum_header == header and layout.checksums == ("a", "b")


def test_single_part_objects_and_older_multipart_objects() -> None:
    assert parts.parts_count(version(3, {})) is None and parts.part_layout(version(3, {})) is None
    older = version(30, {"x-dwh-parts": "3"})  # completed before the sizes were recorded
    assert parts.parts_count(older) == 3 and parts.part_layout(older) is None
    with pytest.raises(CorruptFrame):
        parts.parts_count(version(3, {"x-dwh-parts": "three"}))
    with pytest.raises(CorruptFrame):  # one checksum for two parts
        parts.part_layout(
            version(10, {"x-dwh-part-sizes": "5*2", "x-amz-checksum-crc32": "x-2", "x-dwh-part-checksums": "a"})
        )


def test_describing_bytes_keeps_checksums_and_layout_only() -> None:
    meta = {
        "x-amz-checksum-crc32": "c-2",
        "x-amz-checksum-type": "COMPOSITE",
        "x-dwh-parts": "2",
        "x-dwh-part-sizes": "5*2",
        "x-dwh-part-checksums": "a,b",
        "content-encoding": "gzip",
        "x-dwh-owner": "arn",
    }
    assert parts.describing_bytes(meta) == {
        k: v for k, v in meta.items() if k not in ("content-encoding", "x-dwh-owner")
    }
