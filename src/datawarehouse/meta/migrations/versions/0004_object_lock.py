"""Object lock (WORM): per-version retention and legal hold.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``object_versions.lock_mode`` (GOVERNANCE or COMPLIANCE) and ``lock_until`` hold a version's
retention, ``legal_hold`` its legal hold. A bucket's object lock configuration is the bucket
setting ``object-lock`` (no schema change).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMNs (nullable, or a constant default): no table rebuild on SQLite
    op.add_column("object_versions", sa.Column("lock_mode", sa.String(16), nullable=True))
    op.add_column("object_versions", sa.Column("lock_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("object_versions", sa.Column("legal_hold", sa.Boolean, nullable=True))  # NULL: never set


def downgrade() -> None:
    with op.batch_alter_table("object_versions") as batch:
        batch.drop_column("legal_hold")
        batch.drop_column("lock_until")
        batch.drop_column("lock_mode")
