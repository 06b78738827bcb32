"""Policies of a tenant, and attaching them to users and groups."""

from __future__ import annotations

import json
from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.handlers.keys import POLICY_DOCUMENT
from datawarehouse.api.admin.registry import operation
from datawarehouse.api.admin.schema import DATE_TIME, array, obj, string
from datawarehouse.records import PolicyRecord
from datawarehouse.service.policy import BUILTIN_POLICIES

POLICY = obj(
    {"name": string(128), "document": {"type": "object"}, "created_at": DATE_TIME, "updated_at": DATE_TIME},
    ("name", "document"),
    closed=False,
)
POLICIES = obj(
    {"policies": array(POLICY), "builtin": array(string(128))},
    ("policies", "builtin"),
    closed=False,
)
ATTACHED = obj({"policies": array(string(128))}, ("policies",), closed=False)


def policy_doc(p: PolicyRecord) -> dict[str, Any]:
    return {"name": p.name, "document": json.loads(p.document), "created_at": p.created_at, "updated_at": p.updated_at}


@operation(
    "ListPolicies",
    "GET",
    "/tenants/{tenant}/policies",
    "A tenant's policies and the built-in ones",
    tag="policies",
    response=POLICIES,
    scope="tenant",
)
async def list_policies(call: Call) -> dict[str, Any]:
    found = await call.run(call.wh.iam.list_policies, call.path["tenant"])
    return {"policies": [policy_doc(p) for p in found], "builtin": sorted(BUILTIN_POLICIES)}


@operation(
    "GetPolicy",
    "GET",
    "/tenants/{tenant}/policies/{policy}",
    "One policy document",
    tag="policies",
    response=POLICY,
    scope="tenant",
)
async def get_policy(call: Call) -> dict[str, Any]:
    return policy_doc(await call.run(call.wh.iam.get_policy, call.path["tenant"], call.path["policy"]))


@operation(
    "PutPolicy",
    "PUT",
    "/tenants/{tenant}/policies/{policy}",
    "Create or replace a policy",
    tag="policies",
    request=obj({"document": POLICY_DOCUMENT}, ("document",)),
    response=POLICY,
    scope="tenant",
)
async def put_policy(call: Call) -> dict[str, Any]:
    document = call.body["document"]
    text = document if isinstance(document, str) else json.dumps(document)
    return policy_doc(await call.run(call.wh.iam.put_policy, call.path["tenant"], call.path["policy"], text))


@operation(
    "DeletePolicy",
    "DELETE",
    "/tenants/{tenant}/policies/{policy}",
    "Delete a policy no one has attached",
    tag="policies",
    response=None,
    scope="tenant",
)
async def delete_policy(call: Call) -> None:
    await call.run(call.wh.iam.delete_policy, call.path["tenant"], call.path["policy"])


@operation(
    "ListUserPolicies",
    "GET",
    "/tenants/{tenant}/users/{user}/policies",
    "Policies attached to a user",
    tag="policies",
    response=ATTACHED,
    scope="tenant",
)
async def list_user_policies(call: Call) -> dict[str, Any]:
    iam, tenant, user = call.wh.iam, call.path["tenant"], call.path["user"]
    return {"policies": await call.run(lambda: iam.list_attached_policies(tenant, user=user))}


@operation(
    "AttachUserPolicy",
    "PUT",
    "/tenants/{tenant}/users/{user}/policies/{policy}",
    "Attach a policy (the tenant's or built-in) to a user",
    tag="policies",
    response=None,
    scope="tenant",
)
async def attach_user_policy(call: Call) -> None:
    iam, p = call.wh.iam, call.path
    await call.run(lambda: iam.attach_policy(p["tenant"], p["policy"], user=p["user"]))


@operation(
    "DetachUserPolicy",
    "DELETE",
    "/tenants/{tenant}/users/{user}/policies/{policy}",
    "Detach a policy from a user",
    tag="policies",
    response=None,
    scope="tenant",
)
async def detach_user_policy(call: Call) -> None:
    iam, p = call.wh.iam, call.path
    await call.run(lambda: iam.detach_policy(p["tenant"], p["policy"], user=p["user"]))


@operation(
    "ListGroupPolicies",
    "GET",
    "/tenants/{tenant}/groups/{group}/policies",
    "Policies attached to a group",
    tag="policies",
    response=ATTACHED,
    scope="tenant",
)
async def list_group_policies(call: Call) -> dict[str, Any]:
    iam, tenant, group = call.wh.iam, call.path["tenant"], call.path["group"]
    return {"policies": await call.run(lambda: iam.list_attached_policies(tenant, group=group))}


@operation(
    "AttachGroupPolicy",
    "PUT",
    "/tenants/{tenant}/groups/{group}/policies/{policy}",
    "Attach a policy to a group",
    tag="policies",
    response=None,
    scope="tenant",
)
async def attach_group_policy(call: Call) -> None:
    iam, p = call.wh.iam, call.path
    await call.run(lambda: iam.attach_policy(p["tenant"], p["policy"], group=p["group"]))


@operation(
    "DetachGroupPolicy",
    "DELETE",
    "/tenants/{tenant}/groups/{group}/policies/{policy}",
    "Detach a policy from a group",
    tag="policies",
    response=None,
    scope="tenant",
)
async def detach_group_policy(call: Call) -> None:
    iam, p = call.wh.iam, call.path
    await call.run(lambda: iam.detach_policy(p["tenant"], p["policy"], group=p["group"]))
