"""The metadata schema as SQLAlchemy Core tables: the single description that queries are written
against.

The database itself is created and evolved *only* by the Alembic migrations in ``migrations/``
(hand-written snapshots; a test checks that they produce exactly these tables). The schema is
designed for the whole roadmap (tenants, multipart uploads, key rotation) so that later features
add methods, not table rebuilds.

Portability (SQLite now, PostgreSQL later):

* ids are ``BigInteger``; auto-incremented ids become ``INTEGER`` on SQLite because only an
  ``INTEGER PRIMARY KEY`` column aliases the rowid there (``BIGINT PRIMARY KEY`` would not
  auto-increment);
* instants are ``DateTime(timezone=True)`` behind :class:`UTCDateTime`, which stores UTC and
  always hands back aware UTC datetimes (SQLite keeps no zone);
* JSON is ``Text`` (one encoding everywhere, compared by nobody);
* object keys must sort in UTF-8 binary order: SQLite's default ``BINARY`` collation compares
  the UTF-8 bytes, and on PostgreSQL the column carries ``COLLATE "C"``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from datawarehouse.errors import InvalidInput

DEFAULT_TENANT_ID = 1
DEFAULT_TENANT_NAME = "default"
DEFAULT_DOMAIN_ID = 1

# Deterministic constraint names: Alembic needs names to alter constraints later (SQLite batch
# mode rebuilds tables), and they must be the same on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend.

    SQLite stores datetimes as ISO text without a zone, so values are normalised to UTC and
    stored naive there (the fixed-width text then also sorts chronologically, which the GC
    queries rely on); results are re-tagged as UTC. A naive input is refused rather than guessed:
    it is a caller bug that would otherwise shift instants silently.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"metadata: naive datetime {value.isoformat()} (UTC-aware expected)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def id_type() -> sa.types.TypeEngine[int]:
    """An auto-incrementable 64-bit id (``INTEGER`` on SQLite so that it aliases the rowid)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def key_type() -> sa.types.TypeEngine[str]:
    """An object key: text compared in UTF-8 binary order on every backend."""
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),  # 0006
    sa.UniqueConstraint("name"),
)

