"""``dwh admin tenant|user|group|key|policy|quota ...``: IAM through the admin API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from datawarehouse.cli.admin import JsonOpt, app, call, done, emit, kv, remote, size, table
from datawarehouse.cli.admin_client import segment
from datawarehouse.cli.common import parse_size
from datawarehouse.errors import InvalidInput

Tenant = Annotated[str, typer.Argument(help="tenant name")]


def _t(tenant: str) -> str:
    return f"/tenants/{segment(tenant)}"


def _document(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError:
        raise InvalidInput(f"{path}: not a JSON policy document") from None


# --- tenants --------------------------------------------------------------------------------------

tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
TENANT_COLUMNS = [("tenant", "name"), ("created", "created_at"), ("disabled", "disabled")]


@tenant_app.command("list")
@remote
def tenant_list(as_json: JsonOpt = False) -> None:
    emit(call("GET", "/tenants"), as_json, lambda d: table(d["tenants"], TENANT_COLUMNS))


@tenant_app.command("create")
@remote
def tenant_create(name: str, as_json: JsonOpt = False) -> None:
    done(f"created tenant {name}", call("POST", "/tenants", body={"name": name}), as_json)


@tenant_app.command("info")
@remote
def tenant_info(name: str, as_json: JsonOpt = False) -> None:
    emit(call("GET", _t(name)), as_json, kv)


@tenant_app.command("disable")
@remote
def tenant_disable(name: str, as_json: JsonOpt = False) -> None:
    done(f"disabled tenant {name}", call("PATCH", _t(name), body={"disabled": True}), as_json)


@tenant_app.command("enable")
@remote
def tenant_enable(name: str, as_json: JsonOpt = False) -> None:
    done(f"enabled tenant {name}", call("PATCH", _t(name), body={"disabled": False}), as_json)


@tenant_app.command("delete")
@remote
def tenant_delete(name: str, as_json: JsonOpt = False) -> None:
    call("DELETE", _t(name))
    done(f"deleted tenant {name}", None, as_json)


# --- users ----------------------------------------------------------------------------------------

user_app = typer.Typer(help="Users of a tenant.", no_args_is_help=True)
app.add_typer(user_app, name="user")
USER_COLUMNS = [
    ("user", "name"),
    ("kind", "kind"),
    ("created", "created_at"),
    ("disabled", "disabled"),
    ("parent", "parent_user"),
]


@user_app.command("list")
@remote
def user_list(tenant: Tenant, as_json: JsonOpt = False) -> None:
    emit(call("GET", f"{_t(tenant)}/users"), as_json, lambda d: table(d["users"], USER_COLUMNS))


@user_app.command("create")
@remote
def user_create(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    done(f"created user {name} in {tenant}", call("POST", f"{_t(tenant)}/users", body={"name": name}), as_json)


@user_app.command("info")
@remote
def user_info(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    emit(call("GET", f"{_t(tenant)}/users/{segment(name)}"), as_json, kv)


@user_app.command("disable")
@remote
def user_disable(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    doc = call("PATCH", f"{_t(tenant)}/users/{segment(name)}", body={"disabled": True})
    done(f"disabled user {name}", doc, as_json)


@user_app.command("enable")
@remote
def user_enable(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    doc = call("PATCH", f"{_t(tenant)}/users/{segment(name)}", body={"disabled": False})
    done(f"enabled user {name}", doc, as_json)


@user_app.command("delete")
@remote
def user_delete(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    call("DELETE", f"{_t(tenant)}/users/{segment(name)}")
    done(f"deleted user {name}", None, as_json)


# --- groups ---------------------------------------------------------------------------------------

group_app = typer.Typer(help="Groups of a tenant.", no_args_is_help=True)
app.add_typer(group_app, name="group")
GROUP_COLUMNS: list[tuple[str, Any]] = [
    ("group", "name"),
    ("created", "created_at"),
    ("members", lambda r: ", ".join(r["members"])),
    ("policies", lambda r: ", ".join(r["policies"])),
]


@group_app.command("list")
@remote
def group_list(tenant: Tenant, as_json: JsonOpt = False) -> None:
    emit(call("GET", f"{_t(tenant)}/groups"), as_json, lambda d: table(d["groups"], GROUP_COLUMNS))


@group_app.command("create")
@remote
def group_create(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    done(f"created group {name} in {tenant}", call("POST", f"{_t(tenant)}/groups", body={"name": name}), as_json)


@group_app.command("delete")
@remote
def group_delete(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    call("DELETE", f"{_t(tenant)}/groups/{segment(name)}")
    done(f"deleted group {name}", None, as_json)


@group_app.command("add-member")
@remote
def group_add(tenant: Tenant, group: str, user: str, as_json: JsonOpt = False) -> None:
    call("PUT", f"{_t(tenant)}/groups/{segment(group)}/members/{segment(user)}")
    done(f"added {user} to {group}", None, as_json)


@group_app.command("remove-member")
@remote
def group_remove(tenant: Tenant, group: str, user: str, as_json: JsonOpt = False) -> None:
    call("DELETE", f"{_t(tenant)}/groups/{segment(group)}/members/{segment(user)}")
    done(f"removed {user} from {group}", None, as_json)


# --- keys -----------------------------------------------------------------------------------------

key_app = typer.Typer(help="Access keys and service accounts.", no_args_is_help=True)
app.add_typer(key_app, name="key")
KEY_COLUMNS = [
    ("access key", "access_key_id"),
    ("user", "user"),
    ("kind", "kind"),
    ("status", "status"),
    ("created", "created_at"),
    ("expires", "expires_at"),
    ("last used", "last_used_at"),
]


@key_app.command("list")
@remote
def key_list(
    tenant: Tenant, user: Annotated[str | None, typer.Option("--user")] = None, as_json: JsonOpt = False
) -> None:
    """Keys (never their secrets)."""
    emit(call("GET", f"{_t(tenant)}/keys", query={"user": user}), as_json, lambda d: table(d["keys"], KEY_COLUMNS))


def _print_new_key(doc: dict[str, Any], as_json: bool) -> None:
    done(
        f"access key: {doc['access_key_id']}\nsecret key: {doc['secret_key']}\n(shown once; store it now)",
        doc,
        as_json,
    )


@key_app.command("create")
@remote
def key_create(
    tenant: Tenant,
    user: str,
    expires: Annotated[str | None, typer.Option("--expires", help="RFC 3339 time")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a key for a user; its secret is printed once."""
    body = {"expires_at": expires, "description": description}
    _print_new_key(call("POST", f"{_t(tenant)}/users/{segment(user)}/keys", body=body), as_json)


