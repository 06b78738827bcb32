"""Bucket and key name rules (the S3 ones, so names valid here are valid anywhere)."""

from __future__ import annotations

import ipaddress
import re

from datawarehouse.errors import InvalidBucketName, InvalidKey

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024
# Snapshot views are buckets named ``<bucket>--snap--<name>`` (service/snapshots.py): reserved.
SNAPSHOT_MARK = "--snap--"
# System buckets (the audit log's ``dwh--audit``, service/audit/store.py): names starting with
# ``dwh--`` or containing ``--audit`` are reserved, created only by the system, never listed.
SYSTEM_PREFIX = "dwh--"
AUDIT_MARK = "--audit"
# Names the server itself answers under in path-style addressing: ``/admin/v1/...`` is the admin
# API (api/admin), so a bucket called ``admin`` could never be reached path-style.
RESERVED_BUCKETS = frozenset({"admin"})


def is_system_bucket(name: str) -> bool:
    """A bucket the system keeps for itself (hidden from ListBuckets, not creatable by users)."""
    return name.startswith(SYSTEM_PREFIX) or AUDIT_MARK in name


def check_bucket_name(name: str, *, allow_snapshot: bool = False, allow_system: bool = False) -> str:
    """3-63 characters of lowercase letters, digits, '.' and '-'; no '..', not an IP address;
    no ``--snap--`` (reserved for snapshot views) unless ``allow_snapshot``; no ``dwh--`` prefix
    or ``--audit`` (reserved for system buckets) unless ``allow_system``; never ``admin`` (the
    admin API's path)."""
    if not _BUCKET.fullmatch(name) or ".." in name or ".-" in name or "-." in name:
        raise InvalidBucketName(
            "bucket name: 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit"
        )
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise InvalidBucketName("bucket name: must not look like an IP address")
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        raise InvalidBucketName("bucket name: reserved prefix or suffix")
    if SNAPSHOT_MARK in name and not allow_snapshot:
        raise InvalidBucketName(f"bucket name: {SNAPSHOT_MARK!r} is reserved for snapshots")
    if name in RESERVED_BUCKETS:
        raise InvalidBucketName(f"bucket name: {name!r} is reserved (the admin API answers at /{name}/v1)")
    if is_system_bucket(name) and not allow_system:
        raise InvalidBucketName(f"bucket name: {SYSTEM_PREFIX!r} and {AUDIT_MARK!r} are reserved for system buckets")
    return name


def check_key(key: str) -> str:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKey("object key: must be valid UTF-8") from exc
    if size == 0 or size > MAX_KEY_BYTES:
        raise InvalidKey(f"object key: must be 1..{MAX_KEY_BYTES} bytes of UTF-8")
    return key
