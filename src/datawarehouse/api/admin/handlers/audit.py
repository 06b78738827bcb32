"""Audit log queries and verification through the API."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.errors import AdminError
from datawarehouse.api.admin.registry import Param, operation
from datawarehouse.api.admin.schema import DATE_TIME, array, integer, nullable, obj, parse_datetime, string
from datawarehouse.service.audit.query import AuditQuery
from datawarehouse.service.audit.record import ALL_FIELDS
from datawarehouse.service.audit.verify import VerifyResult

RECORD = obj(
    {
        name: (
            {"type": "integer"}
            if name in ("seq", "status", "bytes_in", "bytes_out", "duration_us")
            else {"type": "string"}
        )
        for name in ALL_FIELDS
        if name != "detail"
    }
    | {"detail": {"type": "object"}},
    ("seq", "time", "operation"),
    closed=False,
)
RECORDS = obj(
    {"records": array(RECORD), "truncated": {"type": "boolean"}, "next_marker": nullable(string(32))},
    ("records", "truncated", "next_marker"),
    closed=False,
)
VERIFY = obj(
    {
        "ok": {"type": "boolean"},
        "records": integer(0),
        "checkpoints": integer(0),
        "first_seq": integer(0),
        "last_seq": integer(0),
        "anchored_at": integer(0),
        "notes": array(string(4096)),
        "problems": array(
            obj(
                {"kind": string(64), "seq": nullable(integer(0)), "where": string(4096), "message": string(4096)},
                closed=False,
            )
        ),
    },
    ("ok", "records", "checkpoints", "problems"),
    closed=False,
)
QUERY = (
    Param("since", DATE_TIME, "records at or after this time (RFC 3339)"),
    Param("until", DATE_TIME, "records before this time"),
    Param("principal", string(256), "exact principal (root, tenant/user)"),
    Param("bucket", string(256), "exact bucket"),
    Param("operation", string(128), "operation, case-insensitive (PutObject, admin:CreateUser)"),
    Param("limit", integer(1, 1000), "records per page (default 100)"),
    Param("marker", string(20, pattern="^[0-9]+$"), "return records after this seq (the previous next_marker)"),
)


def _audit_log(call: Call) -> Any:
    if call.state.audit is None:
        raise AdminError(404, "AuditDisabled", "this server runs without an audit log")
    return call.state.audit


@operation(
    "QueryAudit",
    "GET",
    "/audit",
    "Audit records by time, principal, bucket, operation",
    tag="audit",
    query=QUERY,
    response=RECORDS,
)
async def query_audit(call: Call) -> dict[str, Any]:
    audit = _audit_log(call)
    q = call.query
    query = AuditQuery(
        since=parse_datetime(q["since"], "since") if "since" in q else None,
        until=parse_datetime(q["until"], "until") if "until" in q else None,
        principal=q.get("principal"),
        bucket=q.get("bucket"),
        operation=q.get("operation"),
    )
    limit = q.get("limit", 100)
    after = int(q.get("marker", "0"))
    records = await call.run(lambda: audit.query(query, after_seq=after, limit=limit + 1))
    truncated = len(records) > limit
    records = records[:limit]
    return {
        "records": [r.to_doc() for r in records],
        "truncated": truncated,
        "next_marker": str(records[-1].seq) if truncated else None,
    }


@operation(
    "VerifyAudit",
    "GET",
    "/audit/verify",
    "Recompute the hash chain and checkpoint signatures",
    tag="audit",
    response=VERIFY,
)
async def verify_audit(call: Call) -> dict[str, Any]:
    audit = _audit_log(call)
    result: VerifyResult = await call.run(audit.verify)
    return result.to_doc()
