"""Tenants over S3: two tenants (``ta``, ``tb``) with a user each, one ``dwh serve``.

Bucket names are per tenant; ``tenant:bucket`` in a request path reaches another tenant's bucket
only where both its bucket policy and the caller's identity policy allow it (or anonymously,
where the bucket policy is public). Each tenant is its own dedup/encryption domain: the same
bytes uploaded by both are stored twice, and nothing about one tenant's upload shows in the other's
answers, usage or quota. System buckets are out of reach of everyone.
"""

from __future__ import annotations

import hashlib
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from dwh_testkit import shard_keys_on
from iamkit import anonymous, client, denied, error_code, offline, policy
from s3http import assert_s3_error, send, sign
from s3server import DwhServer

from datawarehouse.engine.chunkstore import parse_shard_key
from datawarehouse.records import ObjectVersion

SIZE = 3 * 1024 * 1024
CONTENT = random.Random(5).randbytes(SIZE)
B_QUOTA = SIZE + SIZE // 2  # room for one copy of CONTENT, not two


class Env:
    def __init__(self, server: DwhServer, keys: dict[str, tuple[str, str]]) -> None:
        self.server = server
        self.keys = keys

    def s3(self, user: str, **kw: Any) -> Any:
        access, secret = self.keys[user]
        return client(self.server, access, secret, **kw)

    def raw(self, user: str, method: str, target: str, body: bytes = b"") -> Any:
        access, secret = self.keys[user]
        headers = sign(self.server, method, target, body=body, access_key=access, secret=secret)
        return send(self.server, method, target, body=body, headers=headers)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = DwhServer(tmp_path_factory.mktemp("tenants") / "data")
    keys: dict[str, tuple[str, str]] = {}
    with offline(server) as wh:
        for tenant, user, attached in (("ta", "alice", "readwrite"), ("ta", "noid", None), ("tb", "bob", "readwrite")):
            if user != "noid":
                wh.iam.create_tenant(tenant)
            wh.iam.create_user(tenant, user)
            if attached:
                wh.iam.attach_policy(tenant, attached, user=user)
            made = wh.iam.create_access_key(tenant, user)
            keys[user] = (made.access_key_id, made.secret_key)
        wh.iam.set_quota("tb", max_bytes=B_QUOTA)
    e = Env(server, keys)
    e.s3("alice").create_bucket(Bucket="shared")
    e.s3("bob").create_bucket(Bucket="shared")
    e.s3("bob").create_bucket(Bucket="bonly")
    e.s3("alice").put_object(Bucket="shared", Key="k", Body=b"from A")
    e.s3("bob").put_object(Bucket="shared", Key="k", Body=b"from B")
    try:
        yield e
    finally:
        server.terminate()


def _get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _grant(bucket: str, principal: Any, action: str = "s3:GetObject") -> str:
    return policy({"Effect": "Allow", "Principal": principal, "Action": action, "Resource": f"arn:aws:s3:::{bucket}/*"})


def test_same_bucket_name_in_two_tenants(env: Env) -> None:
    alice, bob = env.s3("alice"), env.s3("bob")
    assert _get(alice, "shared", "k") == b"from A"
    assert _get(bob, "shared", "k") == b"from B"
    assert error_code(lambda: alice.create_bucket(Bucket="shared")) == "BucketAlreadyOwnedByYou"
    assert {b["Name"] for b in alice.list_buckets()["Buckets"]} == {"shared"}
    assert {b["Name"] for b in bob.list_buckets()["Buckets"]} == {"shared", "bonly"}
    root = env.server.boto3_client()  # the default tenant sees none of them
    assert not {"shared", "bonly"} & {b["Name"] for b in root.list_buckets()["Buckets"]}
    assert error_code(lambda: alice.head_bucket(Bucket="bonly")) == "404"


def test_cross_tenant_access_needs_both_policies(env: Env) -> None:
    assert_s3_error(env.raw("alice", "GET", "/tb:shared/k"), 403, "AccessDenied")
    assert_s3_error(env.raw("alice", "PUT", "/tb:shared/evil", b"x"), 403, "AccessDenied")
    alice_any = env.s3("alice", any_bucket_name=True)  # boto3 sends 'tb:shared' once its check is off
    assert denied(lambda: alice_any.get_object(Bucket="tb:shared", Key="k"))
    bob = env.s3("bob")
    bob.put_bucket_policy(Bucket="shared", Policy=_grant("shared", {"AWS": "arn:aws:iam::ta:user/alice"}))
    try:
        reply = env.raw("alice", "GET", "/tb:shared/k")
        assert reply.status == 200 and reply.body == b"from B"
        assert _get(alice_any, "tb:shared", "k") == b"from B"
        assert _get(env.s3("alice"), "shared", "k") == b"from A"  # the bare name is still her own
        assert_s3_error(env.raw("alice", "PUT", "/tb:shared/evil", b"x"), 403, "AccessDenied")  # GetObject only
        # the bucket policy allows ta's noid too, but noid's own tenant grants it nothing
        bob.put_bucket_policy(
            Bucket="shared",
            Policy=_grant("shared", {"AWS": ["arn:aws:iam::ta:user/alice", "arn:aws:iam::ta:user/noid"]}),
        )
        assert_s3_error(env.raw("noid", "GET", "/tb:shared/k"), 403, "AccessDenied")
        assert_s3_error(env.raw("bob", "GET", "/ta:shared/k"), 403, "AccessDenied")  # the other way: no policy
    finally:
        bob.delete_bucket_policy(Bucket="shared")
    assert_s3_error(env.raw("alice", "GET", "/tb:shared/k"), 403, "AccessDenied")


