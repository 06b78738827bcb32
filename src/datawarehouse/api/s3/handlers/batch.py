"""DeleteObjects: up to 1,000 keys in one request, each answered on its own."""

from __future__ import annotations

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import S3Error, s3_error, s3_error_from
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_delete
from datawarehouse.api.s3.xmlmodel import DeletedObject, DeleteError, DeleteResult
from datawarehouse.api.s3.xmlrender import render_delete_result
from datawarehouse.errors import DwhError

MAX_BODY = 2 * 1024 * 1024


@handles("DeleteObjects")
async def delete_objects(ctx: Context) -> Response:
    headers = ctx.request.headers
    if (
        "content-md5" not in headers
        and not any(h.startswith("x-amz-checksum-") for h in headers)
        and ("x-amz-sdk-checksum-algorithm" not in headers)
    ):
        raise s3_error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    request = parse_delete(body)
    deleted: list[DeletedObject] = []
    errors: list[DeleteError] = []
    for obj in request.objects:
        try:
            if obj.version_id not in (None, "null"):
                raise s3_error("NotImplemented", "Versioning is not supported yet")
            # A key that does not exist counts as deleted, as in S3.
            await ctx.offload.run(ctx.warehouse.delete_object, ctx.bucket, obj.key)
            deleted.append(DeletedObject(obj.key, obj.version_id))
        except S3Error as err:
            errors.append(DeleteError(obj.key, err.code, err.message, obj.version_id))
        except DwhError as exc:
            mapped = s3_error_from(exc)
            errors.append(DeleteError(obj.key, mapped.code, mapped.message, obj.version_id))
    result = DeleteResult(deleted=() if request.quiet else tuple(deleted), errors=tuple(errors))
    return xml_response(render_delete_result(result))
