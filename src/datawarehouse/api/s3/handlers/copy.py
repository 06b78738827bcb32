"""CopyObject: a new version that shares the source's chunks (no data is read or written).

The new version references the source's manifest (its chunks' reference counts go up in the same
journaled transaction that stores the version; an inline object's sealed bytes are copied along),
so S3's 5 GiB CopyObject limit does not apply here: nothing is moved whatever the size.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from datawarehouse.api.s3.errors import invalid_argument, invalid_request, precondition_failed, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import (
    SSE_S3,
    check_encryption_request,
    check_lock_headers,
    evaluate_read_conditions,
    object_acl_after_write,
    system_metadata,
    user_metadata,
    write_acl,
)
from datawarehouse.api.s3.handlers.tagging import header_tags
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.objectlock_xml import lock_request
from datawarehouse.api.s3.xmlmodel import CopyResult
from datawarehouse.api.s3.xmlrender import render_copy_object_result
from datawarehouse.errors import InvalidVersionId
from datawarehouse.records import ObjectVersion
from datawarehouse.service.versioning import parse_version_id
from datawarehouse.service.warehouse import ObjectSpec


def copy_source(header: str) -> tuple[str, str, str | None]:
    """``x-amz-copy-source``: URL-encoded ``bucket/key`` with an optional leading ``/`` and
    ``?versionId=`` (a version id or ``null``): (bucket, key, version id or None)."""
    source, _, query = header.partition("?")
    source = unquote(source).lstrip("/")
    version_id = None
    if query:
        name, eq, value = query.partition("=")
        if name != "versionId" or not eq or "&" in value:
            raise invalid_argument("Unsupported copy source parameter.", name="x-amz-copy-source", value=header)
        try:
            version_id = parse_version_id(unquote(value))
        except InvalidVersionId:
            raise invalid_argument("Invalid version id specified", name="x-amz-copy-source", value=header) from None
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            name="x-amz-copy-source",
            value=header,
        )
    return bucket, key, version_id


def copy_source_read(headers: dict[str, str], found: list[ObjectVersion]) -> Callable[[ObjectVersion], None]:
    """The ``source_conditions`` callback of a copy: checks the x-amz-copy-source-if-* headers
    and keeps the source version (its id goes in x-amz-copy-source-version-id)."""

    def check(source: ObjectVersion) -> None:
        found.append(source)
        check_copy_conditions(headers, source)

    return check


def copy_version_headers(resp: Response, source: list[ObjectVersion], version: ObjectVersion | None) -> Response:
    """x-amz-copy-source-version-id when the source is a versioned (non-null) version or was
    named, x-amz-version-id for a new version of a versioned bucket."""
    if source and not source[-1].null_version:
        resp.header("x-amz-copy-source-version-id", source[-1].s3_version_id)
    if version is not None and not version.null_version:
        resp.header("x-amz-version-id", version.s3_version_id)
    return resp


def check_copy_conditions(headers: dict[str, str], source: ObjectVersion) -> None:
    """x-amz-copy-source-if-match / -if-none-match / -if-modified-since / -if-unmodified-since."""
    prefix = "x-amz-copy-source-"
    conditions = {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix + "if-")}
    if conditions and evaluate_read_conditions(conditions, source) is not None:
        raise precondition_failed("x-amz-copy-source-if-*")


def _directive(headers: dict[str, str], name: str) -> str:
    value = headers.get(f"x-amz-{name}-directive", "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        raise invalid_argument(f"Unknown {name} directive.", name=f"x-amz-{name}-directive", value=value)
    return value


def check_storage_class(headers: dict[str, str]) -> None:
    """A copy shares the source's chunks, so it keeps the source's layout; every object is listed
    as STANDARD, so that is the one class a copy may ask for."""
    wanted = headers.get("x-amz-storage-class")
    if wanted is not None and wanted != "STANDARD":
        raise s3_error(
            "InvalidStorageClass",
            "A copy shares the source's data and keeps its storage class; only STANDARD can be requested.",
        )


@handles("CopyObject")
async def copy_object(ctx: Context) -> Response:
    headers = ctx.request.headers
    src_bucket, src_key, src_version = copy_source(headers["x-amz-copy-source"])
    src_bucket = ctx.qualify(src_bucket)
    metadata = _directive(headers, "metadata")
    tagging = _directive(headers, "tagging")
    check_storage_class(headers)
    sse = check_encryption_request(headers)
    # S3 lets an object be copied onto itself when the request names a storage class or an
    # encryption, even the ones it already has: that is how clients "change" them in place
    # (``rclone settier``, ``aws s3 cp s3://b/k s3://b/k --storage-class STANDARD``).
    restates = "x-amz-storage-class" in headers or sse is not None
    same = (src_bucket, src_key) == (ctx.bucket, ctx.key) and src_version is None
    if same and metadata == "COPY" and not restates:
        raise invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the "
            "object's metadata, storage class, website redirect location or encryption attributes."
        )
    spec = None
    if metadata == "REPLACE":
        spec = ObjectSpec(
            content_type=headers.get("content-type") or "binary/octet-stream",
            user_meta=user_metadata(headers),
            system_meta=system_metadata(headers),
        )
    tags = header_tags(headers.get("x-amz-tagging")) if tagging == "REPLACE" else None
    canned = await write_acl(ctx)
    lock = lock_request(headers)  # a copy's lock is its own, never the source's
    await check_lock_headers(ctx, ctx.bucket, {"lock": lock})
    source: list[ObjectVersion] = []
    version = await ctx.offload.run(
        lambda: ctx.warehouse.copy_object(
            src_bucket,
            src_key,
            ctx.bucket,
            ctx.key,
            spec=spec,
            tags=tags,
            source_conditions=copy_source_read(headers, source),
            source_version_id=src_version,
            lock=lock,
            owner=ctx.caller.principal.arn,
        )
    )
    await object_acl_after_write(ctx, canned)
    resp = xml_response(render_copy_object_result(CopyResult(version.created_at, version.etag)))
    resp.header("x-amz-server-side-encryption", SSE_S3)
    return copy_version_headers(resp, source, version)
