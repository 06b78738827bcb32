"""``dwh put/get/ls/rm/cat``: store files as objects and read them back."""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from datawarehouse.cli.bucket import print_buckets
from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, open_warehouse, split_target
from datawarehouse.errors import NoSuchBucket, NoSuchKey
from datawarehouse.service import snapshots

DEFAULT_BUCKET = "default"


@handle_errors
def put(
    source: Annotated[Path, typer.Argument(help="File to store ('-' for standard input).")],
    target: Annotated[str | None, typer.Argument(help="BUCKET/KEY (default: default/<file name>).")] = None,
    storage_class: Annotated[
        str | None, typer.Option("--storage-class", help="EC(k,m), k+m, replica-N, raid5 ...")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Store a file (creates the data directory and the bucket on first use)."""
    bucket, key = split_target(target or source.name, DEFAULT_BUCKET)
    snapshots.refuse_write(bucket)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    # The MD5 ETag, as if the object came through S3: this door is a user's, and what they stored
    # should look the same whichever way they read it back.
    options: dict[str, Any] = {"content_type": content_type, "storage_class": storage_class, "md5_etag": True}
    with open_warehouse(data_dir, create=True) as wh:
        try:
            wh.get_bucket(bucket)
        except NoSuchBucket:
            if bucket != DEFAULT_BUCKET:
                raise
            wh.create_bucket(bucket)
        if str(source) == "-":
            v = wh.put_object(bucket, key, sys.stdin.buffer, **options)
        else:
            with source.open("rb") as f:
                v = wh.put_object(bucket, key, f, **options)
    console.print(f"stored {bucket}/{key}: {v.size} bytes, etag {v.etag}, {v.storage_class}", highlight=False)


@handle_errors
def get(
    source: Annotated[str, typer.Argument(help="BUCKET/KEY")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write ('-' or absent: stdout).")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Read an object back (verified: a corrupt chunk is never written out)."""
    bucket, key = split_target(source, DEFAULT_BUCKET)
    with open_warehouse(data_dir) as wh:
        _, chunks = wh.get_object(bucket, key)
        if output is None or str(output) == "-":
            for piece in chunks:
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return
        tmp = output.with_name(output.name + ".dwh-partial")
        with tmp.open("wb") as f:
            for piece in chunks:
                f.write(piece)
        tmp.replace(output)


@handle_errors
def ls(
    target: Annotated[str | None, typer.Argument(help="BUCKET or BUCKET/PREFIX; nothing lists buckets.")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """List buckets, or the objects in a bucket."""
    with open_warehouse(data_dir) as wh:
        if target is None:
            print_buckets(wh)
            return
        bucket, _, prefix = target.partition("/")
        table = Table("key", "size", "modified", "etag")
        for o in wh.iter_objects(bucket, prefix):
            table.add_row(o.key, str(o.size), o.created_at.isoformat(timespec="seconds"), o.etag)
        console.print(table)


@handle_errors
def rm(
    target: Annotated[str, typer.Argument(help="BUCKET/KEY")],
    version_id: Annotated[
        str | None, typer.Option("--version-id", help="delete this version permanently (or 'null')")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Delete an object (a delete marker in a versioned bucket), or one version permanently. Its
    chunks stay while another version uses them. Object lock applies as to any client: a locked
    version is refused (exit code 5)."""
    bucket, key = split_target(target, DEFAULT_BUCKET)
    snapshots.refuse_write(bucket)
    with open_warehouse(data_dir) as wh:
        outcome = wh.delete_object(bucket, key, version_id)
        if not outcome:
            which = f" version {version_id}" if version_id else ""
            raise NoSuchKey(f"no object {key!r}{which} in bucket {bucket!r}")
    marker = f" (delete marker {outcome.version_id})" if outcome.delete_marker and version_id is None else ""
    console.print(f"deleted {bucket}/{key}{marker}")
