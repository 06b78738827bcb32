"""Object lock (WORM) at the service level, time from a ManualClock (no sleeping): COMPLIANCE
refuses everyone until it expires, GOVERNANCE yields only to the bypass, legal hold blocks until
removed, default retention; and every path that could remove data respects locks: GC after the
grace period, scrub with repair, rebuild-meta (the lock state is in the journal), ``dwh rm``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dwh_testkit import disk_dirs, init_wh, open_wh

from datawarehouse.clock import ManualClock
from datawarehouse.engine import gc
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.engine.scrub import scrub
from datawarehouse.errors import InvalidBucketState, InvalidInput, ObjectLocked
from datawarehouse.service import catalog, objectlock, versioning
from datawarehouse.service.objectlock import COMPLIANCE, GOVERNANCE, DefaultRetention, LockRequest

B = "worm"
DAY = timedelta(days=1)


def put_locked(wh, key: str, data: bytes, mode: str, until: datetime, hold: bool | None = None):  # type: ignore[no-untyped-def]
    return wh.put_object(B, key, data, lock=LockRequest(mode, until, hold))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "dwh"


def test_compliance_refuses_everyone_until_it_expires(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        assert versioning.get_versioning(wh, B) == "Enabled"
        with pytest.raises(InvalidBucketState):
            versioning.set_versioning(wh, B, "Suspended")
        v = put_locked(wh, "k", b"kept" * 30_000, COMPLIANCE, clock.now() + 2 * DAY)
        assert v.lock_mode == COMPLIANCE and v.lock_until == clock.now() + 2 * DAY
        for bypass in (False, True):
            with pytest.raises(ObjectLocked):
                wh.delete_object(B, "k", v.version_id, bypass_governance=bypass)
        with pytest.raises(ObjectLocked):  # shortening
            objectlock.put_retention(wh, B, "k", COMPLIANCE, clock.now() + DAY, bypass_governance=True)
        with pytest.raises(ObjectLocked):  # weakening
            objectlock.put_retention(wh, B, "k", GOVERNANCE, clock.now() + 3 * DAY, bypass_governance=True)
        with pytest.raises(ObjectLocked):  # removing
            objectlock.put_retention(wh, B, "k", None, None, bypass_governance=True)
        objectlock.put_retention(wh, B, "k", COMPLIANCE, clock.now() + 3 * DAY)  # extending is allowed
        # a DELETE without a version id only adds a delete marker: allowed, the version stays
        marker = wh.delete_object(B, "k")
        assert marker.delete_marker
        assert wh.open_object(B, "k", version_id=v.version_id).version.lock_until == clock.now() + 3 * DAY
        clock.advance(3 * DAY + timedelta(seconds=1))
        assert wh.delete_object(B, "k", v.version_id).removed


def test_governance_yields_only_to_the_bypass(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        v = put_locked(wh, "g", b"gov", GOVERNANCE, clock.now() + DAY)
        with pytest.raises(ObjectLocked):
            wh.delete_object(B, "g", v.version_id)
        with pytest.raises(ObjectLocked):
            objectlock.put_retention(wh, B, "g", GOVERNANCE, clock.now() + timedelta(hours=1))
        objectlock.put_retention(wh, B, "g", GOVERNANCE, clock.now() + timedelta(hours=1), bypass_governance=True)
        assert wh.delete_object(B, "g", v.version_id, bypass_governance=True).removed


def test_legal_hold_blocks_deletion_until_removed(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        v = wh.put_object(B, "h", b"held", lock=LockRequest(legal_hold=True))
        assert v.legal_hold and v.lock_mode is None
        with pytest.raises(ObjectLocked):
            wh.delete_object(B, "h", v.version_id, bypass_governance=True)
        objectlock.put_legal_hold(wh, B, "h", False)
        assert wh.delete_object(B, "h", v.version_id).removed


def test_default_retention_and_bad_requests(root: Path, clock: ManualClock) -> None:
    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        objectlock.put_config(wh, B, DefaultRetention(GOVERNANCE, days=5))
        v = wh.put_object(B, "d", b"default")
        assert v.lock_mode == GOVERNANCE and v.lock_until == v.created_at + 5 * DAY
        objectlock.put_config(wh, B, DefaultRetention(COMPLIANCE, years=1))
        assert wh.put_object(B, "y", b"y").lock_until == clock.now() + 365 * DAY
        with pytest.raises(InvalidInput):
            DefaultRetention(GOVERNANCE, days=0)
        with pytest.raises(InvalidInput):
            DefaultRetention(GOVERNANCE, days=1, years=1)
        with pytest.raises(InvalidInput):  # the past
            put_locked(wh, "p", b"p", COMPLIANCE, clock.now() - DAY)
        wh.create_bucket("plain")
        with pytest.raises(InvalidBucketState):
            wh.put_object("plain", "k", b"x", lock=LockRequest(COMPLIANCE, clock.now() + DAY))
        with pytest.raises(InvalidBucketState):  # lock needs versioning Enabled
            objectlock.put_config(wh, "plain", None)
        versioning.set_versioning(wh, "plain", "Enabled")
        objectlock.put_config(wh, "plain", None)  # now allowed, and permanent
        with pytest.raises(InvalidBucketState):
            versioning.set_versioning(wh, "plain", "Suspended")


def test_locked_version_survives_gc_scrub_rebuild_and_the_cli(root: Path, clock: ManualClock) -> None:
    data = os.urandom(300_000)
    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        v = put_locked(wh, "big", data, COMPLIANCE, clock.now() + 30 * DAY, hold=True)
        wh.delete_object(B, "big")  # marker over it
        # GC well after its grace period: nothing of a locked version is collected
        clock.advance(timedelta(seconds=wh.engine.config.gc_grace_seconds) + DAY)
        gc.collect(wh.engine)
        assert b"".join(wh.read_object(wh.open_object(B, "big", version_id=v.version_id))) == data
    # scrub with repair after losing a disk: the version is healed, not dropped
    shutil.rmtree(disk_dirs(root)[0])
    disk_dirs(root)[0].mkdir()
    with open_wh(root, clock) as wh:
        scrub(wh.engine, repair=True)
        assert b"".join(wh.read_object(wh.open_object(B, "big", version_id=v.version_id))) == data
    # rebuild-meta: the lock state comes back from the journal
    for name in ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"):
        (root / "meta" / name).unlink(missing_ok=True)
    rebuild_meta(root, catalog.replay)
    with open_wh(root, clock) as wh:
        again = wh.open_object(B, "big", version_id=v.version_id).version
        assert (again.lock_mode, again.lock_until, again.legal_hold) == (COMPLIANCE, v.lock_until, True)
        assert objectlock.lock_enabled(wh, B) and versioning.get_versioning(wh, B) == "Enabled"
        with pytest.raises(ObjectLocked):
            wh.delete_object(B, "big", v.version_id, bypass_governance=True)
    # the CLI is refused like any client (exit code 5), and the version stays
    dwh = Path(sys.executable).parent / "dwh"
    if dwh.exists():
        out = subprocess.run(
            [str(dwh), "rm", f"{B}/big", "--version-id", v.version_id, "--data-dir", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 5, out.stderr
        assert "locked" in out.stderr or "legal hold" in out.stderr
    with open_wh(root, clock) as wh:
        assert b"".join(wh.read_object(wh.open_object(B, "big", version_id=v.version_id))) == data


def test_multipart_upload_takes_its_lock_and_rebuild_keeps_it(root: Path, clock: ManualClock) -> None:
    from datawarehouse.service.multipart import CompletedPart, Multipart

    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        mp = Multipart(wh)
        upload = mp.create(B, "mp", lock=LockRequest(GOVERNANCE, clock.now() + DAY, True))
        part = mp.open_part(B, "mp", upload.upload_id, 1)
        part.write(b"multipart bytes")
        record = part.finish({})
        v = mp.complete(B, "mp", upload.upload_id, [CompletedPart(1, record.etag)])
        assert (v.lock_mode, v.lock_until, v.legal_hold) == (GOVERNANCE, clock.now() + DAY, True)
        assert not any(k.startswith("x-dwh-upload-") for k in v.system_meta)
        plain = mp.create(B, "plain")  # no lock asked: the bucket has no default retention
        part = mp.open_part(B, "plain", plain.upload_id, 1)
        part.write(b"p")
        unlocked = mp.complete(B, "plain", plain.upload_id, [CompletedPart(1, part.finish({}).etag)])
        assert (unlocked.lock_mode, unlocked.legal_hold) == (None, None)  # never set
    for name in ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"):
        (root / "meta" / name).unlink(missing_ok=True)
    rebuild_meta(root, catalog.replay)
    with open_wh(root, clock) as wh:
        again = wh.open_object(B, "mp", version_id=v.version_id).version
        assert (again.lock_mode, again.lock_until, again.legal_hold) == (GOVERNANCE, v.lock_until, True)
        with pytest.raises(ObjectLocked):
            wh.delete_object(B, "mp", v.version_id, bypass_governance=True)


def test_lifecycle_never_removes_a_locked_version(root: Path, clock: ManualClock) -> None:
    from datawarehouse.service.lifecycle import SETTING, LifecycleRule, rules_to_json
    from datawarehouse.service.lifecycle_job import run

    with init_wh(root, clock) as wh:
        wh.create_bucket(B, object_lock=True)
        old = put_locked(wh, "doc", b"v1" * 40_000, COMPLIANCE, clock.now() + 10 * DAY)
        wh.put_object(B, "doc", b"v2")  # v1 becomes noncurrent
        rule = LifecycleRule("nc", True, noncurrent_days=1)
        wh.set_bucket_setting(B, SETTING, rules_to_json([rule]))
        report = run(wh, clock.now() + 3 * DAY)  # due by the rule, but locked
        assert (report.skipped_locked, report.versions_deleted) == (1, 0)
        assert wh.open_object(B, "doc", version_id=old.version_id).version.size == 80_000
        clock.advance(11 * DAY)  # the retention has expired: now the rule applies
        report = run(wh, clock.now())
        assert (report.skipped_locked, report.versions_deleted) == (0, 1)
