"""A follower Warehouse (a read worker's view, ``Warehouse.open(follower=True)``) beside the
process that writes: it reads what was committed, sees changes to buckets and IAM once
``refresh_if_changed`` is called, and refuses to write without touching any file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from datawarehouse.errors import CredentialsRefused, MetadataError, NoSuchBucket, NoSuchKey
from datawarehouse.service.warehouse import Warehouse


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "lock":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def pair(tmp_path: Path):
    primary = Warehouse.init(tmp_path / "data")
    follower = Warehouse.open(tmp_path / "data", follower=True)
    try:
        yield primary, follower
    finally:
        follower.close()
        primary.close()


def test_reads_what_the_primary_commits(pair: tuple[Warehouse, Warehouse]) -> None:
    primary, follower = pair
    primary.create_bucket("photos")
    small, large = os.urandom(1000), os.urandom(3 * 1024 * 1024 + 17)
    primary.put_object("photos", "small", small)
    primary.put_object("photos", "large", large)
    follower.refresh_if_changed()
    assert follower.get_object_bytes("photos", "small") == small
    assert follower.get_object_bytes("photos", "large") == large
    assert follower.get_object_bytes("photos", "large", 1000, 2_000_000) == large[1000:2_000_000]
    # written after the follower loaded its key directories: found on the miss
    later = os.urandom(2 * 1024 * 1024)
    primary.put_object("photos", "later", later)
    assert follower.get_object_bytes("photos", "later") == later
    primary.delete_object("photos", "small")
    with pytest.raises(NoSuchKey):
        follower.get_object_bytes("photos", "small")


def test_bucket_and_iam_caches_follow_changes(pair: tuple[Warehouse, Warehouse]) -> None:
    primary, follower = pair
    primary.create_bucket("cached")
    follower.refresh_if_changed()  # the bucket's creation
    rec = follower.bucket_for_write("cached")  # cached in the follower
    assert follower.bucket_for_write("cached") is rec
    primary.delete_bucket("cached")
    assert follower.refresh_if_changed()
    with pytest.raises(NoSuchBucket):
        follower.bucket_for_write("cached")
    assert not follower.refresh_if_changed()  # nothing committed since

    primary.iam.create_tenant("acme")
    primary.iam.create_user("acme", "alice")
    key = primary.iam.create_access_key("acme", "alice")
    follower.refresh_if_changed()
    assert follower.iam.resolve_access_key(key.access_key_id) is not None  # now cached
    primary.iam.disable_access_key("acme", key.access_key_id)
    assert follower.iam.resolve_access_key(key.access_key_id) is not None  # stale until refreshed
    assert follower.refresh_if_changed()
    with pytest.raises(CredentialsRefused):
        follower.iam.resolve_access_key(key.access_key_id)


def test_new_tenant_domain_is_learnt(pair: tuple[Warehouse, Warehouse]) -> None:
    primary, follower = pair
    primary.iam.create_tenant("beta")  # a new dedup/encryption domain, made after the follower opened
    primary.create_bucket("beta:data")
    body = os.urandom(300_000)
    primary.put_object("beta:data", "k", body)
    follower.refresh_if_changed()
    assert follower.get_object_bytes("beta:data", "k") == body


def test_follower_never_writes(pair: tuple[Warehouse, Warehouse], tmp_path: Path) -> None:
    primary, follower = pair
    primary.create_bucket("rox")
    primary.put_object("rox", "k", os.urandom(200_000))
    before = _tree_digest(tmp_path / "data" / "disks")
    with pytest.raises(MetadataError):
        follower.create_bucket("other")
    with pytest.raises(MetadataError):
        follower.put_object("rox", "k2", b"x" * 100)
    assert follower.get_object_bytes("rox", "k")
    assert _tree_digest(tmp_path / "data" / "disks") == before
    assert [b.name for b in primary.list_buckets()] == ["rox"]
