"""DeleteObjects: up to 1,000 keys in one request, each answered on its own."""

from __future__ import annotations

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.checksums import algorithm_for_header
from datawarehouse.api.s3.errors import s3_error, s3_error_from
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_delete
from datawarehouse.api.s3.xmlmodel import DeletedObject, DeleteError, DeleteResult
from datawarehouse.api.s3.xmlrender import render_delete_result
from datawarehouse.service.objects import delete_objects

MAX_BODY = 2 * 1024 * 1024


def has_integrity_header(headers: dict[str, str]) -> bool:
    """S3 requires DeleteObjects to carry Content-MD5 or an additional checksum (as a header or as
    an aws-chunked trailer); the body reader then verifies whichever was given."""
    return (
        "content-md5" in headers
        or any(algorithm_for_header(name) is not None for name in headers)
        or any(algorithm_for_header(name.strip()) is not None for name in headers.get("x-amz-trailer", "").split(","))
    )


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
        if obj.version_id not in (None, "null"):
            # Unversioned: no version but "null" exists; S3 answers such a key with an error entry.
            missing = s3_error("NoSuchVersion")
            errors.append(DeleteError(obj.key, missing.code, missing.message, obj.version_id))
        else:
            targets.append(obj)
    outcomes = await ctx.offload.run(delete_objects, ctx.warehouse, ctx.bucket, [o.key for o in targets])
    for obj, exc in zip(targets, outcomes, strict=True):
        if exc is None:
            deleted.append(DeletedObject(obj.key, obj.version_id))
        else:
            mapped = s3_error_from(exc)
            errors.append(DeleteError(obj.key, mapped.code, mapped.message, obj.version_id))
    result = DeleteResult(deleted=() if request.quiet else tuple(deleted), errors=tuple(errors))
    return xml_response(render_delete_result(result))
