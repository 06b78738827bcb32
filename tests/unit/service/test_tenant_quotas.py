"""Tenant and user quotas enforced on the Warehouse's write paths, with buckets named
tenant-qualified (``tenant:bucket``) as the S3 layer names them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from iam_helpers import init_wh

from datawarehouse.clock import ManualClock
from datawarehouse.errors import NoSuchBucket, NoSuchKey, NoSuchTenant, QuotaExceeded
from datawarehouse.service.warehouse import Warehouse


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    w = init_wh(tmp_path / "dwh", ManualClock())
    try:
        yield w
    finally:
        w.close()


def test_same_bucket_name_in_two_tenants_is_two_buckets(wh: Warehouse) -> None:
    wh.iam.create_tenant("acme")
    wh.iam.create_tenant("globex")
    a = wh.create_bucket("acme:photos")
    b = wh.create_bucket("globex:photos")
    default = wh.create_bucket("photos")
    assert len({a.bucket_id, b.bucket_id, default.bucket_id}) == 3
    assert len({a.domain_id, b.domain_id, default.domain_id}) == 3  # each tenant its own domain
    wh.put_object("acme:photos", "k", b"acme's")
    wh.put_object("globex:photos", "k", b"globex's")
    assert wh.get_object_bytes("acme:photos", "k") == b"acme's"
    assert wh.get_object_bytes("globex:photos", "k") == b"globex's"
    with pytest.raises(NoSuchKey):  # the default tenant's "photos" is a third, empty bucket
        wh.get_object_bytes("photos", "k")
    with pytest.raises(NoSuchBucket):
        wh.get_object_bytes("acme:videos", "k")
    assert [wh.qualified_name(r) for r in wh.list_buckets("acme")] == ["acme:photos"]
    assert {wh.qualified_name(r) for r in wh.list_buckets()} >= {"acme:photos", "globex:photos", "photos"}
    with pytest.raises(NoSuchTenant):
        wh.create_bucket("nobody:photos")


def test_tenant_bucket_and_object_quotas_refuse_writes(wh: Warehouse) -> None:
    wh.iam.create_tenant("acme")
    wh.iam.set_quota("acme", max_buckets=1, max_objects=2)
    wh.create_bucket("acme:one")
    with pytest.raises(QuotaExceeded, match="buckets"):
        wh.create_bucket("acme:two")
    assert [r.name for r in wh.list_buckets("acme")] == ["one"]  # the refused bucket was rolled back
    wh.put_object("acme:one", "a", b"1")
    wh.put_object("acme:one", "b", b"2" * 100_000)  # chunked: the commit path
    with pytest.raises(QuotaExceeded, match="objects"):
        wh.put_object("acme:one", "c", b"3")
    wh.delete_object("acme:one", "b")
    wh.put_object("acme:one", "c", b"3")  # room again
    wh.create_bucket("other")  # the default tenant has no quota


def test_user_byte_quota_counts_the_buckets_the_user_owns(wh: Warehouse) -> None:
    wh.iam.create_tenant("acme")
    alice = wh.iam.create_user("acme", "alice")
    wh.iam.set_quota("acme", user="alice", max_bytes=150_000)
    wh.create_bucket("acme:alice", owner_user_id=alice.user_id)
    wh.create_bucket("acme:team")
    wh.put_object("acme:alice", "a", b"x" * 100_000)
    with pytest.raises(QuotaExceeded, match="bytes"):
        wh.put_object("acme:alice", "b", b"y" * 100_000)
    with pytest.raises(QuotaExceeded, match="bytes"):  # announced size: refused before any data is stored
        wh.open_upload("acme:alice", "c", expected_size=60_000)
    wh.put_object("acme:team", "b", b"y" * 100_000)  # not alice's bucket
