"""ListObjects (v1) and ListObjectsV2: the latest version of each key that is not a delete marker
(ListObjectVersions is in ``versioning.py``)."""

from __future__ import annotations

import base64
import binascii

from datawarehouse.api.s3.errors import count_argument, invalid_argument
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlmodel import ListBucketResult, ListBucketResultV2, ObjectSummary
from datawarehouse.api.s3.xmlrender import render_list_objects_v1, render_list_objects_v2
from datawarehouse.service.listing import ObjectPage, list_page

MAX_KEYS = 1000


def max_keys_param(ctx: Context) -> int:
    return count_argument("max-keys", ctx.request.param("max-keys"), MAX_KEYS, MAX_KEYS)


def encoding_param(ctx: Context) -> str | None:
    enc = ctx.request.param("encoding-type")
    if enc is not None and enc != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request", name="encoding-type", value=enc)
    return enc


def _summaries(ctx: Context, page: ObjectPage, with_owner: bool) -> tuple[ObjectSummary, ...]:
    who = owner(ctx) if with_owner else None
    return tuple(ObjectSummary(o.key, o.created_at, o.etag, o.size, owner=who) for o in page.contents)


async def _page(ctx: Context, prefix: str, delimiter: str, after: str, max_keys: int) -> ObjectPage:
    return await ctx.offload.run(list_page, ctx.warehouse, ctx.bucket, prefix, delimiter, after, max_keys)


@handles("ListObjects")
async def list_objects(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    delimiter = ctx.request.param("delimiter") or ""
    marker = ctx.request.param("marker") or ""
    max_keys = max_keys_param(ctx)
    encoding = encoding_param(ctx)
    page = await _page(ctx, prefix, delimiter, marker, max_keys)
    result = ListBucketResult(
        bucket=ctx.bucket,
        prefix=prefix,
        max_keys=max_keys,
        is_truncated=page.is_truncated,
        contents=_summaries(ctx, page, with_owner=True),
        common_prefixes=tuple(page.common_prefixes),
        marker=marker,
        # S3 returns NextMarker only with a delimiter; without one the client uses the last key.
        next_marker=page.last if page.is_truncated and delimiter else None,
        delimiter=delimiter or None,
        encoding_type=encoding,
    )
    return xml_response(render_list_objects_v1(result))


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_argument("The continuation token provided is incorrect", name="continuation-token") from None


@handles("ListObjectsV2")
async def list_objects_v2(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    delimiter = ctx.request.param("delimiter") or ""
    token = ctx.request.param("continuation-token")
    start_after = ctx.request.param("start-after") or ""
    after = _decode_token(token) if token is not None else start_after
    max_keys = max_keys_param(ctx)
    encoding = encoding_param(ctx)
    page = await _page(ctx, prefix, delimiter, after, max_keys)
    next_token = None
    if page.is_truncated and page.last is not None:
        next_token = base64.urlsafe_b64encode(page.last.encode("utf-8")).decode("ascii")
    result = ListBucketResultV2(
        bucket=ctx.bucket,
        prefix=prefix,
        max_keys=max_keys,
        is_truncated=page.is_truncated,
        contents=_summaries(ctx, page, with_owner=ctx.request.param("fetch-owner") == "true"),
        common_prefixes=tuple(page.common_prefixes),
        delimiter=delimiter or None,
        continuation_token=token,
        next_continuation_token=next_token,
        start_after=start_after or None,
        encoding_type=encoding,
    )
    return xml_response(render_list_objects_v2(result))
