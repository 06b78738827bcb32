"""A follower Warehouse (a read worker's view, ``Warehouse.open(follower=True)``) beside the
process that writes: it reads what was committed, sees changes to buckets and IAM once
``refresh_if_changed`` is called, and refuses to write without touching any file."""

from __future__ import annotations

import copy
import hashlib
import os
from concurrent.futures import Future
from pathlib import Path

import pytest

from datawarehouse.engine.changes import ChangeCounter
from datawarehouse.errors import (
    CorruptFrame,
    CredentialsRefused,
    DwhError,
    MetadataError,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
)
from datawarehouse.service import catalog
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


# --- small writes from a follower, committed by the writer (``dwh serve --workers``) ------------


@pytest.fixture
def writing_pair(pair: tuple[Warehouse, Warehouse], tmp_path: Path):
    """The pair as a server wires it: the follower commits through the writer
    (``commit_forwarded_put``, here called directly, not over the socket), and both share the
    count of configuration changes."""
    primary, follower = pair
    counter_path = tmp_path / "changes"
    primary.engine.share_changes(ChangeCounter.create(counter_path))
    follower.engine.share_changes(ChangeCounter(counter_path))
    follower.remote_commit = primary.commit_forwarded_put
    return primary, follower


def test_follower_writes_inline_objects_through_the_writer(writing_pair: tuple[Warehouse, Warehouse]) -> None:
    primary, follower = writing_pair
    primary.create_bucket("small")
    follower.refresh_if_changed()
    body = os.urandom(3000)
    v = follower.put_object("small", "k", body, md5_etag=True)
    assert v.etag == hashlib.md5(body).hexdigest() and v.null_version  # decided by the writer
    assert primary.get_object_bytes("small", "k") == body
    assert follower.get_object_bytes("small", "k") == body
    # A condition is checked in the writer's commit.
    upload = follower.open_upload("small", "k")
    upload.write(b"again")
    with pytest.raises(PreconditionFailed):
        upload.finish(conditions={"if-none-match": "*"})
    # Versioning set on the writer is decided there, whatever the follower's cache holds.
    primary.set_bucket_setting("small", catalog.VERSIONING_SETTING, catalog.VERSIONING_ENABLED)
    v2 = follower.put_object("small", "k", b"versioned")
    assert not v2.null_version and v2.version_id != "null"
    assert primary.get_object_bytes("small", "k") == b"versioned"
    # More than the inline size cannot be written here: refused, nothing stored.
    with pytest.raises(DwhError):
        follower.put_object("small", "big", os.urandom(follower.inline_max_size + 1))
    with pytest.raises(NoSuchKey):
        primary.head_object("small", "big")


def test_writer_checks_what_a_follower_asks_it_to_commit(writing_pair: tuple[Warehouse, Warehouse]) -> None:
    primary, follower = writing_pair
    primary.create_bucket("checked")
    follower.refresh_if_changed()
    asked: list[tuple[str, dict[str, object]]] = []
    follower.remote_commit = lambda bucket, doc: (asked.append((bucket, copy.deepcopy(doc))), Future())[1]
    follower.open_upload("checked", "k").finish_later()
    ((bucket, doc),) = asked
    for bad in (
        {**doc, "op": "bucket.delete"},
        {**doc, "null_decided": True},  # the writer decides, never the follower
        {**doc, "bypass_governance": True},
        {**doc, "new_chunks": [{"chunk_id": "00" * 32}]},
        {**doc, "replace": False},
        {**doc, "version": {**doc["version"], "inline": None}},  # type: ignore[dict-item]
    ):
        with pytest.raises(CorruptFrame):
            primary.commit_forwarded_put(bucket, copy.deepcopy(bad))
    # The bucket was deleted and made again meanwhile: not the one the follower wrote for.
    primary.delete_bucket("checked")
    primary.create_bucket("checked")
    with pytest.raises(NoSuchBucket):
        primary.commit_forwarded_put(bucket, copy.deepcopy(doc))


def test_only_configuration_commits_move_the_change_count(writing_pair: tuple[Warehouse, Warehouse]) -> None:
    """Object writes leave the follower's caches alone; bucket, setting and IAM changes drop
    them, and the count moves before the change's caller is answered."""
    primary, follower = writing_pair
    primary.create_bucket("count")
    assert follower.refresh_if_changed()
    assert not follower.refresh_if_changed()
    primary.put_object("count", "a", b"object")
    primary.put_object("count", "b", os.urandom(200_000))
    primary.delete_object("count", "a")
    follower.put_object("count", "c", b"through the writer")
    assert not follower.refresh_if_changed()
    counter = primary.engine.changes
    assert counter is not None
    seen_when_answered: list[int] = []
    before = counter.value()
    rec = primary.get_bucket("count")
    doc = {"op": "bucket.setting", "bucket_id": rec.bucket_id, "name": "note", "value": "x"}
    pending = primary.engine.commit_later(
        lambda tx: catalog.apply_bucket_setting(tx, doc, replay=False), rec.domain_id, doc
    )
    pending.add_done_callback(lambda _: seen_when_answered.append(counter.value()))
    pending.result()
    assert seen_when_answered == [before + 1]
    assert follower.refresh_if_changed()
    primary.iam.create_tenant("acme")
    assert follower.refresh_if_changed()
