"""Identity policies over real S3 requests: users and groups of one tenant, each with a boto3
client of its own, against one ``dwh serve`` (provisioned offline through ``Warehouse.iam``).

Every rule is shown both ways: a call the policy allows succeeds and its neighbour that the
policy does not allow answers AccessDenied. Then the built-in write-only backup policy, service
accounts, disabled and expired keys, and the audit trail of it all.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from iamkit import client, data_files, denied, error_code, offline, policy, stop
from s3server import DWH, DwhServer

TENANT = "acme"
DATA = "data"
BACKUPS = "backups"
OBJ = "arn:aws:s3:::data"


@dataclass
class Env:
    server: DwhServer
    keys: dict[str, tuple[str, str]]  # user -> (access key id, secret)

    def s3(self, user: str, **config: Any) -> Any:
        access, secret = self.keys[user]
        return client(self.server, access, secret, **config)


def _allow(
    action: str | list[str], resource: str | list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


CONDITIONS = policy(
    _allow("s3:GetObject", f"{OBJ}/ip-ok/*", {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}),
    _allow("s3:GetObject", f"{OBJ}/ip-bad/*", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
    _allow("s3:GetObject", f"{OBJ}/notip-ok/*", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
    _allow("s3:GetObject", f"{OBJ}/notip-bad/*", {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}),
    _allow("s3:GetObject", f"{OBJ}/tls/*", {"Bool": {"aws:SecureTransport": "true"}}),
    _allow("s3:GetObject", f"{OBJ}/plain/*", {"Bool": {"aws:SecureTransport": "false"}}),
    _allow("s3:GetObject", f"{OBJ}/until-future/*", {"DateLessThan": {"aws:CurrentTime": "2999-01-01T00:00:00Z"}}),
    _allow("s3:GetObject", f"{OBJ}/until-past/*", {"DateLessThan": {"aws:CurrentTime": "2000-01-01T00:00:00Z"}}),
    _allow("s3:GetObject", f"{OBJ}/after-past/*", {"DateGreaterThan": {"aws:CurrentTime": "2000-01-01T00:00:00Z"}}),
    _allow("s3:GetObject", f"{OBJ}/after-future/*", {"DateGreaterThan": {"aws:CurrentTime": "2999-01-01T00:00:00Z"}}),
    _allow("s3:ListBucket", OBJ, {"StringLike": {"s3:prefix": "home/*"}}),
    _allow("s3:ListBucket", "arn:aws:s3:::small", {"NumericLessThanEquals": {"s3:max-keys": "10"}}),
    _allow("s3:PutObject", f"{OBJ}/enc/*", {"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}}),
    _allow("s3:PutObject", f"{OBJ}/noenc/*", {"Null": {"s3:x-amz-server-side-encryption": "true"}}),
)

SEEDED = [
    "public/a",
    "secret/s",
    "home/pfx/a",
    "other/b",
    *(f"{p}/obj" for p in ("ip-ok", "ip-bad", "notip-ok", "notip-bad", "tls", "plain")),
    *(f"{p}/obj" for p in ("until-future", "until-past", "after-past", "after-future")),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = DwhServer(tmp_path_factory.mktemp("iam") / "data")
    keys: dict[str, tuple[str, str]] = {}
    with offline(server) as wh:
        iam = wh.iam
        iam.create_tenant(TENANT)
        policies = {
            "admin": ["readwrite"],
            "getter": ["get-star"],
            "grouped": [],
            "notaction": ["no-delete"],
            "notresource": ["not-secret"],
            "denier": ["readwrite", "deny-secret"],
            "nobody": [],
            "cond": ["conditions"],
            "backup": ["writeonly"],
            "parent": ["readwrite"],
            "keys": ["readonly"],
        }
        iam.put_policy(TENANT, "get-star", policy(_allow("s3:Get*", f"{OBJ}/*"), _allow("s3:ListBucket", OBJ)))
        iam.put_policy(
            TENANT, "no-delete", policy({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{OBJ}/*"})
        )
        iam.put_policy(
            TENANT,
            "not-secret",
            policy({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{OBJ}/secret/*"}),
        )
        iam.put_policy(
            TENANT, "deny-secret", policy({"Effect": "Deny", "Action": "s3:*", "Resource": f"{OBJ}/secret/*"})
        )
        iam.put_policy(TENANT, "conditions", CONDITIONS)
        for user, attached in policies.items():
            iam.create_user(TENANT, user)
            for name in attached:
                iam.attach_policy(TENANT, name, user=user)
            made = iam.create_access_key(TENANT, user)
            keys[user] = (made.access_key_id, made.secret_key)
        iam.create_group(TENANT, "readers")
        iam.attach_policy(TENANT, "readonly", group="readers")
        iam.add_user_to_group(TENANT, "readers", "grouped")
        session = policy(_allow(["s3:GetObject", "s3:ListBucket"], [OBJ, f"{OBJ}/*"]))
        svc = iam.create_service_account(TENANT, "parent", session, name="parent-svc")
        keys["svc"] = (svc.access_key_id, svc.secret_key)
    e = Env(server, keys)
    admin = e.s3("admin")
    for bucket in (DATA, BACKUPS, "small", "other"):
        admin.create_bucket(Bucket=bucket)
    for key in SEEDED:
        admin.put_object(Bucket=DATA, Key=key, Body=f"body of {key}".encode())
    admin.put_object(Bucket=BACKUPS, Key="existing", Body=b"old backup")
    admin.put_object(Bucket="other", Key="x", Body=b"other data")
    try:
        yield e
    finally:
        server.terminate()


def _get(s3: Any, key: str, bucket: str = DATA) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# --- identity policies ----------------------------------------------------------------------------


def test_action_wildcard_get_star(env: Env) -> None:
    s3 = env.s3("getter")
    assert _get(s3, "public/a") == b"body of public/a"
    assert s3.get_object_tagging(Bucket=DATA, Key="public/a")["TagSet"] == []  # s3:GetObjectTagging
    assert denied(lambda: s3.put_object(Bucket=DATA, Key="public/new", Body=b"x"))
    assert denied(lambda: s3.delete_object(Bucket=DATA, Key="public/a"))
    assert denied(lambda: s3.get_object(Bucket="other", Key="x"))  # Resource data/* only


def test_group_policy(env: Env) -> None:
    s3 = env.s3("grouped")  # readonly through group "readers", nothing attached directly
    assert _get(s3, "public/a") == b"body of public/a"
    assert _get(s3, "x", "other") == b"other data"
    assert denied(lambda: s3.put_object(Bucket=DATA, Key="grouped", Body=b"x"))


def test_not_action(env: Env) -> None:
    s3 = env.s3("notaction")
    s3.put_object(Bucket=DATA, Key="public/notaction", Body=b"n")
    assert _get(s3, "public/notaction") == b"n"
    assert denied(lambda: s3.delete_object(Bucket=DATA, Key="public/notaction"))
    assert denied(lambda: s3.list_objects_v2(Bucket=DATA))  # the Resource is objects only


def test_not_resource(env: Env) -> None:
    s3 = env.s3("notresource")
    assert _get(s3, "public/a") == b"body of public/a"
    assert _get(s3, "x", "other") == b"other data"  # NotResource: every other resource
    assert denied(lambda: s3.get_object(Bucket=DATA, Key="secret/s"))


def test_explicit_deny_wins_over_allow(env: Env) -> None:
    s3 = env.s3("denier")  # readwrite + a Deny on data/secret/*
    assert _get(s3, "public/a") == b"body of public/a"
    s3.put_object(Bucket=DATA, Key="public/by-denier", Body=b"d")
    assert denied(lambda: s3.get_object(Bucket=DATA, Key="secret/s"))
    assert denied(lambda: s3.put_object(Bucket=DATA, Key="secret/new", Body=b"d"))


def test_implicit_deny(env: Env) -> None:
    s3 = env.s3("nobody")
    for call in (
        lambda: s3.list_buckets(),
        lambda: s3.get_object(Bucket=DATA, Key="public/a"),
        lambda: s3.list_objects_v2(Bucket=DATA),
        lambda: s3.put_object(Bucket=DATA, Key="nobody", Body=b"x"),
        lambda: s3.create_bucket(Bucket="nobodys"),
    ):
        assert denied(call)
    assert denied(lambda: s3.head_object(Bucket=DATA, Key="public/a"))
    # ... while an allowed user of the same tenant sees all buckets of the tenant
    names = {b["Name"] for b in env.s3("admin").list_buckets()["Buckets"]}
    assert {DATA, BACKUPS, "small", "other"} <= names


# --- conditions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "refused", "what"),
    [
        ("ip-ok", "ip-bad", "IpAddress aws:SourceIp 127.0.0.1/32 vs 10.0.0.0/8"),
        ("notip-ok", "notip-bad", "NotIpAddress"),
        ("plain", "tls", "Bool aws:SecureTransport (plain HTTP is false)"),
        ("until-future", "until-past", "DateLessThan aws:CurrentTime"),
        ("after-past", "after-future", "DateGreaterThan aws:CurrentTime"),
    ],
)
def test_condition_on_get(env: Env, allowed: str, refused: str, what: str) -> None:
    s3 = env.s3("cond")
    assert _get(s3, f"{allowed}/obj") == f"body of {allowed}/obj".encode(), what
    assert denied(lambda: s3.get_object(Bucket=DATA, Key=f"{refused}/obj")), what


def test_condition_s3_prefix(env: Env) -> None:
    s3 = env.s3("cond")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=DATA, Prefix="home/")["Contents"]]
    assert keys == ["home/pfx/a"]
    assert denied(lambda: s3.list_objects_v2(Bucket=DATA, Prefix="other/"))
    assert denied(lambda: s3.list_objects_v2(Bucket=DATA))  # no prefix: the condition fails


def test_condition_max_keys(env: Env) -> None:
    s3 = env.s3("cond")
    assert s3.list_objects_v2(Bucket="small", MaxKeys=5)["KeyCount"] == 0
    assert denied(lambda: s3.list_objects_v2(Bucket="small", MaxKeys=100))
    assert denied(lambda: s3.list_objects_v2(Bucket="small"))  # max-keys absent: the condition fails


def test_condition_server_side_encryption(env: Env) -> None:
    s3 = env.s3("cond")
    reply = s3.put_object(Bucket=DATA, Key="enc/a", Body=b"e", ServerSideEncryption="AES256")
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert reply["ServerSideEncryption"] == "AES256"  # SSE-S3: what every object gets anyway
    # what this server cannot promise is refused, never silently accepted
    for extra in (
        {"ServerSideEncryption": "aws:kms"},
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
    ):
        try:
            env.s3("admin").put_object(Bucket=DATA, Key="enc/kms", Body=b"e", **extra)
            raise AssertionError(f"{extra} accepted")
        except ClientError as err:
            assert err.response["Error"]["Code"] == "NotImplemented"
    assert denied(lambda: s3.put_object(Bucket=DATA, Key="enc/b", Body=b"e"))
    s3.put_object(Bucket=DATA, Key="noenc/a", Body=b"n")  # Null: true when the header is absent
    assert denied(lambda: s3.put_object(Bucket=DATA, Key="noenc/b", Body=b"n", ServerSideEncryption="AES256"))
    assert _get(env.s3("admin"), "enc/a") == b"e"


# --- the write-only backup key --------------------------------------------------------------------


def test_writeonly_backup_key(env: Env) -> None:
    s3 = env.s3("backup")
    s3.put_object(Bucket=BACKUPS, Key="data/one", Body=b"snapshot 1")
    up = s3.create_multipart_upload(Bucket=BACKUPS, Key="data/big")
    part = s3.upload_part(Bucket=BACKUPS, Key="data/big", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 1024)
    s3.complete_multipart_upload(
        Bucket=BACKUPS,
        Key="data/big",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BACKUPS)["Contents"]}
    assert {"existing", "data/one", "data/big"} <= listed
    s3.head_bucket(Bucket=BACKUPS)
    # its own objects it may read back (restic reads its config, keys and index)
    assert _get(s3, "data/one", BACKUPS) == b"snapshot 1"
    s3.head_object(Bucket=BACKUPS, Key="data/big")
    # ... and remove its own lock files, nothing else
    s3.put_object(Bucket=BACKUPS, Key="repo/locks/mine", Body=b"lock")
    s3.delete_object(Bucket=BACKUPS, Key="repo/locks/mine")
    env.s3("admin").put_object(Bucket=BACKUPS, Key="repo/locks/theirs", Body=b"lock")
    for call in (
        lambda: s3.get_object(Bucket=BACKUPS, Key="existing"),  # written by someone else
        lambda: s3.head_object(Bucket=BACKUPS, Key="existing"),
        lambda: s3.delete_object(Bucket=BACKUPS, Key="repo/locks/theirs"),
        lambda: s3.delete_object(Bucket=BACKUPS, Key="data/one"),
        lambda: s3.put_object(Bucket=BACKUPS, Key="existing", Body=b"overwrite"),
        lambda: s3.put_object(Bucket=BACKUPS, Key="data/one", Body=b"overwrite"),
        lambda: s3.create_multipart_upload(Bucket=BACKUPS, Key="existing"),
        lambda: s3.copy_object(Bucket=BACKUPS, Key="copy", CopySource={"Bucket": BACKUPS, "Key": "existing"}),
        lambda: s3.get_object(Bucket=DATA, Key="public/a"),  # other users' data
        lambda: s3.put_bucket_policy(Bucket=BACKUPS, Policy=policy(_allow("s3:*", "*") | {"Principal": "*"})),
    ):
        assert denied(call)
    deleted = s3.delete_objects(Bucket=BACKUPS, Delete={"Objects": [{"Key": "data/one"}]})
    assert [e["Code"] for e in deleted.get("Errors", [])] == ["AccessDenied"]
    admin = env.s3("admin")
    assert _get(admin, "existing", BACKUPS) == b"old backup"
    assert _get(admin, "data/one", BACKUPS) == b"snapshot 1"
    assert _get(admin, "data/big", BACKUPS) == b"p" * 1024


# --- service accounts -----------------------------------------------------------------------------


def test_service_account_session_policy_narrows(env: Env) -> None:
    parent, svc = env.s3("parent"), env.s3("svc")
    parent.put_object(Bucket=DATA, Key="public/by-parent", Body=b"p")  # parent: readwrite
    assert _get(parent, "x", "other") == b"other data"
    assert _get(svc, "public/by-parent") == b"p"  # session: read data only
    assert [o["Key"] for o in svc.list_objects_v2(Bucket=DATA, Prefix="public/by-")["Contents"]]
    assert denied(lambda: svc.put_object(Bucket=DATA, Key="public/by-svc", Body=b"s"))
    assert denied(lambda: svc.get_object(Bucket="other", Key="x"))
    assert denied(lambda: svc.delete_object(Bucket=DATA, Key="public/by-parent"))


# --- disabled and expired keys (restarts the server) ----------------------------------------------


def _refused(s3: Any) -> bool:
    return error_code(lambda: s3.list_objects_v2(Bucket=DATA)) == "InvalidAccessKeyId"


def test_disabled_expired_keys_and_parent(env: Env) -> None:
    server = env.server
    assert env.s3("keys").list_objects_v2(Bucket=DATA)["KeyCount"] > 0
    expiry = datetime.now(UTC) + timedelta(seconds=8)
    with offline(server) as wh:
        wh.iam.disable_access_key(TENANT, env.keys["keys"][0])
        made = wh.iam.create_access_key(TENANT, "keys", expires_at=expiry)
        env.keys["expiring"] = (made.access_key_id, made.secret_key)
        wh.iam.set_user_disabled(TENANT, "parent", True)
    assert _refused(env.s3("keys"))
    try:
        env.s3("keys").list_objects_v2(Bucket=DATA)
    except Exception as err:  # the status of InvalidAccessKeyId is 403
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # type: ignore[attr-defined]
    assert _refused(env.s3("svc"))  # its parent is disabled
    assert _refused(env.s3("parent"))
    if datetime.now(UTC) < expiry - timedelta(seconds=1):  # only while surely before the expiry
        assert env.s3("expiring").list_objects_v2(Bucket=DATA)["KeyCount"] > 0
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.5)
    assert _refused(env.s3("expiring"))
    with offline(server) as wh:
        wh.iam.enable_access_key(TENANT, env.keys["keys"][0])
        wh.iam.set_access_key_expiry(TENANT, env.keys["expiring"][0], None)
        wh.iam.set_user_disabled(TENANT, "parent", False)
    for user in ("keys", "expiring", "svc"):
        assert env.s3(user).list_objects_v2(Bucket=DATA)["KeyCount"] > 0, user


# --- audit ----------------------------------------------------------------------------------------


def test_audit_trail(env: Env) -> None:
    server = env.server
    getter = env.s3("getter")
    assert _get(getter, "public/a") == b"body of public/a"
    assert denied(lambda: getter.put_object(Bucket=DATA, Key="public/audit-denied", Body=b"x"))
    url = getter.generate_presigned_url("get_object", Params={"Bucket": DATA, "Key": "public/a"}, ExpiresIn=300)
    with urllib.request.urlopen(url) as reply:
        assert reply.read() == b"body of public/a"
    signature = url.rsplit("X-Amz-Signature=", 1)[1].split("&")[0]
    assert len(signature) == 64
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.replace("public/a", "secret/s"))  # a different path: signature mismatch
    assert refused.value.code == 403
    stop(server)
    try:
        data_dir = str(server.data_dir)
        verify = subprocess.run([str(DWH), "audit", "verify", "--data-dir", data_dir], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        arn = f"arn:dwh:iam::{TENANT}:user/getter"
        query = subprocess.run(
            [str(DWH), "audit", "query", "--principal", arn, "--json", "--data-dir", data_dir],
            capture_output=True,
            text=True,
        )
        assert query.returncode == 0, query.stderr
        import json

        records = [json.loads(line) for line in query.stdout.splitlines() if line.strip()]
        assert records and all(r["principal"] == arn for r in records)
        seen = {(r["operation"], r["key"], r["status"]) for r in records}
        assert ("GetObject", "public/a", 200) in seen
        assert ("PutObject", "public/audit-denied", 403) in seen
        assert any(r.get("error") == "AccessDenied" for r in records)
        secrets = [secret.encode() for _, secret in env.keys.values()]
        for path in data_files(Path(data_dir)):
            raw = path.read_bytes()
            assert signature.encode() not in raw, path
            for secret in secrets:
                assert secret not in raw, path
    finally:
        server.start()
