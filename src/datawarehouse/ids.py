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


def new_disk_id() -> DiskId:
    return DiskId(secrets.token_hex(16))


def new_datadir_id() -> DataDirId:
    return DataDirId(secrets.token_hex(16))


def new_generation() -> int:
    """A random 63-bit generation that tells apart two writes of the same chunk."""
    return secrets.randbits(63)
