"""A real ``dwh serve`` subprocess for the S3 integration tests.

Fixtures:

* ``dwh_server`` (session): one server shared by every test that only needs *a* server; tests
  use unique bucket names (``bucket`` fixture) so they do not see each other.
* ``dwh_server_factory`` (function): ``factory(domain=..., data_dir=...)`` starts a private
  server (for tests that kill, restart or reconfigure it); every server it made is stopped at
  teardown.
* ``s3``: a boto3 client of ``dwh_server``; ``bucket``: a fresh empty bucket on it.

A server object has ``endpoint``, ``host``, ``port``, ``access_key``, ``secret_key``,
``data_dir``, ``domain``, ``log_path``, ``pid``, and ``boto3_client()``, ``restart()``,
``kill()``, ``terminate()``, ``stop()``, ``log()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import DwhServer, unique_bucket

# The markers the S3 suites use (registered here so --strict-markers accepts them).
S3OP_MARKER = "s3op(*operations, status='supported', note=''): the S3 operations/features a test proves"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", S3OP_MARKER)


@pytest.fixture(scope="session")
def dwh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DwhServer]:
    server = DwhServer(tmp_path_factory.mktemp("dwh-s3") / "data").start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture
def dwh_server_factory(tmp_path: Path) -> Iterator[Callable[..., DwhServer]]:
    made: list[DwhServer] = []
    counter = itertools.count()

    def factory(*, data_dir: Path | None = None, start: bool = True, **kwargs: Any) -> DwhServer:
        server = DwhServer(data_dir or tmp_path / f"data{next(counter)}", **kwargs)
        made.append(server)
        return server.start() if start else server

    try:
        yield factory
    finally:
        for server in made:
            server.terminate()


@pytest.fixture(scope="session")
def s3(dwh_server: DwhServer) -> Any:
    return dwh_server.boto3_client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    return name
