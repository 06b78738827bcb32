"""``dwh admin ...``: manage a running server through its admin API (``--endpoint``).

Thin: each command is one API request, printed as a table (or the API's JSON with ``--json``).
Credentials: ``--access-key/--secret-key``, DWH_ACCESS_KEY/DWH_SECRET_KEY (or the AWS
variables), or a profile of ``~/.config/dwh/credentials`` (see ``admin_config``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from datawarehouse.cli import admin_config
from datawarehouse.cli.admin_client import AdminClient, segment
from datawarehouse.cli.common import console, err_console, handle_errors, human_size, parse_size
from datawarehouse.errors import InvalidInput, RemoteError

app = typer.Typer(help="Manage a running server through its admin API.", no_args_is_help=True)
F = TypeVar("F", bound=Callable[..., Any])

# Exit codes by HTTP status (the CLI's table for local errors is in common.py).
REMOTE_EXIT = {400: 2, 413: 2, 401: 3, 403: 3, 404: 4, 405: 2, 409: 5, 503: 6}
UNREACHABLE_EXIT = 69

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON answer")]


class State:
    def __init__(self) -> None:
        self.client: AdminClient | None = None
        self.settings: admin_config.AdminSettings | None = None
        self.json = False


STATE = State()


@app.callback()
def main(
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="admin API base URL (env DWH_ENDPOINT; default http://127.0.0.1:9000)"),
    ] = None,
    access_key: Annotated[str | None, typer.Option("--access-key", help="env DWH_ACCESS_KEY")] = None,
    secret_key: Annotated[str | None, typer.Option("--secret-key", help="env DWH_SECRET_KEY")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="section of ~/.config/dwh/credentials (env DWH_PROFILE)")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="signing region (default us-east-1)")] = None,
    as_json: JsonOpt = False,
) -> None:
    STATE.client = None
    STATE.json = as_json
    STATE.settings = _settings(endpoint, access_key, secret_key, profile, region)


@handle_errors
def _settings(
    endpoint: str | None, access_key: str | None, secret_key: str | None, profile: str | None, region: str | None
) -> admin_config.AdminSettings:
    return admin_config.resolve(
        endpoint=endpoint, access_key=access_key, secret_key=secret_key, profile=profile, region=region
    )


def client() -> AdminClient:
    if STATE.client is None:
        s = STATE.settings or admin_config.resolve(
            endpoint=None, access_key=None, secret_key=None, profile=None, region=None
        )
        STATE.client = AdminClient(s.endpoint, access_key=s.access_key, secret_key=s.secret_key, region=s.region)
    return STATE.client


def remote(fn: F) -> F:
    """API errors as one line on stderr and an exit code by HTTP status; then the usual table."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RemoteError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
            code = UNREACHABLE_EXIT if exc.status == 0 else REMOTE_EXIT.get(exc.status, 1)
            raise typer.Exit(code) from None

    return handle_errors(wrapper)  # type: ignore[return-value]


def call(method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None) -> Any:
    return client().request(method, path, query=query, body=body)


def emit(doc: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json or STATE.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        render(doc)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Any]]) -> None:
    t = Table(*[title for title, _ in columns])
    for row in rows:
        cells = []
        for _, get in columns:
            value = get(row) if callable(get) else row.get(get)
            cells.append("-" if value is None or value == "" else str(value))
        t.add_row(*cells)
    console.print(t)


def done(message: str, doc: Any = None, as_json: bool = False) -> None:
    if as_json or STATE.json:
        sys.stdout.write(json.dumps(doc if doc is not None else {"ok": True}, indent=2) + "\n")
    else:
        console.print(message, highlight=False, markup=False)


def size(value: Any) -> str:
    return "-" if value is None else f"{human_size(value)}"


def kv(doc: dict[str, Any]) -> None:
    t = Table("", "")
    for k, v in doc.items():
        t.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
    console.print(t)


# --- server ---------------------------------------------------------------------------------------


@app.command("info")
@remote
def info(as_json: JsonOpt = False) -> None:
    """Server version, data directory id, disks, uptime."""
    emit(call("GET", "/info"), as_json, kv)


@app.command("usage")
@remote
def usage(as_json: JsonOpt = False) -> None:
    """Usage totals and per bucket."""

    def render(doc: dict[str, Any]) -> None:
        table(
            doc["buckets"],
            [("bucket", "name"), ("objects", "objects"), ("logical", lambda r: size(r["logical_bytes"]))],
        )
        t = doc["totals"]
        console.print(
            f"total: {t['buckets']} buckets, {t['objects']} objects, {size(t['logical_bytes'])}", highlight=False
        )

    emit(call("GET", "/usage"), as_json, render)


