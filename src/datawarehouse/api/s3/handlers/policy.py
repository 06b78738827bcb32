"""Bucket policies and canned ACLs: Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus,
Get/PutBucketAcl, Get/PutObjectAcl.

Policies are stored as sent and evaluated by ``service.policy``. ACLs are supported as the two
canned ACLs that map onto policy (``private``, ``public-read``), asked for by name, by grant
headers or by a document equal to one of them (``api.s3.acl``); other grants answer
NotImplemented (S3 itself recommends policies over ACLs). A bucket's public access block and
object ownership (``handlers/public_access.py``) may refuse an ACL or a policy.
"""

from __future__ import annotations

from xml.etree.ElementTree import SubElement

from datawarehouse.api.s3.acl import ALL_USERS, MAX_ACL_DOCUMENT, acl_from_document, requested_acl
from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xmlrender import s3_root, to_document
from datawarehouse.errors import InvalidPolicy
from datawarehouse.service import access
from datawarehouse.service.policy import MAX_BUCKET_POLICY_BYTES

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_MAX_POLICY_BODY = 4 * MAX_BUCKET_POLICY_BYTES


@handles("PutBucketPolicy")
async def put_bucket_policy(ctx: Context) -> Response:
    limit = MAX_BUCKET_POLICY_BYTES
    # read a little past the limit, so that an oversized policy is a MalformedPolicy as in S3
    # (only a body beyond _MAX_POLICY_BODY is refused as EntityTooLarge before it is read)
    body = await BodyReader(ctx.request, ctx.auth, _MAX_POLICY_BODY).read_all(_MAX_POLICY_BODY)
    if len(body) > limit:
        raise s3_error("MalformedPolicy", f"Policies are limited to {limit} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise s3_error("MalformedPolicy", "Policies must be UTF-8 JSON") from None
    await ctx.offload.run(access.put_bucket_policy, ctx.warehouse, ctx.bucket, text)
    return Response(204)


@handles("GetBucketPolicy")
async def get_bucket_policy(ctx: Context) -> Response:
    text = await ctx.offload.run(access.get_bucket_policy, ctx.warehouse, ctx.bucket)
    if not text:
        raise s3_error("NoSuchBucketPolicy").with_resource(f"/{ctx.bucket}")
    return Response(200, body=text.encode("utf-8"), content_type="application/json")


@handles("DeleteBucketPolicy")
async def delete_bucket_policy(ctx: Context) -> Response:
    await ctx.offload.run(access.delete_bucket_policy, ctx.warehouse, ctx.bucket)
    return Response(204)


@handles("GetBucketPolicyStatus")
async def get_bucket_policy_status(ctx: Context) -> Response:
    try:
        public = await ctx.offload.run(access.is_public, ctx.warehouse, ctx.bucket)
    except InvalidPolicy:  # stored before a stricter parser: not public by any statement we can read
        public = False
    root = s3_root("PolicyStatus")
    SubElement(root, "IsPublic").text = "true" if public else "false"
    return xml_response(to_document(root))


def _render_acl(ctx: Context, canned: str) -> bytes:
    root = s3_root("AccessControlPolicy")
    who = owner(ctx)
    owner_el = SubElement(root, "Owner")
    SubElement(owner_el, "ID").text = who.id
    SubElement(owner_el, "DisplayName").text = who.display_name
    grants = SubElement(root, "AccessControlList")
    full = SubElement(grants, "Grant")
    grantee = SubElement(full, "Grantee", {"xmlns:xsi": _XSI, "xsi:type": "CanonicalUser"})
    SubElement(grantee, "ID").text = who.id
    SubElement(grantee, "DisplayName").text = who.display_name
    SubElement(full, "Permission").text = "FULL_CONTROL"
    if canned == "public-read":
        read = SubElement(grants, "Grant")
        everyone = SubElement(read, "Grantee", {"xmlns:xsi": _XSI, "xsi:type": "Group"})
        SubElement(everyone, "URI").text = ALL_USERS
        SubElement(read, "Permission").text = "READ"
    return to_document(root)


async def _requested_acl(ctx: Context) -> str:
    """The canned ACL a Put*Acl asks for: ``x-amz-acl``, ``x-amz-grant-*`` headers or an
    ``AccessControlPolicy`` document (one of them), as ``api.s3.acl`` reads them."""
    body = await BodyReader(ctx.request, ctx.auth, MAX_ACL_DOCUMENT).read_all(MAX_ACL_DOCUMENT)
    owner_id = owner(ctx).id
    from_headers = requested_acl(ctx.request.headers, owner_id)
    if body.strip():
        if from_headers is not None:
            raise s3_error("UnexpectedContent", "An ACL is given in headers or in the body, not both.")
        return acl_from_document(body, owner_id)
    if from_headers is None:
        raise s3_error("InvalidRequest", "An ACL is required: x-amz-acl, x-amz-grant-* headers or a document")
    return from_headers


@handles("GetBucketAcl")
async def get_bucket_acl(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)
    canned = await ctx.offload.run(access.acl_of, ctx.warehouse, ctx.bucket)
    return xml_response(_render_acl(ctx, canned))


@handles("PutBucketAcl")
async def put_bucket_acl(ctx: Context) -> Response:
    canned = await _requested_acl(ctx)
    await ctx.offload.run(access.put_bucket_acl, ctx.warehouse, ctx.bucket, canned)
    return Response(200)


@handles("GetObjectAcl")
async def get_object_acl(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.head_object, ctx.bucket, ctx.key)
    canned = await ctx.offload.run(access.acl_of, ctx.warehouse, ctx.bucket, ctx.key)
    return xml_response(_render_acl(ctx, canned))


@handles("PutObjectAcl")
async def put_object_acl(ctx: Context) -> Response:
    canned = await _requested_acl(ctx)
    await ctx.offload.run(access.put_object_acl, ctx.warehouse, ctx.bucket, ctx.key, canned)
    return Response(200)
