"""A real ``dwh serve`` (tests/integration/s3/s3server.py) and admin API clients for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))

from s3server import DwhServer

from datawarehouse.cli.admin_client import AdminClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DwhServer]:
    srv = DwhServer(tmp_path_factory.mktemp("dwh-admin") / "data").start()
    try:
        yield srv
    finally:
        srv.terminate()


@pytest.fixture(scope="module")
def admin(server: DwhServer) -> AdminClient:
    return AdminClient(server.endpoint, access_key=server.access_key, secret_key=server.secret_key)
