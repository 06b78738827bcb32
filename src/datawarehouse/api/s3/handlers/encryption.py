"""Bucket default encryption (Get/Put/DeleteBucketEncryption).

Every chunk this server stores is encrypted at rest (AES-256-GCM or ChaCha20-Poly1305 under the
domain's key; docs/invariants.md), whatever a bucket's configuration says: that is SSE-S3, and it
cannot be turned off. So the configuration a client reads is always ``AES256``, as on S3 since
2023 (every bucket has SSE-S3 by default, and DeleteBucketEncryption returns a bucket to it). A
configuration asking for ``AES256`` is accepted and kept (its ``BucketKeyEnabled`` is given back
as written; it only changes KMS request costs on S3, and there is no KMS here); one asking for a
KMS key answers NotImplemented rather than being accepted and not honoured. ``AES256`` is the
protocol's one name for server-managed keys; the cipher is the configured one (AES-256-GCM by
default, ChaCha20-Poly1305 if chosen).
"""

from __future__ import annotations

import json

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import not_implemented
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import SSE_S3
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_encryption_configuration
from datawarehouse.api.s3.xmlrender import render_encryption_configuration
from datawarehouse.service.warehouse import Warehouse

MAX_BODY = 16 * 1024
SETTING = "encryption"


def _bucket_key_enabled(wh: Warehouse, bucket: str) -> bool:
    value = wh.get_bucket_setting(bucket, SETTING)
    return bool(value is not None and json.loads(value).get("bucket_key_enabled"))


@handles("PutBucketEncryption")
async def put_bucket_encryption(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    algorithm, kms_key, bucket_key = parse_encryption_configuration(body, limit=MAX_BODY)
    if algorithm != SSE_S3 or kms_key is not None:
        raise not_implemented(
            f"default encryption {algorithm!r}{' with a KMS key' if kms_key else ''} is not supported: "
            "data is always encrypted with the server's keys (AES256)"
        )
    value = json.dumps({"bucket_key_enabled": bucket_key})
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, value)
    return Response(200)


@handles("GetBucketEncryption")
async def get_bucket_encryption(ctx: Context) -> Response:
    bucket_key = await ctx.offload.run(_bucket_key_enabled, ctx.warehouse, ctx.bucket)
    return xml_response(render_encryption_configuration(SSE_S3, bucket_key))


@handles("DeleteBucketEncryption")
async def delete_bucket_encryption(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, None)
    return Response(204)
