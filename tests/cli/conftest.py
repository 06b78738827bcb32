"""Running the real ``dwh`` executable in a subprocess against a data directory in ``tmp_path``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

DWH = Path(sys.executable).with_name("dwh")

# Small chunks so a few hundred KiB make several chunks (read from <data-dir>/dwh.toml).
SMALL_TOML = """\
[engine]
chunk_min_size = 16384
chunk_avg_size = 65536
chunk_max_size = 262144
inline_max_size = 4096
threads = 2
"""


@dataclass
class Result:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    def assert_error(self, rc: int, *words: str) -> str:
        """The failure contract: the exit code, and exactly one ``error:`` line on stderr."""
        assert self.rc == rc, (self.rc, self.err)
        assert "Traceback" not in self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: "), self.err
        for w in words:
            assert w in lines[0], (w, lines[0])
        return lines[0]


Runner = Callable[..., Result]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWH_")}
    env.pop("COLUMNS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def dwh_bin() -> Path:
    if not DWH.exists():
        pytest.skip(f"{DWH} is not installed (pip install -e .)")
    return DWH


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A not-yet-initialised data directory that carries a small-chunk ``dwh.toml``."""
    root = tmp_path / "dwh-data"
    root.mkdir()
    (root / "dwh.toml").write_text(SMALL_TOML)
    return root


@pytest.fixture
def dwh(dwh_bin: Path, data_dir: Path, tmp_path: Path) -> Runner:
    """``dwh(*args, input=b"", env={}, data_dir=...)`` -> Result; ``--data-dir`` is added."""

    def run(
        *args: str | Path,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        data_dir_: Path | None = None,
        timeout: float = 120,
    ) -> Result:
        root = data_dir if data_dir_ is None else data_dir_
        cmd = [str(dwh_bin), *map(str, args), "--data-dir", str(root)]
        proc = subprocess.run(
            cmd,
            input=input if input is not None else b"",
            capture_output=True,
            env=_env(env),
            cwd=tmp_path,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr.decode())

    return run
