"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads."""

from __future__ import annotations

import re

from datawarehouse.api.s3 import checksums
from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import bad_digest, count_argument, invalid_argument, invalid_request
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.handlers.copy import copy_source, copy_source_read, copy_version_headers
from datawarehouse.api.s3.handlers.objects import (
    SSE_S3,
    announced_size,
    check_encryption_request,
    check_lock_headers,
    etag_header,
    object_acl_after_write,
    object_spec,
    stream_into,
    write_acl,
)
from datawarehouse.api.s3.handlers.parts import parse_part_number
from datawarehouse.api.s3.handlers.versioning import version_headers
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_complete_multipart_upload
from datawarehouse.api.s3.xmlmodel import (
    Checksums,
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
from datawarehouse.records import ObjectVersion, PartRecord, UploadRecord
from datawarehouse.service.multipart import UPLOAD_ONLY_PREFIX, CompletedPart, Multipart
from datawarehouse.service.warehouse import MAX_PUT_SIZE

MAX_COMPLETE_BODY = 2 * 1024 * 1024  # 10,000 parts of ~150 bytes
_COPY_RANGE = re.compile(r"bytes=(\d{1,20})-(\d{1,20})")
# The upload's checksum algorithm and type, kept with the upload (not copied to the object).
ALGORITHM_KEY = UPLOAD_ONLY_PREFIX + "checksum-algorithm"
TYPE_KEY = UPLOAD_ONLY_PREFIX + "checksum-type"
ACL_KEY = UPLOAD_ONLY_PREFIX + "acl"


def _int_param(ctx: Context, name: str, default: int, maximum: int) -> int:
    return count_argument(name, ctx.request.param(name), default, maximum)


def _upload_id(ctx: Context) -> str:
    upload_id = ctx.request.param("uploadId")
    if not upload_id:
        raise invalid_argument("uploadId is required", name="uploadId")
    return upload_id


def _part_number(ctx: Context) -> int:
    return parse_part_number(ctx.request.param("partNumber") or "")


def _upload_checksum(headers: dict[str, str]) -> dict[str, str]:
    """x-amz-checksum-algorithm / x-amz-checksum-type of a CreateMultipartUpload, checked."""
    name, kind = headers.get("x-amz-checksum-algorithm"), headers.get("x-amz-checksum-type")
    if name is None:
        if kind is not None:
            raise invalid_request("x-amz-checksum-type requires x-amz-checksum-algorithm")
        return {}
    alg = checksums.parse_algorithm(name)
    crc = alg in (
        checksums.ChecksumAlgorithm.CRC32,
        checksums.ChecksumAlgorithm.CRC32C,
        checksums.ChecksumAlgorithm.CRC64NVME,
    )
    kind = (kind or ("FULL_OBJECT" if alg is checksums.ChecksumAlgorithm.CRC64NVME else "COMPOSITE")).upper()
    if kind not in ("COMPOSITE", "FULL_OBJECT"):
        raise invalid_request("x-amz-checksum-type must be COMPOSITE or FULL_OBJECT")
    if (kind == "FULL_OBJECT" and not crc) or (kind == "COMPOSITE" and alg is checksums.ChecksumAlgorithm.CRC64NVME):
        raise invalid_request(f"The {kind} checksum type cannot be used with the {alg.value} checksum algorithm.")
    return {ALGORITHM_KEY: alg.value, TYPE_KEY: kind}


@handles("CreateMultipartUpload")
async def create(ctx: Context) -> Response:
    headers = ctx.request.headers
    spec = object_spec(headers, ctx.caller.principal.arn)
    check_encryption_request(headers)
    canned = await write_acl(ctx)
    await check_lock_headers(ctx, ctx.bucket, spec)
    checksum = _upload_checksum(headers)
    # The ACL is the completed object's, as S3 has it: kept with the upload, applied at completion.
    acl = {ACL_KEY: canned} if canned is not None else {}
    spec["system_meta"] = {**spec["system_meta"], **checksum, **acl}
    mp = Multipart(ctx.warehouse)
    upload = await ctx.offload.run(lambda: mp.create(ctx.bucket, ctx.key, **spec))
    result = InitiateMultipartUploadResult(ctx.bucket, ctx.key, upload.upload_id)
    resp = xml_response(render_initiate_multipart_upload(result))
    resp.header("x-amz-checksum-algorithm", checksum.get(ALGORITHM_KEY))
    resp.header("x-amz-server-side-encryption", SSE_S3)
    return resp.header("x-amz-checksum-type", checksum.get(TYPE_KEY))


@handles("UploadPart")
async def upload_part(ctx: Context) -> Response:
    upload_id, number = _upload_id(ctx), _part_number(ctx)
    reader = BodyReader(ctx.request, ctx.auth, MAX_PUT_SIZE)
    mp = Multipart(ctx.warehouse)
    size = announced_size(ctx.request.headers)
    part = await ctx.offload.run(mp.open_part, ctx.bucket, ctx.key, upload_id, number, size)
    verified = await stream_into(ctx, reader, part)
    stored = {f"x-amz-checksum-{alg.lower()}": value for alg, value in verified.checksums.items()}
    record = await ctx.offload.run(part.finish, stored)
    resp = Response(200).header("etag", etag_header(record.etag)).header("x-amz-server-side-encryption", SSE_S3)
    for name, value in stored.items():
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
    src_bucket, src_key, src_version = copy_source(headers["x-amz-copy-source"])
    src_bucket = ctx.qualify(src_bucket)
    byte_range = _copy_range(headers.get("x-amz-copy-source-range"))
    mp = Multipart(ctx.warehouse)
    source: list[ObjectVersion] = []
    record = await ctx.offload.run(
        lambda: mp.upload_part_copy(
            ctx.bucket,
            ctx.key,
            upload_id,
            number,
            src_bucket,
            src_key,
            byte_range,
            source_conditions=copy_source_read(headers, source),
            source_version_id=src_version,
        )
    )
    resp = xml_response(render_copy_part_result(CopyResult(record.created_at, record.etag)))
    return copy_version_headers(resp, source, None)


@handles("CompleteMultipartUpload")
async def complete(ctx: Context) -> Response:
    upload_id = _upload_id(ctx)
    reader = BodyReader(ctx.request, ctx.auth, MAX_COMPLETE_BODY, checksum_headers=False)
    body = await reader.read_all(MAX_COMPLETE_BODY)
    chosen = [
        CompletedPart(p.part_number, p.etag, _checksum_headers(p.checksums))
        for p in parse_complete_multipart_upload(body)
    ]
    headers = ctx.request.headers
    conditions: dict[str, str] = {k: headers[k] for k in ("if-match", "if-none-match") if k in headers}

    acl: list[str | None] = []

    def object_checksums(upload: UploadRecord, parts: list[PartRecord]) -> dict[str, str]:
        acl.append(upload.system_meta.get(ACL_KEY))  # asked for when the upload was created
        computed = _object_checksums(upload, parts)
        if computed.get("x-amz-checksum-type") == "FULL_OBJECT":  # the client may send the whole one
            for name, value in computed.items():
                if checksums.algorithm_for_header(name) is not None and headers.get(name, value) != value:
                    raise bad_digest(f"The {name.removeprefix('x-amz-')} you specified did not match the parts'.")
        return computed

    mp = Multipart(ctx.warehouse)
    version = await ctx.offload.run(
        lambda: mp.complete(ctx.bucket, ctx.key, upload_id, chosen, conditions, object_checksums)
    )
    await object_acl_after_write(ctx, acl[-1] if acl else None)
    location = f"/{ctx.bucket}/{ctx.key}"
    result = CompleteMultipartUploadResult(
        location, ctx.bucket, ctx.key, version.etag, checksums.stored_checksums(version.system_meta)
    )
    resp = xml_response(render_complete_multipart_upload(result)).header("x-amz-server-side-encryption", SSE_S3)
    return version_headers(resp, version)


def _checksum_headers(values: Checksums) -> dict[str, str]:
    """A part's checksums in a completion request, by header name."""
    out: dict[str, str] = {}
    for alg in checksums.ChecksumAlgorithm:
        value = getattr(values, alg.value.lower())
        if value is not None:
            out[alg.header] = value
    return out


def _object_checksums(upload: UploadRecord, parts: list[PartRecord]) -> dict[str, str]:
    """The completed object's checksum from its parts' (when every part has one): COMPOSITE is the
    checksum of the parts' checksums with ``-<count>``; FULL_OBJECT combines the parts' CRCs into
    the CRC of the whole object."""
    name = upload.system_meta.get(ALGORITHM_KEY)
    if name is None:
        return {}
    alg = checksums.ChecksumAlgorithm(name)
    values = [p.checksums.get(alg.header) for p in parts]
    present = [v for v in values if v is not None]
    if len(present) != len(parts):
        return {}
    if upload.system_meta.get(TYPE_KEY) == "FULL_OBJECT":
        total = present[0]
        for part, value in zip(parts[1:], present[1:], strict=True):
            total = checksums.combine_crc(alg, total, value, part.size)
        return {alg.header: total, "x-amz-checksum-type": "FULL_OBJECT"}
    return {alg.header: checksums.composite_checksum(alg, present), "x-amz-checksum-type": "COMPOSITE"}


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
    upload, parts = await ctx.offload.run(
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
        parts=tuple(
            PartSummary(p.part_number, p.created_at, p.etag, p.size, checksums.stored_checksums(p.checksums))
            for p in parts
        ),
        next_part_number_marker=parts[-1].part_number if parts else None,
        initiator=who,
        owner=who,
        checksum_algorithm=upload.system_meta.get(ALGORITHM_KEY),
        checksum_type=upload.system_meta.get(TYPE_KEY),
        encoding_type=ctx.request.param("encoding-type"),
    )
    return xml_response(render_list_parts(result))


@handles("ListMultipartUploads")
async def list_uploads(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    delimiter = ctx.request.param("delimiter") or ""
    key_marker = ctx.request.param("key-marker") or ""
    upload_marker = (ctx.request.param("upload-id-marker") or "") if key_marker else ""
    limit = _int_param(ctx, "max-uploads", 1000, 1000)
    page = await ctx.offload.run(
        Multipart(ctx.warehouse).list_uploads_page, ctx.bucket, prefix, delimiter, key_marker, upload_marker, limit
    )
    who = owner(ctx)
    result = ListMultipartUploadsResult(
        bucket=ctx.bucket,
        max_uploads=limit,
        is_truncated=page.is_truncated,
        uploads=tuple(
            UploadSummary(
                u.key,
                u.upload_id,
                u.created_at,
                who,
                who,
                checksum_algorithm=u.system_meta.get(ALGORITHM_KEY),
                checksum_type=u.system_meta.get(TYPE_KEY),
            )
            for u in page.uploads
        ),
        common_prefixes=tuple(page.common_prefixes),
        prefix=prefix or None,
        delimiter=delimiter or None,
        key_marker=key_marker,
        upload_id_marker=upload_marker,
        next_key_marker=page.next_key_marker if page.is_truncated else None,
        next_upload_id_marker=page.next_upload_id_marker if page.is_truncated else None,
        encoding_type=ctx.request.param("encoding-type"),
    )
    return xml_response(render_list_multipart_uploads(result))