domains = sa.Table(
    "domains",
    metadata,
    sa.Column("domain_id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Index(None, "tenant_id"),
)

domain_secrets = sa.Table(
    "domain_secrets",
    metadata,
    sa.Column("domain_id", sa.BigInteger, sa.ForeignKey("domains.domain_id"), primary_key=True),
    sa.Column("key_version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# No foreign key from shards.disk_id to disks: the disk set's source of truth is datadir.json,
# and a rebuild from the journal may record placements before the disk rows are written.
disks = sa.Table(
    "disks",
    metadata,
    sa.Column("disk_id", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
)

# AUTOINCREMENT on SQLite: a deleted bucket's id is never handed out again, so journal records
# that name a bucket id can never be mistaken for a later bucket.
buckets = sa.Table(
    "buckets",
    metadata,
    sa.Column("bucket_id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("domain_id", sa.BigInteger, sa.ForeignKey("domains.domain_id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ec_k", sa.Integer, nullable=True),
    sa.Column("ec_m", sa.Integer, nullable=True),
    # 0006: the IAM user that created the bucket (user quotas). No foreign key: deleting a user
    # keeps its buckets, which then count for nobody but their tenant.
    sa.Column("owner_user_id", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("tenant_id", "name"),
    sa.Index(None, "owner_user_id"),
    sqlite_autoincrement=True,
)

object_versions = sa.Table(
    "object_versions",
    metadata,
    sa.Column("version_pk", id_type(), primary_key=True, autoincrement=True),
    sa.Column("bucket_id", sa.BigInteger, sa.ForeignKey("buckets.bucket_id"), nullable=False),
    sa.Column("key", key_type(), nullable=False),
    sa.Column("version_id", sa.String(128), nullable=False),
    sa.Column("is_latest", sa.Boolean, nullable=False),
    sa.Column("is_delete_marker", sa.Boolean, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("user_meta", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ec_k", sa.Integer, nullable=False),
    sa.Column("ec_m", sa.Integer, nullable=False),
    sa.Column("chunk_min", sa.Integer, nullable=False),
    sa.Column("chunk_avg", sa.Integer, nullable=False),
    sa.Column("chunk_max", sa.Integer, nullable=False),
    sa.Column("inline_data", sa.LargeBinary, nullable=True),
    sa.Column("system_meta", sa.Text, nullable=False, server_default="{}"),
    sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
    # S3's "null" version of the key (unversioned or versioning-suspended writes)
    sa.Column("is_null", sa.Boolean, nullable=False, server_default=sa.true()),
    # object lock: retention (mode GOVERNANCE/COMPLIANCE until an instant) and legal hold
    sa.Column("lock_mode", sa.String(16), nullable=True),
    sa.Column("lock_until", UTCDateTime, nullable=True),
    sa.Column("legal_hold", sa.Boolean, nullable=True),  # NULL: never set
    sa.UniqueConstraint("version_id"),
    # point lookups of a key's latest version, and the versions of one key
    sa.Index(None, "bucket_id", "key", "is_latest"),
    # listing: an index range scan over (bucket, latest, key >= bound) in key order, no OFFSET
    sa.Index(None, "bucket_id", "is_latest", "key"),
    # ListObjectVersions: key order, newest (greatest time-ordered version id) first
    sa.Index(None, "bucket_id", "key", "version_id"),
)

# Maintained by triggers (migration 0005), never written by the application: what a quota check
# reads. objects/bytes: stored versions that are not delete markers; upload_*: unfinished parts.
bucket_usage = sa.Table(
    "bucket_usage",
    metadata,
    sa.Column("bucket_id", sa.BigInteger, sa.ForeignKey("buckets.bucket_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("objects", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("upload_parts", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("upload_bytes", sa.BigInteger, nullable=False, server_default="0"),
)

bucket_settings = sa.Table(
    "bucket_settings",
    metadata,
    sa.Column("bucket_id", sa.BigInteger, sa.ForeignKey("buckets.bucket_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

manifest_entries = sa.Table(
    "manifest_entries",
    metadata,
    sa.Column(
        "version_pk",
        sa.BigInteger,
        sa.ForeignKey("object_versions.version_pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("plain_size", sa.BigInteger, nullable=False),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("domain_id", sa.BigInteger, sa.ForeignKey("domains.domain_id"), primary_key=True),
    sa.Column("chunk_id", sa.LargeBinary(32), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("plain_size", sa.BigInteger, nullable=False),
    sa.Column("sealed_size", sa.BigInteger, nullable=False),
    sa.Column("ec_k", sa.Integer, nullable=False),
    sa.Column("ec_m", sa.Integer, nullable=False),
    sa.Column("refcount", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("zero_since", UTCDateTime, nullable=True),
    # GC: "refcount = 0 AND zero_since < cutoff" is a range scan
    sa.Index(None, "refcount", "zero_since"),
)

shards = sa.Table(
    "shards",
    metadata,
    sa.Column("domain_id", sa.BigInteger, primary_key=True),
    sa.Column("chunk_id", sa.LargeBinary(32), primary_key=True),
    sa.Column("shard_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("disk_id", sa.String(64), nullable=False),
    sa.ForeignKeyConstraint(["domain_id", "chunk_id"], ["chunks.domain_id", "chunks.chunk_id"], ondelete="CASCADE"),
    # draining/healing a disk and counting shards per disk
    sa.Index(None, "disk_id"),
)

# No foreign key to chunks: a heal request may be recorded for a chunk whose row is being
# rebuilt; deleting a chunk removes its heal request explicitly.
heal_queue = sa.Table(
    "heal_queue",
    metadata,
    sa.Column("domain_id", sa.BigInteger, primary_key=True),
    sa.Column("chunk_id", sa.LargeBinary(32), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Index(None, "queued_at"),
)

# Multipart uploads: schema only for now. The chunker bounds are recorded with the upload because
# its parts are chunked as they arrive, and the completed version must name the bounds used.
multipart_uploads = sa.Table(
    "multipart_uploads",
    metadata,
    sa.Column("upload_id", sa.String(128), primary_key=True),
    sa.Column("bucket_id", sa.BigInteger, sa.ForeignKey("buckets.bucket_id"), nullable=False),
    sa.Column("key", key_type(), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("user_meta", sa.Text, nullable=False),
    sa.Column("ec_k", sa.Integer, nullable=False),
    sa.Column("ec_m", sa.Integer, nullable=False),
    sa.Column("chunk_min", sa.Integer, nullable=False),
    sa.Column("chunk_avg", sa.Integer, nullable=False),
    sa.Column("chunk_max", sa.Integer, nullable=False),
    sa.Column("system_meta", sa.Text, nullable=False, server_default="{}"),
    sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
    # ListMultipartUploads: by bucket, in key order
    sa.Index(None, "bucket_id", "key"),
)

multipart_parts = sa.Table(
    "multipart_parts",
    metadata,
    sa.Column(
        "upload_id",
        sa.String(128),
        sa.ForeignKey("multipart_uploads.upload_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("checksums", sa.Text, nullable=False, server_default="{}"),
)

part_entries = sa.Table(
    "part_entries",
    metadata,
    sa.Column("upload_id", sa.String(128), primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("chunk_id", sa.LargeBinary(32), nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("plain_size", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(
        ["upload_id", "part_number"],
        ["multipart_parts.upload_id", "multipart_parts.part_number"],
        ondelete="CASCADE",
    ),
)

journal_positions = sa.Table(
    "journal_positions",
    metadata,
    sa.Column("segment", sa.String(255), primary_key=True),
    sa.Column("applied_offset", sa.BigInteger, nullable=False),
)

# --- identity and access (migration 0006) -------------------------------------------------------
# Ids are never reused (AUTOINCREMENT on SQLite): journal records name users and groups by id.

iam_users = sa.Table(
    "iam_users",
    metadata,
    sa.Column("user_id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # user | service
    sa.Column("parent_user_id", sa.BigInteger, sa.ForeignKey("iam_users.user_id"), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("tenant_id", "name"),
    sa.Index(None, "parent_user_id"),
    sqlite_autoincrement=True,
)

iam_groups = sa.Table(
    "iam_groups",
    metadata,
    sa.Column("group_id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
    sqlite_autoincrement=True,
)

iam_group_members = sa.Table(
    "iam_group_members",
    metadata,
    sa.Column("group_id", sa.BigInteger, sa.ForeignKey("iam_groups.group_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("iam_users.user_id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "user_id"),
)

iam_policies = sa.Table(
    "iam_policies",
    metadata,
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# A policy attached by name (built-in names have no iam_policies row) to a user or a group.
iam_attachments = sa.Table(
    "iam_attachments",
    metadata,
    sa.Column("target", sa.String(8), primary_key=True),  # user | group
    sa.Column("target_id", sa.BigInteger, primary_key=True),
    sa.Column("policy_name", sa.String(255), primary_key=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    # "is this policy still attached somewhere in the tenant?"
    sa.Index(None, "tenant_id", "policy_name"),
)

iam_access_keys = sa.Table(
    "iam_access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("iam_users.user_id"), nullable=False),
    # AES-256-GCM under a key derived from master key master_key_id; never the plain secret
    sa.Column("secret_ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | disabled
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),  # best-effort, not journaled
    sa.Column("session_policy", sa.Text, nullable=True),  # service accounts
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Index(None, "user_id"),
    sa.Index(None, "tenant_id"),
)

iam_quotas = sa.Table(
    "iam_quotas",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # tenant | user
    sa.Column("scope_id", sa.BigInteger, primary_key=True),
    sa.Column("max_bytes", sa.BigInteger, nullable=True),
    sa.Column("max_objects", sa.BigInteger, nullable=True),
    sa.Column("max_buckets", sa.BigInteger, nullable=True),
)
