"""``dwh snapshot create/list/delete/restore/hold``: point-in-time, read-only bucket views that
cost metadata only (service/snapshots.py). They open the data directory: stop the server first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, open_warehouse
from datawarehouse.errors import InvalidInput
from datawarehouse.service import snapshots

app = typer.Typer(help="Bucket snapshots (read-only views sharing the bucket's chunks).", no_args_is_help=True)


def _parse_time(option: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{option}: not an ISO 8601 date or time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


@app.command("create")
@handle_errors
def create(
    bucket: str,
    name: Annotated[str | None, typer.Option("--name", help="snapshot name (default: the UTC time)")] = None,
    retain_until: Annotated[
        str | None, typer.Option("--retain-until", help="refuse deletion before this ISO 8601 date/time (UTC)")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Snapshot the current versions of BUCKET (by reference: no data is copied)."""
    until = _parse_time("--retain-until", retain_until) if retain_until is not None else None
    with open_warehouse(data_dir) as wh:
        info = snapshots.create(wh, bucket, name, until)
    console.print(f"snapshot {info.name} of {bucket}: {info.objects} objects, readable as bucket {info.view}")


@app.command("list")
@handle_errors
def list_(
    bucket: Annotated[str | None, typer.Argument(help="source bucket (default: all)")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Snapshots of BUCKET: name, creation time, objects, retain-until, legal hold."""
    with open_warehouse(data_dir) as wh:
        found = snapshots.list_snapshots(wh, bucket)
    table = Table("bucket", "name", "created", "objects", "retain until", "hold", "view")
    for s in found:
        table.add_row(
            s.bucket, s.name if s.complete else f"{s.name} (incomplete)", _when(s.created_at), str(s.objects),
            _when(s.retain_until),
            "on" if s.legal_hold else "off", s.view,
        )  # fmt: skip
    console.print(table)


@app.command("delete")
@handle_errors
def delete(bucket: str, name: str, data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Delete snapshot NAME of BUCKET (refused under legal hold or before retain-until)."""
    with open_warehouse(data_dir) as wh:
        info = snapshots.delete(wh, bucket, name)
    console.print(f"deleted snapshot {info.name} of {bucket} ({info.objects} objects; run gc to free space)")


@app.command("restore")
@handle_errors
def restore(
    bucket: str,
    name: str,
    target: Annotated[str | None, typer.Option("--to", help="target bucket (default: BUCKET)")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="only keys under this prefix")] = "",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Copy the snapshot's objects (by reference) back into BUCKET or --to another bucket."""
    with open_warehouse(data_dir) as wh:
        count = snapshots.restore(wh, bucket, name, target, prefix)
    console.print(f"restored {count} objects from snapshot {name} into {target or bucket}")


@app.command("hold")
@handle_errors
def hold(
    bucket: str,
    name: str,
    on: Annotated[bool, typer.Option("--on/--off", help="set or clear the legal hold")] = True,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Set (--on) or clear (--off) the legal hold of snapshot NAME of BUCKET."""
    with open_warehouse(data_dir) as wh:
        snapshots.set_legal_hold(wh, bucket, name, on)
    console.print(f"legal hold {'on' if on else 'off'} for snapshot {name} of {bucket}")
