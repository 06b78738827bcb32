"""``dwh scrub``, ``dwh gc``, ``dwh rebalance``: keeping stored data healthy and tidy."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from datawarehouse.cli.common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    console,
    err_console,
    handle_errors,
    human_size,
    open_warehouse,
    parse_size,
)
from datawarehouse.engine import gc as gc_mod
from datawarehouse.engine import rebalance as rebalance_mod
from datawarehouse.engine import scrub as scrub_mod
from datawarehouse.engine.diskops import persist_disk_errors
from datawarehouse.errors import InvalidInput


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err_console,
    )


def _parse_rate(rate: str | None) -> float | None:
    if not rate:
        return None
    try:
        return float(parse_size(rate.strip().removesuffix("/s")))
    except InvalidInput:
        raise InvalidInput(f"--rate {rate!r}: expected a number of bytes/s such as 50M or 50MiB") from None


@handle_errors
def scrub(
    deep: Annotated[bool, typer.Option("--deep", help="Also decrypt and authenticate every chunk.")] = False,
    rate: Annotated[str | None, typer.Option("--rate", help="Read at most this many bytes/s, e.g. 50M.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report; repair nothing.")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Verify every shard; rewrite missing or corrupt ones; restore lost journal copies."""
    limit = _parse_rate(rate)
    with open_warehouse(data_dir) as wh, _progress() as bar:
        task = bar.add_task("scrub", total=None, info="")

        def progress(rep: scrub_mod.ScrubReport, total: int) -> None:
            bar.update(
                task,
                total=total,
                completed=rep.chunks_checked,
                info=f"{human_size(rep.bytes_read)} read, {rep.shards_bad} bad, {rep.shards_repaired} repaired",
            )

        report = scrub_mod.scrub(wh.engine, deep=deep, repair=not dry_run, rate=limit, progress=progress)
        persist_disk_errors(wh.engine)
    console.print(
        f"scrub: {report.chunks_checked} chunks, {report.shards_checked} shards checked, "
        f"{human_size(report.bytes_read)} read; {report.shards_bad} bad, {report.shards_repaired} repaired, "
        f"{report.journal_copies_repaired} journal copies restored, {len(report.unrecoverable)} unrecoverable",
        highlight=False,
    )
    for chunk in report.unrecoverable:
        console.print(f"  unrecoverable chunk {chunk}")
    if report.unrecoverable:
        raise typer.Exit(6)


@handle_errors
def gc(
    grace: Annotated[
        float | None, typer.Option("--grace-hours", help="Keep unreferenced data younger than this.")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Remove chunks no object references (after the grace period) and orphan shards."""
    with open_warehouse(data_dir) as wh:
        report = gc_mod.collect(wh.engine, timedelta(hours=grace) if grace is not None else None)
    console.print(
        f"gc: {report.chunks_removed} chunks ({report.shards_removed} shards) and "
        f"{report.orphan_shards_removed} orphan shards removed, {human_size(report.bytes_freed)} freed; "
        f"{report.packs_compacted} packs compacted, {human_size(report.pack_bytes_reclaimed)} reclaimed",
        highlight=False,
    )


@handle_errors
def rebalance(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """Move the shards whose placement changed (after `dwh disk add`)."""
    with open_warehouse(data_dir) as wh, _progress() as bar:
        task = bar.add_task("rebalance", total=None, info="")

        def progress(rep: rebalance_mod.RebalanceReport, total: int) -> None:
            bar.update(task, total=total, completed=rep.chunks_checked, info=f"{rep.shards_moved} moved")

        report = rebalance_mod.rebalance(wh.engine, progress)
    console.print(
        f"rebalance: {report.chunks_checked} chunks checked, {report.shards_moved} shards moved "
        f"({human_size(report.bytes_moved)}), {len(report.failed)} failed",
        highlight=False,
    )
    for line in report.failed:
        console.print(f"  failed: {line}")
    if report.failed:
        raise typer.Exit(8)
