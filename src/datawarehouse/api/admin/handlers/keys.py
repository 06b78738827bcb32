"""Access keys and service accounts. A secret is in the answer that creates its key, and nowhere
else: listings never carry one, and the audit record of the creation names only the key id."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.registry import Param, operation
from datawarehouse.api.admin.schema import DATE_TIME, array, nullable, obj, parse_datetime, string
from datawarehouse.errors import InvalidInput
from datawarehouse.service.iam import AccessKeyInfo, NewAccessKey

KEY = obj(
    {
        "access_key_id": string(128),
        "user": string(64),
        "kind": {"type": "string", "enum": ["user", "service", "root"]},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "created_at": DATE_TIME,
        "expires_at": nullable(DATE_TIME),
        "last_used_at": nullable(DATE_TIME),
        "description": string(256),
        "parent_user": nullable(string(64)),
    },
    ("access_key_id", "user", "kind", "status", "created_at"),
    closed=False,
)
NEW_KEY = obj(
    {
        "access_key_id": string(128),
        "secret_key": string(128),
        "user": string(64),
        "kind": {"type": "string", "enum": ["user", "service"]},
        "expires_at": nullable(DATE_TIME),
    },
    ("access_key_id", "secret_key", "user", "kind"),
    closed=False,
)
CREATE_KEY = obj({"expires_at": nullable(DATE_TIME), "description": string(256)})
UPDATE_KEY = obj(
    {"status": {"type": "string", "enum": ["active", "disabled"]}, "expires_at": nullable(DATE_TIME)},
)
POLICY_DOCUMENT = {"type": ["object", "string"], "description": "an IAM policy document (JSON object or its text)"}
CREATE_ACCOUNT = obj(
    {
        "parent_user": string(64, min_length=1),
        "policy": POLICY_DOCUMENT,
        "name": string(64, min_length=1),
        "expires_at": nullable(DATE_TIME),
        "description": string(256),
    },
    ("parent_user", "policy"),
)


def key_doc(k: AccessKeyInfo) -> dict[str, Any]:
    return {
        "access_key_id": k.access_key_id,
        "user": k.user,
        "kind": k.kind.value,
        "status": k.status.value,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used_at": k.last_used_at,
        "description": k.description,
        "parent_user": k.parent_user,
    }


def new_key_doc(call: Call, k: NewAccessKey) -> dict[str, Any]:
    call.detail["access_key_id"] = k.access_key_id
    return {
        "access_key_id": k.access_key_id,
        "secret_key": k.secret_key,
        "user": k.user,
        "kind": k.kind.value,
        "expires_at": k.expires_at,
    }


def _when(value: str | None, where: str) -> datetime | None:
    return None if value is None else parse_datetime(value, where)


@operation(
    "ListAccessKeys",
    "GET",
    "/tenants/{tenant}/keys",
    "Access keys of a tenant (never their secrets)",
    tag="keys",
    query=(Param("user", {"type": "string", "maxLength": 64}, "only this user's keys"),),
    response=obj({"keys": array(KEY)}, ("keys",), closed=False),
    scope="tenant",
)
async def list_keys(call: Call) -> dict[str, Any]:
    keys = await call.run(call.wh.iam.list_access_keys, call.path["tenant"], call.query.get("user"))
    return {"keys": [key_doc(k) for k in keys]}


@operation(
    "CreateAccessKey",
    "POST",
    "/tenants/{tenant}/users/{user}/keys",
    "Create an access key for a user; the secret is returned once",
    tag="keys",
    request=CREATE_KEY,
    response=NEW_KEY,
    status=201,
    scope="tenant",
)
async def create_key(call: Call) -> dict[str, Any]:
    expires = _when(call.body.get("expires_at"), "body.expires_at")
    new = await call.run(
        lambda: call.wh.iam.create_access_key(
            call.path["tenant"], call.path["user"], expires_at=expires, description=call.body.get("description", "")
        )
    )
    return new_key_doc(call, new)


@operation(
    "UpdateAccessKey",
    "PATCH",
    "/tenants/{tenant}/keys/{key}",
    "Disable or enable a key, or set its expiry",
    tag="keys",
    request=UPDATE_KEY,
    response=KEY,
    scope="tenant",
)
async def update_key(call: Call) -> dict[str, Any]:
    body, tenant, key = call.body, call.path["tenant"], call.path["key"]
    if "status" not in body and "expires_at" not in body:
        raise InvalidInput("give status and/or expires_at")
    expires = _when(body.get("expires_at"), "body.expires_at")
    call.detail.update({k: str(v) for k, v in body.items()})
    iam = call.wh.iam

    def update() -> dict[str, Any]:
        if "expires_at" in body:
            iam.set_access_key_expiry(tenant, key, expires)
        if body.get("status") == "disabled":
            iam.disable_access_key(tenant, key)
        elif body.get("status") == "active":
            iam.enable_access_key(tenant, key)
        for k in iam.list_access_keys(tenant):
            if k.access_key_id == key:
                return key_doc(k)
        from datawarehouse.errors import NoSuchAccessKey

        raise NoSuchAccessKey(f"access key {key} does not exist in tenant {tenant!r}")

    return await call.run(update)


@operation(
    "DeleteAccessKey",
    "DELETE",
    "/tenants/{tenant}/keys/{key}",
    "Delete an access key",
    tag="keys",
    response=None,
    scope="tenant",
)
async def delete_key(call: Call) -> None:
    await call.run(call.wh.iam.delete_access_key, call.path["tenant"], call.path["key"])


@operation(
    "CreateServiceAccount",
    "POST",
    "/tenants/{tenant}/service-accounts",
    "A service account of a user, narrowed by a policy, with one key (the secret is returned once)",
    tag="keys",
    request=CREATE_ACCOUNT,
    response=NEW_KEY,
    status=201,
    scope="tenant",
)
async def create_service_account(call: Call) -> dict[str, Any]:
    body = call.body
    document = body["policy"] if isinstance(body["policy"], str) else json.dumps(body["policy"])
    expires = _when(body.get("expires_at"), "body.expires_at")
    call.detail.update({"parent_user": body["parent_user"], "name": str(body.get("name"))})
    new = await call.run(
        lambda: call.wh.iam.create_service_account(
            call.path["tenant"],
            body["parent_user"],
            document,
            expires_at=expires,
            name=body.get("name"),
            description=body.get("description", ""),
        )
    )
    return new_key_doc(call, new)


@operation(
    "DeleteServiceAccount",
    "DELETE",
    "/tenants/{tenant}/service-accounts/{user}",
    "Delete a service account and its key",
    tag="keys",
    response=None,
    scope="tenant",
)
async def delete_service_account(call: Call) -> None:
    await call.run(call.wh.iam.delete_service_account, call.path["tenant"], call.path["user"])
