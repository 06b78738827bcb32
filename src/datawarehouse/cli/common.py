"""What every ``dwh`` command shares: the ``--data-dir`` option, opening the warehouse, and the
one table that maps the exception tree to exit codes and messages."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from datawarehouse import errors
from datawarehouse.config import load_config
from datawarehouse.service.warehouse import OpenOptions, Warehouse


def _console(stderr: bool = False) -> Console:
    """soft_wrap: a message or summary is one line however narrow the terminal. Not a terminal
    (a pipe, a file): no 80-column default either, so tables never truncate paths or keys."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 100_000)


console = _console()
err_console = _console(stderr=True)

DEFAULT_DATA_DIR = Path("./dwh-data")
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", "-d", envvar="DWH_DATA_DIR", help="Data directory (default ./dwh-data).")
]

# Most specific first: the first matching class decides the exit code.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.ConfigError, 78),
    (errors.DataDirLocked, 75),
    (errors.KeyError_, 77),
    (errors.NotFound, 4),
    (errors.Conflict, 5),
    (errors.ObjectLocked, 5),  # refused by object lock: a conflict with the version's state
    (errors.InvalidInput, 2),
    (errors.DataUnavailable, 6),
    (errors.IntegrityError, 7),
    (errors.StorageError, 8),
    (errors.DataDirError, 9),
    (errors.MetadataError, 10),
    (errors.DwhError, 1),
]

F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def handle_errors(fn: F) -> F:
    """Turn project errors into one line on stderr and the table's exit code (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.DwhError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def options(data_dir: Path) -> OpenOptions:
    return OpenOptions(passphrase=os.environ.get("DWH_PASSPHRASE"), config=load_config(data_dir / "dwh.toml").engine)


@contextmanager
def open_warehouse(data_dir: Path, create: bool = False) -> Iterator[Warehouse]:
    """Open the data directory; with ``create``, make it on embedded defaults if it is missing."""
    from datawarehouse.engine.datadir import DataDir

    if create and not DataDir.exists(data_dir.absolute()):
        wh = Warehouse.init(data_dir, None, options(data_dir))
        err_console.print(
            f"created data directory {data_dir} ({len(wh.engine.disks.active())} disk directories, "
            f"{wh.engine.default_storage_class()}); back up {data_dir / 'keys'} — without it the data cannot be read"
        )
    else:
        wh = Warehouse.open(data_dir, options(data_dir))
    try:
        yield wh
    finally:
        wh.close()


def split_target(target: str, default_bucket: str | None = None) -> tuple[str, str]:
    """``bucket/key`` -> (bucket, key); a bare name is a key in ``default_bucket`` if given."""
    if "/" in target:
        bucket, key = target.split("/", 1)
        return bucket, key
    if default_bucket is None:
        raise errors.InvalidInput(f"{target!r}: expected BUCKET/KEY")
    return default_bucket, target


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def is_tty() -> bool:
    return sys.stderr.isatty()


_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 10**6, "MB": 10**6, "MIB": 1024**2,
          "G": 10**9, "GB": 10**9, "GIB": 1024**3, "T": 10**12, "TB": 10**12, "TIB": 1024**4}  # fmt: skip


def parse_size(text: str) -> int:
    """``10GiB``, ``500MB``, ``1.5TiB`` or plain bytes (K/M/G/T decimal, KiB/MiB/GiB/TiB binary),
    for every command that takes a size (``bucket quota``, ``scrub --rate``)."""
    raw = text.strip().upper().replace(" ", "")
    number = raw.rstrip("KMGTIB")
    unit = raw[len(number) :]
    try:
        value = float(number)
    except ValueError:
        raise errors.InvalidInput(f"not a size: {text!r} (examples: 500MB, 10GiB, 1048576)") from None
    if unit not in _UNITS or value < 0:
        raise errors.InvalidInput(f"not a size: {text!r} (examples: 500MB, 10GiB, 1048576)")
    return int(value * _UNITS[unit])
