"""Identity and access: tenants that can be disabled, IAM users, groups, policies, attachments,
access keys, quotas, and the IAM user that owns a bucket.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10

``iam_access_keys.secret_ciphertext`` holds a secret access key only as AES-256-GCM ciphertext
under a key derived from master key ``master_key_id`` (docs/invariants.md, "Secrets"). Every row
here is rebuilt from the journal (``iam.*`` operations) except ``last_used_at``, which is
best-effort and written in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    # INTEGER on SQLite: only an INTEGER PRIMARY KEY aliases the rowid (and auto-increments)
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # plain ADD COLUMNs (nullable, or a constant default): no table rebuild on SQLite
    op.add_column("tenants", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("buckets", sa.Column("owner_user_id", sa.BigInteger, nullable=True))
    op.create_index("ix_buckets_owner_user_id", "buckets", ["owner_user_id"])
    op.create_table(
        "iam_users",
        sa.Column("user_id", _id(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_user_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("user_id", name="pk_iam_users"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_iam_users_tenant_id_name"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_iam_users_tenant_id_tenants"),
        sa.ForeignKeyConstraint(
            ["parent_user_id"], ["iam_users.user_id"], name="fk_iam_users_parent_user_id_iam_users"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_iam_users_parent_user_id", "iam_users", ["parent_user_id"])
    op.create_table(
        "iam_groups",
        sa.Column("group_id", _id(), nullable=False, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_iam_groups"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_iam_groups_tenant_id_name"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_iam_groups_tenant_id_tenants"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "iam_group_members",
        sa.Column("group_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_iam_group_members"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["iam_groups.group_id"], name="fk_iam_group_members_group_id_iam_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["iam_users.user_id"], name="fk_iam_group_members_user_id_iam_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_iam_group_members_user_id", "iam_group_members", ["user_id"])
    op.create_table(
        "iam_policies",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_iam_policies"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_iam_policies_tenant_id_tenants"),
    )
    op.create_table(
        "iam_attachments",
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("target_id", sa.BigInteger, nullable=False),
        sa.Column("policy_name", sa.String(255), nullable=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("target", "target_id", "policy_name", name="pk_iam_attachments"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_iam_attachments_tenant_id_tenants"),
    )
    op.create_index("ix_iam_attachments_tenant_id_policy_name", "iam_attachments", ["tenant_id", "policy_name"])
    op.create_table(
        "iam_access_keys",
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("expires_at", _at(), nullable=True),
        sa.Column("last_used_at", _at(), nullable=True),
        sa.Column("session_policy", sa.Text, nullable=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_iam_access_keys"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_iam_access_keys_tenant_id_tenants"),
        sa.ForeignKeyConstraint(["user_id"], ["iam_users.user_id"], name="fk_iam_access_keys_user_id_iam_users"),
    )
    op.create_index("ix_iam_access_keys_user_id", "iam_access_keys", ["user_id"])
    op.create_index("ix_iam_access_keys_tenant_id", "iam_access_keys", ["tenant_id"])
    op.create_table(
        "iam_quotas",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.BigInteger, nullable=False),
        sa.Column("max_bytes", sa.BigInteger, nullable=True),
        sa.Column("max_objects", sa.BigInteger, nullable=True),
        sa.Column("max_buckets", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("scope", "scope_id", name="pk_iam_quotas"),
    )


def downgrade() -> None:
    for table in ("iam_quotas", "iam_access_keys", "iam_attachments", "iam_policies", "iam_group_members"):
        op.drop_table(table)
    op.drop_table("iam_groups")
    op.drop_index("ix_iam_users_parent_user_id", table_name="iam_users")
    op.drop_table("iam_users")
    op.drop_index("ix_buckets_owner_user_id", table_name="buckets")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("owner_user_id")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("disabled")
