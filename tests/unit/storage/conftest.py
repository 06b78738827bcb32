"""Fixtures shared by the store unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty directory standing for one disk."""
    r = tmp_path / "disk"
    r.mkdir()
    return r
