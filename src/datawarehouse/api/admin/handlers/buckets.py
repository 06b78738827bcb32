"""Buckets: list (with usage), get, create, delete, and their quotas."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.errors import access_denied, not_found
from datawarehouse.api.admin.handlers.common import MARKER, QUOTA, limit_param, page, paginate
from datawarehouse.api.admin.registry import operation
from datawarehouse.api.admin.schema import BOOLEAN, DATE_TIME, integer, nullable, obj, string
from datawarehouse.errors import InvalidInput
from datawarehouse.ids import DEFAULT_TENANT_NAME, TENANT_SEPARATOR, qualify_bucket_name, split_bucket_name
from datawarehouse.service import snapshots, usage
from datawarehouse.service.naming import is_system_bucket
from datawarehouse.service.quota import Quota
from datawarehouse.service.warehouse import Warehouse

USAGE = obj(
    {
        "objects": integer(0),
        "logical_bytes": integer(0),
        "upload_parts": integer(0),
        "upload_bytes": integer(0),
    },
    ("objects", "logical_bytes"),
    closed=False,
)
STORED = obj(
    {"chunks": integer(0), "sealed_bytes": integer(0), "raw_bytes": integer(0), "inline_bytes": integer(0)},
    closed=False,
)
BUCKET = obj(
    {
        "name": string(200),
        "created_at": DATE_TIME,
        "storage_class": nullable(string(64)),
        "usage": USAGE,
        "quota": nullable(QUOTA),
    },
    ("name", "created_at", "usage", "quota"),
    closed=False,
)
BUCKET_DETAIL = {**BUCKET, "properties": {**BUCKET["properties"], "stored": STORED}}
CREATE = obj(
    {
        "name": string(127, min_length=1),
        "storage_class": string(64, description="EC(k,m), k+m, replica-N, raid5 ...; default: the server's"),
        "object_lock": BOOLEAN,
    },
    ("name",),
)
QUOTA_REQUEST = obj(
    {"max_bytes": nullable(integer(0, 2**62)), "max_objects": nullable(integer(0, 2**62))},
)


def _usage_doc(u: Any) -> dict[str, int]:
    return {
        "objects": u.objects,
        "logical_bytes": u.bytes,
        "upload_parts": u.upload_parts,
        "upload_bytes": u.upload_bytes,
    }


def quota_doc(q: Quota | None) -> dict[str, int | None] | None:
    return None if q is None else {"max_bytes": q.max_bytes, "max_objects": q.max_objects}


def _qualified(call: Call, name: str) -> str:
    """The bucket a name means for this caller: bare names are in the caller's tenant, and a
    tenant admin may not name another tenant's bucket. System buckets (the audit log's) are not
    the admin API's to see or change."""
    assert call.caller is not None
    tenant, bare = split_bucket_name(name)
    mine = call.caller.tenant
    if mine != DEFAULT_TENANT_NAME:
        if TENANT_SEPARATOR not in name:
            tenant, name = mine, qualify_bucket_name(mine, bare)
        elif tenant != mine:
            raise access_denied(f"bucket {name[:130]!r} belongs to another tenant")
    if is_system_bucket(bare):
        raise not_found(f"bucket {name!r} does not exist", "NoSuchBucket")
    call.bucket = name
    return name


def caller_tenant_filter(call: Call) -> str | None:
    """The tenant whose buckets a listing shows (None: every tenant, for the server's admins)."""
    assert call.caller is not None
    return None if call.caller.tenant == DEFAULT_TENANT_NAME else call.caller.tenant


def _line_doc(line: usage.BucketLine) -> dict[str, Any]:
    return {
        "name": line.name,
        "created_at": line.record.created_at,
        "storage_class": str(line.record.storage_class) if line.record.storage_class else None,
        "usage": _usage_doc(line.usage),
        "quota": quota_doc(line.quota),
    }


@operation(
    "ListBuckets",
    "GET",
    "/buckets",
    "Buckets of every tenant with their usage counters and quotas",
    tag="buckets",
    scope="caller",
    query=(limit_param(1000, 1000), MARKER),
    response=page("buckets", BUCKET),
)
async def list_buckets(call: Call) -> dict[str, Any]:
    lines = await call.run(usage.bucket_lines, call.wh, caller_tenant_filter(call))
    limit = call.query.get("limit", 1000)
    chosen, truncated, marker = paginate(lines, lambda b: b.name, call.query.get("marker"), limit)
    return {"buckets": [_line_doc(line) for line in chosen], "truncated": truncated, "next_marker": marker}


