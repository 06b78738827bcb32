"""Bucket versioning: the "null" version flag and the ListObjectVersions index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

``object_versions.is_null`` marks S3's "null" version of a key (written while the bucket is
unversioned or versioning is suspended; at most one per key). Every version stored before this
revision was written to an unversioned bucket, hence the default ``true``. The index on
(bucket_id, key, version_id) serves ListObjectVersions (keys in order, newest version first:
version ids are time-ordered).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite supports it with a constant default; no table rebuild)
    op.add_column("object_versions", sa.Column("is_null", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_index(
        "ix_object_versions_bucket_id_key_version_id", "object_versions", ["bucket_id", "key", "version_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_object_versions_bucket_id_key_version_id", table_name="object_versions")
    with op.batch_alter_table("object_versions") as batch:
        batch.drop_column("is_null")
