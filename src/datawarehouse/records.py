"""Frozen records passed between layers. Sizes are ``int`` bytes named ``*_size``; instants are
UTC ``datetime`` named ``*_at``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from datawarehouse.errors import InvalidStorageClass
from datawarehouse.ids import DEFAULT_TENANT, BucketId, ChunkId, DiskId, DomainId, GroupId, TenantId, UserId, VersionId

MAX_SHARDS = 32


@dataclass(frozen=True)
class StorageClass:
    """EC(k, m): k data shards and m parity shards; any k of the k+m reconstruct a chunk.

    replica-N = EC(1, N-1); RAID 1 = EC(1, 1); RAID 5 ~ EC(k, 1); RAID 6 ~ EC(k, 2);
    RAID-Z3 ~ EC(k, 3).
    """

    k: int
    m: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidStorageClass(f"storage class: data shards k must be >= 1 (got {self.k})")
        if self.m < 0:
            raise InvalidStorageClass(f"storage class: parity shards m must be >= 0 (got {self.m})")
        if self.m == 0 and self.k > 1:
            raise InvalidStorageClass(
                f"storage class EC({self.k},0): without parity use k=1 (replica-1); striping adds no safety"
            )
        if self.k + self.m > MAX_SHARDS:
            raise InvalidStorageClass(f"storage class: k+m must be <= {MAX_SHARDS} (got {self.k + self.m})")
        from datawarehouse.core.erasure import isa_l_vand_is_mds

        if self.k > 1 and not isa_l_vand_is_mds(self.k, self.m):
            raise InvalidStorageClass(
                f"storage class EC({self.k},{self.m}): the erasure code cannot recover every set of {self.k} "
                "shards at this size; use fewer data shards (m=4: k<=21, m=5: k<=5, m>=6: k<=4)"
            )

    @property
    def n(self) -> int:
        return self.k + self.m

    def check_fits(self, disk_count: int) -> None:
        """Refuse a class that cannot place k+m shards on distinct disks."""
        if self.n > disk_count:
            raise InvalidStorageClass(
                f"storage class EC({self.k},{self.m}) needs {self.n} distinct disks, only {disk_count} available"
            )
        if self.m >= disk_count and disk_count > 0 and self.m > 0:
            raise InvalidStorageClass(
                f"storage class EC({self.k},{self.m}): parity m={self.m} must be < number of disks ({disk_count})"
            )

    def __str__(self) -> str:
        return f"EC({self.k},{self.m})"


NAMED_CLASSES: dict[str, StorageClass] = {
    "replica-1": StorageClass(1, 0),
    "replica-2": StorageClass(1, 1),
    "replica-3": StorageClass(1, 2),
    "raid1": StorageClass(1, 1),
}


@functools.lru_cache(maxsize=256)
def parse_storage_class(text: str, disk_count: int) -> StorageClass:
    """Parse ``EC(k,m)``/``k+m``/``replica-N``/``raid1``/``raid5``/``raid6``/``raidz3``.

    The RAID names take as many data shards as the disk set allows (at least 1).
    """
    t = text.strip().lower().replace(" ", "")
    if t in NAMED_CLASSES:
        return NAMED_CLASSES[t]
    parity = {"raid5": 1, "raid6": 2, "raidz3": 3, "raid-z3": 3}.get(t)
    if parity is not None:
        return StorageClass(max(1, disk_count - parity), parity)
    if t.startswith("ec(") and t.endswith(")"):
        t = t[3:-1].replace(",", "+")
    if t.startswith("replica-") and t[8:].isdigit():
        return StorageClass(1, int(t[8:]) - 1)
    parts = t.split("+")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return StorageClass(int(parts[0]), int(parts[1]))
    raise InvalidStorageClass(
        f"storage class {text!r}: expected EC(k,m), k+m, replica-N, raid1, raid5, raid6 or raidz3"
    )


@functools.lru_cache(maxsize=64)
def default_storage_class(disk_count: int) -> StorageClass:
    """The default EC(k, m) for a number of disks (1: 1+0, 2: 1+1, 3: 2+1, 4-5: 2+2, 6-11: 4+2, 12+: 8+4)."""
    if disk_count < 1:
        raise InvalidStorageClass("at least one disk is needed")
    if disk_count == 1:
        return StorageClass(1, 0)
    if disk_count == 2:
        return StorageClass(1, 1)
    if disk_count == 3:
        return StorageClass(2, 1)
    if disk_count <= 5:
        return StorageClass(2, 2)
    if disk_count <= 11:
        return StorageClass(4, 2)
    return StorageClass(8, 4)


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC bounds. Stored with every object version so reads and re-chunking never depend on config."""

    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        from datawarehouse.errors import InvalidInput

        # The bounds pyfastcdc supports.
        ok = (
            64 <= self.min_size <= 1024 * 1024
            and 256 <= self.avg_size <= 4 * 1024 * 1024
            and 1024 <= self.max_size <= 16 * 1024 * 1024
            and self.min_size <= self.avg_size <= self.max_size
        )
        if not ok:
            raise InvalidInput(
                "chunker: need min_size 64 B..1 MiB <= avg_size 256 B..4 MiB <= max_size 1 KiB..16 MiB "
                f"(got {self.min_size}/{self.avg_size}/{self.max_size})"
            )


class DiskState(StrEnum):
    ACTIVE = "active"  # receives new shards and serves reads
    DRAINING = "draining"  # serves reads; shards are being moved away
    REMOVED = "removed"  # no longer part of the set


