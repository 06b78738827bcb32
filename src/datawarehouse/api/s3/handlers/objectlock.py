"""Object lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention, Put/GetObjectLegalHold.

The decisions (what may be shortened, by whom) are the service's (``service.objectlock``); a
refusal is AccessDenied. A bucket without object lock answers InvalidRequest to the per-object
operations and ObjectLockConfigurationNotFoundError to GetObjectLockConfiguration, as S3.
"""

from __future__ import annotations

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import bypass_governance
from datawarehouse.api.s3.handlers.versioning import requested_version
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.objectlock_xml import (
    CONFIG_LIMIT,
    missing_lock_configuration,
    parse_legal_hold,
    parse_lock_configuration,
    parse_retention,
    render_legal_hold,
    render_lock_configuration,
    render_retention,
)
from datawarehouse.records import ObjectVersion
from datawarehouse.service import objectlock
from datawarehouse.service.warehouse import Warehouse


async def _body(ctx: Context) -> bytes:
    return await BodyReader(ctx.request, ctx.auth, CONFIG_LIMIT).read_all(CONFIG_LIMIT)


def require_lock(wh: Warehouse, bucket: str) -> None:
    """InvalidRequest unless the bucket has object lock (NoSuchBucket if it does not exist)."""
    if not objectlock.lock_enabled(wh, bucket):
        raise missing_lock_configuration()


@handles("PutObjectLockConfiguration")
async def put_lock_configuration(ctx: Context) -> Response:
    rule = parse_lock_configuration(await _body(ctx))
    await ctx.offload.run(objectlock.put_config, ctx.warehouse, ctx.bucket, rule)
    return Response(200)


@handles("GetObjectLockConfiguration")
async def get_lock_configuration(ctx: Context) -> Response:
    config = await ctx.offload.run(objectlock.get_config, ctx.warehouse, ctx.bucket)
    if config is None or not config.enabled:
        raise s3_error("ObjectLockConfigurationNotFoundError")
    return xml_response(render_lock_configuration(config))


def _locked_version(wh: Warehouse, bucket: str, key: str, version_id: str | None) -> ObjectVersion:
    require_lock(wh, bucket)
    return wh.lookup(bucket, key, version_id)[1]


@handles("PutObjectRetention")
async def put_retention(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    mode, until = parse_retention(await _body(ctx))
    bypass = bypass_governance(ctx)

    def run() -> None:
        require_lock(ctx.warehouse, ctx.bucket)
        objectlock.put_retention(
            ctx.warehouse, ctx.bucket, ctx.key, mode, until, version_id=version_id, bypass_governance=bypass
        )

    await ctx.offload.run(run)
    return Response(200)


@handles("GetObjectRetention")
async def get_retention(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    v = await ctx.offload.run(_locked_version, ctx.warehouse, ctx.bucket, ctx.key, version_id)
    if v.lock_mode is None or v.lock_until is None:
        raise s3_error("NoSuchObjectLockConfiguration")
    return xml_response(render_retention(v))


@handles("PutObjectLegalHold")
async def put_legal_hold(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    on = parse_legal_hold(await _body(ctx))

    def run() -> None:
        require_lock(ctx.warehouse, ctx.bucket)
        objectlock.put_legal_hold(ctx.warehouse, ctx.bucket, ctx.key, on, version_id=version_id)

    await ctx.offload.run(run)
    return Response(200)


@handles("GetObjectLegalHold")
async def get_legal_hold(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    v = await ctx.offload.run(_locked_version, ctx.warehouse, ctx.bucket, ctx.key, version_id)
    if v.legal_hold is None:  # never set on this version (OFF is an answer only once set)
        raise s3_error("NoSuchObjectLockConfiguration")
    return xml_response(render_legal_hold(v))
