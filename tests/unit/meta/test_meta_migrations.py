"""The Alembic migrations are the only way the schema is created: they must produce exactly
``schema.metadata``, be a no-op on an up-to-date database, and ship with the package."""

from __future__ import annotations

import logging
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from datawarehouse.errors import MetadataError
from datawarehouse.meta import schema
from datawarehouse.meta.sql import MIGRATIONS_DIR, SqlMetaRepo


def describe(engine: sa.Engine) -> dict[str, Any]:
    """Everything reflection tells about the tables (alembic_version aside), normalised."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"), c.get("default"))
                for c in insp.get_columns(table)
            ],
            "pk": (insp.get_pk_constraint(table)["constrained_columns"]),
            "fks": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    tuple(sorted((fk.get("options") or {}).items())),
                )
                for fk in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in insp.get_indexes(table)
            ),
            "unique": sorted((uq["name"], tuple(uq["column_names"])) for uq in insp.get_unique_constraints(table)),
        }
    if engine.dialect.name != "sqlite":
        return out
    with engine.connect() as conn:  # the DDL text itself (AUTOINCREMENT, constraint names)
        for name, sql in conn.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL")
        ):
            if name != "alembic_version":
                out.setdefault("ddl", {})[name] = " ".join(sql.split())
    return out


def test_migration_produces_schema_py(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.sqlite3"
    SqlMetaRepo.for_sqlite(migrated).close()
    declared = sa.create_engine(f"sqlite:///{tmp_path / 'declared.sqlite3'}")
    schema.metadata.create_all(declared)
    from_migrations = sa.create_engine(f"sqlite:///{migrated}")
    try:
        got, want = describe(from_migrations), describe(declared)
        assert set(got) - {"ddl"} == set(schema.metadata.tables)
        for table in schema.metadata.tables:
            assert got[table] == want[table], table
        assert got["ddl"] == want["ddl"]
    finally:
        declared.dispose()
        from_migrations.dispose()


def test_migration_produces_schema_py_on_postgresql() -> None:
    url = os.environ.get("DWH_TEST_PG_URL")
    if not url:
        pytest.skip("set DWH_TEST_PG_URL to run against PostgreSQL")
    schema_name = f"dwh_test_schema_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    in_schema = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema_name}"})
    engine = sa.create_engine(in_schema, poolclass=sa.NullPool)

    def reset() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema_name}"')

    try:
        reset()
        SqlMetaRepo(in_schema).close()
        got = describe(engine)
        with engine.begin() as conn:  # the default tenant's sequence has moved past id 1
            assert conn.execute(sa.text("SELECT nextval(pg_get_serial_sequence('tenants', 'tenant_id'))")).scalar() == 2
        reset()
        schema.metadata.create_all(engine)
        assert got == describe(engine)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        engine.dispose()


def test_initial_migration_creates_default_tenant_and_domain(tmp_path: Path) -> None:
    repo = SqlMetaRepo.for_sqlite(tmp_path / "m.sqlite3")
    try:
        with repo.engine.connect() as conn:
            tenants = conn.execute(sa.select(schema.tenants.c.tenant_id, schema.tenants.c.name)).all()
            domains = conn.execute(sa.select(schema.domains)).all()
            head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        repo.close()
    assert [tuple(t) for t in tenants] == [(schema.DEFAULT_TENANT_ID, schema.DEFAULT_TENANT_NAME)]
    assert [tuple(d) for d in domains] == [(schema.DEFAULT_DOMAIN_ID, schema.DEFAULT_TENANT_ID)]
    assert head == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_reopening_is_a_no_op_migration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.sqlite3"
    caplog.set_level(logging.INFO, logger="alembic")
    repo = SqlMetaRepo.for_sqlite(path)
    with repo.transaction() as tx:
        tx.set_setting("kept", "yes")
    repo.close()
    assert "Running upgrade" in caplog.text
    caplog.clear()
    engine = sa.create_engine(f"sqlite:///{path}")
    before = describe(engine)
    engine.dispose()

    repo = SqlMetaRepo.for_sqlite(path, create=False)
    with repo.transaction() as tx:
        assert tx.get_setting("kept") == "yes"
    repo.close()
    assert "Running upgrade" not in caplog.text
    engine = sa.create_engine(f"sqlite:///{path}")
    assert describe(engine) == before
    engine.dispose()


def test_create_false_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="does not exist"):
        SqlMetaRepo.for_sqlite(tmp_path / "absent.sqlite3", create=False)
    assert not (tmp_path / "absent.sqlite3").exists()
    empty = tmp_path / "empty.sqlite3"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(MetadataError, match="no DataWarehouse schema"):
        SqlMetaRepo.for_sqlite(empty, create=False)


def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    SqlMetaRepo.for_sqlite(path).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    engine.dispose()
    with pytest.raises(MetadataError, match="newer"):
        SqlMetaRepo.for_sqlite(path)


def test_migration_scripts_are_package_data() -> None:
    """pyproject's package-data globs must cover every file Alembic needs at run time."""
    pkg = MIGRATIONS_DIR.parent
    assert (pkg / "alembic.ini").is_file()
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    for rev in scripts.walk_revisions():
        assert rev.path is not None
        path = Path(rev.path)
        assert path.parent == MIGRATIONS_DIR / "versions" and path.suffix == ".py"
    assert len(list(scripts.walk_revisions())) >= 1
    assert len(scripts.get_heads()) == 1  # a linear history


def offline_sql(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head", sql=True)
    return capsys.readouterr().out


def test_offline_postgresql_sql_uses_binary_key_collation(capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL must order keys like SQLite's BINARY collation (UTF-8 bytes): COLLATE "C"."""
    sql = offline_sql("postgresql://localhost/dwh", capsys)
    create_versions = sql[sql.index("CREATE TABLE object_versions") :].split(";")[0]
    assert 'key TEXT COLLATE "C" NOT NULL' in create_versions
    assert "version_pk BIGSERIAL NOT NULL" in create_versions
    assert "created_at TIMESTAMP WITH TIME ZONE NOT NULL" in create_versions
    assert "INSERT INTO tenants" in sql and "INSERT INTO domains" in sql
    assert "setval(pg_get_serial_sequence('tenants', 'tenant_id'), 1)" in sql


def test_alembic_ini_drives_the_command_line_environment(tmp_path: Path) -> None:
    """The developer route (``alembic -c meta/alembic.ini -x url=...``) reaches the same head."""
    path = tmp_path / "cli.sqlite3"
    cfg = Config(str(MIGRATIONS_DIR.parent / "alembic.ini"), cmd_opts=Namespace(x=[f"url=sqlite:///{path}"]))
    command.upgrade(cfg, "head")
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        assert set(sa.inspect(engine).get_table_names()) == {*schema.metadata.tables, "alembic_version"}
    finally:
        engine.dispose()
    SqlMetaRepo.for_sqlite(path, create=False).close()  # and the repository accepts it
