"""Bucket features this server does not have, read back the way S3 reads a bucket that never
configured them: transfer acceleration, requester pays, access logging, event notifications,
static websites and replication.

Tools read these before they write anything: Terraform's ``aws_s3_bucket`` refreshes its state
with GetBucketAccelerateConfiguration, GetBucketRequestPayment, GetBucketLogging,
GetBucketWebsite and GetBucketReplication, and browsers of buckets ask for the logging and
website settings. Each answer is true of every bucket here (nothing is accelerated, logged,
replicated or served as a website; the owner pays), so these reads are answered.

A write that asks for that same state is answered too, and changes nothing: acceleration
Suspended, the bucket owner paying, a logging status without LoggingEnabled, a notification
configuration with no destination, and deleting a website or replication configuration (there is
none; S3 answers 204 to deleting what is not set). Tools send these to turn a feature off or to
restate it (Terraform's ``aws_s3_bucket_request_payment_configuration`` with ``BucketOwner``,
cleanup scripts disabling notifications). Any write that would turn a feature on answers
NotImplemented, naming it, and so does every other method on these subresources
(``router._UNSUPPORTED_BUCKET``).
"""

from __future__ import annotations

from xml.etree.ElementTree import SubElement

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import S3Code, malformed_xml, not_implemented, s3_error
from datawarehouse.api.s3.handlers import Context, Handler, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import element_names, parse_feature_value
from datawarehouse.api.s3.xmlrender import s3_root, to_document

MAX_BODY = 64 * 1024


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


async def _body(ctx: Context) -> bytes:
    return await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)


def _restating(root: str, field: str, unset: str, others: tuple[str, ...], feature: str) -> Handler:
    """A Put handler for a one-value document (``<root><field>value</field></root>``): ``unset``
    is this server's state (accepted, nothing to store), one of ``others`` answers
    NotImplemented, anything else MalformedXML."""

    async def handler(ctx: Context) -> Response:
        body = await _body(ctx)
        value = parse_feature_value(body, root, field, limit=MAX_BODY)
        await _existing_bucket(ctx)
        if value == unset:
            return Response(200)
        if value in others:
            raise not_implemented(f"{feature} is not supported: {field} {value} cannot be set here")
        raise malformed_xml()

    return handler


def _empty_only(root: str, feature: str) -> Handler:
    """A Put handler for a document that configures nothing when it is empty (accepted, nothing
    to store); any child element would turn ``feature`` on and answers NotImplemented."""

    async def handler(ctx: Context) -> Response:
        body = await _body(ctx)
        configured = element_names(body, root, limit=MAX_BODY)
        await _existing_bucket(ctx)
        if configured:
            raise not_implemented(f"{feature} is not supported: only an empty {root} (turning it off) is accepted")
        return Response(200)

    return handler


async def _delete_nothing(ctx: Context) -> Response:
    await _existing_bucket(ctx)
    return Response(204)


handles("PutBucketAccelerateConfiguration")(
    _restating("AccelerateConfiguration", "Status", "Suspended", ("Enabled",), "transfer acceleration")
)
handles("PutBucketRequestPayment")(
    _restating("RequestPaymentConfiguration", "Payer", "BucketOwner", ("Requester",), "requester pays")
)
handles("PutBucketLogging")(_empty_only("BucketLoggingStatus", "server access logging"))
handles("PutBucketNotificationConfiguration")(_empty_only("NotificationConfiguration", "event notification"))
handles("DeleteBucketWebsite")(_delete_nothing)
handles("DeleteBucketReplication")(_delete_nothing)
