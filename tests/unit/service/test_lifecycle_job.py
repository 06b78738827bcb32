"""The lifecycle job on a real data directory, with the time given (no sleeping): current-version
expiration (versioned and not), noncurrent expiration, expired delete markers, incomplete uploads,
prefix scoping, and the report's counts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from datawarehouse.config import EngineConfig
from datawarehouse.errors import NoSuchKey
from datawarehouse.service import multipart as mp
from datawarehouse.service import versioning
from datawarehouse.service.lifecycle import SETTING, LifecycleFilter, LifecycleRule, rules_to_json
from datawarehouse.service.lifecycle_job import run
from datawarehouse.service.multipart import Multipart
from datawarehouse.service.warehouse import OpenOptions, Warehouse

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024
)


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    monkeypatch.setattr(mp, "MIN_PART_SIZE", 50 * 1024)
    w = Warehouse.init(tmp_path / "dwh", None, OpenOptions(config=SMALL))
    try:
        yield w
    finally:
        w.close()


def rules(wh: Warehouse, bucket: str, *items: LifecycleRule) -> None:
    wh.set_bucket_setting(bucket, SETTING, rules_to_json(items))


def keys_and_versions(wh: Warehouse, bucket: str) -> list[tuple[str, str, bool]]:
    page = versioning.list_versions(wh, bucket, "", "", "", "", 1000)
    return [(e.key, e.s3_version_id, e.is_delete_marker) for e in page.entries]


def test_unversioned_expiration_deletes_only_due_objects_under_the_prefix(wh: Warehouse) -> None:
    wh.create_bucket("plain")
    wh.put_object("plain", "logs/a", b"old log")
    wh.put_object("plain", "keep/b", b"not under the prefix")
    rules(wh, "plain", LifecycleRule("logs", True, LifecycleFilter("logs/"), expiration_days=7))
    assert run(wh, wh.engine.now() + timedelta(days=3)).total_actions() == 0
    report = run(wh, wh.engine.now() + timedelta(days=9))
    assert (report.buckets, report.expired_current, report.keys) == (1, 1, 2)
    with pytest.raises(NoSuchKey):
        wh.head_object("plain", "logs/a")
    assert wh.head_object("plain", "keep/b").size == len(b"not under the prefix")


def test_versioned_bucket_gets_markers_then_loses_noncurrent_versions_and_markers(wh: Warehouse) -> None:
    wh.create_bucket("ver")
    versioning.set_versioning(wh, "ver", "Enabled")
    for i in range(3):
        wh.put_object("ver", "doc", os.urandom(20_000 + i))
    rules(
        wh,
        "ver",
        LifecycleRule("expire", True, expiration_days=30),
        LifecycleRule("old", True, noncurrent_days=1, newer_noncurrent_versions=1),
        LifecycleRule("markers", True, expired_object_delete_marker=True),
    )
    now = wh.engine.now()
    report = run(wh, now + timedelta(days=3))  # two noncurrent: the newest kept, the oldest deleted
    assert (report.versions_deleted, report.expired_current) == (1, 0)
    assert sum(1 for _, _, marker in keys_and_versions(wh, "ver") if not marker) == 2

    report = run(wh, now + timedelta(days=40))  # current expires: a delete marker on top
    assert report.expired_current == 1
    entries = keys_and_versions(wh, "ver")
    assert entries[0][2] is True and len(entries) == 3
    with pytest.raises(NoSuchKey):
        wh.head_object("ver", "doc")

    report = run(wh, now + timedelta(days=80))  # the older noncurrent version goes, the newest stays
    assert report.versions_deleted == 1 and report.markers_removed == 0
    assert [marker for _, _, marker in keys_and_versions(wh, "ver")] == [True, False]
    assert run(wh, now + timedelta(days=80, hours=1)).total_actions() == 0  # converged


def test_the_last_delete_marker_is_removed(wh: Warehouse) -> None:
    wh.create_bucket("mks")
    versioning.set_versioning(wh, "mks", "Enabled")
    wh.put_object("mks", "k", b"v")
    wh.delete_object("mks", "k")  # marker over one version
    rules(
        wh,
        "mks",
        LifecycleRule("nc", True, noncurrent_days=1),
        LifecycleRule("m", True, expired_object_delete_marker=True),
    )
    first = run(wh, wh.engine.now() + timedelta(days=5))
    assert first.versions_deleted == 1 and first.markers_removed == 0  # the marker still hid a version
    second = run(wh, wh.engine.now() + timedelta(days=5))
    assert second.markers_removed == 1
    assert keys_and_versions(wh, "mks") == []


def test_incomplete_uploads_are_aborted(wh: Warehouse) -> None:
    wh.create_bucket("mpu")
    m = Multipart(wh)
    up = m.create("mpu", "tmp/big")
    part = m.open_part("mpu", "tmp/big", up.upload_id, 1)
    part.write(os.urandom(60_000))
    part.finish()
    other = m.create("mpu", "data/keep")
    rules(wh, "mpu", LifecycleRule("abort", True, LifecycleFilter("tmp/"), abort_multipart_days=2))
    assert run(wh, wh.engine.now() + timedelta(days=1)).uploads_aborted == 0
    report = run(wh, wh.engine.now() + timedelta(days=4))
    assert report.uploads_aborted == 1
    assert [u.upload_id for u in m.list_uploads("mpu", "", "", "", 10)] == [other.upload_id]
    assert wh.bucket_usage("mpu")[0].upload_parts == 0


def test_buckets_without_rules_are_left_alone(wh: Warehouse) -> None:
    wh.create_bucket("none")
    wh.put_object("none", "x", b"1")
    report = run(wh, wh.engine.now() + timedelta(days=10_000))
    assert report.buckets == 0 and report.total_actions() == 0
    assert wh.head_object("none", "x").size == 1