@dataclass(frozen=True)
class DiskRecord:
    disk_id: DiskId
    path: str
    weight: float
    state: DiskState
    added_at: datetime


@dataclass(frozen=True)
class ChunkRecord:
    """A stored chunk: its identity, the generation of its shards and how it was erasure-coded."""

    domain_id: DomainId
    chunk_id: ChunkId
    generation: int
    plain_size: int
    sealed_size: int
    k: int
    m: int
    refcount: int
    created_at: datetime
    zero_since: datetime | None = None
    placement: tuple[DiskId, ...] = ()  # disk of shard i at index i


@dataclass(frozen=True)
class ChunkRef:
    """One entry of a manifest: the chunk covering ``[offset, offset + plain_size)`` of the object."""

    chunk_id: ChunkId
    offset: int
    plain_size: int


@dataclass(frozen=True)
class BucketRecord:
    bucket_id: BucketId
    domain_id: DomainId
    name: str  # unique within its tenant (ids.split_bucket_name for the qualified form)
    created_at: datetime
    storage_class: StorageClass | None = None  # None: the data directory's default
    owner_user_id: UserId | None = None  # the IAM user that created it (None: root or unknown)
    tenant_id: TenantId = DEFAULT_TENANT


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object. Either ``inline_data`` (a sealed frame, small objects) or a
    manifest of chunks (``chunks``) holds its bytes."""

    bucket_id: BucketId
    key: str
    version_id: VersionId
    size: int
    etag: str
    created_at: datetime
    storage_class: StorageClass
    chunker: ChunkerParams
    content_type: str = "application/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)
    inline_data: bytes | None = None
    chunks: tuple[ChunkRef, ...] = ()
    is_delete_marker: bool = False
    # Headers stored and returned as given (Content-Encoding, Cache-Control, ..., x-amz-checksum-*).
    system_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # S3's "null" version: what an unversioned or versioning-suspended bucket writes (at most one
    # per key). Internally it still has a unique ``version_id``; clients see the id ``null``.
    null_version: bool = True
    # Object lock (WORM): retention mode (GOVERNANCE / COMPLIANCE) until an instant, legal hold.
    lock_mode: str | None = None
    lock_until: datetime | None = None
    legal_hold: bool | None = None  # None: never set (S3 tells that from OFF)

    @property
    def s3_version_id(self) -> str:
        return "null" if self.null_version else self.version_id


@dataclass(frozen=True)
class UploadRecord:
    """A multipart upload in progress: what the completed object will carry."""

    upload_id: str
    bucket_id: BucketId
    key: str
    created_at: datetime
    storage_class: StorageClass
    chunker: ChunkerParams
    content_type: str = "application/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)
    system_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartRecord:
    """One uploaded part: its bytes are chunks (referenced while the upload is open)."""

    upload_id: str
    part_number: int
    size: int
    etag: str
    created_at: datetime
    chunks: tuple[ChunkRef, ...] = ()
    checksums: dict[str, str] = field(default_factory=dict)


# --- identity and access (service/iam.py) ------------------------------------------------------


class PrincipalKind(StrEnum):
    ROOT = "root"  # the bootstrap principal of the default tenant (keys/root-credentials.json)
    USER = "user"
    SERVICE = "service"  # a service account: bound to a parent user, narrowed by a session policy


class KeyStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class QuotaScope(StrEnum):
    TENANT = "tenant"
    USER = "user"


class AttachTarget(StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True)
class TenantRecord:
    """A tenant. ``domain_id``: its dedup/encryption domain (None only while being created)."""

    tenant_id: TenantId
    name: str
    created_at: datetime
    disabled: bool = False
    domain_id: DomainId | None = None


@dataclass(frozen=True)
class UserRecord:
    """An IAM user, or a service account (``kind`` service, ``parent_user_id`` set)."""

    user_id: UserId
    tenant_id: TenantId
    name: str
    kind: PrincipalKind
    created_at: datetime
    disabled: bool = False
    parent_user_id: UserId | None = None


@dataclass(frozen=True)
class GroupRecord:
    group_id: GroupId
    tenant_id: TenantId
    name: str
    created_at: datetime


@dataclass(frozen=True)
class PolicyRecord:
    """A stored policy document (validated JSON text), unique by name within its tenant."""

    tenant_id: TenantId
    name: str
    document: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttachmentRecord:
    """A policy attached, by name, to a user or a group (the name may be a built-in policy)."""

    tenant_id: TenantId
    target: AttachTarget
    target_id: int
    policy_name: str


@dataclass(frozen=True)
class AccessKeyRecord:
    """An access key as stored: the secret only as AES-256-GCM ciphertext under a key derived
    from master key ``master_key_id`` (``repr`` shows neither). ``last_used_at`` is best-effort."""

    access_key_id: str
    tenant_id: TenantId
    user_id: UserId
    secret_ciphertext: bytes = field(repr=False)
    master_key_id: str
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    session_policy: str | None = None
    description: str = ""


@dataclass(frozen=True)
class QuotaRecord:
    """Hard limits of a tenant or a user; ``None``: unlimited."""

    scope: QuotaScope
    scope_id: int
    max_bytes: int | None = None
    max_objects: int | None = None
    max_buckets: int | None = None


@dataclass(frozen=True)
class UsageTotals:
    """What a tenant's (or a user's) buckets hold: buckets, stored versions that are not delete
    markers, their logical bytes plus unfinished multipart parts' bytes."""

    buckets: int = 0
    objects: int = 0
    bytes: int = 0
