"""Public access blocks and object ownership: Put/Get/DeletePublicAccessBlock and
Put/Get/DeleteBucketOwnershipControls. What each setting refuses or ignores, and when a policy
is public, is in ``service/public_access.py``; ``service/access.py`` stores and enforces them.

Terraform sets both on most buckets it creates (``aws_s3_bucket_public_access_block``,
``aws_s3_bucket_ownership_controls``), and S3 gives every new bucket both since 2023; here a
bucket starts with neither (ACLs on, nothing blocked), as MinIO's and S3's buckets did before.
"""

from __future__ import annotations

from collections.abc import Callable

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import S3Error, malformed_xml, not_implemented, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import PUBLIC_ACCESS_BLOCK_FLAGS, parse_ownership_controls, parse_public_access_block
from datawarehouse.api.s3.xmlrender import render_ownership_controls, render_public_access_block
from datawarehouse.service import access
from datawarehouse.service.public_access import BUCKET_OWNER_ENFORCED, OWNERSHIP_VALUES, AccessBlock

MAX_BODY = 16 * 1024
# XML element -> AccessBlock field
_FIELDS = dict(
    zip(
        PUBLIC_ACCESS_BLOCK_FLAGS,
        ("block_public_acls", "ignore_public_acls", "block_public_policy", "restrict_public_buckets"),
        strict=True,
    )
)


def requested_ownership(value: str, invalid: Callable[[], S3Error]) -> str:
    """An ObjectOwnership value this server honours: ``BucketOwnerEnforced``. The other two S3
    values describe objects owned by the account that wrote them, which this server does not have
    (every object belongs to its bucket's owner), so they answer NotImplemented rather than being
    stored and not honoured."""
    if value not in OWNERSHIP_VALUES:
        raise invalid()
    if value != BUCKET_OWNER_ENFORCED:
        raise not_implemented(
            f"object ownership {value} is not supported: every object here belongs to its bucket's owner; "
            f"use {BUCKET_OWNER_ENFORCED} (ACLs off) or no ownership controls (ACLs on)"
        )
    return value


@handles("PutPublicAccessBlock")
async def put_public_access_block(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    flags = parse_public_access_block(body, limit=MAX_BODY)
    block = AccessBlock(**{field: flags[name] for name, field in _FIELDS.items()})
    await ctx.offload.run(access.set_access_block, ctx.warehouse, ctx.bucket, block)
    return Response(200)


@handles("GetPublicAccessBlock")
async def get_public_access_block(ctx: Context) -> Response:
    block = await ctx.offload.run(access.get_access_block, ctx.warehouse, ctx.bucket)
    if block is None:
        raise s3_error("NoSuchPublicAccessBlockConfiguration").with_resource(f"/{ctx.bucket}")
    return xml_response(render_public_access_block((name, getattr(block, field)) for name, field in _FIELDS.items()))


@handles("DeletePublicAccessBlock")
async def delete_public_access_block(ctx: Context) -> Response:
    await ctx.offload.run(access.set_access_block, ctx.warehouse, ctx.bucket, None)
    return Response(204)


@handles("PutBucketOwnershipControls")
async def put_ownership_controls(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    ownership = requested_ownership(parse_ownership_controls(body, limit=MAX_BODY), malformed_xml)
    await ctx.offload.run(access.set_ownership, ctx.warehouse, ctx.bucket, ownership)
    return Response(200)


@handles("GetBucketOwnershipControls")
async def get_ownership_controls(ctx: Context) -> Response:
    ownership = await ctx.offload.run(access.get_ownership, ctx.warehouse, ctx.bucket)
    if ownership is None:
        raise s3_error("OwnershipControlsNotFoundError").with_resource(f"/{ctx.bucket}")
    return xml_response(render_ownership_controls(ownership))


@handles("DeleteBucketOwnershipControls")
async def delete_ownership_controls(ctx: Context) -> Response:
    await ctx.offload.run(access.set_ownership, ctx.warehouse, ctx.bucket, None)
    return Response(204)
