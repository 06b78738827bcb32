"""Contract of the IAM part of ``MetaTx`` (``meta/sql_iam.py``), on every backend."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from datawarehouse.errors import DeleteConflict, EntityAlreadyExists, NoSuchTenant
from datawarehouse.ids import DomainId, TenantId, UserId
from datawarehouse.meta.repo import DomainSecretRecord
from datawarehouse.meta.sql import SqlMetaRepo
from datawarehouse.records import (
    AccessKeyRecord,
    AttachmentRecord,
    AttachTarget,
    KeyStatus,
    PolicyRecord,
    PrincipalKind,
    QuotaRecord,
    QuotaScope,
    UsageTotals,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def key(key_id: str, tenant: TenantId, user: UserId, **changes: Any) -> AccessKeyRecord:
    rec = AccessKeyRecord(key_id, tenant, user, b"\x01" * 40, "m1", KeyStatus.ACTIVE, T0)
    return dataclasses.replace(rec, **changes)


def test_tenants_and_domains_ids_are_never_reused(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0)
        d = tx.create_domain(t.tenant_id)
        tx.put_domain_secret(DomainSecretRecord(d, 1, b"w" * 60, "m1", T0))
        with pytest.raises(EntityAlreadyExists):
            tx.create_tenant("acme", T0)
        with pytest.raises(NoSuchTenant):
            tx.create_domain(TenantId(999))
    with repo.read() as tx:
        got = tx.get_tenant_by_name("acme")
        assert got is not None and got.domain_id == d and not got.disabled
        assert [x.name for x in tx.list_tenants()] == ["default", "acme"]
    with repo.transaction() as tx:
        tx.delete_tenant(t.tenant_id)
        tx.delete_tenant(t.tenant_id)  # no-op when absent
        again = tx.create_tenant("acme", T0)
        assert again.tenant_id > t.tenant_id
        assert tx.create_domain(again.tenant_id) > d
        assert all(s.domain_id != d for s in tx.list_domain_secrets())


def test_put_tenant_and_insert_domain_replay(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0)
        tx.put_tenant(type(t)(TenantId(7), "replayed", T0, True))
        tx.put_tenant(type(t)(TenantId(7), "replayed", T0, True))
        tx.insert_domain(DomainId(9), TenantId(7))
        tx.insert_domain(DomainId(9), TenantId(7))
        with pytest.raises(EntityAlreadyExists):
            tx.put_tenant(type(t)(TenantId(8), "acme", T0))
        got = tx.get_tenant(TenantId(7))
        assert got is not None and got.disabled and got.domain_id == 9
        assert tx.create_tenant("next", T0).tenant_id == 8


def test_tenant_delete_conflicts(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0)
        d = tx.create_domain(t.tenant_id)
        u = tx.create_user(t.tenant_id, "alice", PrincipalKind.USER, T0)
        with pytest.raises(DeleteConflict, match="users"):
            tx.delete_tenant(t.tenant_id)
        tx.delete_user(u.user_id)
        b = tx.create_bucket(d, "b", T0, None, u.user_id)
        assert b.owner_user_id == u.user_id
        with pytest.raises(DeleteConflict, match="buckets"):
            tx.delete_tenant(t.tenant_id)


def test_users_groups_attachments_and_cascades(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0).tenant_id
        alice = tx.create_user(t, "alice", PrincipalKind.USER, T0)
        svc = tx.create_user(t, "svc", PrincipalKind.SERVICE, T0, alice.user_id)
        with pytest.raises(EntityAlreadyExists):
            tx.create_user(t, "alice", PrincipalKind.USER, T0)
        g = tx.create_group(t, "devs", T0)
        tx.add_group_member(g.group_id, alice.user_id)
        tx.add_group_member(g.group_id, alice.user_id)
        tx.put_policy(PolicyRecord(t, "p", '{"Statement":{}}', T0, T0))
        tx.attach_policy(AttachmentRecord(t, AttachTarget.USER, alice.user_id, "p"))
        tx.attach_policy(AttachmentRecord(t, AttachTarget.GROUP, g.group_id, "readonly"))
        tx.put_access_key(key("K1", t, alice.user_id))
        tx.put_access_key(key("K2", t, svc.user_id, session_policy="{}"))
        tx.put_quota(QuotaRecord(QuotaScope.USER, alice.user_id, max_objects=3))
        assert [u.name for u in tx.list_group_members(g.group_id)] == ["alice"]
        assert [x.name for x in tx.list_user_groups(alice.user_id)] == ["devs"]
        assert tx.list_attached(AttachTarget.USER, alice.user_id) == ["p"]
        assert tx.policy_in_use(t, "p") and not tx.policy_in_use(t, "q")
        assert [k.access_key_id for k in tx.list_access_keys(t)] == ["K1", "K2"]
        assert [k.access_key_id for k in tx.list_access_keys(t, svc.user_id)] == ["K2"]
        tx.put_user(dataclasses.replace(alice, disabled=True))
        again = tx.get_user_by_id(alice.user_id)
        assert again is not None and again.disabled
    with repo.transaction() as tx:
        tx.delete_user(alice.user_id)
        assert tx.get_user_by_id(svc.user_id) is None  # service accounts go with their parent
        assert tx.get_access_key("K1") is None and tx.get_access_key("K2") is None
        assert tx.list_group_members(g.group_id) == []
        assert not tx.policy_in_use(t, "p")
        assert tx.get_quota(QuotaScope.USER, alice.user_id) is None
        tx.delete_group(g.group_id)
        assert tx.list_groups(t) == [] and tx.list_attached(AttachTarget.GROUP, g.group_id) == []
        assert tx.delete_policy(t, "p") and not tx.delete_policy(t, "p")


def test_access_key_put_keeps_last_use_which_only_moves_forward(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0).tenant_id
        u = tx.create_user(t, "alice", PrincipalKind.USER, T0).user_id
        tx.put_access_key(key("K1", t, u))
        tx.record_key_use({"K1": T0 + timedelta(hours=2), "NOPE": T0})
        tx.record_key_use({"K1": T0 + timedelta(hours=1)})
        tx.put_access_key(key("K1", t, u, status=KeyStatus.DISABLED))
        got = tx.get_access_key("K1")
        assert got is not None and got.status == KeyStatus.DISABLED
        assert got.last_used_at == T0 + timedelta(hours=2)
        assert got.secret_ciphertext == b"\x01" * 40
        assert tx.delete_access_key("K1") and not tx.delete_access_key("K1")


def test_usage_sums_buckets_of_a_tenant_and_of_a_user(repo: SqlMetaRepo) -> None:
    with repo.transaction() as tx:
        t = tx.create_tenant("acme", T0).tenant_id
        d = tx.create_domain(t)
        u = tx.create_user(t, "alice", PrincipalKind.USER, T0).user_id
        assert tx.tenant_usage(t) == UsageTotals()
        tx.create_bucket(d, "a", T0, None, u)
        tx.create_bucket(d, "b", T0, None)
        tx.create_bucket(DomainId(1), "c", T0, None, u)  # another tenant's bucket
        assert tx.tenant_usage(t) == UsageTotals(buckets=2)
        assert tx.user_usage(u) == UsageTotals(buckets=2)
        tx.put_quota(QuotaRecord(QuotaScope.TENANT, t, 1, None, 2))
        tx.put_quota(QuotaRecord(QuotaScope.TENANT, t, 5, None, 2))
        assert tx.get_quota(QuotaScope.TENANT, t) == QuotaRecord(QuotaScope.TENANT, t, 5, None, 2)
        assert tx.delete_quota(QuotaScope.TENANT, t)
