"""IAM survives the loss of the metadata database (``rebuild-meta`` replays the ``iam.*`` journal
records), and tenants are isolated at the engine level: the same bytes written by two tenants
become different chunks, sealed under different keys, in different shard files."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dwh_testkit import shard_identities

from datawarehouse.clock import ManualClock
from datawarehouse.config import EngineConfig
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.records import BucketRecord, ObjectVersion
from datawarehouse.service import catalog
from datawarehouse.service.iam import IamService
from datawarehouse.service.warehouse import ObjectSpec, ObjectUpload, OpenOptions, Warehouse

SMALL = EngineConfig(
    chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4 * 1024, threads=2
)
POLICY = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSION = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})


def options(clock: ManualClock) -> OpenOptions:
    return OpenOptions(config=SMALL, clock=clock)


def put_in(wh: Warehouse, bucket: BucketRecord, key: str, data: bytes) -> ObjectVersion:
    """A PUT through the warehouse's write path into a bucket of any tenant."""
    sc = wh.storage_class_for(bucket)
    upload = ObjectUpload(wh, bucket, key, wh.engine.new_writer(bucket.domain_id, sc), sc, ObjectSpec())
    upload.write(data)
    return upload.finish()


def iam_state(iam: IamService) -> dict[str, Any]:
    """Everything the IAM API shows, per tenant (last use aside: it is best-effort)."""
    out: dict[str, Any] = {}
    for t in iam.list_tenants():
        users = iam.list_users(t.name)
        out[t.name] = {
            # the default tenant is made by the schema migration, not journaled: its date is the
            # rebuilt database's
            "tenant": dataclasses.replace(t, created_at=EPOCH) if t.name == "default" else t,
            "users": users,
            "groups": {g.name: (g, iam.list_group_members(t.name, g.name)) for g in iam.list_groups(t.name)},
            "policies": iam.list_policies(t.name),
            "attached_users": {
                u.name: iam.list_attached_policies(t.name, user=u.name) for u in users if u.kind.value == "user"
            },
            "attached_groups": {
                g.name: iam.list_attached_policies(t.name, group=g.name) for g in iam.list_groups(t.name)
            },
            "keys": [k.__class__(**{**k.__dict__, "last_used_at": None}) for k in iam.list_access_keys(t.name)],
            "quota": iam.get_quota(t.name),
            "user_quotas": {u.name: iam.get_quota(t.name, user=u.name) for u in users},
        }
    return out


