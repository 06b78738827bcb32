"""``dwh bucket create/list/delete``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, open_warehouse
from datawarehouse.service.warehouse import Warehouse

app = typer.Typer(help="Buckets.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    name: str,
    storage_class: Annotated[
        str | None, typer.Option("--storage-class", help="EC(k,m), k+m, replica-N, raid5 ...")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Create a bucket (optionally with its own storage class)."""
    with open_warehouse(data_dir, create=True) as wh:
        b = wh.create_bucket(name, storage_class)
        console.print(f"created bucket {b.name} ({b.storage_class or wh.engine.default_storage_class()})")


@app.command("list")
@handle_errors
def list_(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    with open_warehouse(data_dir) as wh:
        print_buckets(wh)


def print_buckets(wh: Warehouse) -> None:
    table = Table("bucket", "created", "storage class")
    for b in wh.list_buckets():
        table.add_row(
            b.name,
            b.created_at.isoformat(timespec="seconds"),
            str(b.storage_class or wh.engine.default_storage_class()),
        )
    console.print(table)


@app.command("delete")
@handle_errors
def delete(name: str, data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Delete an empty bucket."""
    with open_warehouse(data_dir) as wh:
        wh.delete_bucket(name)
    console.print(f"deleted bucket {name}")
