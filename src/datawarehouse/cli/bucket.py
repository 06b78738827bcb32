"""``dwh bucket create/list/delete/quota/info``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from datawarehouse.cli.common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    console,
    handle_errors,
    human_size,
    open_warehouse,
    parse_size,
)
from datawarehouse.errors import InvalidInput
from datawarehouse.service import snapshots
from datawarehouse.service.quota import Quota
from datawarehouse.service.warehouse import Warehouse

app = typer.Typer(help="Buckets.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    name: str,
    storage_class: Annotated[
        str | None, typer.Option("--storage-class", help="EC(k,m), k+m, replica-N, raid5 ...")
    ] = None,
    object_lock: Annotated[
        bool,
        typer.Option("--object-lock", help="with object lock (WORM); versioning is then Enabled for good"),
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Create a bucket (optionally with its own storage class, or with object lock)."""
    with open_warehouse(data_dir, create=True) as wh:
        b = wh.create_bucket(name, storage_class, object_lock=object_lock)
        extra = ", object lock" if object_lock else ""
        console.print(f"created bucket {b.name} ({b.storage_class or wh.engine.default_storage_class()}{extra})")


@app.command("list")
@handle_errors
def list_(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    with open_warehouse(data_dir) as wh:
        print_buckets(wh)


def print_buckets(wh: Warehouse) -> None:
    table = Table("bucket", "created", "storage class")
    for b in wh.list_buckets():
        table.add_row(
            wh.qualified_name(b),
            b.created_at.isoformat(timespec="seconds"),
            str(b.storage_class or wh.engine.default_storage_class()),
        )
    console.print(table)


@app.command("delete")
@handle_errors
def delete(name: str, data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Delete an empty bucket."""
    snapshots.refuse_write(name)
    with open_warehouse(data_dir) as wh:
        wh.delete_bucket(name)
    console.print(f"deleted bucket {name}")


@app.command("quota")
@handle_errors
def set_quota(
    name: str,
    max_bytes: Annotated[str | None, typer.Option("--max-bytes", help="e.g. 500GB, 10GiB")] = None,
    max_objects: Annotated[int | None, typer.Option("--max-objects", min=0)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the quota")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Set (or with --clear remove) a bucket's hard quota on logical bytes and stored objects.

    Writes that would exceed it are refused (S3 error QuotaExceeded) before data is stored."""
    if clear and (max_bytes is not None or max_objects is not None):
        raise InvalidInput("--clear takes no limits")
    if not clear and max_bytes is None and max_objects is None:
        raise InvalidInput("give --max-bytes and/or --max-objects, or --clear")
    with open_warehouse(data_dir) as wh:
        limit = None if clear else Quota(parse_size(max_bytes) if max_bytes is not None else None, max_objects)
        wh.set_bucket_quota(name, limit)
    console.print(f"bucket {name}: " + ("quota removed" if limit is None else _describe(limit)))


def _describe(limit: Quota | None) -> str:
    if limit is None:
        return "no quota"
    parts = []
    if limit.max_bytes is not None:
        parts.append(f"{human_size(limit.max_bytes)} ({limit.max_bytes} bytes)")
    if limit.max_objects is not None:
        parts.append(f"{limit.max_objects} objects")
    return "quota " + ", ".join(parts)


@app.command("info")
@handle_errors
def info(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Usage of a bucket: logical (what clients stored) and stored (after dedup and compression)."""
    with open_warehouse(data_dir) as wh:
        usage, stored, limit = wh.bucket_usage(name)
    if as_json:
        doc = {
            "bucket": name,
            "objects": usage.objects,
            "logical_bytes": usage.bytes,
            "upload_parts": usage.upload_parts,
            "upload_bytes": usage.upload_bytes,
            "stored_chunks": stored.chunks,
            "stored_sealed_bytes": stored.sealed_bytes,
            "stored_bytes_with_parity": stored.raw_bytes,
            "inline_bytes": stored.inline_bytes,
            "quota": None if limit is None else {"max_bytes": limit.max_bytes, "max_objects": limit.max_objects},
        }
        print(json.dumps(doc, indent=2))
        return
    table = Table("", name)
    table.add_row("objects (stored versions)", str(usage.objects))
    table.add_row("logical bytes", f"{human_size(usage.bytes)} ({usage.bytes})")
    table.add_row("unfinished uploads", f"{usage.upload_parts} parts, {human_size(usage.upload_bytes)}")
    table.add_row("stored chunks", str(stored.chunks))
    table.add_row("stored bytes (sealed)", f"{human_size(stored.sealed_bytes)} ({stored.sealed_bytes})")
    table.add_row("on disks (with parity)", f"{human_size(stored.raw_bytes)} ({stored.raw_bytes})")
    table.add_row("inline (in metadata)", f"{human_size(stored.inline_bytes)} ({stored.inline_bytes})")
    table.add_row("quota", _describe(limit))
    console.print(table)