def _patch_key(tenant: str, key: str, body: dict[str, Any], message: str, as_json: bool) -> None:
    done(message, call("PATCH", f"{_t(tenant)}/keys/{segment(key)}", body=body), as_json)


@key_app.command("disable")
@remote
def key_disable(tenant: Tenant, key: str, as_json: JsonOpt = False) -> None:
    _patch_key(tenant, key, {"status": "disabled"}, f"disabled {key}", as_json)


@key_app.command("enable")
@remote
def key_enable(tenant: Tenant, key: str, as_json: JsonOpt = False) -> None:
    _patch_key(tenant, key, {"status": "active"}, f"enabled {key}", as_json)


@key_app.command("expire")
@remote
def key_expire(
    tenant: Tenant,
    key: str,
    at: Annotated[str | None, typer.Option("--at", help="RFC 3339 time; omit to remove the expiry")] = None,
    as_json: JsonOpt = False,
) -> None:
    _patch_key(tenant, key, {"expires_at": at}, f"{key}: expires {at or 'never'}", as_json)


@key_app.command("delete")
@remote
def key_delete(tenant: Tenant, key: str, as_json: JsonOpt = False) -> None:
    call("DELETE", f"{_t(tenant)}/keys/{segment(key)}")
    done(f"deleted {key}", None, as_json)


