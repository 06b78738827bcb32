"""The metadata repository protocol. ``SqlMetaRepo`` (SQLite now, PostgreSQL later) implements
it; the contract suite in ``tests/contracts/test_meta_contract.py`` runs against each backend."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from datawarehouse.ids import BucketId, ChunkId, DiskId, DomainId, GroupId, TenantId, UserId, VersionId
from datawarehouse.records import (
    AccessKeyRecord,
    AttachmentRecord,
    AttachTarget,
    BucketRecord,
    ChunkRecord,
    DiskRecord,
    DiskState,
    GroupRecord,
    ObjectVersion,
    PartRecord,
    PolicyRecord,
    PrincipalKind,
    QuotaRecord,
    QuotaScope,
    StorageClass,
    TenantRecord,
    UploadRecord,
    UsageTotals,
    UserRecord,
)


@dataclass(frozen=True)
class BucketUsage:
    """What a bucket holds: stored versions that are not delete markers and their logical bytes,
    and the parts of its unfinished multipart uploads (they occupy space too)."""

    objects: int = 0
    bytes: int = 0
    upload_parts: int = 0
    upload_bytes: int = 0


@dataclass(frozen=True)
class StoredUsage:
    """What a bucket's data costs on the disks after dedup and compression: the distinct chunks
    its versions and upload parts reference (a chunk shared with another bucket counts in each),
    their sealed bytes, and those bytes with erasure-coding overhead; inline objects' frames."""

    chunks: int = 0
    sealed_bytes: int = 0
    raw_bytes: int = 0
    inline_bytes: int = 0


@dataclass(frozen=True)
class DomainSecretRecord:
    domain_id: DomainId
    key_version: int
    wrapped: bytes
    master_key_id: str
    created_at: datetime


@dataclass(frozen=True)
class HealItem:
    domain_id: DomainId
    chunk_id: ChunkId
    reason: str
    queued_at: datetime


@dataclass(frozen=True)
class ObjectSummary:
    """A listing row: the latest, non-deleted version of a key."""

    key: str
    version_id: VersionId
    size: int
    etag: str
    created_at: datetime


@dataclass(frozen=True)
class VersionSummary:
    """A ListObjectVersions row: one version or delete marker of a key."""

    key: str
    version_id: VersionId
    null_version: bool
    is_latest: bool
    is_delete_marker: bool
    size: int
    etag: str
    created_at: datetime

    @property
    def s3_version_id(self) -> str:
        return "null" if self.null_version else self.version_id


@dataclass(frozen=True)
class ObjectRead:
    """What a read of one object needs, from one snapshot: its bucket, its current version (a
    delete marker is returned as such) and the records of the chunks at the start of its manifest
    (the first ``chunk_head``; a chunk missing from the index is simply absent here)."""

    bucket: BucketRecord
    version: ObjectVersion
    chunks: dict[ChunkId, ChunkRecord]


