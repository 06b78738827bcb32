"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads."""

from __future__ import annotations

import re

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import invalid_argument
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.handlers.copy import check_copy_conditions, copy_source
from datawarehouse.api.s3.handlers.objects import etag_header, object_spec, stream_into
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_complete_multipart_upload
from datawarehouse.api.s3.xmlmodel import (
    CompleteMultipartUploadResult,
    CopyResult,
    InitiateMultipartUploadResult,
    ListMultipartUploadsResult,
    ListPartsResult,
    PartSummary,
    UploadSummary,
)
from datawarehouse.api.s3.xmlrender import (
    render_complete_multipart_upload,
    render_copy_part_result,
    render_initiate_multipart_upload,
    render_list_multipart_uploads,
    render_list_parts,
)
from datawarehouse.service.multipart import CompletedPart, Multipart
from datawarehouse.service.warehouse import MAX_PUT_SIZE

MAX_COMPLETE_BODY = 2 * 1024 * 1024  # 10,000 parts of ~150 bytes
_COPY_RANGE = re.compile(r"bytes=(\d{1,20})-(\d{1,20})")


def _int_param(ctx: Context, name: str, default: int, maximum: int) -> int:
    raw = ctx.request.param(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise invalid_argument(f"{name} must be a non-negative integer", name=name, value=raw)
    return min(int(raw), maximum)


def _upload_id(ctx: Context) -> str:
    upload_id = ctx.request.param("uploadId")
    if not upload_id:
        raise invalid_argument("uploadId is required", name="uploadId")
    return upload_id


def _part_number(ctx: Context) -> int:
    raw = ctx.request.param("partNumber") or ""
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive", name="partNumber")
    return int(raw)


@handles("CreateMultipartUpload")
async def create(ctx: Context) -> Response:
    headers = ctx.request.headers
    mp = Multipart(ctx.warehouse)
    upload = await ctx.offload.run(lambda: mp.create(ctx.bucket, ctx.key, **object_spec(headers)))
    result = InitiateMultipartUploadResult(ctx.bucket, ctx.key, upload.upload_id)
    return xml_response(render_initiate_multipart_upload(result))


@handles("UploadPart")
async def upload_part(ctx: Context) -> Response:
    upload_id, number = _upload_id(ctx), _part_number(ctx)
    reader = BodyReader(ctx.request, ctx.auth, MAX_PUT_SIZE)
    mp = Multipart(ctx.warehouse)
    part = await ctx.offload.run(mp.open_part, ctx.bucket, ctx.key, upload_id, number)
    verified = await stream_into(ctx, reader, part)
    checksums = {f"x-amz-checksum-{alg.lower()}": value for alg, value in verified.checksums.items()}
    record = await ctx.offload.run(part.finish, checksums)
    resp = Response(200).header("etag", etag_header(record.etag))
    for name, value in checksums.items():
        resp.header(name, value)
    return resp


def _copy_range(header: str | None) -> tuple[int, int] | None:
    """``x-amz-copy-source-range: bytes=first-last`` (both required) → [first, last + 1)."""
    if header is None:
        return None
    m = _COPY_RANGE.match(header.strip())
    if m is None or int(m.group(1)) > int(m.group(2)):
        raise invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last "
            "are the zero-based offsets of the first and last bytes to copy",
            name="x-amz-copy-source-range",
            value=header,
        )
    return int(m.group(1)), int(m.group(2)) + 1


@handles("UploadPartCopy")
async def upload_part_copy(ctx: Context) -> Response:
    upload_id, number = _upload_id(ctx), _part_number(ctx)
    headers = ctx.request.headers
    src_bucket, src_key = copy_source(headers["x-amz-copy-source"])
    byte_range = _copy_range(headers.get("x-amz-copy-source-range"))
    mp = Multipart(ctx.warehouse)
    record = await ctx.offload.run(
        lambda: mp.upload_part_copy(
            ctx.bucket,
            ctx.key,
            upload_id,
            number,
            src_bucket,
            src_key,
            byte_range,
            source_conditions=lambda source: check_copy_conditions(headers, source),
        )
    )
    return xml_response(render_copy_part_result(CopyResult(record.created_at, record.etag)))


@handles("CompleteMultipartUpload")
async def complete(ctx: Context) -> Response:
    upload_id = _upload_id(ctx)
    body = await BodyReader(ctx.request, ctx.auth, MAX_COMPLETE_BODY).read_all(MAX_COMPLETE_BODY)
    chosen = [CompletedPart(p.part_number, p.etag) for p in parse_complete_multipart_upload(body)]
    conditions: dict[str, str] = {
        k: ctx.request.headers[k] for k in ("if-match", "if-none-match") if k in ctx.request.headers
    }
    mp = Multipart(ctx.warehouse)
    version = await ctx.offload.run(lambda: mp.complete(ctx.bucket, ctx.key, upload_id, chosen, conditions))
    location = f"/{ctx.bucket}/{ctx.key}"
    result = CompleteMultipartUploadResult(location, ctx.bucket, ctx.key, version.etag)
    return xml_response(render_complete_multipart_upload(result))


@handles("AbortMultipartUpload")
async def abort(ctx: Context) -> Response:
    upload_id = _upload_id(ctx)
    await ctx.offload.run(Multipart(ctx.warehouse).abort, ctx.bucket, ctx.key, upload_id)
    return Response(204)


@handles("ListParts")
async def list_parts(ctx: Context) -> Response:
    upload_id = _upload_id(ctx)
    after = _int_param(ctx, "part-number-marker", 0, 10_000)
    limit = _int_param(ctx, "max-parts", 1000, 1000)
    _, parts = await ctx.offload.run(
        Multipart(ctx.warehouse).list_parts, ctx.bucket, ctx.key, upload_id, after, limit + 1
    )
    truncated = len(parts) > limit
    parts = parts[:limit]
    who = owner(ctx)
    result = ListPartsResult(
        bucket=ctx.bucket,
        key=ctx.key,
        upload_id=upload_id,
        part_number_marker=after,
        max_parts=limit,
        is_truncated=truncated,
        parts=tuple(PartSummary(p.part_number, p.created_at, p.etag, p.size) for p in parts),
        next_part_number_marker=parts[-1].part_number if parts else None,
        initiator=who,
        owner=who,
    )
    return xml_response(render_list_parts(result))


@handles("ListMultipartUploads")
async def list_uploads(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    key_marker = ctx.request.param("key-marker") or ""
    upload_marker = ctx.request.param("upload-id-marker") or ""
    limit = _int_param(ctx, "max-uploads", 1000, 1000)
    uploads = await ctx.offload.run(
        Multipart(ctx.warehouse).list_uploads, ctx.bucket, prefix, key_marker, upload_marker, limit + 1
    )
    truncated = len(uploads) > limit
    uploads = uploads[:limit]
    who = owner(ctx)
    result = ListMultipartUploadsResult(
        bucket=ctx.bucket,
        max_uploads=limit,
        is_truncated=truncated,
        uploads=tuple(UploadSummary(u.key, u.upload_id, u.created_at, who, who) for u in uploads),
        prefix=prefix or None,
        key_marker=key_marker,
        upload_id_marker=upload_marker,
        next_key_marker=uploads[-1].key if truncated and uploads else None,
        next_upload_id_marker=uploads[-1].upload_id if truncated and uploads else None,
        encoding_type=ctx.request.param("encoding-type"),
    )
    return xml_response(render_list_multipart_uploads(result))
