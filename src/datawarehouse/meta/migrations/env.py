"""Alembic environment of the metadata database.

``SqlMetaRepo`` runs migrations on its own engine: it passes an open connection (already inside
its write transaction) as ``config.attributes["connection"]``, so the whole upgrade is one
transaction with the repository's connection settings. Without one (the ``alembic`` command line,
for developers) the URL comes from ``-x url=...`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from datawarehouse.meta.schema import metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=<sqlalchemy url> or set sqlalchemy.url")
    return url


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(_url(), poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