@key_app.command("service-account")
@remote
def key_service_account(
    tenant: Tenant,
    parent_user: str,
    policy_file: Annotated[Path, typer.Option("--policy-file", help="the session policy (JSON)")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    expires: Annotated[str | None, typer.Option("--expires")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a service account of PARENT_USER narrowed by a policy; its secret is printed once."""
    body: dict[str, Any] = {"parent_user": parent_user, "policy": _document(policy_file), "expires_at": expires}
    if name:
        body["name"] = name
    _print_new_key(call("POST", f"{_t(tenant)}/service-accounts", body=body), as_json)


# --- policies -------------------------------------------------------------------------------------

policy_app = typer.Typer(help="Policies of a tenant.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("list")
@remote
def policy_list(tenant: Tenant, as_json: JsonOpt = False) -> None:
    def render(d: dict[str, Any]) -> None:
        table(d["policies"], [("policy", "name"), ("updated", "updated_at")])
        typer.echo("built-in: " + ", ".join(d["builtin"]))

    emit(call("GET", f"{_t(tenant)}/policies"), as_json, render)


@policy_app.command("show")
@remote
def policy_show(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    doc = call("GET", f"{_t(tenant)}/policies/{segment(name)}")
    emit(doc, as_json, lambda d: typer.echo(json.dumps(d["document"], indent=2)))


@policy_app.command("put")
@remote
def policy_put(
    tenant: Tenant,
    name: str,
    file: Annotated[Path, typer.Option("--file", help="the policy document (JSON)")],
    as_json: JsonOpt = False,
) -> None:
    """Create or replace a policy."""
    doc = call("PUT", f"{_t(tenant)}/policies/{segment(name)}", body={"document": _document(file)})
    done(f"stored policy {name}", doc, as_json)


@policy_app.command("delete")
@remote
def policy_delete(tenant: Tenant, name: str, as_json: JsonOpt = False) -> None:
    call("DELETE", f"{_t(tenant)}/policies/{segment(name)}")
    done(f"deleted policy {name}", None, as_json)


def _target(user: str | None, group: str | None) -> str:
    if (user is None) == (group is None):
        raise InvalidInput("give exactly one of --user or --group")
    return f"users/{segment(user)}" if user is not None else f"groups/{segment(group or '')}"


@policy_app.command("attach")
@remote
def policy_attach(
    tenant: Tenant,
    name: str,
    user: Annotated[str | None, typer.Option("--user")] = None,
    group: Annotated[str | None, typer.Option("--group")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach a policy (the tenant's or built-in) to a user or a group."""
    call("PUT", f"{_t(tenant)}/{_target(user, group)}/policies/{segment(name)}")
    done(f"attached {name} to {user or group}", None, as_json)


@policy_app.command("detach")
@remote
def policy_detach(
    tenant: Tenant,
    name: str,
    user: Annotated[str | None, typer.Option("--user")] = None,
    group: Annotated[str | None, typer.Option("--group")] = None,
    as_json: JsonOpt = False,
) -> None:
    call("DELETE", f"{_t(tenant)}/{_target(user, group)}/policies/{segment(name)}")
    done(f"detached {name} from {user or group}", None, as_json)


# --- quotas ---------------------------------------------------------------------------------------

quota_app = typer.Typer(help="Quotas of tenants and users.", no_args_is_help=True)
app.add_typer(quota_app, name="quota")


def _quota_path(tenant: str, user: str | None) -> str:
    return f"{_t(tenant)}/users/{segment(user)}/quota" if user else f"{_t(tenant)}/quota"


def _render_quota(d: dict[str, Any]) -> None:
    u = d["usage"]
    table(
        [
            {"what": "bytes", "limit": size(d["max_bytes"]), "used": size(u.get("bytes", 0))},
            {"what": "objects", "limit": d["max_objects"], "used": u.get("objects")},
            {"what": "buckets", "limit": d["max_buckets"], "used": u.get("buckets")},
        ],
        [("", "what"), ("limit", "limit"), ("used", "used")],
    )


@quota_app.command("show")
@remote
def quota_show(
    tenant: Tenant, user: Annotated[str | None, typer.Option("--user")] = None, as_json: JsonOpt = False
) -> None:
    emit(call("GET", _quota_path(tenant, user)), as_json, _render_quota)


@quota_app.command("set")
@remote
def quota_set(
    tenant: Tenant,
    user: Annotated[str | None, typer.Option("--user")] = None,
    max_bytes: Annotated[str | None, typer.Option("--max-bytes", help="e.g. 500GB")] = None,
    max_objects: Annotated[int | None, typer.Option("--max-objects", min=0)] = None,
    max_buckets: Annotated[int | None, typer.Option("--max-buckets", min=0)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set hard limits (the ones not given become unlimited)."""
    if max_bytes is None and max_objects is None and max_buckets is None:
        raise InvalidInput("give --max-bytes, --max-objects and/or --max-buckets (or use quota clear)")
    body = {
        "max_bytes": parse_size(max_bytes) if max_bytes is not None else None,
        "max_objects": max_objects,
        "max_buckets": max_buckets,
    }
    emit(call("PUT", _quota_path(tenant, user), body=body), as_json, _render_quota)


@quota_app.command("clear")
@remote
def quota_clear(
    tenant: Tenant, user: Annotated[str | None, typer.Option("--user")] = None, as_json: JsonOpt = False
) -> None:
    call("DELETE", _quota_path(tenant, user))
    done(f"quota of {user or tenant} removed", None, as_json)
