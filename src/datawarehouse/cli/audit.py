"""``dwh audit verify/query/export``: check, search and export the tamper-evident audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, err_console, handle_errors, open_warehouse
from datawarehouse.config import load_config
from datawarehouse.errors import InvalidInput
from datawarehouse.service.audit import checkpoint
from datawarehouse.service.audit.export import FORMATS, export_lines
from datawarehouse.service.audit.query import AuditQuery, parse_when, query
from datawarehouse.service.audit.verify import verify

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
VERIFY_FAILED = 7  # the exit code of IntegrityError (cli/common.py)

SinceOpt = Annotated[str | None, typer.Option("--since", help="from this time (ISO 8601, e.g. 2026-01-31T12:00Z)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="before this time (ISO 8601)")]


def _query(since: str | None, until: str | None, **match: str | None) -> AuditQuery:
    return AuditQuery(
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until") if until else None,
        **match,  # type: ignore[arg-type]
    )


@app.command("verify")
@handle_errors
def verify_cmd(
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="the audit public key (default keys/audit-signing.pub)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable result")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Recompute the hash chain and checkpoint signatures; exit 7 and say where if anything was
    edited, deleted, inserted or reordered."""
    retention = load_config(data_dir / "dwh.toml").audit.retention_days
    key = checkpoint.load_public_key(public_key) if public_key is not None else None
    with open_warehouse(data_dir) as wh:
        result = verify(wh, public_key=key, retention_days=retention)
    if as_json:
        print(json.dumps(result.to_doc(), indent=2))
    else:
        for note in result.notes:
            console.print(f"note: {note}", highlight=False)
        if result.ok:
            console.print(
                f"audit log OK: {result.records} records (seq {result.first_seq}..{result.last_seq}), "
                f"{result.checkpoints} checkpoints",
                highlight=False,
            )
        else:
            for p in result.problems:
                console.print(f"problem: {p}", highlight=False, markup=False)
    if not result.ok:
        first = result.problems[0]
        err_console.print(
            f"[red]error:[/red] audit log verification failed: {len(result.problems)} problem(s), "
            f"first: {first.kind} at seq {first.seq} ({first.where})",
            highlight=False,
        )
        raise typer.Exit(VERIFY_FAILED)


@app.command("query")
@handle_errors
def query_cmd(
    since: SinceOpt = None,
    until: UntilOpt = None,
    principal: Annotated[str | None, typer.Option("--principal")] = None,
    bucket: Annotated[str | None, typer.Option("--bucket")] = None,
    operation: Annotated[str | None, typer.Option("--operation", help="e.g. PutObject")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON record per line")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Records matching a time range, principal, bucket and operation."""
    q = _query(since, until, principal=principal, bucket=bucket, operation=operation)
    with open_warehouse(data_dir) as wh:
        records = list(query(wh, q, limit=limit))
    if as_json:
        for r in records:
            sys.stdout.write(r.line().decode() + "\n")
        return
    table = Table("seq", "time", "principal", "source", "operation", "bucket/key", "status", "bytes in/out")
    for r in records:
        target = f"{r.bucket}/{r.key}" if r.key else r.bucket
        table.add_row(
            str(r.seq),
            r.time,
            r.principal or "-",
            r.source_ip or "-",
            r.operation,
            target or "-",
            f"{r.status} {r.error}".strip(),
            f"{r.bytes_in}/{r.bytes_out}",
        )
    console.print(table)


@app.command("export")
@handle_errors
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", help="json (lines), csv or cef")] = "json",
    since: SinceOpt = None,
    until: UntilOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: standard output)")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Export records as JSON lines, CSV or ArcSight CEF."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format: one of {', '.join(FORMATS)} (got {fmt!r})")
    q = _query(since, until)
    with open_warehouse(data_dir) as wh:
        lines = export_lines(query(wh, q), fmt)
        if output is None:
            for piece in lines:
                sys.stdout.write(piece)
            return
        count = 0
        try:
            with open(output, "w", encoding="utf-8", newline="") as f:
                for piece in lines:
                    f.write(piece)
                    count += 1
        except OSError as exc:
            raise InvalidInput(f"--output: cannot write {output}: {exc.strerror}") from None
    err_console.print(f"exported {count - (fmt == 'csv')} records to {output} ({fmt})", highlight=False)


__all__ = ["app"]
