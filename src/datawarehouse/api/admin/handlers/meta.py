"""``GET /openapi.json`` (unauthenticated) and ``GET /info``."""

from __future__ import annotations

import time
from typing import Any

from datawarehouse import __version__
from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.registry import operation
from datawarehouse.api.admin.schema import DATE_TIME, integer, obj, string
from datawarehouse.service import maintenance

INFO = obj(
    {
        "version": string(64),
        "datadir_id": string(128),
        "disks": integer(0),
        "active_disks": integer(0),
        "default_storage_class": string(64),
        "started_at": DATE_TIME,
        "uptime_seconds": {"type": "number", "minimum": 0},
        "audit_enabled": {"type": "boolean"},
    },
    ("version", "datadir_id", "disks", "uptime_seconds"),
    closed=False,
)


@operation(
    "GetOpenApi",
    "GET",
    "/openapi.json",
    "The OpenAPI 3.1 document of this API",
    tag="meta",
    response={"type": "object"},
    auth="none",
)
async def get_openapi(call: Call) -> dict[str, Any]:
    from datawarehouse.api.admin.openapi import document

    return document()


@operation("GetInfo", "GET", "/info", "Server version, data directory and uptime", tag="meta", response=INFO)
async def get_info(call: Call) -> dict[str, Any]:
    facts = await call.run(maintenance.datadir_facts, call.wh)
    return {
        "version": __version__,
        "datadir_id": facts.datadir_id,
        "disks": facts.disks,
        "active_disks": facts.active_disks,
        "default_storage_class": facts.default_storage_class,
        "started_at": call.state.started_at,
        "uptime_seconds": round(time.monotonic() - call.state.started_monotonic, 3),
        "audit_enabled": call.state.audit is not None,
    }
