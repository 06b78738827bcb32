"""Users and groups of a tenant, group members."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.registry import Param, operation
from datawarehouse.api.admin.schema import BOOLEAN, DATE_TIME, array, nullable, obj, string
from datawarehouse.records import GroupRecord, PrincipalKind, UserRecord
from datawarehouse.service.iam import IamService

USER = obj(
    {
        "name": string(64),
        "kind": {"type": "string", "enum": ["user", "service", "root"]},
        "created_at": DATE_TIME,
        "disabled": BOOLEAN,
        "parent_user": nullable(string(64)),
        "groups": array(string(64)),
        "policies": array(string(128)),
    },
    ("name", "kind", "created_at", "disabled"),
    closed=False,
)
GROUP = obj(
    {"name": string(64), "created_at": DATE_TIME, "members": array(string(64)), "policies": array(string(128))},
    ("name", "created_at"),
    closed=False,
)
NAME = obj({"name": string(64, min_length=1)}, ("name",))


def user_doc(u: UserRecord, parents: dict[Any, str] | None = None) -> dict[str, Any]:
    return {
        "name": u.name,
        "kind": u.kind.value,
        "created_at": u.created_at,
        "disabled": u.disabled,
        "parent_user": (parents or {}).get(u.parent_user_id) if u.parent_user_id is not None else None,
    }


def _user_detail(iam: IamService, tenant: str, name: str) -> dict[str, Any]:
    u = iam.get_user(tenant, name)
    parents = {p.user_id: p.name for p in iam.list_users(tenant)} if u.parent_user_id is not None else {}
    doc = user_doc(u, parents)
    doc["groups"] = iam.list_user_groups(tenant, name) if u.kind == PrincipalKind.USER else []
    doc["policies"] = iam.list_attached_policies(tenant, user=name) if u.kind == PrincipalKind.USER else []
    return doc


def _group_detail(iam: IamService, tenant: str, g: GroupRecord) -> dict[str, Any]:
    return {
        "name": g.name,
        "created_at": g.created_at,
        "members": iam.list_group_members(tenant, g.name),
        "policies": iam.list_attached_policies(tenant, group=g.name),
    }


@operation(
    "ListUsers",
    "GET",
    "/tenants/{tenant}/users",
    "Users and service accounts of a tenant",
    tag="users",
    query=(Param("kind", {"type": "string", "enum": ["user", "service"]}, "only this kind"),),
    response=obj({"users": array(USER)}, ("users",), closed=False),
    scope="tenant",
)
async def list_users(call: Call) -> dict[str, Any]:
    kind = PrincipalKind(call.query["kind"]) if "kind" in call.query else None

    def read(iam: IamService) -> list[dict[str, Any]]:
        users = iam.list_users(call.path["tenant"])
        parents = {u.user_id: u.name for u in users}
        return [user_doc(u, parents) for u in users if kind is None or u.kind == kind]

    return {"users": await call.run(read, call.wh.iam)}


@operation(
    "CreateUser",
    "POST",
    "/tenants/{tenant}/users",
    "Create a user",
    tag="users",
    request=NAME,
    response=USER,
    status=201,
    scope="tenant",
)
async def create_user(call: Call) -> dict[str, Any]:
    call.detail["user"] = call.body["name"]

    def create(iam: IamService) -> dict[str, Any]:
        iam.create_user(call.path["tenant"], call.body["name"])
        return _user_detail(iam, call.path["tenant"], call.body["name"])

    return await call.run(create, call.wh.iam)


@operation(
    "GetUser",
    "GET",
    "/tenants/{tenant}/users/{user}",
    "A user with its groups and attached policies",
    tag="users",
    response=USER,
    scope="tenant",
)
async def get_user(call: Call) -> dict[str, Any]:
    return await call.run(_user_detail, call.wh.iam, call.path["tenant"], call.path["user"])


@operation(
    "UpdateUser",
    "PATCH",
    "/tenants/{tenant}/users/{user}",
    "Disable or enable a user (and its keys)",
    tag="users",
    request=obj({"disabled": BOOLEAN}, ("disabled",)),
    response=USER,
    scope="tenant",
)
async def update_user(call: Call) -> dict[str, Any]:
    call.detail["disabled"] = str(call.body["disabled"])

    def update(iam: IamService) -> dict[str, Any]:
        iam.set_user_disabled(call.path["tenant"], call.path["user"], call.body["disabled"])
        return _user_detail(iam, call.path["tenant"], call.path["user"])

    return await call.run(update, call.wh.iam)


@operation(
    "DeleteUser",
    "DELETE",
    "/tenants/{tenant}/users/{user}",
    "Delete a user (its keys go with it)",
    tag="users",
    response=None,
    scope="tenant",
)
async def delete_user(call: Call) -> None:
    await call.run(call.wh.iam.delete_user, call.path["tenant"], call.path["user"])


@operation(
    "ListGroups",
    "GET",
    "/tenants/{tenant}/groups",
    "Groups of a tenant with members and policies",
    tag="groups",
    response=obj({"groups": array(GROUP)}, ("groups",), closed=False),
    scope="tenant",
)
async def list_groups(call: Call) -> dict[str, Any]:
    def read(iam: IamService) -> list[dict[str, Any]]:
        return [_group_detail(iam, call.path["tenant"], g) for g in iam.list_groups(call.path["tenant"])]

    return {"groups": await call.run(read, call.wh.iam)}


def _find_group(iam: IamService, tenant: str, name: str) -> GroupRecord:
    from datawarehouse.errors import NoSuchGroup

    for g in iam.list_groups(tenant):
        if g.name == name:
            return g
    raise NoSuchGroup(f"group {name!r} does not exist in tenant {tenant!r}")


@operation(
    "CreateGroup",
    "POST",
    "/tenants/{tenant}/groups",
    "Create a group",
    tag="groups",
    request=NAME,
    response=GROUP,
    status=201,
    scope="tenant",
)
async def create_group(call: Call) -> dict[str, Any]:
    call.detail["group"] = call.body["name"]

    def create(iam: IamService) -> dict[str, Any]:
        return _group_detail(iam, call.path["tenant"], iam.create_group(call.path["tenant"], call.body["name"]))

    return await call.run(create, call.wh.iam)


@operation(
    "GetGroup",
    "GET",
    "/tenants/{tenant}/groups/{group}",
    "A group with members and policies",
    tag="groups",
    response=GROUP,
    scope="tenant",
)
async def get_group(call: Call) -> dict[str, Any]:
    def read(iam: IamService) -> dict[str, Any]:
        return _group_detail(iam, call.path["tenant"], _find_group(iam, call.path["tenant"], call.path["group"]))

    return await call.run(read, call.wh.iam)


@operation(
    "DeleteGroup",
    "DELETE",
    "/tenants/{tenant}/groups/{group}",
    "Delete a group",
    tag="groups",
    response=None,
    scope="tenant",
)
async def delete_group(call: Call) -> None:
    await call.run(call.wh.iam.delete_group, call.path["tenant"], call.path["group"])


@operation(
    "AddGroupMember",
    "PUT",
    "/tenants/{tenant}/groups/{group}/members/{user}",
    "Add a user to a group",
    tag="groups",
    response=None,
    scope="tenant",
)
async def add_member(call: Call) -> None:
    await call.run(call.wh.iam.add_user_to_group, call.path["tenant"], call.path["group"], call.path["user"])


@operation(
    "RemoveGroupMember",
    "DELETE",
    "/tenants/{tenant}/groups/{group}/members/{user}",
    "Remove a user from a group",
    tag="groups",
    response=None,
    scope="tenant",
)
async def remove_member(call: Call) -> None:
    await call.run(call.wh.iam.remove_user_from_group, call.path["tenant"], call.path["group"], call.path["user"])