def test_anonymous_public_read_across_tenants(env: Env) -> None:
    anon = anonymous(env.server, any_bucket_name=True)
    url = f"{env.server.endpoint}/tb:shared/k"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url)
    assert refused.value.code == 403
    bob = env.s3("bob")
    bob.put_bucket_policy(Bucket="shared", Policy=_grant("shared", "*"))
    try:
        with urllib.request.urlopen(url) as reply:
            assert reply.read() == b"from B"
        assert _get(anon, "tb:shared", "k") == b"from B"
        assert denied(lambda: anon.get_object(Bucket="shared", Key="k"))  # bare: the default tenant's
        assert denied(lambda: anon.put_object(Bucket="tb:shared", Key="anon", Body=b"x"))
        assert denied(lambda: anon.get_object(Bucket="ta:shared", Key="k"))
    finally:
        bob.delete_bucket_policy(Bucket="shared")


def test_system_bucket_unreachable(env: Env) -> None:
    root = env.server.boto3_client()
    for call in (
        lambda: root.list_objects_v2(Bucket="dwh--audit"),
        lambda: root.get_object(Bucket="dwh--audit", Key="x"),
        lambda: root.put_object(Bucket="dwh--audit", Key="x", Body=b"forged"),
        lambda: root.delete_bucket(Bucket="dwh--audit"),
        lambda: root.get_bucket_policy(Bucket="dwh--audit"),
    ):
        assert denied(call)
    assert "dwh--audit" not in {b["Name"] for b in root.list_buckets()["Buckets"]}
    assert_s3_error(env.raw("alice", "GET", "/default:dwh--audit"), 403, "AccessDenied")
    assert_s3_error(env.raw("alice", "GET", "/dwh--audit"), 403, "AccessDenied")
    assert denied(lambda: env.s3("alice").create_bucket(Bucket="dwh--mine"))


def _version(wh: Any, bucket: str, key: str) -> ObjectVersion:
    rec = wh.get_bucket(bucket)
    with wh.engine.repo.read() as tx:
        version: ObjectVersion = tx.get_version(rec.bucket_id, key)
    return version


def test_dedup_stays_within_a_tenant(env: Env) -> None:
    alice, bob = env.s3("alice"), env.s3("bob")
    alice.create_bucket(Bucket="ddup")
    bob.create_bucket(Bucket="ddup")
    md5 = hashlib.md5(CONTENT).hexdigest()
    a1 = alice.put_object(Bucket="ddup", Key="one", Body=CONTENT)
    b1 = bob.put_object(Bucket="ddup", Key="one", Body=CONTENT)
    a2 = alice.put_object(Bucket="ddup", Key="two", Body=CONTENT)
    assert a1["ETag"] == b1["ETag"] == a2["ETag"] == f'"{md5}"'  # what any S3 answers for these bytes
    # B was charged the full size: its quota has room for one copy, not two
    assert error_code(lambda: bob.put_object(Bucket="ddup", Key="two", Body=CONTENT)) == "QuotaExceeded"
    with offline(env.server) as wh:
        ta, tb = wh.iam.get_tenant("ta"), wh.iam.get_tenant("tb")
        assert ta.domain_id != tb.domain_id
        va1, va2, vb1 = _version(wh, "ta:ddup", "one"), _version(wh, "ta:ddup", "two"), _version(wh, "tb:ddup", "one")
        ids_a = [c.chunk_id for c in va1.chunks]
        ids_b = [c.chunk_id for c in vb1.chunks]
        assert ids_a and len(ids_a) == len(ids_b)
        assert [c.chunk_id for c in va2.chunks] == ids_a  # within a tenant: stored once
        assert not set(ids_a) & set(ids_b)  # across tenants: other chunk ids (keyed per domain)
        with wh.engine.repo.read() as tx:
            chunks = tx.list_chunks(None, limit=1_000_000)
        by_domain = {(c.domain_id, c.chunk_id): c for c in chunks}
        assert all(by_domain[(ta.domain_id, cid)].refcount == 2 for cid in ids_a)
        assert all(by_domain[(tb.domain_id, cid)].refcount == 1 for cid in ids_b)
        stored = set()
        for rec in wh.engine.datadir.disks():
            for key in shard_keys_on(env.server.data_dir.parent / rec.path):
                parsed = parse_shard_key(key)
                assert parsed is not None, key
                stored.add((parsed[0], parsed[1]))
        # Each tenant's chunks have shards of their own, stored under the tenant's domain.
        for domain_id, cid in [(ta.domain_id, c) for c in ids_a] + [(tb.domain_id, c) for c in ids_b]:
            assert (domain_id, cid) in stored, cid.hex()
        usage_a = wh.bucket_usage("ta:ddup")
        usage_b = wh.bucket_usage("tb:ddup")
        # B's stored bytes are the full (sealed) size, the same as A's: nothing deduplicated across
        assert usage_b[1].chunks == usage_a[1].chunks == len(set(ids_a))
        assert usage_b[1].sealed_bytes == usage_a[1].sealed_bytes >= SIZE
        assert usage_b[0].bytes == SIZE and usage_a[0].bytes == 2 * SIZE
        assert wh.iam.usage("tb").bytes == SIZE + len(b"from B")
    assert _get(bob, "ddup", "one") == CONTENT