disk_app = typer.Typer(help="Disks of the server.", no_args_is_help=True)
app.add_typer(disk_app, name="disk")


@disk_app.command("list")
@remote
def disk_list(as_json: JsonOpt = False) -> None:
    """State, capacity, free space, shard and error counts per disk."""
    emit(
        call("GET", "/disks"),
        as_json,
        lambda doc: table(
            doc["disks"],
            [
                ("disk", lambda r: r["disk_id"][:8]),
                ("path", "path"),
                ("state", lambda r: r["state"] if r["reachable"] else f"{r['state']} (unreachable)"),
                ("size", lambda r: size(r["total_size"])),
                ("free", lambda r: size(r["free_size"])),
                ("shards", "shard_count"),
                ("errors", "errors"),
            ],
        ),
    )


def _job(kind: str) -> typer.Typer:
    sub = typer.Typer(help=f"Background {kind} runs on the server.", no_args_is_help=True)

    def render(doc: dict[str, Any]) -> None:
        kv({k: v for k, v in doc.items() if v not in (None, {}, [])})

    @sub.command("status")
    @remote
    def status(as_json: JsonOpt = False) -> None:
        """The current or last run: state, progress, report."""
        emit(call("GET", f"/{kind}"), as_json, render)

    if kind == "scrub":

        @sub.command("start")
        @remote
        def start_scrub(
            deep: Annotated[bool, typer.Option("--deep", help="also decrypt and authenticate every chunk")] = False,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="only report; repair nothing")] = False,
            rate: Annotated[str | None, typer.Option("--rate", help="bytes/s, e.g. 50M")] = None,
            as_json: JsonOpt = False,
        ) -> None:
            """Start a scrub in the background."""
            body: dict[str, Any] = {"deep": deep, "repair": not dry_run}
            if rate:
                body["rate"] = parse_size(rate.strip().removesuffix("/s"))
            emit(call("POST", "/scrub", body=body), as_json, render)

    else:

        @sub.command("start")
        @remote
        def start_gc(
            grace_hours: Annotated[float | None, typer.Option("--grace-hours", min=0)] = None,
            as_json: JsonOpt = False,
        ) -> None:
            """Start garbage collection in the background."""
            emit(call("POST", "/gc", body={"grace_hours": grace_hours}), as_json, render)

    return sub


app.add_typer(_job("scrub"), name="scrub")
app.add_typer(_job("gc"), name="gc")
heal_app = typer.Typer(help="The heal queue.", no_args_is_help=True)
app.add_typer(heal_app, name="heal")


@heal_app.command("status")
@remote
def heal_status(as_json: JsonOpt = False) -> None:
    """Chunks queued for repair, and the last scrub's repairs."""

    def render(doc: dict[str, Any]) -> None:
        console.print(f"queued chunks: {doc['queued']}", highlight=False)
        table(doc["items"], [("chunk", lambda r: r["chunk_id"][:16]), ("reason", "reason"), ("since", "queued_at")])
        last = doc.get("last_scrub")
        if last:
            rep = last.get("report") or {}
            console.print(
                f"last scrub: {last['state']} at {last['finished_at']}, {rep.get('shards_repaired', 0)} shards "
                f"repaired, {len(rep.get('unrecoverable', []))} unrecoverable",
                highlight=False,
            )

    emit(call("GET", "/heal"), as_json, render)


# --- buckets --------------------------------------------------------------------------------------

bucket_app = typer.Typer(help="Buckets.", no_args_is_help=True)
app.add_typer(bucket_app, name="bucket")


def _quota_text(q: dict[str, Any] | None) -> str:
    if not q or (q.get("max_bytes") is None and q.get("max_objects") is None):
        return "-"
    parts = []
    if q.get("max_bytes") is not None:
        parts.append(size(q["max_bytes"]))
    if q.get("max_objects") is not None:
        parts.append(f"{q['max_objects']} objects")
    return ", ".join(parts)


@bucket_app.command("list")
@remote
def bucket_list(as_json: JsonOpt = False) -> None:
    """Buckets with their usage and quota."""
    buckets: list[dict[str, Any]] = []
    marker = None
    while True:
        page = call("GET", "/buckets", query={"marker": marker})
        buckets += page["buckets"]
        marker = page["next_marker"]
        if not page["truncated"] or not marker:
            break
    emit(
        {"buckets": buckets},
        as_json,
        lambda doc: table(
            doc["buckets"],
            [
                ("bucket", "name"),
                ("created", "created_at"),
                ("objects", lambda r: r["usage"]["objects"]),
                ("logical", lambda r: size(r["usage"]["logical_bytes"])),
                ("quota", lambda r: _quota_text(r["quota"])),
            ],
        ),
    )


