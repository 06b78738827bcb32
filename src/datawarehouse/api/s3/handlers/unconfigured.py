"""Bucket features this server does not have, read back the way S3 reads a bucket that never
configured them: transfer acceleration, requester pays, access logging, event notifications,
static websites and replication.

Tools read these before they write anything: Terraform's ``aws_s3_bucket`` refreshes its state
with GetBucketAccelerateConfiguration, GetBucketRequestPayment, GetBucketLogging,
GetBucketWebsite and GetBucketReplication, and browsers of buckets ask for the logging and
website settings. Each answer is true of every bucket here (nothing is accelerated, logged,
replicated or served as a website; the owner pays), so these reads are answered; every request
to set one of them still answers NotImplemented (``router._UNSUPPORTED_BUCKET``).
"""

from __future__ import annotations

from xml.etree.ElementTree import SubElement

from datawarehouse.api.s3.errors import S3Code, s3_error
from datawarehouse.api.s3.handlers import Context, Handler, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlrender import s3_root, to_document


async def _existing_bucket(ctx: Context) -> None:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)


def _empty_document(root: str) -> Handler:
    """A handler answering the feature's document with nothing set in it (S3's never-set form)."""

    async def handler(ctx: Context) -> Response:
        await _existing_bucket(ctx)
        return xml_response(to_document(s3_root(root)))

    return handler


def _not_configured(code: S3Code) -> Handler:
    """A handler answering S3's 404 for a feature the bucket never configured."""

    async def handler(ctx: Context) -> Response:
        await _existing_bucket(ctx)
        raise s3_error(code).with_resource(f"/{ctx.bucket}")

    return handler


for _operation, _root in (
    ("GetBucketAccelerateConfiguration", "AccelerateConfiguration"),  # no Status: never enabled
    ("GetBucketLogging", "BucketLoggingStatus"),  # no LoggingEnabled: not logged
    ("GetBucketNotificationConfiguration", "NotificationConfiguration"),
):
    handles(_operation)(_empty_document(_root))

_NOT_CONFIGURED: tuple[tuple[str, S3Code], ...] = (
    ("GetBucketWebsite", "NoSuchWebsiteConfiguration"),
    ("GetBucketReplication", "ReplicationConfigurationNotFoundError"),
)
for _operation, _code in _NOT_CONFIGURED:
    handles(_operation)(_not_configured(_code))


@handles("GetBucketRequestPayment")
async def get_request_payment(ctx: Context) -> Response:
    await _existing_bucket(ctx)
    root = s3_root("RequestPaymentConfiguration")
    SubElement(root, "Payer").text = "BucketOwner"
    return xml_response(to_document(root))
