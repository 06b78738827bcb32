"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

from datawarehouse.api.s3.acl import requested_acl
from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import invalid_argument, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.public_access import requested_ownership
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_create_bucket_configuration
from datawarehouse.api.s3.xmlmodel import BucketSummary, ListAllMyBucketsResult, Owner
from datawarehouse.api.s3.xmlrender import render_list_all_my_buckets, render_location_constraint
from datawarehouse.errors import BucketAlreadyExists
from datawarehouse.service import access
from datawarehouse.service.naming import SNAPSHOT_MARK
from datawarehouse.service.policy import acl_grants
from datawarehouse.service.public_access import OWNERSHIP_SETTING, OWNERSHIP_VALUES

MAX_CONFIG_SIZE = 64 * 1024


def owner(ctx: Context) -> Owner:
    name = ctx.caller.name
    return Owner(id=name, display_name=ctx.caller.principal.username or name)


@handles("ListBuckets")
async def list_buckets(ctx: Context) -> Response:
    buckets = await ctx.offload.run(ctx.warehouse.list_buckets, ctx.caller.tenant)
    buckets = [b for b in buckets if SNAPSHOT_MARK not in b.name]  # snapshot views are hidden
    result = ListAllMyBucketsResult(
        owner=owner(ctx),
        buckets=tuple(BucketSummary(b.name, b.created_at, ctx.region) for b in buckets),
    )
    return xml_response(render_list_all_my_buckets(result))


def _ownership_settings(header: str | None, canned: str | None) -> dict[str, str]:
    """The settings ``x-amz-object-ownership`` creates a bucket with; with ACLs off, an ACL that
    grants anything is refused (InvalidBucketAclWithObjectOwnership), as on S3."""
    if header is None:
        return {}
    ownership = requested_ownership(
        header.strip(),
        lambda: invalid_argument(
            f"x-amz-object-ownership must be one of {', '.join(OWNERSHIP_VALUES)}", name="x-amz-object-ownership"
        ),
    )
    if canned is not None and acl_grants(canned):
        raise s3_error("InvalidBucketAclWithObjectOwnership")
    return {OWNERSHIP_SETTING: ownership}


@handles("CreateBucket")
async def create_bucket(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_CONFIG_SIZE).read_all(MAX_CONFIG_SIZE)
    location = parse_create_bucket_configuration(body)
    if location and location != ctx.region:
        raise s3_error(
            "IllegalLocationConstraintException",
            f"The {location} location constraint is incompatible for the region specific endpoint this "
            f"request was sent to ({ctx.region}).",
        )
    storage_class = ctx.request.headers.get("x-amz-storage-class-dwh")
    lock = ctx.request.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true"
    canned = requested_acl(ctx.request.headers, owner(ctx).id)
    access.check_canned_acl(canned, ctx.bucket)
    settings = _ownership_settings(ctx.request.headers.get("x-amz-object-ownership"), canned)
    owner_id = ctx.caller.user_id
    try:
        await ctx.offload.run(
            lambda: ctx.warehouse.create_bucket(
                ctx.bucket, storage_class, object_lock=lock, owner_user_id=owner_id, settings=settings
            )
        )
    except BucketAlreadyExists:
        # One owner for now: re-creating your own bucket is BucketAlreadyOwnedByYou (409), as S3
        # answers outside us-east-1.
        raise s3_error("BucketAlreadyOwnedByYou").with_resource(f"/{ctx.bucket}") from None
    if canned == "public-read":
        await ctx.offload.run(access.set_bucket_acl, ctx.warehouse, ctx.bucket, "public-read")
    return Response(200).header("location", f"/{ctx.bucket}")


@handles("HeadBucket")
async def head_bucket(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)
    return Response(200).header("x-amz-bucket-region", ctx.region)


@handles("DeleteBucket")
async def delete_bucket(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.delete_bucket, ctx.bucket)
    return Response(204)


@handles("GetBucketLocation")
async def get_bucket_location(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)
    # us-east-1 is reported as an empty LocationConstraint, as S3 does.
    return xml_response(render_location_constraint(None if ctx.region == "us-east-1" else ctx.region))
