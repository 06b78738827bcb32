"""``dwh repair rebuild-meta``: rebuild the metadata index from the disks."""

from __future__ import annotations

import os

import typer

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, options
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.service import catalog

app = typer.Typer(help="Repairs.", no_args_is_help=True)


@app.command("rebuild-meta")
@handle_errors
def rebuild(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Rebuild the metadata database from the journal and shards on the disks (the old one is kept aside)."""
    o = options(data_dir)
    report = rebuild_meta(data_dir, catalog.replay, passphrase=os.environ.get("DWH_PASSPHRASE"), config=o.config)
    console.print(
        f"rebuilt: {report.journal_records} journal records replayed, {report.versions} object versions, "
        f"{report.chunks} chunks, {report.shards_found} shards found on disk",
        highlight=False,
    )
    if report.old_database:
        console.print(f"the previous database was kept at {report.old_database}")
    for name in report.damaged_objects:
        console.print(f"  damaged (chunks missing): {name}")
    if report.damaged_objects:
        raise typer.Exit(6)
