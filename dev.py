#!/usr/bin/env python3
"""The two Quick start commands, needing only Python 3.11+ and the package registries.

python3 dev.py run    set up a virtualenv, then `dwh serve` (S3 on 127.0.0.1:9000, data in ./dwh-data)
python3 dev.py test   set up a virtualenv, then ruff, mypy and the whole pytest suite
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".dwh-installed"


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env=env)
    if code != 0:
        sys.exit(code)


def setup() -> None:
    """Create .venv and install the package with its pinned dev dependencies (once per pyproject)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit("Python 3.11 or newer is needed")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    sh(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    sh(BIN / "python", "-m", "pip", "install", "-q", "-e", ".[dev]")
    STAMP.write_text(want)


def env() -> dict[str, str]:
    e = dict(os.environ)
    # glibc's default mmap threshold makes every 1 MiB buffer a fresh mmap: 5-10x slower codecs.
    e.setdefault("MALLOC_MMAP_THRESHOLD_", "67108864")
    e.setdefault("MALLOC_TRIM_THRESHOLD_", "268435456")
    return e


def run() -> None:
    """Serve S3 on 127.0.0.1:9000 from ./dwh-data (created on first start, credentials printed)."""
    setup()
    os.execve(str(BIN / "dwh"), [str(BIN / "dwh"), "serve", *sys.argv[2:]], env())  # noqa: S606


def test() -> None:
    setup()
    sh(BIN / "ruff", "check", "src", "tests", "bench", "dev.py")
    sh(BIN / "ruff", "format", "--check", "src", "tests", "bench", "dev.py")
    sh(BIN / "mypy")
    sh(BIN / "pytest", "-q", "-n", os.environ.get("DWH_TEST_WORKERS", "2"), *sys.argv[2:], env=env())


if __name__ == "__main__":
    commands = {"run": run, "test": test, "setup": setup}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]]()
