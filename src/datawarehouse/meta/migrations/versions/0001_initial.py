"""Initial metadata schema: every table of the roadmap, its indexes, the default tenant/domain.

Revision ID: 0001
Revises:
Create Date: 2026-05-09

Hand-written: a migration is a frozen snapshot, so it spells out types and names instead of
importing ``datawarehouse.meta.schema`` (which keeps changing). A unit test checks that the
result equals ``schema.metadata``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    # INTEGER on SQLite: only an INTEGER PRIMARY KEY aliases the rowid (and auto-increments)
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _key() -> sa.types.TypeEngine[str]:
    # object keys sort in UTF-8 binary order (SQLite BINARY collation; PostgreSQL COLLATE "C")
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )
    op.create_table(
        "tenants",
        sa.Column("tenant_id", _id(), nullable=False, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.create_table(
        "domains",
        sa.Column("domain_id", _id(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("domain_id", name="pk_domains"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_domains_tenant_id_tenants"),
    )
    op.create_index("ix_domains_tenant_id", "domains", ["tenant_id"])
    op.create_table(
        "domain_secrets",
        sa.Column("domain_id", sa.BigInteger, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("domain_id", "key_version", name="pk_domain_secrets"),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.domain_id"], name="fk_domain_secrets_domain_id_domains"),
    )
    op.create_table(
        "disks",
        sa.Column("disk_id", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("added_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("disk_id", name="pk_disks"),
    )
    op.create_table(
        "buckets",
        sa.Column("bucket_id", _id(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("domain_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("ec_k", sa.Integer, nullable=True),
        sa.Column("ec_m", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("bucket_id", name="pk_buckets"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_buckets_tenant_id_name"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_buckets_tenant_id_tenants"),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.domain_id"], name="fk_buckets_domain_id_domains"),
        sqlite_autoincrement=True,  # a deleted bucket's id is never reused
    )
    op.create_table(
        "object_versions",
        sa.Column("version_pk", _id(), nullable=False, autoincrement=True),
        sa.Column("bucket_id", sa.BigInteger, nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("version_id", sa.String(128), nullable=False),
        sa.Column("is_latest", sa.Boolean, nullable=False),
        sa.Column("is_delete_marker", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("user_meta", sa.Text, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("ec_k", sa.Integer, nullable=False),
        sa.Column("ec_m", sa.Integer, nullable=False),
        sa.Column("chunk_min", sa.Integer, nullable=False),
        sa.Column("chunk_avg", sa.Integer, nullable=False),
        sa.Column("chunk_max", sa.Integer, nullable=False),
        sa.Column("inline_data", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("version_pk", name="pk_object_versions"),
        sa.UniqueConstraint("version_id", name="uq_object_versions_version_id"),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.bucket_id"], name="fk_object_versions_bucket_id_buckets"),
    )
    op.create_index("ix_object_versions_bucket_id_key_is_latest", "object_versions", ["bucket_id", "key", "is_latest"])
    op.create_index("ix_object_versions_bucket_id_is_latest_key", "object_versions", ["bucket_id", "is_latest", "key"])
    op.create_table(
        "manifest_entries",
        sa.Column("version_pk", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("plain_size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("version_pk", "seq", name="pk_manifest_entries"),
        sa.ForeignKeyConstraint(
            ["version_pk"],
            ["object_versions.version_pk"],
            name="fk_manifest_entries_version_pk_object_versions",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "chunks",
        sa.Column("domain_id", sa.BigInteger, nullable=False),
        sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("plain_size", sa.BigInteger, nullable=False),
        sa.Column("sealed_size", sa.BigInteger, nullable=False),
        sa.Column("ec_k", sa.Integer, nullable=False),
        sa.Column("ec_m", sa.Integer, nullable=False),
        sa.Column("refcount", sa.BigInteger, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("zero_since", _at(), nullable=True),
        sa.PrimaryKeyConstraint("domain_id", "chunk_id", name="pk_chunks"),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.domain_id"], name="fk_chunks_domain_id_domains"),
    )
    op.create_index("ix_chunks_refcount_zero_since", "chunks", ["refcount", "zero_since"])
    op.create_table(
        "shards",
        sa.Column("domain_id", sa.BigInteger, nullable=False),
        sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
        sa.Column("shard_index", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("disk_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("domain_id", "chunk_id", "shard_index", name="pk_shards"),
        sa.ForeignKeyConstraint(
            ["domain_id", "chunk_id"],
            ["chunks.domain_id", "chunks.chunk_id"],
            name="fk_shards_domain_id_chunk_id_chunks",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_shards_disk_id", "shards", ["disk_id"])
    op.create_table(
        "heal_queue",
        sa.Column("domain_id", sa.BigInteger, nullable=False),
        sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("queued_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("domain_id", "chunk_id", name="pk_heal_queue"),
    )
    op.create_index("ix_heal_queue_queued_at", "heal_queue", ["queued_at"])
    op.create_table(
        "multipart_uploads",
        sa.Column("upload_id", sa.String(128), nullable=False),
        sa.Column("bucket_id", sa.BigInteger, nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("user_meta", sa.Text, nullable=False),
        sa.Column("ec_k", sa.Integer, nullable=False),
        sa.Column("ec_m", sa.Integer, nullable=False),
        sa.Column("chunk_min", sa.Integer, nullable=False),
        sa.Column("chunk_avg", sa.Integer, nullable=False),
        sa.Column("chunk_max", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name="pk_multipart_uploads"),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.bucket_id"], name="fk_multipart_uploads_bucket_id_buckets"),
    )
    op.create_index("ix_multipart_uploads_bucket_id_key", "multipart_uploads", ["bucket_id", "key"])
    op.create_table(
        "multipart_parts",
        sa.Column("upload_id", sa.String(128), nullable=False),
        sa.Column("part_number", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_multipart_parts"),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["multipart_uploads.upload_id"],
            name="fk_multipart_parts_upload_id_multipart_uploads",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "part_entries",
        sa.Column("upload_id", sa.String(128), nullable=False),
        sa.Column("part_number", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("plain_size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "part_number", "seq", name="pk_part_entries"),
        sa.ForeignKeyConstraint(
            ["upload_id", "part_number"],
            ["multipart_parts.upload_id", "multipart_parts.part_number"],
            name="fk_part_entries_upload_id_part_number_multipart_parts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "journal_positions",
        sa.Column("segment", sa.String(255), nullable=False),
        sa.Column("applied_offset", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("segment", name="pk_journal_positions"),
    )

    # The default tenant and its dedup/encryption domain (DEFAULT_DOMAIN = 1 in ids.py).
    now = datetime.now(UTC)
    tenants = sa.table(
        "tenants",
        sa.column("tenant_id", sa.BigInteger),
        sa.column("name", sa.String),
        sa.column("created_at", _at()),
    )
    domains = sa.table("domains", sa.column("domain_id", sa.BigInteger), sa.column("tenant_id", sa.BigInteger))
    op.bulk_insert(tenants, [{"tenant_id": 1, "name": "default", "created_at": now}])
    op.bulk_insert(domains, [{"domain_id": 1, "tenant_id": 1}])
    if op.get_context().dialect.name == "postgresql":
        # explicit ids do not move a sequence: the next tenant/domain must not get id 1 again
        op.execute("SELECT setval(pg_get_serial_sequence('tenants', 'tenant_id'), 1)")
        op.execute("SELECT setval(pg_get_serial_sequence('domains', 'domain_id'), 1)")


def downgrade() -> None:
    for table in (
        "journal_positions",
        "part_entries",
        "multipart_parts",
        "multipart_uploads",
        "heal_queue",
        "shards",
        "chunks",
        "manifest_entries",
        "object_versions",
        "buckets",
        "disks",
        "domain_secrets",
        "domains",
        "tenants",
        "settings",
    ):
        op.drop_table(table)