@bucket_app.command("info")
@remote
def bucket_info(name: str, as_json: JsonOpt = False) -> None:
    """One bucket: usage, stored bytes after dedup and compression, quota."""
    emit(call("GET", f"/buckets/{segment(name)}"), as_json, kv)


@bucket_app.command("create")
@remote
def bucket_create(
    name: str,
    storage_class: Annotated[str | None, typer.Option("--storage-class")] = None,
    object_lock: Annotated[bool, typer.Option("--object-lock")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a bucket."""
    body: dict[str, Any] = {"name": name, "object_lock": object_lock}
    if storage_class:
        body["storage_class"] = storage_class
    doc = call("POST", "/buckets", body=body)
    done(f"created bucket {doc['name']}", doc, as_json)


@bucket_app.command("delete")
@remote
def bucket_delete(name: str, as_json: JsonOpt = False) -> None:
    """Delete an empty bucket."""
    call("DELETE", f"/buckets/{segment(name)}")
    done(f"deleted bucket {name}", None, as_json)


@bucket_app.command("quota")
@remote
def bucket_quota(
    name: str,
    max_bytes: Annotated[str | None, typer.Option("--max-bytes", help="e.g. 500GB, 10GiB")] = None,
    max_objects: Annotated[int | None, typer.Option("--max-objects", min=0)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the quota")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show (no options), set, or --clear a bucket's quota."""
    path = f"/buckets/{segment(name)}/quota"
    if clear and (max_bytes is not None or max_objects is not None):
        raise InvalidInput("--clear takes no limits")
    if clear:
        call("DELETE", path)
        done(f"bucket {name}: quota removed", None, as_json)
        return
    if max_bytes is None and max_objects is None:
        emit(call("GET", path), as_json, lambda doc: console.print(f"bucket {name}: {_quota_text(doc)}"))
        return
    body = {"max_bytes": parse_size(max_bytes) if max_bytes is not None else None, "max_objects": max_objects}
    doc = call("PUT", path, body=body)
    done(f"bucket {name}: quota {_quota_text(doc)}", doc, as_json)


# --- audit ----------------------------------------------------------------------------------------

audit_app = typer.Typer(help="The server's audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("query")
@remote
def audit_query(
    since: Annotated[str | None, typer.Option("--since", help="RFC 3339, e.g. 2026-01-31T12:00:00Z")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    principal: Annotated[str | None, typer.Option("--principal")] = None,
    bucket: Annotated[str | None, typer.Option("--bucket")] = None,
    operation: Annotated[str | None, typer.Option("--operation", help="e.g. PutObject, admin:CreateUser")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Audit records matching a time range, principal, bucket and operation."""
    query = {
        "since": since,
        "until": until,
        "principal": principal,
        "bucket": bucket,
        "operation": operation,
        "limit": limit,
    }
    emit(
        call("GET", "/audit", query=query),
        as_json,
        lambda doc: table(
            doc["records"],
            [
                ("seq", "seq"),
                ("time", "time"),
                ("principal", "principal"),
                ("source", "source_ip"),
                ("operation", "operation"),
                ("bucket", "bucket"),
                ("status", lambda r: f"{r['status']} {r['error']}".strip()),
            ],
        ),
    )


@audit_app.command("verify")
@remote
def audit_verify(as_json: JsonOpt = False) -> None:
    """Verify the hash chain and checkpoint signatures (exit 7 when damaged)."""
    doc = call("GET", "/audit/verify")

    def render(d: dict[str, Any]) -> None:
        if d["ok"]:
            console.print(
                f"audit log OK: {d['records']} records (seq {d['first_seq']}..{d['last_seq']}), "
                f"{d['checkpoints']} checkpoints",
                highlight=False,
            )
        for p in d["problems"]:
            console.print(f"problem: {p['kind']} at seq {p['seq']} ({p['where']}): {p['message']}", markup=False)

    emit(doc, as_json, render)
    if not doc["ok"]:
        raise typer.Exit(7)


# --- tokens ---------------------------------------------------------------------------------------

token_app = typer.Typer(help="Short-lived bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
@remote
def token_create(
    ttl: Annotated[int, typer.Option("--ttl", help="seconds (60..43200)", min=60, max=43200)] = 900,
    as_json: JsonOpt = False,
) -> None:
    """Issue a bearer token for the current credentials (printed once)."""
    doc = call("POST", "/tokens", body={"ttl_seconds": ttl})
    done(f"{doc['token']}\n(expires {doc['expires_at']})", doc, as_json)


from datawarehouse.cli import admin_iam  # noqa: E402  (registers the IAM commands on ``app``)

__all__ = ["admin_iam", "app"]
