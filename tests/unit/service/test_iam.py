"""IamService against a real data directory (SQLite metadata, journal on disks): tenants and their
domains, users, groups, policies, access keys, service accounts, the S3 look-up, quotas, and the
promise that secrets exist in plain text nowhere on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from iam_helpers import init_wh, open_options, put_in

from datawarehouse.clock import ManualClock
from datawarehouse.engine.rotate import rotate_master_key
from datawarehouse.errors import (
    AccessKeyDisabled,
    AccessKeyExpired,
    AuthenticationFailed,
    DeleteConflict,
    EntityAlreadyExists,
    InvalidIamName,
    InvalidInput,
    MalformedPolicyDocument,
    NoSuchAccessKey,
    NoSuchTenant,
    NoSuchUser,
    PrincipalDisabled,
    QuotaExceeded,
)
from datawarehouse.ids import DEFAULT_DOMAIN, DEFAULT_TENANT
from datawarehouse.records import KeyStatus, PrincipalKind
from datawarehouse.service.credentials import Credentials
from datawarehouse.service.iam import ACCESS_KEY_LABEL, IamService, _validate_policy_document
from datawarehouse.service.warehouse import Warehouse

READ_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
)
WRITE_ALL = json.dumps({"Statement": {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}})
SESSION = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def wh(tmp_path: Path, clock: ManualClock) -> Iterator[Warehouse]:
    w = init_wh(tmp_path / "dwh", clock)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def iam(wh: Warehouse) -> IamService:
    return wh.iam


# --- tenants -----------------------------------------------------------------------------------


def test_tenant_gets_its_own_domain_and_secret(wh: Warehouse, iam: IamService) -> None:
    acme = iam.create_tenant("acme")
    other = iam.create_tenant("other")
    assert acme.domain_id is not None and other.domain_id is not None
    assert len({DEFAULT_DOMAIN, acme.domain_id, other.domain_id}) == 3
    assert wh.engine.keyring.has_domain(acme.domain_id)
    assert wh.engine.keyring.current(acme.domain_id).enc_key != wh.engine.keyring.current(other.domain_id).enc_key
    with wh.engine.repo.read() as tx:
        secrets = {s.domain_id for s in tx.list_domain_secrets()}
    assert {acme.domain_id, other.domain_id} <= secrets
    assert [t.name for t in iam.list_tenants()] == ["default", "acme", "other"]
    assert iam.tenant_domain("acme") == acme.domain_id
    with pytest.raises(EntityAlreadyExists):
        iam.create_tenant("acme")
    for bad in ("", "Upper", "-x", "x_y", "a" * 64):
        with pytest.raises(InvalidIamName):
            iam.create_tenant(bad)
    with pytest.raises(NoSuchTenant):
        iam.get_tenant("nobody")


def test_default_tenant_cannot_be_disabled_or_deleted(iam: IamService) -> None:
    with pytest.raises(InvalidInput):
        iam.set_tenant_disabled("default", True)
    with pytest.raises(InvalidInput):
        iam.delete_tenant("default")


def test_tenant_delete_refused_while_it_owns_users_or_buckets(wh: Warehouse, iam: IamService) -> None:
    acme = iam.create_tenant("acme")
    iam.create_user("acme", "alice")
    with pytest.raises(DeleteConflict, match="users"):
        iam.delete_tenant("acme")
    iam.delete_user("acme", "alice")
    assert acme.domain_id is not None
    bucket = wh.create_bucket("acme-data", domain_id=acme.domain_id)
    with pytest.raises(DeleteConflict, match="buckets"):
        iam.delete_tenant("acme")
    with wh.engine.repo.transaction() as tx:
        tx.delete_bucket(bucket.bucket_id)
    iam.create_group("acme", "g")
    iam.put_policy("acme", "p", READ_ALL)
    iam.delete_tenant("acme")
    with pytest.raises(NoSuchTenant):
        iam.get_tenant("acme")
    with wh.engine.repo.read() as tx:
        assert acme.domain_id not in {s.domain_id for s in tx.list_domain_secrets()}


# --- users, groups, policies ---------------------------------------------------------------------


def test_policy_documents_are_validated() -> None:
    assert json.loads(_validate_policy_document(READ_ALL))["Statement"][0]["Action"] == "s3:GetObject"
    for bad in ("not json", "[]", "{}", '{"Statement": []}', '{"Statement": [1]}', '{"Statement": "x"}'):
        with pytest.raises(MalformedPolicyDocument):
            _validate_policy_document(bad)
    with pytest.raises(MalformedPolicyDocument, match="larger"):
        _validate_policy_document(json.dumps({"Statement": {"Sid": "x" * 30_000}}))


def test_users_groups_policies_and_attachments(iam: IamService) -> None:
    iam.create_tenant("acme")
    alice = iam.create_user("acme", "alice")
    assert alice.kind == PrincipalKind.USER and not alice.disabled
    with pytest.raises(EntityAlreadyExists):
        iam.create_user("acme", "alice")
    iam.create_user("default", "alice")  # names are per tenant
    with pytest.raises(InvalidIamName):
        iam.create_user("acme", "bad name")
    iam.create_group("acme", "readers")
    iam.add_user_to_group("acme", "readers", "alice")
    iam.add_user_to_group("acme", "readers", "alice")  # idempotent
    assert iam.list_group_members("acme", "readers") == ["alice"]
    assert iam.list_user_groups("acme", "alice") == ["readers"]

    iam.put_policy("acme", "read", READ_ALL)
    created = iam.get_policy("acme", "read").created_at
    iam.put_policy("acme", "read", WRITE_ALL)  # update keeps created_at
    assert iam.get_policy("acme", "read").created_at == created
    assert "PutObject" in iam.get_policy("acme", "read").document
    with pytest.raises(MalformedPolicyDocument):
        iam.put_policy("acme", "bad", "{}")
    iam.attach_policy("acme", "read", group="readers")
    iam.attach_policy("acme", "readonly", user="alice")  # a built-in name: stored by name
    with pytest.raises(InvalidInput):
        iam.attach_policy("acme", "read", user="alice", group="readers")
    assert iam.list_attached_policies("acme", user="alice") == ["readonly"]
    assert iam.list_attached_policies("acme", group="readers") == ["read"]
    with pytest.raises(DeleteConflict):
        iam.delete_policy("acme", "read")
    iam.detach_policy("acme", "read", group="readers")
    iam.delete_policy("acme", "read")
    assert iam.list_policies("acme") == []
    iam.remove_user_from_group("acme", "readers", "alice")
    assert iam.list_group_members("acme", "readers") == []


# --- access keys and the S3 look-up --------------------------------------------------------------


def test_access_key_lifecycle_and_identity(iam: IamService, clock: ManualClock) -> None:
    iam.create_tenant("acme")
    iam.create_user("acme", "alice")
    iam.create_group("acme", "g")
    iam.add_user_to_group("acme", "g", "alice")
    iam.put_policy("acme", "read", READ_ALL)
    iam.attach_policy("acme", "read", user="alice")
    iam.attach_policy("acme", "readwrite", group="g")
    iam.attach_policy("acme", "read", group="g")  # listed once
    new = iam.create_access_key("acme", "alice", description="laptop")
    assert new.secret_key not in repr(new) and len(new.secret_key) >= 32

    ident = iam.resolve_access_key(new.access_key_id)
    assert ident is not None
    assert (ident.tenant_name, ident.user_name, ident.kind) == ("acme", "alice", PrincipalKind.USER)
    assert ident.domain_id == iam.tenant_domain("acme") and ident.secret == new.secret_key
    assert new.secret_key not in repr(ident)
    assert [name for name, _ in ident.policies] == ["read", "readwrite"]
    assert ident.policies[0][1] is not None and "GetObject" in ident.policies[0][1]
    assert ident.policies[1][1] is None  # built-in: resolved by the policy module
    assert iam.resolve_access_key("DWHNOSUCHKEY0000000") is None

    [info] = iam.list_access_keys("acme")
    assert (info.access_key_id, info.user, info.status, info.description) == (
        new.access_key_id,
        "alice",
        KeyStatus.ACTIVE,
        "laptop",
    )
    assert not hasattr(info, "secret_key") and not hasattr(info, "secret_ciphertext")

    iam.disable_access_key("acme", new.access_key_id)
    with pytest.raises(AccessKeyDisabled):
        iam.resolve_access_key(new.access_key_id)
    iam.enable_access_key("acme", new.access_key_id)
    assert iam.resolve_access_key(new.access_key_id) is not None

    iam.set_access_key_expiry("acme", new.access_key_id, clock.now() + timedelta(hours=1))
    assert iam.resolve_access_key(new.access_key_id) is not None  # cached, and still valid
    clock.advance(timedelta(hours=1))
    with pytest.raises(AccessKeyExpired):
        iam.resolve_access_key(new.access_key_id)
    with pytest.raises(InvalidInput, match="future"):
        iam.set_access_key_expiry("acme", new.access_key_id, clock.now() - timedelta(seconds=1))
    iam.set_access_key_expiry("acme", new.access_key_id, None)
    assert iam.resolve_access_key(new.access_key_id) is not None

    iam.set_user_disabled("acme", "alice", True)
    with pytest.raises(PrincipalDisabled):
        iam.resolve_access_key(new.access_key_id)
    iam.set_user_disabled("acme", "alice", False)
    iam.set_tenant_disabled("acme", True)
    with pytest.raises(PrincipalDisabled, match="tenant"):
        iam.resolve_access_key(new.access_key_id)
    iam.set_tenant_disabled("acme", False)

    with pytest.raises(NoSuchAccessKey):
        iam.delete_access_key("default", new.access_key_id)  # keys are found within their tenant
    iam.delete_access_key("acme", new.access_key_id)
    assert iam.resolve_access_key(new.access_key_id) is None


def test_key_created_with_expiry_and_bad_expiries(iam: IamService, clock: ManualClock) -> None:
    iam.create_user("default", "bob")
    with pytest.raises(InvalidInput):
        iam.create_access_key("default", "bob", expires_at=clock.now())
    with pytest.raises(InvalidInput, match="timezone"):
        iam.create_access_key("default", "bob", expires_at=clock.now().replace(tzinfo=None) + timedelta(days=1))
    new = iam.create_access_key("default", "bob", expires_at=clock.now() + timedelta(minutes=5))
    assert iam.resolve_access_key(new.access_key_id) is not None
    clock.advance(timedelta(minutes=5))
    with pytest.raises(AccessKeyExpired):
        iam.resolve_access_key(new.access_key_id)


def test_service_account_is_bound_to_its_parent(iam: IamService) -> None:
    iam.create_tenant("acme")
    iam.create_user("acme", "alice")
    iam.put_policy("acme", "read", READ_ALL)
    iam.attach_policy("acme", "read", user="alice")
    with pytest.raises(MalformedPolicyDocument):
        iam.create_service_account("acme", "alice", "{}")
    sa = iam.create_service_account("acme", "alice", SESSION, name="backup-job")
    assert sa.kind == PrincipalKind.SERVICE and sa.user == "backup-job"
    ident = iam.resolve_access_key(sa.access_key_id)
    assert ident is not None and ident.kind == PrincipalKind.SERVICE
    assert ident.parent_user == "alice" and ident.user_name == "backup-job"
    assert [n for n, _ in ident.policies] == ["read"]  # the parent's
    assert ident.session_policy is not None and json.loads(ident.session_policy) == json.loads(SESSION)
    with pytest.raises(InvalidInput):
        iam.create_access_key("acme", "backup-job")
    with pytest.raises(InvalidInput):
        iam.create_service_account("acme", "backup-job", SESSION)  # a parent must be a user
    [info] = iam.list_access_keys("acme", "backup-job")
    assert info.parent_user == "alice" and info.kind == PrincipalKind.SERVICE

    iam.set_user_disabled("acme", "alice", True)
    with pytest.raises(PrincipalDisabled, match="parent"):
        iam.resolve_access_key(sa.access_key_id)
    iam.set_user_disabled("acme", "alice", False)
    assert iam.resolve_access_key(sa.access_key_id) is not None
    iam.delete_user("acme", "alice")  # takes its service accounts with it
    assert iam.resolve_access_key(sa.access_key_id) is None
    with pytest.raises(NoSuchUser):
        iam.get_user("acme", "backup-job")


def test_root_resolves_to_the_default_tenant(iam: IamService) -> None:
    root = Credentials("DWHROOTKEY0000000000", "root-secret-0123456789")
    assert iam.resolve_access_key(root.access_key) is None
    iam.set_root_credentials(root)
    ident = iam.resolve_access_key(root.access_key)
    assert ident is not None and ident.is_root
    assert (ident.tenant_id, ident.domain_id, ident.secret) == (DEFAULT_TENANT, DEFAULT_DOMAIN, root.secret_key)
    assert root.secret_key not in repr(ident)


def test_last_used_is_batched(wh: Warehouse, iam: IamService, clock: ManualClock) -> None:
    iam.create_user("default", "bob")
    new = iam.create_access_key("default", "bob")

    def stored() -> object:
        with wh.engine.repo.read() as tx:
            rec = tx.get_access_key(new.access_key_id)
        assert rec is not None
        return rec.last_used_at

    t0 = clock.now()
    iam.resolve_access_key(new.access_key_id)
    clock.advance(timedelta(seconds=30))
    iam.resolve_access_key(new.access_key_id)
    assert stored() is None  # not written yet...
    assert iam.list_access_keys("default")[0].last_used_at == t0 + timedelta(seconds=30)  # ...but listed
    clock.advance(timedelta(seconds=31))
    iam.resolve_access_key(new.access_key_id)  # the interval has passed: one batch
    assert stored() == t0 + timedelta(seconds=61)
    clock.advance(timedelta(seconds=1))
    iam.resolve_access_key(new.access_key_id)
    iam.flush_last_used()
    assert stored() == t0 + timedelta(seconds=62)


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_exist_in_plain_text_nowhere_on_disk(tmp_path: Path, clock: ManualClock) -> None:
    root = tmp_path / "dwh"
    wh = init_wh(root, clock)
    try:
        wh.iam.create_tenant("acme")
        wh.iam.create_user("acme", "alice")
        made = [wh.iam.create_access_key("acme", "alice") for _ in range(3)]
        made.append(wh.iam.create_service_account("acme", "alice", SESSION))
        for new in made:
            assert wh.iam.resolve_access_key(new.access_key_id) is not None
        with wh.engine.repo.read() as tx:
            ciphertexts = [k.secret_ciphertext for k in tx.list_access_keys(wh.iam.get_tenant("acme").tenant_id)]
    finally:
        wh.close()
    files = [p for p in root.rglob("*") if p.is_file() and "keys" not in p.relative_to(root).parts]
    journals = [p for p in files if p.suffix == ".log" and "journal" in p.parts]
    assert journals and any(p.name.startswith("meta.sqlite3") for p in files)
    blobs = {p: p.read_bytes() for p in files}
    for new in made:
        secret = new.secret_key.encode()
        assert secret not in b"".join(ciphertexts)
        for path, data in blobs.items():
            assert secret not in data, path
    assert any(made[0].access_key_id.encode() in data for data in blobs.values())  # the search can hit


def test_ciphertext_is_bound_to_its_access_key_id(wh: Warehouse) -> None:
    keyring = wh.engine.keyring
    master_id, sealed = keyring.seal_secret(ACCESS_KEY_LABEL, b"DWHKEYA", b"s3cret")
    assert keyring.open_secret(ACCESS_KEY_LABEL, b"DWHKEYA", master_id, sealed) == b"s3cret"
    with pytest.raises(AuthenticationFailed):
        keyring.open_secret(ACCESS_KEY_LABEL, b"DWHKEYB", master_id, sealed)
    with pytest.raises(AuthenticationFailed):
        keyring.open_secret("another use", b"DWHKEYA", master_id, sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(AuthenticationFailed):
        keyring.open_secret(ACCESS_KEY_LABEL, b"DWHKEYA", master_id, flipped)


def test_master_key_rotation_reseals_access_keys(tmp_path: Path, clock: ManualClock) -> None:
    root = tmp_path / "dwh"
    with init_wh(root, clock) as wh:
        wh.iam.create_user("default", "bob")
        new = wh.iam.create_access_key("default", "bob")
        old_id, new_id = rotate_master_key(wh.engine)
        with wh.engine.repo.read() as tx:
            rec = tx.get_access_key(new.access_key_id)
        assert rec is not None and rec.master_key_id == new_id != old_id
        ident = wh.iam.resolve_access_key(new.access_key_id)
        assert ident is not None and ident.secret == new.secret_key
    with Warehouse.open(root, open_options(clock)) as wh:  # only the new master key is loaded now
        assert wh.engine.keyring.master_ids() == [new_id]
        ident = wh.iam.resolve_access_key(new.access_key_id)
        assert ident is not None and ident.secret == new.secret_key


# --- quotas --------------------------------------------------------------------------------------


def test_tenant_and_user_quotas_and_usage(wh: Warehouse, iam: IamService) -> None:
    acme = iam.create_tenant("acme")
    alice = iam.create_user("acme", "alice")
    assert acme.domain_id is not None
    assert iam.get_quota("acme") is None
    iam.set_quota("acme", max_buckets=2, max_bytes=100_000)
    iam.set_quota("acme", user="alice", max_objects=1)
    quota = iam.get_quota("acme")
    assert quota is not None and (quota.max_buckets, quota.max_bytes, quota.max_objects) == (2, 100_000, None)
    with pytest.raises(InvalidInput):
        iam.set_quota("acme", max_bytes=-1)

    mine = wh.create_bucket("alice-bucket", domain_id=acme.domain_id, owner_user_id=alice.user_id)
    wh.create_bucket("shared", domain_id=acme.domain_id)
    assert mine.owner_user_id == alice.user_id
    put_in(wh, mine, "a", b"x" * 10_000)
    assert iam.usage("acme") == type(iam.usage("acme"))(buckets=2, objects=1, bytes=10_000)
    assert iam.usage("acme", user="alice").buckets == 1
    with pytest.raises(QuotaExceeded, match="buckets"):
        iam.check_quota(acme.tenant_id, add_buckets=1)
    with pytest.raises(QuotaExceeded, match="bytes"):
        iam.check_quota(acme.tenant_id, add_bytes=90_001)
    iam.check_quota(acme.tenant_id, add_bytes=90_000)
    with pytest.raises(QuotaExceeded, match="objects"):
        iam.check_quota(acme.tenant_id, alice.user_id, add_objects=1)
    iam.check_quota(acme.tenant_id, add_objects=1)  # the tenant has no object limit
    iam.set_quota("acme")  # all None: removed
    assert iam.get_quota("acme") is None
    iam.check_quota(acme.tenant_id, add_buckets=10)
