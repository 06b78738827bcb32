"""Public access blocks and object ownership controls, driven with boto3 against a real server:
each of the four block flags refuses or ignores what S3 says it does, BucketOwnerEnforced turns
ACLs off (and back on when removed), and the values this server cannot honour are refused."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from iamkit import UsersEnv as Env
from iamkit import denied, error_code, policy, status_of, users_env
from s3http import assert_s3_error, browser_post, signed
from s3server import unique_bucket

ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENFORCED = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with users_env(tmp_path_factory.mktemp("public-access") / "data", {"alice": None, "carol": "readwrite"}) as made:
        yield made


@pytest.fixture
def bucket(env: Env) -> str:
    name = unique_bucket("pab")
    env.root.create_bucket(Bucket=name)
    env.root.put_object(Bucket=name, Key="doc", Body=b"the doc")
    return name


def _block(env: Env, bucket: str, **flags: bool) -> None:
    env.root.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=flags)


def _read(s3: Any, bucket: str, key: str = "doc") -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _public_policy(bucket: str, **extra: Any) -> str:
    return policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*", **extra}
    )


def _is_public(env: Env, bucket: str) -> bool:
    return bool(env.root.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"])


def _grants(acl: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((g["Grantee"]["Type"], g["Permission"]) for g in acl["Grants"])


def _absent(env: Env, bucket: str, key: str) -> bool:
    return status_of(lambda: env.root.head_object(Bucket=bucket, Key=key)) == 404


# --- the configuration itself ------------------------------------------------------------------------


@pytest.mark.s3op(
    "PutPublicAccessBlock",
    "GetPublicAccessBlock",
    "DeletePublicAccessBlock",
    note="BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy (S3's rule for a public policy) and "
    "RestrictPublicBuckets stored and enforced; absent flags are false",
)
def test_public_access_block_round_trip(env: Env, bucket: str) -> None:
    assert error_code(lambda: env.root.get_public_access_block(Bucket=bucket)) == (
        "NoSuchPublicAccessBlockConfiguration"
    )
    _block(env, bucket, **ALL_BLOCKED)
    assert env.root.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == ALL_BLOCKED
    _block(env, bucket, BlockPublicAcls=True)  # replaces the whole configuration
    expected = dict.fromkeys(ALL_BLOCKED, False) | {"BlockPublicAcls": True}
    assert env.root.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == expected
    env.root.delete_public_access_block(Bucket=bucket)
    assert error_code(lambda: env.root.get_public_access_block(Bucket=bucket)) == (
        "NoSuchPublicAccessBlockConfiguration"
    )
    env.root.delete_public_access_block(Bucket=bucket)  # deleting none is not an error
    assert error_code(lambda: env.root.get_public_access_block(Bucket=bucket + "-none")) == "NoSuchBucket"
    alice = env.s3("alice")  # no identity policy: may neither read nor set it
    assert denied(lambda: alice.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={}))
    assert denied(lambda: alice.get_public_access_block(Bucket=bucket))


@pytest.mark.parametrize(
    "body",
    [
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
        b"<BlockPublicAcls>true</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<AccessBlock/>",
        b"<PublicAccessBlockConfiguration>",
        b"",
    ],
)
def test_malformed_public_access_block(env: Env, bucket: str, body: bytes) -> None:
    _block(env, bucket, IgnorePublicAcls=True)
    reply = signed(env.server, "PUT", f"/{bucket}?publicAccessBlock", body=body)
    assert_s3_error(reply, 400, "MalformedXML")
    config = env.root.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert config["IgnorePublicAcls"] is True  # unchanged


# --- BlockPublicAcls ------------------------------------------------------------------------------


def test_block_public_acls_refuses_every_way_to_set_one(env: Env, bucket: str) -> None:
    env.root.put_object(Bucket=bucket, Key="was-public", Body=b"p", ACL="public-read")
    _block(env, bucket, BlockPublicAcls=True)
    s3 = env.root
    refused = {
        "PutObject": lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="public-read"),
        "PutObject grant": lambda: s3.put_object(
            Bucket=bucket,
            Key="new",
            Body=b"x",
            GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"',
            GrantFullControl=f'id="{s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]}"',
        ),
        "CopyObject": lambda: s3.copy_object(
            Bucket=bucket, Key="new", CopySource={"Bucket": bucket, "Key": "doc"}, ACL="public-read"
        ),
        "CreateMultipartUpload": lambda: s3.create_multipart_upload(Bucket=bucket, Key="new", ACL="public-read"),
        "PutObjectAcl": lambda: s3.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read"),
        "PutBucketAcl": lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
    }
    for what, call in refused.items():
        assert error_code(call) == "AccessDenied", what
        assert status_of(call) == 403, what
    assert _absent(env, bucket, "new")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    post = s3.generate_presigned_post(
        bucket, "posted", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        browser_post(post["url"], post["fields"], b"posted")
    assert exc.value.code == 403
    assert _absent(env, bucket, "posted")
    # private ACLs are still taken, and an ACL set before the block is kept (and grants)
    s3.put_object(Bucket=bucket, Key="private", Body=b"x", ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="private")
    assert _read(env.anon, bucket, "was-public") == b"p"
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    env.root.delete_public_access_block(Bucket=bucket)
    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read")
    assert _read(env.anon, bucket) == b"the doc"


# --- IgnorePublicAcls -----------------------------------------------------------------------------


def test_ignore_public_acls(env: Env, bucket: str) -> None:
    env.root.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read")
    assert _read(env.anon, bucket) == b"the doc"
    assert _is_public(env, bucket)
    _block(env, bucket, IgnorePublicAcls=True)
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    assert not _is_public(env, bucket)
    env.root.put_bucket_acl(Bucket=bucket, ACL="public-read")  # not blocked, but grants nothing
    env.root.put_object(Bucket=bucket, Key="new", Body=b"n", ACL="public-read")
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="new"))
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    env.root.delete_public_access_block(Bucket=bucket)
    assert _read(env.anon, bucket) == b"the doc"
    assert _read(env.anon, bucket, "new") == b"n"


# --- BlockPublicPolicy ----------------------------------------------------------------------------


def _ip_condition(cidr: str) -> dict[str, Any]:
    return {"Condition": {"IpAddress": {"aws:SourceIp": cidr}}}


def test_block_public_policy(env: Env, bucket: str) -> None:
    env.root.put_bucket_policy(Bucket=bucket, Policy=_public_policy(bucket))  # before the block: kept
    _block(env, bucket, BlockPublicPolicy=True)
    assert _read(env.anon, bucket) == b"the doc"
    public = {
        "everyone": _public_policy(bucket),
        "a /7 network": _public_policy(bucket, **_ip_condition("10.0.0.0/7")),
        "a wildcard tenant": _public_policy(bucket, Condition={"StringLike": {"aws:PrincipalTenant": "def*"}}),
        "IfExists": _public_policy(bucket, Condition={"StringEqualsIfExists": {"aws:SourceAccount": "default"}}),
        "NotPrincipal": policy(
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": "arn:aws:iam::default:user/alice"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ),
    }
    for what, text in public.items():
        assert error_code(lambda text=text: env.root.put_bucket_policy(Bucket=bucket, Policy=text)) == (
            "AccessDenied"
        ), what
    assert json.loads(env.root.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(_public_policy(bucket))
    not_public = {
        "a user": policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::default:user/alice"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ),
        "a /24 network": _public_policy(bucket, **_ip_condition("127.0.0.0/24")),
        "a fixed tenant": _public_policy(bucket, Condition={"StringEquals": {"aws:PrincipalTenant": "default"}}),
        "a deny for everyone": policy(
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ),
    }
    for what, text in not_public.items():
        env.root.put_bucket_policy(Bucket=bucket, Policy=text)
        assert json.loads(env.root.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(text), what
        assert not _is_public(env, bucket), what
    env.root.put_bucket_policy(Bucket=bucket, Policy=not_public["a /24 network"])
    assert _read(env.anon, bucket) == b"the doc"  # the server's clients come from 127.0.0.1
    env.root.delete_public_access_block(Bucket=bucket)
    env.root.put_bucket_policy(Bucket=bucket, Policy=public["a /7 network"])
    assert _is_public(env, bucket)


# --- RestrictPublicBuckets ------------------------------------------------------------------------


def test_restrict_public_buckets(env: Env, bucket: str) -> None:
    env.root.put_bucket_policy(Bucket=bucket, Policy=_public_policy(bucket))
    alice = env.s3("alice")  # same tenant, no identity policy: only the policy's "*" lets her read
    assert _read(env.anon, bucket) == b"the doc"
    assert _read(alice, bucket) == b"the doc"
    _block(env, bucket, RestrictPublicBuckets=True)
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    assert _read(alice, bucket) == b"the doc"
    assert _is_public(env, bucket)  # the policy is still public; what it grants is restricted
    env.root.delete_public_access_block(Bucket=bucket)
    assert _read(env.anon, bucket) == b"the doc"


def test_restrict_public_buckets_keeps_denies_and_spares_non_public_policies(env: Env, bucket: str) -> None:
    env.root.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/doc"},
        ),
    )
    env.root.put_object(Bucket=bucket, Key="open", Body=b"o")
    _block(env, bucket, RestrictPublicBuckets=True)
    carol = env.s3("carol")  # readwrite identity policy, bound by the bucket policy's Deny
    assert denied(lambda: carol.get_object(Bucket=bucket, Key="doc"))
    assert _read(carol, bucket, "open") == b"o"
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="open"))


# --- object ownership -------------------------------------------------------------------------------


@pytest.mark.s3op(
    "PutBucketOwnershipControls",
    "GetBucketOwnershipControls",
    "DeleteBucketOwnershipControls",
    status="partial",
    note="BucketOwnerEnforced (ACLs off, enforced); ObjectWriter and BucketOwnerPreferred: NotImplemented "
    "(every object belongs to its bucket's owner here)",
)
def test_bucket_owner_enforced_turns_acls_off(env: Env, bucket: str) -> None:
    s3 = env.root
    assert error_code(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)) == "OwnershipControlsNotFoundError"
    s3.put_object(Bucket=bucket, Key="pub", Body=b"p", ACL="public-read")
    assert _read(env.anon, bucket, "pub") == b"p"
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ENFORCED)
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"] == ENFORCED
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="pub"))  # the object ACL grants nothing
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="pub")) == [("CanonicalUser", "FULL_CONTROL")]
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == [("CanonicalUser", "FULL_CONTROL")]
    refused = {
        "PutObject public-read": lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="public-read"),
        "PutObject private": lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="private"),
        "CreateMultipartUpload": lambda: s3.create_multipart_upload(Bucket=bucket, Key="new", ACL="private"),
        "PutObjectAcl": lambda: s3.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read"),
        "PutBucketAcl": lambda: s3.put_bucket_acl(Bucket=bucket, ACL="private"),
    }
    for what, call in refused.items():
        assert error_code(call) == "AccessControlListNotSupported", what
        assert status_of(call) == 400, what
    assert _absent(env, bucket, "new")
    # no ACL, or the owner's full control alone (by name or as a document), is taken
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b", ACL="bucket-owner-full-control")
    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="bucket-owner-full-control")
    acl = s3.get_bucket_acl(Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": acl["Owner"], "Grants": acl["Grants"]})
    # turning ACLs back on restores what they granted
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert error_code(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)) == "OwnershipControlsNotFoundError"
    assert _read(env.anon, bucket, "pub") == b"p"
    s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="private")


def test_ownership_values_this_server_cannot_honour_and_conflicts(env: Env, bucket: str) -> None:
    s3 = env.root
    for value in ("ObjectWriter", "BucketOwnerPreferred"):
        controls = {"Rules": [{"ObjectOwnership": value}]}
        assert error_code(lambda c=controls: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=c)) == (
            "NotImplemented"
        )
    nonsense = (
        b"<OwnershipControls><Rule><ObjectOwnership>Everyone</ObjectOwnership></Rule></OwnershipControls>",
        b"<OwnershipControls><Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>"
        b"<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule></OwnershipControls>",
        b"<OwnershipControls/>",
    )
    for body in nonsense:
        assert_s3_error(signed(env.server, "PUT", f"/{bucket}?ownershipControls", body=body), 400, "MalformedXML")
    assert error_code(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)) == "OwnershipControlsNotFoundError"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert error_code(lambda: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ENFORCED)) == (
        "InvalidBucketAclWithObjectOwnership"
    )
    assert error_code(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)) == "OwnershipControlsNotFoundError"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ENFORCED)


def test_create_bucket_with_object_ownership(env: Env) -> None:
    s3 = env.root
    name = unique_bucket("own")
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"] == ENFORCED
    assert error_code(lambda: s3.put_object(Bucket=name, Key="k", Body=b"x", ACL="public-read")) == (
        "AccessControlListNotSupported"
    )
    refused = {
        "InvalidBucketAclWithObjectOwnership": {"ACL": "public-read", "ObjectOwnership": "BucketOwnerEnforced"},
        "NotImplemented": {"ObjectOwnership": "ObjectWriter"},
    }
    for expected, args in refused.items():
        other = unique_bucket("own")
        assert error_code(lambda o=other, a=args: s3.create_bucket(Bucket=o, **a)) == expected
        assert status_of(lambda o=other: s3.head_bucket(Bucket=o)) == 404  # nothing was created
    other = unique_bucket("own")
    reply = signed(env.server, "PUT", f"/{other}", headers={"x-amz-object-ownership": "Mine"})
    assert_s3_error(reply, 400, "InvalidArgument")
    assert status_of(lambda: s3.head_bucket(Bucket=other)) == 404
    carol = env.s3("carol")  # readwrite: s3:* on every bucket, so both actions are allowed
    mine = unique_bucket("own")
    carol.create_bucket(Bucket=mine, ObjectOwnership="BucketOwnerEnforced")
    assert s3.get_bucket_ownership_controls(Bucket=mine)["OwnershipControls"] == ENFORCED
