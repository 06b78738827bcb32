"""``dwh lifecycle run``: apply every bucket's lifecycle rules now (the server also runs them
periodically, ``server.lifecycle_interval``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, open_warehouse
from datawarehouse.errors import InvalidInput
from datawarehouse.service import lifecycle_job

app = typer.Typer(help="Lifecycle rules (expiration, noncurrent versions, incomplete uploads).", no_args_is_help=True)


@app.command("run")
@handle_errors
def run(
    at: Annotated[
        str | None, typer.Option("--at", help="evaluate as of this ISO 8601 time (UTC) instead of now")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Apply every bucket's lifecycle rules once and report each kind of action taken."""
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"--at: not an ISO 8601 time: {at!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    with open_warehouse(data_dir) as wh:
        report = lifecycle_job.run(wh, moment)
    rows = {
        "buckets with rules": report.buckets,
        "keys scanned": report.keys,
        "versions scanned": report.versions,
        "current versions expired": report.expired_current,
        "versions deleted": report.versions_deleted,
        "delete markers removed": report.markers_removed,
        "uploads aborted": report.uploads_aborted,
        "kept: locked": report.skipped_locked,
        "refused": report.refused,
    }
    if as_json:
        print(
            json.dumps({k.replace(" ", "_").replace(":", ""): v for k, v in rows.items()} | {"errors": report.errors})
        )
    else:
        table = Table("lifecycle", "count")
        for name, value in rows.items():
            table.add_row(name, str(value))
        console.print(table)
        for error in report.errors:
            console.print(f"error: {error}")
    if report.errors:
        raise typer.Exit(1)
