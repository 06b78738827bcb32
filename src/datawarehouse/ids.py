"""Identifier types. Ids are ``NewType`` over plain values so that mixing them up is a type error."""

from __future__ import annotations

import secrets
from typing import NewType

ChunkId = NewType("ChunkId", bytes)  # 32-byte keyed BLAKE3 of a chunk's plaintext
DiskId = NewType("DiskId", str)  # 32 hex chars, written in the disk's identity file
DomainId = NewType("DomainId", int)  # dedup/encryption domain (one per tenant)
BucketId = NewType("BucketId", int)
VersionId = NewType("VersionId", str)
UploadId = NewType("UploadId", str)
DataDirId = NewType("DataDirId", str)
TenantId = NewType("TenantId", int)  # owns users, buckets and a dedup/encryption domain
UserId = NewType("UserId", int)  # an IAM user or service account of one tenant
GroupId = NewType("GroupId", int)


DEFAULT_DOMAIN = DomainId(1)
DEFAULT_TENANT = TenantId(1)
DEFAULT_TENANT_NAME = "default"
TENANT_SEPARATOR = ":"  # "tenant:bucket" names another tenant's bucket (bucket names never hold ':')


def split_bucket_name(name: str) -> tuple[str, str]:
    """``tenant:bucket`` -> (tenant, bucket); a bare name is a bucket of the default tenant.

    Buckets are unique per tenant, so every layer above the metadata names a bucket by this
    qualified form (the convention of Ceph RGW): the S3 layer qualifies a request's bucket with
    the caller's tenant, and ``tenant:bucket`` in a request reaches another tenant's bucket
    (where a bucket policy allows it, or for anonymous public reads).
    """
    tenant, sep, bucket = name.rpartition(TENANT_SEPARATOR)
    return (tenant, bucket) if sep else (DEFAULT_TENANT_NAME, name)


def qualify_bucket_name(tenant: str, bucket: str) -> str:
    """The inverse of ``split_bucket_name``: the default tenant's buckets keep bare names."""
    return bucket if tenant == DEFAULT_TENANT_NAME else f"{tenant}{TENANT_SEPARATOR}{bucket}"


def new_disk_id() -> DiskId:
    return DiskId(secrets.token_hex(16))


def new_datadir_id() -> DataDirId:
    return DataDirId(secrets.token_hex(16))


def new_generation() -> int:
    """A random 63-bit generation that tells apart two writes of the same chunk."""
    return secrets.randbits(63)