def test_rebuild_meta_restores_iam_and_secrets_still_open(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))
    root = tmp_path / "dwh"
    data = random.Random(5).randbytes(150_000)
    with Warehouse.init(root, None, options(clock)) as wh:
        iam = wh.iam
        acme = iam.create_tenant("acme")
        iam.create_tenant("beta")
        gone = iam.create_tenant("gone")
        assert gone.domain_id is not None
        iam.set_tenant_disabled("beta", True)
        alice = iam.create_user("acme", "alice")
        iam.create_user("acme", "bob")
        iam.create_user("acme", "carol")
        iam.create_group("acme", "devs")
        iam.add_user_to_group("acme", "devs", "alice")
        iam.add_user_to_group("acme", "devs", "bob")
        iam.remove_user_from_group("acme", "devs", "bob")
        iam.put_policy("acme", "all", POLICY)
        iam.put_policy("acme", "tmp", POLICY)
        iam.delete_policy("acme", "tmp")
        iam.attach_policy("acme", "all", group="devs")
        iam.attach_policy("acme", "readonly", user="alice")
        keys = [
            iam.create_access_key("acme", "alice", description="one"),
            iam.create_access_key("acme", "alice", expires_at=clock.now() + timedelta(days=3)),
            iam.create_access_key("acme", "bob"),
            iam.create_service_account("acme", "alice", SESSION, name="ci"),
            iam.create_access_key("default", iam.create_user("default", "ops").name),
        ]
        disabled = iam.create_access_key("acme", "bob")
        iam.disable_access_key("acme", disabled.access_key_id)
        deleted = iam.create_access_key("acme", "carol")
        iam.delete_user("acme", "carol")
        iam.set_quota("acme", max_bytes=10**9, max_buckets=5)
        iam.set_quota("acme", user="alice", max_objects=100)
        iam.delete_tenant("gone")
        assert acme.domain_id is not None
        bucket = wh.create_bucket("acme-data", domain_id=acme.domain_id, owner_user_id=alice.user_id)
        put_in(wh, bucket, "obj", data)
        before = iam_state(iam)
        identities = {k.access_key_id: iam.resolve_access_key(k.access_key_id) for k in keys}
        usage = iam.usage("acme", user="alice")

    for name in ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"):
        (root / "meta" / name).unlink(missing_ok=True)
    report = rebuild_meta(root, catalog.replay, config=SMALL)
    assert report.damaged_objects == []

    with Warehouse.open(root, options(clock)) as wh:
        iam = wh.iam
        assert iam_state(iam) == before
        assert [t.name for t in iam.list_tenants()] == ["default", "acme", "beta"]
        for key in keys:
            ident = iam.resolve_access_key(key.access_key_id)
            assert ident == identities[key.access_key_id]
            assert ident is not None and ident.secret == key.secret_key  # the ciphertext still opens
        assert iam.resolve_access_key(deleted.access_key_id) is None
        assert iam.usage("acme", user="alice") == usage
        with wh.engine.repo.read() as tx:
            restored = tx.get_bucket_by_id(bucket.bucket_id)
            assert gone.domain_id not in {s.domain_id for s in tx.list_domain_secrets()}
        assert restored == bucket
        assert b"".join(wh.engine.read(bucket.domain_id, _version(wh, bucket, "obj"))) == data
        # ids are never handed out twice after a rebuild
        assert iam.create_user("acme", "dave").user_id > alice.user_id
        assert iam.create_tenant("later").tenant_id > gone.tenant_id


def _version(wh: Warehouse, bucket: BucketRecord, key: str) -> ObjectVersion:
    with wh.engine.repo.read() as tx:
        return tx.get_version(bucket.bucket_id, key)


def test_tenants_never_share_chunks_or_shards(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))
    root = tmp_path / "dwh"
    data = random.Random(9).randbytes(200_000)
    with Warehouse.init(root, None, options(clock)) as wh:
        one = wh.iam.create_tenant("one")
        two = wh.iam.create_tenant("two")
        assert one.domain_id is not None and two.domain_id is not None
        b1 = wh.create_bucket("data", domain_id=one.domain_id)
        b2 = wh.create_bucket("data", domain_id=two.domain_id)  # bucket names are per tenant
        v1 = put_in(wh, b1, "same", data)
        v2 = put_in(wh, b2, "same", data)
        v1b = put_in(wh, b1, "again", data)  # within a tenant, dedup still applies
        ids1 = [c.chunk_id for c in v1.chunks]
        ids2 = [c.chunk_id for c in v2.chunks]
        assert len(ids1) > 1 and len(ids1) == len(ids2)
        assert not set(ids1) & set(ids2)
        assert [c.chunk_id for c in v1b.chunks] == ids1
        with wh.engine.repo.read() as tx:
            c1 = tx.get_chunk(one.domain_id, ids1[0])
            c2 = tx.get_chunk(two.domain_id, ids2[0])
            assert tx.get_chunk(two.domain_id, ids1[0]) is None
        assert c1 is not None and c2 is not None and c1.refcount == 2 and c2.refcount == 1
        stored = {(domain, chunk) for domain, chunk, _ in shard_identities(root)}
        for domain_id, cid in [(one.domain_id, c) for c in ids1] + [(two.domain_id, c) for c in ids2]:
            assert (domain_id, cid) in stored, cid.hex()
        assert b"".join(wh.engine.read(b1.domain_id, v1)) == data
        assert b"".join(wh.engine.read(b2.domain_id, v2)) == data
