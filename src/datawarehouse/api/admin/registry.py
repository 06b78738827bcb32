"""The one declaration per admin route: method, path, name, summary, schemas, handler.

The Starlette routes (``app``) and the OpenAPI document (``openapi``) are both built from
``OPERATIONS``, so they cannot drift apart. Handler modules declare their operations with
``@operation(...)`` at import; ``load_all`` imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from datawarehouse.api.admin.schema import Schema

if TYPE_CHECKING:
    from datawarehouse.api.admin.call import Call

PREFIX = "/admin/v1"
Handler = Callable[["Call"], Awaitable[Any]]
Auth = Literal["any", "sigv4", "none"]  # any: SigV4 or a bearer token; sigv4: a signature only
# Whose business an operation is. server: the default tenant's admins only (disks, jobs, tenants,
# the audit log of everyone); tenant: the path's {tenant} must be the caller's own (the default
# tenant's admins may act in any); caller: the handler scopes the answer to the caller's tenant.
Scope = Literal["server", "tenant", "caller"]


@dataclass(frozen=True)
class Param:
    """A query parameter (path parameters are read from the path template)."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    name: str  # "ListBuckets": action dwh-admin:ListBuckets, audit operation admin:ListBuckets
    method: str
    path: str  # below PREFIX, e.g. "/buckets/{bucket}"
    summary: str
    tag: str
    handler: Handler
    response: Schema | None  # None: 204 No Content
    status: int = 200
    request: Schema | None = None
    query: tuple[Param, ...] = ()
    auth: Auth = "any"
    scope: Scope = "server"
    description: str = ""
    path_params: dict[str, Schema] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def action(self) -> str:
        return f"dwh-admin:{self.name}"


OPERATIONS: list[Operation] = []
# Path parameter schemas shared by every route that uses the name.
PATH_PARAMS: dict[str, Schema] = {}


def path_param(name: str, schema: Schema) -> None:
    PATH_PARAMS[name] = schema


def operation(
    name: str,
    method: str,
    path: str,
    summary: str,
    *,
    tag: str,
    response: Schema | None,
    status: int = 200,
    request: Schema | None = None,
    query: tuple[Param, ...] = (),
    auth: Auth = "any",
    scope: Scope = "server",
    description: str = "",
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if any(op.name == name for op in OPERATIONS):
            raise ValueError(f"admin operation {name} declared twice")
        if any(op.method == method and op.path == path for op in OPERATIONS):
            raise ValueError(f"admin route {method} {path} declared twice")
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        params = {}
        for p in names:
            if p not in PATH_PARAMS:
                raise ValueError(f"admin route {path}: no schema for path parameter {p!r}")
            params[p] = PATH_PARAMS[p]
        OPERATIONS.append(
            Operation(
                name=name,
                method=method,
                path=path,
                summary=summary,
                tag=tag,
                handler=handler,
                response=response,
                status=204 if response is None else status,
                request=request,
                query=query,
                auth=auth,
                scope=scope,
                description=description,
                path_params=params,
            )
        )
        return handler

    return register


HANDLER_MODULES = ("meta", "buckets", "system", "audit", "tokens", "tenants", "users", "keys", "policies")


def load_all() -> list[Operation]:
    for module in HANDLER_MODULES:
        importlib.import_module(f"datawarehouse.api.admin.handlers.{module}")
    return OPERATIONS