class MetaTx(Protocol):
    """One transaction. Leaving the ``with`` block commits; an exception rolls back."""

    # --- settings (format parameters, data directory facts) ------------------------------------
    def get_setting(self, name: str) -> str | None: ...
    def set_setting(self, name: str, value: str) -> None: ...

    # --- domains and their secrets -------------------------------------------------------------
    def put_domain_secret(self, rec: DomainSecretRecord) -> None:
        """Insert, or replace the row with the same (domain_id, key_version) (used by rewrap)."""
        ...

    def list_domain_secrets(self) -> list[DomainSecretRecord]: ...

    # --- disks ---------------------------------------------------------------------------------
    def upsert_disk(self, rec: DiskRecord) -> None: ...
    def list_disks(self) -> list[DiskRecord]: ...
    def set_disk_state(self, disk_id: DiskId, state: DiskState) -> None: ...

    # --- buckets -------------------------------------------------------------------------------
    def create_bucket(
        self,
        domain_id: DomainId,
        name: str,
        created_at: datetime,
        storage_class: StorageClass | None,
        owner_user_id: UserId | None = None,
    ) -> BucketRecord:
        """Raise ``BucketAlreadyExists`` if a bucket of that name exists in the domain's tenant.
        ``owner_user_id``: the IAM user creating it (user quotas count its buckets)."""
        ...

    def insert_bucket(self, rec: BucketRecord) -> None:
        """Insert with a given id (journal replay); no-op if that id exists."""
        ...

    def get_bucket(self, name: str) -> BucketRecord:
        """By tenant-qualified name (``ids.split_bucket_name``). Raise ``NoSuchBucket``."""
        ...

    def get_bucket_by_id(self, bucket_id: BucketId) -> BucketRecord | None: ...
    def list_buckets(self, tenant: str | None = None) -> list[BucketRecord]:
        """One tenant's buckets (by tenant name), or every tenant's (``None``)."""
        ...

    def delete_bucket(self, bucket_id: BucketId) -> None:
        """Raise ``BucketNotEmpty`` if any object version remains."""
        ...

    # --- object versions -----------------------------------------------------------------------
    def insert_version(self, version: ObjectVersion) -> None:
        """Store a version (and its manifest rows); it becomes the latest for its key. No-op when
        the version id exists already (journal replay is idempotent)."""
        ...

    def latest_keys(self, bucket_id: BucketId, keys: Sequence[str]) -> set[str] | None:
        """Those of ``keys`` that have a latest version in the bucket (a delete marker counts), or
        ``None`` if the bucket does not exist."""
        ...

    def insert_new_versions(self, versions: Sequence[ObjectVersion]) -> None:
        """Store many versions of distinct keys that have no latest version (``latest_keys``),
        each becoming the latest of its key (group commit). Nothing is looked up: the caller
        checks; a version id that exists already or an unknown bucket is an error (never for
        replay)."""
        ...

    def get_version(self, bucket_id: BucketId, key: str, version_id: VersionId | None = None) -> ObjectVersion:
        """The latest version (or the named one), manifest included. Raise ``NoSuchKey``."""
        ...

    def delete_version(self, bucket_id: BucketId, key: str, version_id: VersionId) -> ObjectVersion | None:
        """Remove a version and its manifest rows; return it (with chunks) or ``None`` if absent.
        If it was the latest, the next newest version (by created_at, version_id) becomes latest."""
        ...

    def list_objects(
        self, bucket_id: BucketId, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectSummary]:
        """Latest non-delete-marker versions, keys in UTF-8 binary order, ``key > start_after``."""
        ...

    def count_versions(self, bucket_id: BucketId) -> int: ...

    def get_null_version(self, bucket_id: BucketId, key: str) -> ObjectVersion | None:
        """The key's "null" version (current or not), manifest included; ``None`` if it has none."""
        ...

    def set_version_lock(
        self,
        bucket_id: BucketId,
        key: str,
        version_id: VersionId,
        mode: str | None,
        until: datetime | None,
        legal_hold: bool | None,
    ) -> None:
        """Set a version's retention and legal hold. Raise ``NoSuchKey`` if it does not exist."""
        ...

    def list_versions(
        self,
        bucket_id: BucketId,
        prefix: str = "",
        after_key: str = "",
        after_version: VersionId | None = None,
        limit: int = 1000,
    ) -> list[VersionSummary]:
        """Versions and delete markers under ``prefix``, by key then newest first (version ids are
        time-ordered), strictly after (``after_key``, ``after_version``); ``after_version`` None
        skips every version of ``after_key``."""
        ...

    def iter_all_versions(self) -> Iterator[ObjectVersion]:
        """Every version with its manifest (refcount recomputation, verification)."""
        ...

    # --- chunks --------------------------------------------------------------------------------
    def get_chunk(self, domain_id: DomainId, chunk_id: ChunkId) -> ChunkRecord | None:
        """With ``placement`` filled (shard index -> disk id)."""
        ...

    def get_chunks(self, domain_id: DomainId, chunk_ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkRecord]:
        """Many chunks at once (a read of an object fetches its manifest's records in one go)."""
        ...

    def insert_chunk(self, rec: ChunkRecord) -> bool:
        """Insert a chunk row and its placement; ``False`` (and nothing written) if the id exists."""
        ...

    def incref(self, domain_id: DomainId, chunk_id: ChunkId, count: int) -> bool:
        """Add references (clears ``zero_since``); ``False`` if the chunk row does not exist."""
        ...

    def insert_chunks(self, recs: Sequence[ChunkRecord]) -> int:
        """``insert_chunk`` for many (a large object's new chunks) in a few statements: rows whose
        id exists are left as they are. Returns how many were inserted."""
        ...

    def incref_many(self, domain_id: DomainId, counts: Mapping[ChunkId, int]) -> list[ChunkId]:
        """``incref`` for many in a few statements. Returns the ids that have no row (nothing is
        added for them; the others get their references)."""
        ...

    def decref(self, domain_id: DomainId, chunk_id: ChunkId, count: int, at: datetime) -> int:
        """Remove references; sets ``zero_since = at`` when the count reaches 0. Returns the new count."""
        ...

    def touch_unreferenced(self, domain_id: DomainId, chunk_id: ChunkId, at: datetime) -> None:
        """If the chunk has no references, restart its grace period (``zero_since = at``)."""
        ...

    def set_placement(self, domain_id: DomainId, chunk_id: ChunkId, index: int, disk_id: DiskId) -> None: ...

    def set_refcount(self, domain_id: DomainId, chunk_id: ChunkId, count: int, at: datetime) -> None:
        """Overwrite the count (rebuild/verification); ``zero_since = at`` if 0, else NULL."""
        ...

    def list_chunks(self, after: tuple[DomainId, ChunkId] | None = None, limit: int = 1000) -> list[ChunkRecord]:
        """Chunks ordered by (domain_id, chunk_id), strictly after ``after``; placement filled."""
        ...

    def collectable_chunks(self, zero_before: datetime, limit: int = 1000) -> list[ChunkRecord]:
        """Chunks with refcount 0 and ``zero_since < zero_before``."""
        ...

    def delete_chunk_if_collectable(self, domain_id: DomainId, chunk_id: ChunkId, zero_before: datetime) -> bool:
        """Re-check refcount = 0 and age inside this transaction, then delete the row and its
        placement. ``True`` if deleted."""
        ...

    def shard_counts_by_disk(self) -> dict[DiskId, int]: ...
    def chunk_count(self) -> int: ...
    def stored_size_total(self) -> int:
        """Sum of sealed sizes of all chunks (before erasure overhead)."""
        ...

    # --- multipart uploads -------------------------------------------------------------------------
    def create_upload(self, rec: UploadRecord) -> None:
        """No-op when the upload id exists already (journal replay)."""
        ...

    def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    def list_uploads(
        self, bucket_id: BucketId, prefix: str = "", key_marker: str = "", upload_id_marker: str = "", limit: int = 1000
    ) -> list[UploadRecord]:
        """In-progress uploads ordered by (key, created_at, upload id), after the markers."""
        ...

    def delete_upload(self, upload_id: str) -> list[PartRecord]:
        """Remove the upload and its parts; return the parts (with chunks) whose references to release."""
        ...

    def all_upload_ids(self) -> list[str]: ...

    def put_part(self, part: PartRecord) -> PartRecord | None:
        """Store a part; return the part it replaced (same number) with its chunks, if any."""
        ...

    def get_part(self, upload_id: str, part_number: int) -> PartRecord | None: ...

    def list_parts(self, upload_id: str, after: int = 0, limit: int = 1000) -> list[PartRecord]:
        """Parts numbered above ``after``, without their chunks."""
        ...

    def get_parts(self, upload_id: str) -> list[PartRecord]:
        """Every part with its chunks, by part number."""
        ...

    # --- tags and bucket settings ----------------------------------------------------------------
    def set_version_tags(self, bucket_id: BucketId, key: str, version_id: VersionId, tags: dict[str, str]) -> None:
        """Raise ``NoSuchKey`` if the version does not exist."""
        ...

    def bucket_usage(self, bucket_id: BucketId) -> BucketUsage:
        """Counters kept exact by the database in every write transaction: one row read."""
        ...

    def bucket_stored_usage(self, bucket_id: BucketId) -> StoredUsage:
        """Computed by scanning the bucket's manifests (for ``dwh bucket info``, not hot paths)."""
        ...

    def get_bucket_setting(self, bucket_id: BucketId, name: str) -> str | None: ...
    def put_bucket_setting(self, bucket_id: BucketId, name: str, value: str) -> None: ...
    def delete_bucket_setting(self, bucket_id: BucketId, name: str) -> bool: ...

    # --- heal queue ----------------------------------------------------------------------------
    def enqueue_heal(self, item: HealItem) -> None:
        """Idempotent per (domain, chunk)."""
        ...

    def list_heal(self, limit: int = 1000) -> list[HealItem]: ...
    def remove_heal(self, domain_id: DomainId, chunk_id: ChunkId) -> None: ...

    # --- identity and access (sql_iam.py) -------------------------------------------------------
    # ``create_*`` allocates an id (live); ``put_*`` writes a whole row under a given id and is
    # idempotent (replay, and later changes of the row). Deletions take dependants with them.

    def create_tenant(self, name: str, created_at: datetime) -> TenantRecord:
        """Raise ``EntityAlreadyExists``. The record has no domain yet (``create_domain``)."""
        ...

    def put_tenant(self, rec: TenantRecord) -> None:
        """Raise ``EntityAlreadyExists`` if another id holds the name (``domain_id`` is ignored)."""
        ...

    def get_tenant(self, tenant_id: TenantId) -> TenantRecord | None: ...
    def get_tenant_by_name(self, name: str) -> TenantRecord | None: ...
    def list_tenants(self) -> list[TenantRecord]: ...

    def delete_tenant(self, tenant_id: TenantId) -> None:
        """With its groups, policies, attachments, quota, domains and domain secrets. Raise
        ``DeleteConflict`` while it owns buckets, users or uncollected chunks; no-op if absent."""
        ...

    def create_domain(self, tenant_id: TenantId) -> DomainId:
        """Raise ``NoSuchTenant``."""
        ...

    def insert_domain(self, domain_id: DomainId, tenant_id: TenantId) -> None:
        """Replay: a domain row with a given id; no-op if it exists."""
        ...

    def create_user(
        self,
        tenant_id: TenantId,
        name: str,
        kind: PrincipalKind,
        created_at: datetime,
        parent_user_id: UserId | None = None,
    ) -> UserRecord:
        """Raise ``EntityAlreadyExists`` (names are unique per tenant, service accounts included)."""
        ...

    def put_user(self, rec: UserRecord) -> None: ...
    def get_user(self, tenant_id: TenantId, name: str) -> UserRecord | None: ...
    def get_user_by_id(self, user_id: UserId) -> UserRecord | None: ...
    def list_users(self, tenant_id: TenantId) -> list[UserRecord]: ...

    def delete_user(self, user_id: UserId) -> None:
        """With its service accounts, access keys, memberships, attachments and quota; no-op if
        absent. Buckets it created stay."""
        ...

    def create_group(self, tenant_id: TenantId, name: str, created_at: datetime) -> GroupRecord: ...
    def put_group(self, rec: GroupRecord) -> None: ...
    def get_group(self, tenant_id: TenantId, name: str) -> GroupRecord | None: ...
    def get_group_by_id(self, group_id: GroupId) -> GroupRecord | None: ...
    def list_groups(self, tenant_id: TenantId) -> list[GroupRecord]: ...
    def delete_group(self, group_id: GroupId) -> None: ...
    def add_group_member(self, group_id: GroupId, user_id: UserId) -> None: ...
    def remove_group_member(self, group_id: GroupId, user_id: UserId) -> bool: ...
    def list_group_members(self, group_id: GroupId) -> list[UserRecord]: ...
    def list_user_groups(self, user_id: UserId) -> list[GroupRecord]: ...

    def put_policy(self, rec: PolicyRecord) -> None: ...
    def get_policy(self, tenant_id: TenantId, name: str) -> PolicyRecord | None: ...
    def list_policies(self, tenant_id: TenantId) -> list[PolicyRecord]: ...
    def policy_in_use(self, tenant_id: TenantId, name: str) -> bool: ...
    def delete_policy(self, tenant_id: TenantId, name: str) -> bool: ...
    def attach_policy(self, rec: AttachmentRecord) -> None: ...
    def detach_policy(self, target: AttachTarget, target_id: int, policy_name: str) -> bool: ...
    def list_attached(self, target: AttachTarget, target_id: int) -> list[str]: ...

    def put_access_key(self, rec: AccessKeyRecord) -> None:
        """Insert or replace; the stored ``last_used_at`` is kept."""
        ...

    def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None: ...
    def list_access_keys(self, tenant_id: TenantId, user_id: UserId | None = None) -> list[AccessKeyRecord]: ...
    def delete_access_key(self, access_key_id: str) -> bool: ...

    def record_key_use(self, used: Mapping[str, datetime]) -> None:
        """Move ``last_used_at`` forward (never back) for many keys at once."""
        ...

    def put_quota(self, rec: QuotaRecord) -> None: ...
    def get_quota(self, scope: QuotaScope, scope_id: int) -> QuotaRecord | None: ...
    def delete_quota(self, scope: QuotaScope, scope_id: int) -> bool: ...
    def tenant_usage(self, tenant_id: TenantId) -> UsageTotals: ...
    def user_usage(self, user_id: UserId) -> UsageTotals: ...

    # --- journal position ----------------------------------------------------------------------
    def get_journal_positions(self) -> dict[str, int]:
        """Applied byte offset per journal segment name (``<writer>-<segment>``)."""
        ...

    def set_journal_position(self, segment: str, offset: int) -> None: ...


class MetaRepo(Protocol):
    def transaction(self) -> AbstractContextManager[MetaTx]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, so writers serialise, readers do not block)."""
        ...

    def read(self) -> AbstractContextManager[MetaTx]:
        """A read-only snapshot that takes no write lock (reads run in parallel with writers)."""
        ...

    def read_object(self, bucket: str, key: str, chunk_head: int = 4) -> ObjectRead:
        """The hot read of GET/HEAD: bucket (by name, default tenant), current version with its
        whole manifest, and the records (with placement) of its first ``chunk_head`` chunks, in
        one snapshot. Raise ``NoSuchBucket`` or ``NoSuchKey``."""
        ...

    def chunk_refcount(self, domain_id: DomainId, chunk_id: ChunkId) -> int | None:
        """The chunk's reference count, ``None`` if no such chunk: one read, no snapshot needed."""
        ...

    @property
    def reads_are_local(self) -> bool:
        """Whether ``read_object`` answers from a local file, without a network round trip and
        without ever waiting for a writer (SQLite in WAL mode): a few tens of microseconds, cheap
        enough to run on an event loop instead of handing it to a thread and back."""
        ...

    def close(self) -> None: ...
