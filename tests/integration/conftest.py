"""Shared fixtures of the integration tests (real engine on temporary directories)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dwh_testkit import Item, clone_datadir, make_dataset, populate

from datawarehouse.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when told; it starts at the real time because GC compares it
    with shard file modification times."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture(scope="session")
def dataset() -> list[Item]:
    return make_dataset()


@pytest.fixture(scope="session")
def populated_template(tmp_path_factory: pytest.TempPathFactory, dataset: list[Item]) -> Path:
    """A closed data directory (6 disks, EC(4,2), small chunks) holding ``dataset``; built once."""
    root = tmp_path_factory.mktemp("template") / "dwh-data"
    populate(root, dataset)
    return root


@pytest.fixture
def populated(populated_template: Path, tmp_path: Path) -> Path:
    """A private copy of the populated data directory, closed, for a test to break."""
    return clone_datadir(populated_template, tmp_path / "dwh-data")
