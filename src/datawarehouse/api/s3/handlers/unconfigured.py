"""Bucket features this server does not have, read back the way S3 reads a bucket that never
configured them: transfer acceleration, requester pays, access logging, event notifications,
static websites, replication, public access blocks and ownership controls.

Tools read these before they write anything: Terraform's ``aws_s3_bucket`` refreshes its state
with GetBucketAccelerateConfiguration, GetBucketRequestPayment, GetBucketLogging,
GetBucketWebsite and GetBucketReplication, and browsers of buckets ask for the logging and
website settings. Each answer is true of every bucket here (nothing is accelerated, logged,
replicated or served as a website; the owner pays; no public access block or ownership control
is set), so these reads are answered; every request to set one of them still answers
NotImplemented (``router._UNSUPPORTED_BUCKET``).
"""

from __future__ import annotations

from xml.etree.ElementTree import SubElement

from datawarehouse.api.s3.errors import S3Code, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlrender import s3_root, to_document


async def _existing_bucket(ctx: Context) -> None:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)


async def _empty(ctx: Context, root: str) -> Response:
    await _existing_bucket(ctx)
    return xml_response(to_document(s3_root(root)))


@handles("GetBucketAccelerateConfiguration")
async def get_accelerate(ctx: Context) -> Response:
    return await _empty(ctx, "AccelerateConfiguration")  # no Status: never enabled


@handles("GetBucketLogging")
async def get_logging(ctx: Context) -> Response:
    return await _empty(ctx, "BucketLoggingStatus")  # no LoggingEnabled: not logged


@handles("GetBucketNotificationConfiguration")
async def get_notification(ctx: Context) -> Response:
    return await _empty(ctx, "NotificationConfiguration")


@handles("GetBucketRequestPayment")
async def get_request_payment(ctx: Context) -> Response:
    await _existing_bucket(ctx)
    root = s3_root("RequestPaymentConfiguration")
    SubElement(root, "Payer").text = "BucketOwner"
    return xml_response(to_document(root))


async def _not_configured(ctx: Context, code: S3Code) -> Response:
    await _existing_bucket(ctx)
    raise s3_error(code).with_resource(f"/{ctx.bucket}")


@handles("GetBucketWebsite")
async def get_website(ctx: Context) -> Response:
    return await _not_configured(ctx, "NoSuchWebsiteConfiguration")


@handles("GetBucketReplication")
async def get_replication(ctx: Context) -> Response:
    return await _not_configured(ctx, "ReplicationConfigurationNotFoundError")


@handles("GetPublicAccessBlock")
async def get_public_access_block(ctx: Context) -> Response:
    return await _not_configured(ctx, "NoSuchPublicAccessBlockConfiguration")


@handles("GetBucketOwnershipControls")
async def get_ownership_controls(ctx: Context) -> Response:
    return await _not_configured(ctx, "OwnershipControlsNotFoundError")
