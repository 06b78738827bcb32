"""``dwh key rotate``: a new master key; data keys are rewrapped, chunks untouched."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, handle_errors, open_warehouse
from datawarehouse.engine.rotate import rotate_master_key

app = typer.Typer(help="Keys.", no_args_is_help=True)


@app.command("rotate")
@handle_errors
def rotate(
    new_passphrase: Annotated[
        bool,
        typer.Option("--new-passphrase", help="Passphrase mode: ask for the new one (or read DWH_NEW_PASSPHRASE)."),
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Rotate the master key (key file: a new random key; passphrase: a new passphrase)."""
    secret = None
    if new_passphrase:
        secret = os.environ.get("DWH_NEW_PASSPHRASE") or typer.prompt(
            "new passphrase", hide_input=True, confirmation_prompt=True
        )
    with open_warehouse(data_dir) as wh:
        old, new = rotate_master_key(wh.engine, secret)
    console.print(f"master key rotated: {old} -> {new}; back up {data_dir / 'keys'} again")
