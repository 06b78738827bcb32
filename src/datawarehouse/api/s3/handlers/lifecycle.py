"""Bucket lifecycle configuration: Put/Get/DeleteBucketLifecycleConfiguration.

The rules are stored as a bucket setting (``service.lifecycle.SETTING``, JSON) through the
journaled settings path, so they survive a rebuilt index; the lifecycle job applies them.
"""

from __future__ import annotations

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.lifecycle_xml import parse_lifecycle_configuration, render_lifecycle_configuration
from datawarehouse.service.lifecycle import SETTING, rules_from_json, rules_to_json

MAX_BODY = 1024 * 1024


@handles("PutBucketLifecycleConfiguration")
async def put_bucket_lifecycle(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    rules = parse_lifecycle_configuration(body, limit=MAX_BODY)
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, rules_to_json(rules))
    return Response(200)


@handles("GetBucketLifecycleConfiguration")
async def get_bucket_lifecycle(ctx: Context) -> Response:
    value = await ctx.offload.run(ctx.warehouse.get_bucket_setting, ctx.bucket, SETTING)
    if value is None:
        raise s3_error("NoSuchLifecycleConfiguration").with_resource(f"/{ctx.bucket}")
    return xml_response(render_lifecycle_configuration(rules_from_json(value)))


@handles("DeleteBucketLifecycle")
async def delete_bucket_lifecycle(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, None)
    return Response(204)
