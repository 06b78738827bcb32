"""Usage totals, disks, and the maintenance jobs: scrub, GC, the heal queue."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.handlers.buckets import caller_tenant_filter, quota_doc
from datawarehouse.api.admin.registry import Param, operation
from datawarehouse.api.admin.schema import BOOLEAN, DATE_TIME, array, integer, nullable, obj, string
from datawarehouse.service import maintenance, usage

TOTALS = obj(
    {
        "buckets": integer(0),
        "objects": integer(0),
        "logical_bytes": integer(0),
        "upload_parts": integer(0),
        "upload_bytes": integer(0),
    },
    ("buckets", "objects", "logical_bytes"),
    closed=False,
)
USAGE = obj(
    {
        "totals": TOTALS,
        "buckets": array(
            obj({"name": string(200), "objects": integer(0), "logical_bytes": integer(0)}, ("name",), closed=False)
        ),
    },
    ("totals", "buckets"),
    closed=False,
)
DISK = obj(
    {
        "disk_id": string(64),
        "path": string(4096),
        "state": string(32),
        "weight": {"type": "number"},
        "reachable": BOOLEAN,
        "total_size": integer(0),
        "free_size": integer(0),
        "shard_count": integer(0),
        "errors": integer(0),
        "added_at": DATE_TIME,
    },
    ("disk_id", "path", "state", "reachable", "total_size", "free_size", "shard_count"),
    closed=False,
)
JOB = obj(
    {
        "kind": {"type": "string", "enum": ["scrub", "gc"]},
        "state": {"type": "string", "enum": ["idle", "running", "succeeded", "failed", "cancelled"]},
        "started_at": nullable(DATE_TIME),
        "finished_at": nullable(DATE_TIME),
        "options": {"type": "object"},
        "progress": {"type": "object"},
        "report": nullable({"type": "object"}),
        "error": nullable(string(4096)),
    },
    ("kind", "state"),
    closed=False,
)
SCRUB_REQUEST = obj(
    {
        "deep": {**BOOLEAN, "description": "also decrypt and authenticate every chunk"},
        "repair": {**BOOLEAN, "description": "rewrite bad shards (default true)"},
        "rate": nullable(integer(1, maintenance.MAX_SCRUB_RATE, description="read at most this many bytes/s")),
    }
)
GC_REQUEST = obj(
    {
        "grace_hours": nullable(
            {
                "type": "number",
                "minimum": 0,
                "maximum": maintenance.MAX_GC_GRACE_HOURS,
                "description": "keep unreferenced data younger than this (default: the server's)",
            }
        )
    }
)
HEAL = obj(
    {
        "queued": integer(0),
        "items": array(obj({"chunk_id": string(128), "reason": string(1000), "queued_at": DATE_TIME}, closed=False)),
        "last_scrub": nullable(JOB),
    },
    ("queued", "items", "last_scrub"),
    closed=False,
)


def job_doc(st: maintenance.JobStatus) -> dict[str, Any]:
    return {
        "kind": st.kind,
        "state": st.state,
        "started_at": st.started_at,
        "finished_at": st.finished_at,
        "options": st.options,
        "progress": st.progress,
        "report": st.report,
        "error": st.error,
    }


@operation(
    "GetUsage",
    "GET",
    "/usage",
    "Usage totals and per bucket (a tenant's own)",
    tag="system",
    response=USAGE,
    scope="caller",
)
async def get_usage(call: Call) -> dict[str, Any]:
    lines = await call.run(usage.bucket_lines, call.wh, caller_tenant_filter(call))
    t = usage.totals(lines)
    return {
        "totals": {
            "buckets": t.buckets,
            "objects": t.objects,
            "logical_bytes": t.logical_bytes,
            "upload_parts": t.upload_parts,
            "upload_bytes": t.upload_bytes,
        },
        "buckets": [
            {
                "name": line.name,
                "objects": line.usage.objects,
                "logical_bytes": line.usage.bytes,
                "upload_bytes": line.usage.upload_bytes,
                "quota": quota_doc(line.quota),
            }
            for line in lines
        ],
    }


@operation(
    "ListDisks",
    "GET",
    "/disks",
    "Disks with state, capacity, free space, shard and error counts",
    tag="system",
    response=obj({"disks": array(DISK)}, ("disks",), closed=False),
)
async def list_disks(call: Call) -> dict[str, Any]:
    disks = await call.run(maintenance.disk_infos, call.wh)
    return {
        "disks": [
            {
                "disk_id": d.disk_id,
                "path": d.path,
                "state": d.state,
                "weight": d.weight,
                "reachable": d.reachable,
                "total_size": d.total_size,
                "free_size": d.free_size,
                "shard_count": d.shard_count,
                "errors": d.errors,
                "added_at": d.added_at,
            }
            for d in disks
        ]
    }


@operation(
    "StartScrub",
    "POST",
    "/scrub",
    "Start a scrub in the background (409 while a scrub or GC runs)",
    tag="system",
    request=SCRUB_REQUEST,
    response=JOB,
    status=202,
)
async def start_scrub(call: Call) -> dict[str, Any]:
    body = call.body
    call.detail.update({k: str(v) for k, v in body.items()})
    jobs = call.state.jobs
    st = jobs.start_scrub(deep=body.get("deep", False), repair=body.get("repair", True), rate=body.get("rate"))
    return job_doc(st)


@operation("GetScrub", "GET", "/scrub", "The current or last scrub: progress, report", tag="system", response=JOB)
async def get_scrub(call: Call) -> dict[str, Any]:
    return job_doc(call.state.jobs.status("scrub"))


@operation(
    "StartGc",
    "POST",
    "/gc",
    "Start garbage collection in the background (409 while a scrub or GC runs)",
    tag="system",
    request=GC_REQUEST,
    response=JOB,
    status=202,
)
async def start_gc(call: Call) -> dict[str, Any]:
    grace = call.body.get("grace_hours")
    call.detail["grace_hours"] = str(grace)
    return job_doc(call.state.jobs.start_gc(grace_hours=grace))


@operation("GetGc", "GET", "/gc", "The current or last GC run: state and report", tag="system", response=JOB)
async def get_gc(call: Call) -> dict[str, Any]:
    return job_doc(call.state.jobs.status("gc"))


@operation(
    "GetHeal",
    "GET",
    "/heal",
    "Heal queue (chunks reads found damaged) and the last scrub's repairs",
    tag="system",
    query=(Param("limit", integer(1, 1000), "queue entries to list (default 100)"),),
    response=HEAL,
)
async def get_heal(call: Call) -> dict[str, Any]:
    queued, items = await call.run(maintenance.heal_queue, call.wh, call.query.get("limit", 100))
    last = call.state.jobs.last_scrub_finished
    return {
        "queued": queued,
        "items": [{"chunk_id": i.chunk_id, "reason": i.reason, "queued_at": i.queued_at} for i in items],
        "last_scrub": job_doc(last) if last is not None else None,
    }
