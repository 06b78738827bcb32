"""Tenants (the server's admins only) and tenant/user quotas (a tenant's admins too)."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.registry import operation
from datawarehouse.api.admin.schema import BOOLEAN, DATE_TIME, array, integer, nullable, obj, string
from datawarehouse.errors import InvalidInput
from datawarehouse.records import QuotaRecord, TenantRecord, UsageTotals

TENANT = obj(
    {"name": string(63), "created_at": DATE_TIME, "disabled": BOOLEAN},
    ("name", "created_at", "disabled"),
    closed=False,
)
LIMITS = {
    "max_bytes": nullable(integer(0, 2**62)),
    "max_objects": nullable(integer(0, 2**62)),
    "max_buckets": nullable(integer(0, 2**31)),
}
QUOTA_REQUEST = obj(LIMITS)
USAGE = obj({"buckets": integer(0), "objects": integer(0), "bytes": integer(0)}, closed=False)
QUOTA = obj({**LIMITS, "usage": USAGE}, ("max_bytes", "max_objects", "max_buckets", "usage"), closed=False)


def tenant_doc(t: TenantRecord) -> dict[str, Any]:
    return {"name": t.name, "created_at": t.created_at, "disabled": t.disabled}


def quota_doc(q: QuotaRecord | None, used: UsageTotals) -> dict[str, Any]:
    return {
        "max_bytes": q.max_bytes if q else None,
        "max_objects": q.max_objects if q else None,
        "max_buckets": q.max_buckets if q else None,
        "usage": {"buckets": used.buckets, "objects": used.objects, "bytes": used.bytes},
    }


@operation(
    "ListTenants",
    "GET",
    "/tenants",
    "Every tenant",
    tag="tenants",
    response=obj({"tenants": array(TENANT)}, ("tenants",), closed=False),
)
async def list_tenants(call: Call) -> dict[str, Any]:
    return {"tenants": [tenant_doc(t) for t in await call.run(call.wh.iam.list_tenants)]}


@operation(
    "CreateTenant",
    "POST",
    "/tenants",
    "Create a tenant (its own users, buckets and encryption domain)",
    tag="tenants",
    request=obj({"name": string(63, min_length=1)}, ("name",)),
    response=TENANT,
    status=201,
)
async def create_tenant(call: Call) -> dict[str, Any]:
    call.detail["tenant"] = call.body["name"]
    return tenant_doc(await call.run(call.wh.iam.create_tenant, call.body["name"]))


@operation("GetTenant", "GET", "/tenants/{tenant}", "One tenant", tag="tenants", response=TENANT, scope="tenant")
async def get_tenant(call: Call) -> dict[str, Any]:
    return tenant_doc(await call.run(call.wh.iam.get_tenant, call.path["tenant"]))


@operation(
    "UpdateTenant",
    "PATCH",
    "/tenants/{tenant}",
    "Disable or enable a tenant (its keys stop working)",
    tag="tenants",
    request=obj({"disabled": BOOLEAN}, ("disabled",)),
    response=TENANT,
)
async def update_tenant(call: Call) -> dict[str, Any]:
    call.detail["disabled"] = str(call.body["disabled"])
    return tenant_doc(await call.run(call.wh.iam.set_tenant_disabled, call.path["tenant"], call.body["disabled"]))


@operation(
    "DeleteTenant",
    "DELETE",
    "/tenants/{tenant}",
    "Delete a tenant without buckets or users",
    tag="tenants",
    response=None,
)
async def delete_tenant(call: Call) -> None:
    await call.run(call.wh.iam.delete_tenant, call.path["tenant"])


async def _get_quota(call: Call, user: str | None) -> dict[str, Any]:
    iam, tenant = call.wh.iam, call.path["tenant"]

    def read() -> dict[str, Any]:
        return quota_doc(iam.get_quota(tenant, user=user), iam.usage(tenant, user=user))

    return await call.run(read)


async def _put_quota(call: Call, user: str | None) -> dict[str, Any]:
    body = call.body
    if not any(k in body for k in LIMITS):
        raise InvalidInput("give max_bytes, max_objects and/or max_buckets (DELETE removes the quota)")
    call.detail.update({k: str(v) for k, v in body.items()})
    iam, tenant = call.wh.iam, call.path["tenant"]

    def write() -> dict[str, Any]:
        q = iam.set_quota(
            tenant,
            user=user,
            max_bytes=body.get("max_bytes"),
            max_objects=body.get("max_objects"),
            max_buckets=body.get("max_buckets"),
        )
        return quota_doc(q, iam.usage(tenant, user=user))

    return await call.run(write)


async def _delete_quota(call: Call, user: str | None) -> None:
    await call.run(lambda: call.wh.iam.set_quota(call.path["tenant"], user=user))


@operation(
    "GetTenantQuota",
    "GET",
    "/tenants/{tenant}/quota",
    "A tenant's quota and usage",
    tag="quotas",
    response=QUOTA,
    scope="tenant",
)
async def get_tenant_quota(call: Call) -> dict[str, Any]:
    return await _get_quota(call, None)


@operation(
    "PutTenantQuota",
    "PUT",
    "/tenants/{tenant}/quota",
    "Set a tenant's hard limits (null: unlimited)",
    tag="quotas",
    request=QUOTA_REQUEST,
    response=QUOTA,
)
async def put_tenant_quota(call: Call) -> dict[str, Any]:
    return await _put_quota(call, None)


@operation(
    "DeleteTenantQuota", "DELETE", "/tenants/{tenant}/quota", "Remove a tenant's quota", tag="quotas", response=None
)
async def delete_tenant_quota(call: Call) -> None:
    await _delete_quota(call, None)


@operation(
    "GetUserQuota",
    "GET",
    "/tenants/{tenant}/users/{user}/quota",
    "A user's quota and usage",
    tag="quotas",
    response=QUOTA,
    scope="tenant",
)
async def get_user_quota(call: Call) -> dict[str, Any]:
    return await _get_quota(call, call.path["user"])


@operation(
    "PutUserQuota",
    "PUT",
    "/tenants/{tenant}/users/{user}/quota",
    "Set a user's hard limits",
    tag="quotas",
    request=QUOTA_REQUEST,
    response=QUOTA,
    scope="tenant",
)
async def put_user_quota(call: Call) -> dict[str, Any]:
    return await _put_quota(call, call.path["user"])


@operation(
    "DeleteUserQuota",
    "DELETE",
    "/tenants/{tenant}/users/{user}/quota",
    "Remove a user's quota",
    tag="quotas",
    response=None,
    scope="tenant",
)
async def delete_user_quota(call: Call) -> None:
    await _delete_quota(call, call.path["user"])
