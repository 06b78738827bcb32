"""The parts of a multipart object, read back: ``partNumber`` on GetObject/HeadObject, and
GetObjectAttributes (size, ETag, checksum, storage class and the part list in one call).

Part boundaries come from the layout a completed upload records (``service.parts``). An object
written in one piece has one part: ``partNumber=1`` reads it whole, any other number is an
``InvalidPart``, as on S3.
"""

from __future__ import annotations

import dataclasses

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.checksums import stored_checksums
from datawarehouse.api.s3.errors import (
    count_argument,
    invalid_argument,
    invalid_part,
    invalid_part_number,
    invalid_request,
    not_implemented,
)
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.versioning import requested_version, version_headers
from datawarehouse.api.s3.http import Response, http_date, xml_response
from datawarehouse.api.s3.xmlmodel import Checksums, ObjectAttributes, ObjectPart, ObjectParts
from datawarehouse.api.s3.xmlrender import render_object_attributes
from datawarehouse.records import ObjectVersion
from datawarehouse.service import parts
from datawarehouse.service.parts import MAX_PARTS

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_LISTED_PARTS = 1000  # x-amz-max-parts above this is cut to it, as ListParts does


def parse_part_number(text: str) -> int:
    """A ``partNumber`` parameter: 1..10,000 (InvalidArgument otherwise)."""
    number = whole_number(text)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise invalid_part_number(text)
    return number


def requested_part(ctx: Context) -> int | None:
    """The ``partNumber`` of a GET or HEAD, checked before anything is read."""
    text = ctx.request.param("partNumber")
    if text is None:
        return None
    number = parse_part_number(text)
    if "range" in ctx.request.headers:
        raise invalid_request("Cannot specify both Range header and partNumber query parameter")
    return number


def part_range(v: ObjectVersion, part_number: int) -> tuple[tuple[int, int] | None, int | None]:
    """The byte range part ``part_number`` of ``v`` covers (``None``: the whole object) and the
    object's part count for ``x-amz-mp-parts-count`` (``None``: not a multipart object)."""
    count = parts.parts_count(v)
    if count is None:
        if part_number != 1:
            raise invalid_part("The requested partnumber is not satisfiable")
        return ((0, v.size) if v.size else None), None
    if part_number > count:
        raise invalid_part("The requested partnumber is not satisfiable")
    layout = parts.part_layout(v)
    if layout is None:
        if count == 1:
            return ((0, v.size) if v.size else None), count
        raise not_implemented(
            "this object's part sizes were not recorded (it was completed by an older version of the server)"
        )
    start, end = layout.byte_range(part_number)
    return ((start, end) if end > start else None), count


def part_checksum(v: ObjectVersion, part_number: int) -> tuple[str, str] | None:
    """``(x-amz-checksum-<alg>, value)`` of part ``part_number``, when the completed upload
    recorded every part's checksum: what a ``partNumber`` read with ``x-amz-checksum-mode:
    ENABLED`` returns, so that the client can check the part it received."""
    layout = parts.part_layout(v)
    if layout is None or layout.checksum_header is None or layout.checksums is None or part_number > layout.count:
        return None
    return layout.checksum_header, layout.checksums[part_number - 1]


def _requested_attributes(ctx: Context) -> set[str]:
    text = ctx.request.headers.get("x-amz-object-attributes", "")
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names:
        raise invalid_argument(
            "x-amz-object-attributes must name at least one attribute", name="x-amz-object-attributes"
        )
    unknown = sorted(names.difference(ATTRIBUTES))
    if unknown:
        raise invalid_argument("Invalid attribute name specified.", name="x-amz-object-attributes", value=unknown[0])
    return names


def _object_parts(v: ObjectVersion, marker: int, max_parts: int) -> ObjectParts | None:
    count = parts.parts_count(v)
    if count is None:
        return None
    layout = parts.part_layout(v)
    if layout is None or layout.checksums is None or layout.checksum_header is None:
        return ObjectParts(count)  # S3 lists the parts only with their checksums
    field = layout.checksum_header.removeprefix(parts.CHECKSUM_PREFIX)
    numbers = range(marker + 1, min(count, marker + max_parts) + 1)
    listed = tuple(ObjectPart(n, layout.sizes[n - 1], Checksums(**{field: layout.checksums[n - 1]})) for n in numbers)
    return ObjectParts(
        total_parts_count=count,
        part_number_marker=marker,
        next_part_number_marker=listed[-1].part_number if listed else marker,
        max_parts=max_parts,
        is_truncated=marker + len(listed) < count,
        parts=listed,
    )


@handles("GetObjectAttributes")
async def get_object_attributes(ctx: Context) -> Response:
    wanted = _requested_attributes(ctx)
    headers = ctx.request.headers
    marker = count_argument("x-amz-part-number-marker", headers.get("x-amz-part-number-marker"), 0, MAX_PARTS)
    max_parts = count_argument("x-amz-max-parts", headers.get("x-amz-max-parts"), MAX_LISTED_PARTS, MAX_LISTED_PARTS)
    version_id = requested_version(ctx)
    _, v = await ctx.offload.run(ctx.warehouse.lookup, ctx.bucket, ctx.key, version_id)
    stored = stored_checksums(v.system_meta)
    checksums: Checksums | None = None
    if "Checksum" in wanted and stored != Checksums():
        # Without a type it was stored by a single PUT (or POST): S3 reports that as FULL_OBJECT.
        checksums = stored if stored.checksum_type else dataclasses.replace(stored, checksum_type="FULL_OBJECT")
    result = ObjectAttributes(
        etag=v.etag if "ETag" in wanted else None,  # stored bare: S3 sends this one unquoted
        checksums=checksums,
        object_parts=_object_parts(v, marker, max_parts) if "ObjectParts" in wanted else None,
        storage_class="STANDARD" if "StorageClass" in wanted else None,
        object_size=v.size if "ObjectSize" in wanted else None,
    )
    resp = xml_response(render_object_attributes(result)).header("last-modified", http_date(v.created_at))
    return version_headers(resp, v, named=version_id is not None)
