"""DeleteObjects: up to 1,000 keys in one request, each answered on its own."""

from __future__ import annotations

from datawarehouse.api.s3 import authz
from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.checksums import algorithm_for_header
from datawarehouse.api.s3.errors import access_denied, s3_error, s3_error_from
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import bypass_governance
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_delete
from datawarehouse.api.s3.xmlmodel import DeletedObject, DeleteError, DeleteResult
from datawarehouse.api.s3.xmlrender import render_delete_result
from datawarehouse.errors import InvalidVersionId
from datawarehouse.service.access import RequestFacts
from datawarehouse.service.objects import DeleteTarget, delete_objects
from datawarehouse.service.versioning import DeleteOutcome, parse_version_id

MAX_BODY = 2 * 1024 * 1024


def has_integrity_header(headers: dict[str, str]) -> bool:
    """S3 requires DeleteObjects to carry Content-MD5 or an additional checksum (as a header or as
    an aws-chunked trailer); the body reader then verifies whichever was given."""
    return (
        "content-md5" in headers
        or any(algorithm_for_header(name) is not None for name in headers)
        or any(algorithm_for_header(name.strip()) is not None for name in headers.get("x-amz-trailer", "").split(","))
    )


def _deleted(target: DeleteTarget, outcome: DeleteOutcome) -> DeletedObject:
    """S3's Deleted entry: the version named (if any); for a delete marker created or removed,
    DeleteMarker and DeleteMarkerVersionId."""
    if not outcome.delete_marker:
        return DeletedObject(target.key, target.version_id)
    return DeletedObject(target.key, target.version_id, True, outcome.version_id)


async def _denied_keys(ctx: Context, targets: list[DeleteTarget]) -> list[DeleteTarget]:
    """DeleteObjects is authorized key by key (s3:DeleteObject or s3:DeleteObjectVersion each),
    as AWS: a denied key is an AccessDenied entry in the result, the others are deleted."""
    authorizer = ctx.authorizer
    if authorizer is None or not targets:
        return []

    def facts(target: DeleteTarget) -> RequestFacts:
        return authz.request_facts(
            ctx.request,
            ctx.endpoint,
            ctx.caller,
            secure=ctx.secure,
            operation="DeleteObject",
            key=target.key,
            version_id=target.version_id,
        )

    if authorizer.fast_allow(ctx.caller, ctx.endpoint.bucket):
        return []
    now = ctx.clock.now()

    def decide() -> list[DeleteTarget]:
        return [t for t in targets if not authorizer.authorize(ctx.caller, facts(t), now).allowed]

    return await ctx.offload.run(decide)


@handles("DeleteObjects")
async def delete_objects_handler(ctx: Context) -> Response:
    if not has_integrity_header(ctx.request.headers):
        raise s3_error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    request = parse_delete(body, limit=MAX_BODY)
    deleted: list[DeletedObject] = []
    errors: list[DeleteError] = []
    targets = []
    for obj in request.objects:
        try:
            version_id = parse_version_id(obj.version_id) if obj.version_id is not None else None
        except InvalidVersionId:  # an id this server never issued: reported per key, as S3 does
            missing = s3_error("NoSuchVersion")
            errors.append(DeleteError(obj.key, missing.code, missing.message, obj.version_id))
            continue
        targets.append(DeleteTarget(obj.key, version_id))
    denied = await _denied_keys(ctx, targets)
    if denied:
        refusal = access_denied("Access Denied")
        errors += [DeleteError(t.key, refusal.code, refusal.message, t.version_id) for t in targets if t in denied]
        targets = [t for t in targets if t not in denied]
    outcomes = await ctx.offload.run(
        lambda: delete_objects(ctx.warehouse, ctx.bucket, targets, bypass_governance=bypass_governance(ctx))
    )
    for target, outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, DeleteOutcome):
            deleted.append(_deleted(target, outcome))
        else:
            mapped = s3_error_from(outcome)
            errors.append(DeleteError(target.key, mapped.code, mapped.message, target.version_id))
    result = DeleteResult(deleted=() if request.quiet else tuple(deleted), errors=tuple(errors))
    return xml_response(render_delete_result(result))
