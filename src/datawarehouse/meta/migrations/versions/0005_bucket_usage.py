"""Per-bucket usage counters, kept exact by the database itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

``bucket_usage`` holds, per bucket: stored versions that are not delete markers (``objects``)
and their logical bytes (``bytes``), and the parts of unfinished multipart uploads
(``upload_parts``, ``upload_bytes``). Triggers on ``object_versions`` and ``multipart_parts``
maintain the counters in the same transaction as the rows they count, whatever code path writes
them (PUT, copy, complete, delete, replay, rebuild), so a quota check is one primary-key read,
never a scan of the bucket. The counters are filled from the existing rows here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Trigger bodies: constant SQL (no value is ever interpolated), one per row image and direction.
_VERSION_ADD_NEW = (
    "UPDATE bucket_usage SET objects = objects + (CASE WHEN NEW.is_delete_marker THEN 0 ELSE 1 END), "
    "bytes = bytes + (CASE WHEN NEW.is_delete_marker THEN 0 ELSE NEW.size END) WHERE bucket_id = NEW.bucket_id"
)
_VERSION_SUB_OLD = (
    "UPDATE bucket_usage SET objects = objects - (CASE WHEN OLD.is_delete_marker THEN 0 ELSE 1 END), "
    "bytes = bytes - (CASE WHEN OLD.is_delete_marker THEN 0 ELSE OLD.size END) WHERE bucket_id = OLD.bucket_id"
)
_PART_ADD_NEW = (
    "UPDATE bucket_usage SET upload_parts = upload_parts + 1, upload_bytes = upload_bytes + NEW.size "
    "WHERE bucket_id = (SELECT bucket_id FROM multipart_uploads WHERE upload_id = NEW.upload_id)"
)
_PART_SUB_OLD = (
    "UPDATE bucket_usage SET upload_parts = upload_parts - 1, upload_bytes = upload_bytes - OLD.size "
    "WHERE bucket_id = (SELECT bucket_id FROM multipart_uploads WHERE upload_id = OLD.upload_id)"
)


def _bucket_insert(dialect: str) -> str:
    # Bucket ids can be reused after a delete: start the new bucket's counters from zero.
    if dialect == "postgresql":
        return (
            "INSERT INTO bucket_usage (bucket_id) VALUES (NEW.bucket_id) ON CONFLICT (bucket_id) DO UPDATE "
            "SET objects = 0, bytes = 0, upload_parts = 0, upload_bytes = 0"
        )
    return "INSERT OR REPLACE INTO bucket_usage (bucket_id) VALUES (NEW.bucket_id)"


def _statements(dialect: str) -> list[tuple[str, str, str, list[str]]]:
    """(trigger, table, event, statements of its body)."""
    out = [
        ("trg_usage_bucket_insert", "buckets", "INSERT", [_bucket_insert(dialect)]),
        ("trg_usage_bucket_delete", "buckets", "DELETE", ["DELETE FROM bucket_usage WHERE bucket_id = OLD.bucket_id"]),
    ]
    out += [
        ("trg_usage_version_insert", "object_versions", "INSERT", [_VERSION_ADD_NEW]),
        ("trg_usage_version_delete", "object_versions", "DELETE", [_VERSION_SUB_OLD]),
        (
            "trg_usage_version_update",
            "object_versions",
            "UPDATE OF size, is_delete_marker, bucket_id",
            [_VERSION_SUB_OLD, _VERSION_ADD_NEW],
        ),
        # A part is deleted before its upload row (abort, complete): the subquery still finds it.
        ("trg_usage_part_insert", "multipart_parts", "INSERT", [_PART_ADD_NEW]),
        ("trg_usage_part_delete", "multipart_parts", "DELETE", [_PART_SUB_OLD]),
    ]
    return out


TRIGGERS = (
    ("trg_usage_bucket_insert", "buckets"),
    ("trg_usage_bucket_delete", "buckets"),
    ("trg_usage_version_insert", "object_versions"),
    ("trg_usage_version_delete", "object_versions"),
    ("trg_usage_version_update", "object_versions"),
    ("trg_usage_part_insert", "multipart_parts"),
    ("trg_usage_part_delete", "multipart_parts"),
)


def _create_triggers(dialect: str) -> None:
    for name, table, event, body in _statements(dialect):
        sql = "; ".join(body)
        if dialect == "postgresql":
            row = "OLD" if event == "DELETE" else "NEW"
            op.execute(
                f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {sql}; RETURN {row}; END $$"
            )
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_fn()")
        else:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN {sql}; END")


def upgrade() -> None:
    op.create_table(
        "bucket_usage",
        sa.Column("bucket_id", sa.BigInteger, nullable=False),
        sa.Column("objects", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upload_parts", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upload_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("bucket_id", name="pk_bucket_usage"),
        sa.ForeignKeyConstraint(
            ["bucket_id"], ["buckets.bucket_id"], name="fk_bucket_usage_bucket_id_buckets", ondelete="CASCADE"
        ),
    )
    op.execute(
        "INSERT INTO bucket_usage (bucket_id, objects, bytes, upload_parts, upload_bytes) "
        "SELECT b.bucket_id, "
        "(SELECT COUNT(*) FROM object_versions v WHERE v.bucket_id = b.bucket_id AND NOT v.is_delete_marker), "
        "(SELECT COALESCE(SUM(v.size), 0) FROM object_versions v "
        " WHERE v.bucket_id = b.bucket_id AND NOT v.is_delete_marker), "
        "(SELECT COUNT(*) FROM multipart_parts p JOIN multipart_uploads u ON u.upload_id = p.upload_id "
        " WHERE u.bucket_id = b.bucket_id), "
        "(SELECT COALESCE(SUM(p.size), 0) FROM multipart_parts p JOIN multipart_uploads u ON u.upload_id = p.upload_id "
        " WHERE u.bucket_id = b.bucket_id) "
        "FROM buckets b"
    )
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table in TRIGGERS:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}_fn()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("bucket_usage")
