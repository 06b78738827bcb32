"""The part layout of an object completed from a multipart upload.

S3 lets a client read one part of such an object (GetObject/HeadObject ``partNumber``) and list
its parts with their sizes and checksums (GetObjectAttributes). Completing an upload concatenates
the parts' manifests, so the part boundaries are not in the manifest; they are kept in the
version's system metadata, which already travels with it (journal, copies, rebuild-meta):

- ``x-dwh-parts``: the number of parts (recorded since multipart uploads existed);
- ``x-dwh-part-sizes``: the sizes, run-length encoded (``5242880*1999,1048576``: parts of one
  size are the rule, so even 10,000 parts take a few bytes);
- ``x-dwh-part-checksums``: each part's checksum of the object's algorithm, comma-separated,
  only when every part had one (S3 lists parts with their checksums only then).

Objects completed before the sizes were recorded have only the count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from datawarehouse.errors import CorruptFrame
from datawarehouse.records import ObjectVersion, PartRecord

PARTS_KEY = "x-dwh-parts"
PART_SIZES_KEY = "x-dwh-part-sizes"
PART_CHECKSUMS_KEY = "x-dwh-part-checksums"
CHECKSUM_PREFIX = "x-amz-checksum-"
CHECKSUM_TYPE_KEY = "x-amz-checksum-type"
MAX_PARTS = 10_000
_RUN = re.compile(r"(\d{1,19})(?:\*(\d{1,5}))?", re.ASCII)  # a size, repeated ``*n`` times


@dataclass(frozen=True)
class PartLayout:
    """Where each part of a multipart object lies (part ``n`` is ``sizes[n - 1]`` bytes)."""

    sizes: tuple[int, ...]
    checksum_header: str | None = None  # x-amz-checksum-<alg> of ``checksums``
    checksums: tuple[str, ...] | None = None  # base64, one per part

    @property
    def count(self) -> int:
        return len(self.sizes)

    def byte_range(self, part_number: int) -> tuple[int, int]:
        """``[start, end)`` of part ``part_number`` (1-based, at most ``count``)."""
        start = sum(self.sizes[: part_number - 1])
        return start, start + self.sizes[part_number - 1]


def encode_sizes(sizes: Sequence[int]) -> str:
    """Run-length text of the part sizes: ``size`` or ``size*repeat``, comma-separated."""
    runs: list[str] = []
    i = 0
    while i < len(sizes):
        j = i
        while j + 1 < len(sizes) and sizes[j + 1] == sizes[i]:
            j += 1
        runs.append(str(sizes[i]) if j == i else f"{sizes[i]}*{j - i + 1}")
        i = j + 1
    return ",".join(runs)


def decode_sizes(text: str, total_size: int | None = None) -> tuple[int, ...]:
    """The sizes :func:`encode_sizes` wrote; ``CorruptFrame`` for anything else (or sizes that do
    not add up to ``total_size``): the text comes from stored metadata, never from a client."""
    sizes: list[int] = []
    for run in text.split(","):
        m = _RUN.fullmatch(run)
        count = int(m.group(2) or 1) if m else 0
        if m is None or count < 1 or len(sizes) + count > MAX_PARTS:
            raise CorruptFrame(f"{PART_SIZES_KEY}: malformed value")
        sizes.extend([int(m.group(1))] * count)
    if total_size is not None and sum(sizes) != total_size:
        raise CorruptFrame(f"{PART_SIZES_KEY}: the parts do not add up to the object's size")
    return tuple(sizes)


def layout_meta(parts: Sequence[PartRecord], object_meta: Mapping[str, str]) -> dict[str, str]:
    """What a completed upload records about its parts (``object_meta``: the object's system
    metadata with its checksum headers, which name the algorithm of the part checksums)."""
    meta = {PARTS_KEY: str(len(parts)), PART_SIZES_KEY: encode_sizes([p.size for p in parts])}
    header = _checksum_header(object_meta)
    if header is not None:
        values = [p.checksums.get(header) for p in parts]
        if all(v is not None for v in values):
            meta[PART_CHECKSUMS_KEY] = ",".join(v for v in values if v is not None)
    return meta


def describing_bytes(system_meta: Mapping[str, str]) -> dict[str, str]:
    """The system metadata that describes a version's bytes (checksums, part layout): a copy
    keeps it whatever its metadata directive, since the bytes are the same."""
    return {
        k: v
        for k, v in system_meta.items()
        if k.startswith(CHECKSUM_PREFIX) or k in (PARTS_KEY, PART_SIZES_KEY, PART_CHECKSUMS_KEY)
    }


def parts_count(v: ObjectVersion) -> int | None:
    """How many parts ``v`` was completed from; ``None`` when it was not a multipart upload."""
    text = v.system_meta.get(PARTS_KEY)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise CorruptFrame(f"{PARTS_KEY}: malformed value") from None


def part_layout(v: ObjectVersion) -> PartLayout | None:
    """The layout of a multipart object; ``None`` when ``v`` is not one or when its part sizes
    were not recorded (completed before they were)."""
    text = v.system_meta.get(PART_SIZES_KEY)
    if text is None:
        return None
    sizes = decode_sizes(text, v.size)
    header = _checksum_header(v.system_meta)
    listed = v.system_meta.get(PART_CHECKSUMS_KEY)
    checksums = tuple(listed.split(",")) if listed is not None and header is not None else None
    if checksums is not None and len(checksums) != len(sizes):
        raise CorruptFrame(f"{PART_CHECKSUMS_KEY}: not one checksum per part")
    return PartLayout(sizes, header if checksums is not None else None, checksums)


def _checksum_header(meta: Mapping[str, str]) -> str | None:
    for name in meta:
        if name.startswith(CHECKSUM_PREFIX) and name != CHECKSUM_TYPE_KEY:
            return name
    return None