def _bucket_detail(wh: Warehouse, name: str) -> dict[str, Any]:
    rec = wh.get_bucket(name)
    used, stored, limit = wh.bucket_usage(name)
    return {
        "name": wh.qualified_name(rec),
        "created_at": rec.created_at,
        "storage_class": str(rec.storage_class) if rec.storage_class else None,
        "usage": _usage_doc(used),
        "stored": {
            "chunks": stored.chunks,
            "sealed_bytes": stored.sealed_bytes,
            "raw_bytes": stored.raw_bytes,
            "inline_bytes": stored.inline_bytes,
        },
        "quota": quota_doc(limit),
    }


@operation(
    "GetBucket",
    "GET",
    "/buckets/{bucket}",
    "One bucket: usage counters, stored bytes after dedup and compression, quota",
    tag="buckets",
    scope="caller",
    response=BUCKET_DETAIL,
)
async def get_bucket(call: Call) -> dict[str, Any]:
    return await call.run(_bucket_detail, call.wh, _qualified(call, call.path["bucket"]))


@operation(
    "CreateBucket",
    "POST",
    "/buckets",
    "Create a bucket (tenant:bucket names another tenant's)",
    tag="buckets",
    scope="caller",
    request=CREATE,
    response=BUCKET_DETAIL,
    status=201,
)
async def create_bucket(call: Call) -> dict[str, Any]:
    name = _qualified(call, call.body["name"])
    call.detail.update({k: str(v) for k, v in call.body.items() if k != "name"})

    def create(wh: Warehouse) -> dict[str, Any]:
        wh.create_bucket(name, call.body.get("storage_class") or None, object_lock=call.body.get("object_lock", False))
        return _bucket_detail(wh, name)

    return await call.run(create, call.wh)


@operation(
    "DeleteBucket",
    "DELETE",
    "/buckets/{bucket}",
    "Delete an empty bucket",
    tag="buckets",
    scope="caller",
    response=None,
)
async def delete_bucket(call: Call) -> None:
    name = _qualified(call, call.path["bucket"])
    snapshots.refuse_write(name)
    await call.run(call.wh.delete_bucket, name)


@operation(
    "GetBucketQuota",
    "GET",
    "/buckets/{bucket}/quota",
    "A bucket's hard quota",
    tag="buckets",
    scope="caller",
    response=QUOTA,
)
async def get_quota(call: Call) -> dict[str, Any]:
    name = _qualified(call, call.path["bucket"])

    def read(wh: Warehouse) -> Quota | None:
        return wh.quota_for(wh.get_bucket(name))

    return quota_doc(await call.run(read, call.wh)) or {"max_bytes": None, "max_objects": None}


@operation(
    "PutBucketQuota",
    "PUT",
    "/buckets/{bucket}/quota",
    "Set a bucket's hard quota on logical bytes and stored objects (null: no limit)",
    tag="buckets",
    scope="caller",
    request=QUOTA_REQUEST,
    response=QUOTA,
)
async def put_quota(call: Call) -> dict[str, Any]:
    name = _qualified(call, call.path["bucket"])
    snapshots.refuse_write(name)
    if "max_bytes" not in call.body and "max_objects" not in call.body:
        raise InvalidInput("give max_bytes and/or max_objects (DELETE removes the quota)")
    limit = Quota(call.body.get("max_bytes"), call.body.get("max_objects"))
    call.detail.update({"max_bytes": str(limit.max_bytes), "max_objects": str(limit.max_objects)})
    await call.run(call.wh.set_bucket_quota, name, limit)
    return {"max_bytes": limit.max_bytes, "max_objects": limit.max_objects}


@operation(
    "DeleteBucketQuota",
    "DELETE",
    "/buckets/{bucket}/quota",
    "Remove a bucket's quota",
    tag="buckets",
    scope="caller",
    response=None,
)
async def delete_quota(call: Call) -> None:
    name = _qualified(call, call.path["bucket"])
    snapshots.refuse_write(name)
    await call.run(call.wh.set_bucket_quota, name, None)
