"""Shared fixtures of the metadata contract suites: the repository under test, on SQLite always
and on PostgreSQL when ``DWH_TEST_PG_URL`` names a server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from datawarehouse.meta.sql import SqlMetaRepo


def pg_test_url(url: str) -> str:
    """A private, emptied schema for this test (per xdist worker, so parallel runs do not meet),
    made the connection's search_path."""
    schema_name = f"dwh_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema_name}"')
    engine.dispose()
    u = sa.make_url(url)
    return u.update_query_dict({"options": f"-csearch_path={schema_name}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetaRepo]:
    if request.param == "sqlite":
        r = SqlMetaRepo.for_sqlite(tmp_path / "meta.sqlite3")
    else:
        url = os.environ.get("DWH_TEST_PG_URL")
        if not url:
            pytest.skip("set DWH_TEST_PG_URL to run against PostgreSQL")
        r = SqlMetaRepo(pg_test_url(url))
    try:
        yield r
    finally:
        r.close()
