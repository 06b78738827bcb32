"""ListObjects (v1), ListObjectsV2, and ListObjectVersions as an unversioned bucket answers it.

This store keeps one version per key, so ListObjectVersions answers exactly what S3 answers for a
bucket that never had versioning enabled: every current object once, ``VersionId`` ``null``,
``IsLatest`` true, no delete markers. Tools that empty a bucket version by version (boto3's
``object_versions``, Terraform's ``force_destroy``, ``aws s3api list-object-versions``) work.
"""

from __future__ import annotations

import base64
import binascii
from xml.etree.ElementTree import SubElement

from datawarehouse.api.s3.errors import invalid_argument
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlmodel import ListBucketResult, ListBucketResultV2, ObjectSummary, Owner
from datawarehouse.api.s3.xmlrender import (
    add_rows,
    quote_etag,
    render_list_objects_v1,
    render_list_objects_v2,
    s3_root,
    to_document,
    url_encode,
)
from datawarehouse.service.listing import ListPage, list_page

MAX_KEYS = 1000


def _max_keys(ctx: Context) -> int:
    raw = ctx.request.param("max-keys")
    if raw is None:
        return MAX_KEYS
    if not (raw.isascii() and raw.isdigit()):
        raise invalid_argument("max-keys must be a non-negative integer", name="max-keys", value=raw)
    return min(int(raw), MAX_KEYS)


def _encoding(ctx: Context) -> str | None:
    enc = ctx.request.param("encoding-type")
    if enc is not None and enc != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request", name="encoding-type", value=enc)
    return enc


def _summaries(ctx: Context, page: ListPage, with_owner: bool) -> tuple[ObjectSummary, ...]:
    who = owner(ctx) if with_owner else None
    return tuple(ObjectSummary(o.key, o.created_at, o.etag, o.size, owner=who) for o in page.contents)


async def _page(ctx: Context, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    return await ctx.offload.run(list_page, ctx.warehouse, ctx.bucket, prefix, delimiter, after, max_keys)


@handles("ListObjects")
async def list_objects(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    delimiter = ctx.request.param("delimiter") or ""
    marker = ctx.request.param("marker") or ""
    max_keys = _max_keys(ctx)
    encoding = _encoding(ctx)
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
    max_keys = _max_keys(ctx)
    encoding = _encoding(ctx)
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


# --- ListObjectVersions ---------------------------------------------------------------------------

NULL_VERSION = "null"


def render_list_versions(
    bucket: str,
    prefix: str,
    key_marker: str,
    version_id_marker: str,
    max_keys: int,
    delimiter: str,
    page: ListPage,
    owner_: Owner,
    encoding_type: str | None,
) -> bytes:
    def enc(value: str | None) -> str | None:
        return url_encode(value) if value is not None and encoding_type == "url" else value

    next_key = page.last if page.is_truncated else None
    # A common prefix as the next key marker has no version to continue after.
    next_version = NULL_VERSION if next_key is not None and next_key not in page.common_prefixes else None
    root = s3_root("ListVersionsResult")
    add_rows(
        root,
        [
            ("Name", bucket),
            ("Prefix", enc(prefix)),
            ("KeyMarker", enc(key_marker)),
            ("VersionIdMarker", version_id_marker),
            ("NextKeyMarker", enc(next_key)),
            ("NextVersionIdMarker", next_version),
            ("MaxKeys", max_keys),
            ("Delimiter", enc(delimiter or None)),
            ("IsTruncated", page.is_truncated),
            ("EncodingType", encoding_type),
        ],
    )
    for o in page.contents:
        version = SubElement(root, "Version")
        add_rows(
            version,
            [
                ("Key", enc(o.key)),
                ("VersionId", NULL_VERSION),
                ("IsLatest", True),
                ("LastModified", o.created_at),
                ("ETag", quote_etag(o.etag)),
                ("Size", o.size),
            ],
        )
        add_rows(SubElement(version, "Owner"), [("ID", owner_.id), ("DisplayName", owner_.display_name)])
        add_rows(version, [("StorageClass", "STANDARD")])
    for common in page.common_prefixes:
        add_rows(SubElement(root, "CommonPrefixes"), [("Prefix", enc(common))])
    return to_document(root)


@handles("ListObjectVersions")
async def list_object_versions(ctx: Context) -> Response:
    prefix = ctx.request.param("prefix") or ""
    delimiter = ctx.request.param("delimiter") or ""
    key_marker = ctx.request.param("key-marker") or ""
    version_id_marker = ctx.request.param("version-id-marker") or ""
    if version_id_marker and not key_marker:
        raise invalid_argument(
            "A version-id marker cannot be specified without a key marker.",
            name="version-id-marker",
            value=version_id_marker,
        )
    if version_id_marker not in ("", NULL_VERSION):
        raise invalid_argument("Invalid version id specified", name="version-id-marker", value=version_id_marker)
    encoding = _encoding(ctx)
    max_keys = _max_keys(ctx)
    # Each key has the one version "null", so continuing after (key, null) is continuing after key.
    page = await _page(ctx, prefix, delimiter, key_marker, max_keys)
    body = render_list_versions(
        ctx.bucket, prefix, key_marker, version_id_marker, max_keys, delimiter, page, owner(ctx), encoding
    )
    return xml_response(body)
