"""CopyObject: a new version that shares the source's chunks (no data is read or written)."""

from __future__ import annotations

from urllib.parse import unquote

from datawarehouse.api.s3.errors import invalid_argument, invalid_request, precondition_failed
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import evaluate_read_conditions, system_metadata, user_metadata
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlmodel import CopyResult
from datawarehouse.api.s3.xmlrender import render_copy_object_result
from datawarehouse.records import ObjectVersion
from datawarehouse.service.warehouse import ObjectSpec


def copy_source(header: str) -> tuple[str, str]:
    """``x-amz-copy-source``: URL-encoded ``bucket/key`` with an optional leading ``/`` and
    ``?versionId=`` (only ``null``, the one version an unversioned bucket has)."""
    source, _, query = header.partition("?")
    source = unquote(source).lstrip("/")
    if query and query != "versionId=null":
        raise invalid_request("Copying a specific version is not supported yet")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            name="x-amz-copy-source",
            value=header,
        )
    return bucket, key


def check_copy_conditions(headers: dict[str, str], source: ObjectVersion) -> None:
    """x-amz-copy-source-if-match / -if-none-match / -if-modified-since / -if-unmodified-since."""
    prefix = "x-amz-copy-source-"
    conditions = {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix + "if-")}
    if conditions and evaluate_read_conditions(conditions, source) is not None:
        raise precondition_failed("x-amz-copy-source-if-*")


@handles("CopyObject")
async def copy_object(ctx: Context) -> Response:
    headers = ctx.request.headers
    src_bucket, src_key = copy_source(headers["x-amz-copy-source"])
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", name="x-amz-metadata-directive", value=directive)
    if (src_bucket, src_key) == (ctx.bucket, ctx.key) and directive == "COPY":
        raise invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the "
            "object's metadata, storage class, website redirect location or encryption attributes."
        )
    spec = None
    if directive == "REPLACE":
        spec = ObjectSpec(
            content_type=headers.get("content-type") or "binary/octet-stream",
            user_meta=user_metadata(headers),
            system_meta=system_metadata(headers),
        )
    version = await ctx.offload.run(
        lambda: ctx.warehouse.copy_object(
            src_bucket,
            src_key,
            ctx.bucket,
            ctx.key,
            spec=spec,
            source_conditions=lambda source: check_copy_conditions(headers, source),
        )
    )
    return xml_response(render_copy_object_result(CopyResult(version.created_at, version.etag)))
