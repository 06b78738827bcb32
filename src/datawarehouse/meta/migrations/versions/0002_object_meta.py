"""Object representation headers and tags (also on multipart uploads, checksums on parts);
per-bucket settings documents.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``object_versions.system_meta`` holds the headers stored and returned as given (Content-Encoding,
Cache-Control, ..., x-amz-checksum-*), ``tags`` the object's tag set, both JSON objects.
``bucket_settings`` holds one document per (bucket, name): CORS, tagging, and later versioning,
lifecycle and policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("object_versions") as batch:
        batch.add_column(sa.Column("system_meta", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("tags", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.add_column(sa.Column("system_meta", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("tags", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("multipart_parts") as batch:
        batch.add_column(sa.Column("checksums", sa.Text, nullable=False, server_default="{}"))
    op.create_table(
        "bucket_settings",
        sa.Column("bucket_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("bucket_id", "name", name="pk_bucket_settings"),
        sa.ForeignKeyConstraint(
            ["bucket_id"], ["buckets.bucket_id"], name="fk_bucket_settings_bucket_id_buckets", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("bucket_settings")
    with op.batch_alter_table("multipart_parts") as batch:
        batch.drop_column("checksums")
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.drop_column("tags")
        batch.drop_column("system_meta")
    with op.batch_alter_table("object_versions") as batch:
        batch.drop_column("tags")
        batch.drop_column("system_meta")
