"""``dwh disk add/remove/status``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, human_size, open_warehouse
from datawarehouse.engine import diskops

app = typer.Typer(help="Disks of the data directory.", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    path: Path,
    weight: Annotated[float, typer.Option(help="Relative share of new data (e.g. its size in TB).")] = 1.0,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Add an empty directory as a disk; new writes use it. Run `dwh rebalance` to move data onto it."""
    with open_warehouse(data_dir) as wh:
        rec = diskops.add_disk(wh.engine, path, weight)
    console.print(f"added disk {rec.path} ({rec.disk_id}); run `dwh rebalance` to move its share of data")


@app.command("remove")
@handle_errors
def remove(
    disk: Annotated[str, typer.Argument(help="Disk path or id.")], data_dir: DataDirOpt = DEFAULT_DATA_DIR
) -> None:
    """Drain a disk (move every shard off it), then drop it from the set."""
    with open_warehouse(data_dir) as wh:
        report = diskops.remove_disk(wh.engine, disk)
    console.print(f"removed {disk}: {report.shards_moved} shards moved ({human_size(report.bytes_moved)})")


@app.command("status")
@handle_errors
def status(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Capacity, shard counts and errors per disk."""
    with open_warehouse(data_dir) as wh:
        rows = diskops.disk_status(wh.engine)
        table = Table("disk", "path", "state", "size", "free", "shards", "errors")
        for r in rows:
            state = r.record.state.value if r.reachable else f"{r.record.state.value} (unreachable)"
            table.add_row(
                r.record.disk_id[:8],
                r.record.path,
                state,
                human_size(r.total_size),
                human_size(r.free_size),
                str(r.shard_count),
                str(r.errors),
            )
        console.print(table)
        console.print(f"default storage class: {wh.engine.default_storage_class()}")
