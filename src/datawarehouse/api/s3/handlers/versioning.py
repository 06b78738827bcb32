"""Bucket versioning: PutBucketVersioning, GetBucketVersioning, ListObjectVersions."""

from __future__ import annotations

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import invalid_argument, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import MAX_CONFIG_SIZE, owner
from datawarehouse.api.s3.handlers.listing import encoding_param, max_keys_param
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import child_text, parse_document
from datawarehouse.api.s3.xmlmodel import Owner
from datawarehouse.api.s3.xmlrender import (
    add_rows,
    common_prefixes_xml,
    owner_xml,
    quote_etag,
    rows_xml,
    s3_root,
    to_document,
    url_encode,
)
from datawarehouse.errors import InvalidVersionId
from datawarehouse.records import ObjectVersion
from datawarehouse.service import versioning
from datawarehouse.service.versioning import VersionPage


def version_headers(resp: Response, v: ObjectVersion, *, named: bool = False) -> Response:
    """x-amz-version-id: a versioned (non-null) version's id always; ``null`` when the request
    named it (a null version in a bucket that never had versioning carries no header)."""
    if not v.null_version or named:
        resp.header("x-amz-version-id", v.s3_version_id)
    return resp


def requested_version(ctx: Context) -> str | None:
    """The ``versionId`` query parameter, validated (InvalidArgument when malformed)."""
    raw = ctx.request.param("versionId")
    if raw is None:
        return None
    try:
        return versioning.parse_version_id(raw)
    except InvalidVersionId:
        raise invalid_argument("Invalid version id specified", name="versionId", value=raw) from None


def parse_versioning_configuration(body: bytes) -> str:
    """The Status of a VersioningConfiguration (``Enabled`` or ``Suspended``). MFA delete is not
    supported: ``MfaDelete`` may only say ``Disabled``."""
    root = parse_document(body, "VersioningConfiguration", limit=MAX_CONFIG_SIZE)
    status = child_text(root, "Status")
    mfa = child_text(root, "MfaDelete")
    if mfa is not None and mfa.strip() != "Disabled":
        if mfa.strip() == "Enabled":
            raise s3_error("NotImplemented", "MFA delete is not supported by this server.")
        raise s3_error("IllegalVersioningConfigurationException")
    if status is None or status.strip() not in versioning.STATES:
        raise s3_error(
            "IllegalVersioningConfigurationException",
            "The versioning configuration specified in the request is invalid: Status must be Enabled or Suspended.",
        )
    return status.strip()


@handles("PutBucketVersioning")
async def put_bucket_versioning(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_CONFIG_SIZE).read_all(MAX_CONFIG_SIZE)
    status = parse_versioning_configuration(body)
    await ctx.offload.run(versioning.set_versioning, ctx.warehouse, ctx.bucket, status)
    return Response(200)


@handles("GetBucketVersioning")
async def get_bucket_versioning(ctx: Context) -> Response:
    status = await ctx.offload.run(versioning.get_versioning, ctx.warehouse, ctx.bucket)
    root = s3_root("VersioningConfiguration")
    if status is not None:
        add_rows(root, [("Status", status)])
    return xml_response(to_document(root))


# --- ListObjectVersions ------------------------------------------------------------------------------


def render_list_versions(
    bucket: str,
    prefix: str,
    key_marker: str,
    version_id_marker: str,
    max_keys: int,
    delimiter: str,
    page: VersionPage,
    owner_: Owner,
    encoding_type: str | None,
) -> bytes:
    def enc(value: str | None) -> str | None:
        return url_encode(value) if value is not None and encoding_type == "url" else value

    root = s3_root("ListVersionsResult")
    add_rows(
        root,
        [
            ("Name", bucket),
            ("Prefix", enc(prefix)),
            ("KeyMarker", enc(key_marker)),
            ("VersionIdMarker", version_id_marker),
            ("NextKeyMarker", enc(page.next_key) if page.is_truncated else None),
            ("NextVersionIdMarker", page.next_version if page.is_truncated else None),
            ("MaxKeys", max_keys),
            ("Delimiter", enc(delimiter or None)),
            ("IsTruncated", page.is_truncated),
            ("EncodingType", encoding_type),
        ],
    )
    owner_element = owner_xml(owner_)
    entries = []
    for v in page.entries:  # versions and delete markers interleaved, in listing order
        head = rows_xml(
            [
                ("Key", enc(v.key)),
                ("VersionId", v.s3_version_id),
                ("IsLatest", v.is_latest),
                ("LastModified", v.created_at),
            ]
        )
        if v.is_delete_marker:
            entries.append(f"<DeleteMarker>{head}{owner_element}</DeleteMarker>")
        else:
            data = rows_xml([("ETag", quote_etag(v.etag)), ("Size", v.size)])
            entries.append(f"<Version>{head}{data}{owner_element}<StorageClass>STANDARD</StorageClass></Version>")
    return to_document(root, "".join(entries), common_prefixes_xml(page.common_prefixes, encoding_type))


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
    if version_id_marker:
        try:
            versioning.parse_version_id(version_id_marker)  # the same check as versionId
        except InvalidVersionId:
            raise invalid_argument(
                "Invalid version id specified", name="version-id-marker", value=version_id_marker
            ) from None
    encoding = encoding_param(ctx)
    max_keys = max_keys_param(ctx)
    page = await ctx.offload.run(
        versioning.list_versions, ctx.warehouse, ctx.bucket, prefix, delimiter, key_marker, version_id_marker, max_keys
    )
    body = render_list_versions(
        ctx.bucket, prefix, key_marker, version_id_marker, max_keys, delimiter, page, owner(ctx), encoding
    )
    return xml_response(body)
