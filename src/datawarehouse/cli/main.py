"""The ``dwh`` command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from datawarehouse import __version__
from datawarehouse.allocator import tune_malloc
from datawarehouse.cli import admin, audit, bucket, disk, key, lifecycle, maintenance, objects, repair, serve, snapshot
from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, options
from datawarehouse.service.warehouse import OpenOptions, Warehouse

app = typer.Typer(
    help="DataWarehouse: deduplicated, compressed, encrypted, erasure-coded storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
@handle_errors
def init(
    disk_paths: Annotated[
        list[Path] | None,
        typer.Option("--disk", help="A disk directory (repeat); default: 6 directories inside the data directory."),
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Derive the master key from a passphrase "
            "(Argon2id) instead of a key file; reads DWH_PASSPHRASE or asks.",
        ),
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Create a data directory: disk set, master key, metadata."""
    secret = None
    if passphrase:
        secret = os.environ.get("DWH_PASSPHRASE") or typer.prompt(
            "passphrase", hide_input=True, confirmation_prompt=True
        )
    o = options(data_dir)
    wh = Warehouse.init(data_dir, disk_paths or None, OpenOptions(passphrase=secret, config=o.config))
    try:
        n = len(wh.engine.disks.active())
        console.print(
            f"initialised {data_dir.absolute()} with {n} disks, default storage class "
            f"{wh.engine.default_storage_class()}"
        )
        if secret is None:
            console.print(
                f"master key: {data_dir.absolute() / 'keys' / 'master.key'} (mode 0600) — back it up; "
                "without it the data cannot be read"
            )
    finally:
        wh.close()


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


app.command()(serve.serve)
app.command()(objects.put)
app.command()(objects.get)
app.command()(objects.ls)
app.command()(objects.rm)
app.command()(maintenance.scrub)
app.command()(maintenance.gc)
app.command()(maintenance.rebalance)
app.add_typer(bucket.app, name="bucket")
app.add_typer(disk.app, name="disk")
app.add_typer(key.app, name="key")
app.add_typer(lifecycle.app, name="lifecycle")
app.add_typer(snapshot.app, name="snapshot")
app.add_typer(repair.app, name="repair")
app.add_typer(audit.app, name="audit")
app.add_typer(admin.app, name="admin")


def run() -> None:
    tune_malloc()
    app()


__all__ = ["DEFAULT_DATA_DIR", "DataDirOpt", "app", "run"]
