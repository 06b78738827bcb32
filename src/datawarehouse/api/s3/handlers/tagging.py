"""Object and bucket tagging; the x-amz-tagging header of PutObject/CreateMultipartUpload."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.versioning import requested_version, version_headers
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import check_tag, parse_tagging
from datawarehouse.api.s3.xmlmodel import Tag
from datawarehouse.api.s3.xmlrender import render_tagging

MAX_BODY = 64 * 1024
MAX_OBJECT_TAGS, MAX_BUCKET_TAGS = 10, 50


def header_tags(value: str | None) -> dict[str, str]:
    """``x-amz-tagging: k1=v1&k2=v2`` (URL-encoded), checked like a Tagging document."""
    if not value:
        return {}
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise s3_error("InvalidTag", "The x-amz-tagging header is not URL-encoded UTF-8.") from None
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise s3_error("InvalidTag", "Cannot provide multiple Tags with the same key")
    if len(tags) > MAX_OBJECT_TAGS:
        raise s3_error("InvalidTag", f"Object tags cannot be greater than {MAX_OBJECT_TAGS}")
    for key, val in tags.items():
        check_tag(key, val)
    return tags


async def _read_tags(ctx: Context, max_tags: int) -> dict[str, str]:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    return {t.key: t.value for t in parse_tagging(body, max_tags=max_tags)}


def _render(tags: dict[str, str]) -> Response:
    return xml_response(render_tagging(Tag(k, v) for k, v in sorted(tags.items())))


@handles("PutObjectTagging")
async def put_object_tagging(ctx: Context) -> Response:
    tags = await _read_tags(ctx, MAX_OBJECT_TAGS)
    version_id = requested_version(ctx)
    v = await ctx.offload.run(ctx.warehouse.put_object_tags, ctx.bucket, ctx.key, tags, version_id)
    return version_headers(Response(200), v, named=version_id is not None)


@handles("GetObjectTagging")
async def get_object_tagging(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    v = await ctx.offload.run(ctx.warehouse.head_object, ctx.bucket, ctx.key, version_id)
    return version_headers(_render(v.tags), v, named=version_id is not None)


@handles("DeleteObjectTagging")
async def delete_object_tagging(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    v = await ctx.offload.run(ctx.warehouse.put_object_tags, ctx.bucket, ctx.key, {}, version_id)
    return version_headers(Response(204), v, named=version_id is not None)


@handles("PutBucketTagging")
async def put_bucket_tagging(ctx: Context) -> Response:
    tags = await _read_tags(ctx, MAX_BUCKET_TAGS)
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, "tagging", json.dumps(tags))
    return Response(204)


@handles("GetBucketTagging")
async def get_bucket_tagging(ctx: Context) -> Response:
    value = await ctx.offload.run(ctx.warehouse.get_bucket_setting, ctx.bucket, "tagging")
    if value is None:
        raise s3_error("NoSuchTagSet").with_resource(f"/{ctx.bucket}")
    return _render(json.loads(value))


@handles("DeleteBucketTagging")
async def delete_bucket_tagging(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, "tagging", None)
    return Response(204)
