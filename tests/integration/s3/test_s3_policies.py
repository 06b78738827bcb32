"""Bucket policies and canned ACLs through boto3 against one ``dwh serve``: the default tenant's
root owns the buckets; users alice, bob (no identity policies) and carol (readwrite) are
provisioned offline; anonymous requests are unsigned boto3 calls or plain urllib GETs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from iamkit import UsersEnv as Env
from iamkit import denied, error_code, policy, status_of, users_env
from s3http import assert_s3_error, signed
from s3server import DwhServer, unique_bucket

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with users_env(
        tmp_path_factory.mktemp("policies") / "data", {"alice": None, "bob": None, "carol": "readwrite"}
    ) as made:
        yield made


@pytest.fixture
def bucket(env: Env) -> str:
    name = unique_bucket("pol")
    env.root.create_bucket(Bucket=name)
    env.root.put_object(Bucket=name, Key="doc", Body=b"the doc")
    env.root.put_object(Bucket=name, Key="other", Body=b"the other")
    return name


def _get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _url_get(server: DwhServer, bucket: str, key: str) -> int:
    try:
        with urllib.request.urlopen(server.url(bucket, key)) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code


def _let_alice_put(env: Env, bucket: str) -> None:
    """A bucket policy that lets alice PutObject (and nothing else, s3:PutObjectAcl included)."""
    env.root.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::default:user/alice"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ),
    )


def _public(env: Env, bucket: str) -> bool:
    return bool(env.root.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"])


# --- bucket policies ------------------------------------------------------------------------------


@pytest.mark.s3op(
    "PutBucketPolicy", "GetBucketPolicy", note="Principal: user ARN (arn:dwh:/arn:aws:iam::<tenant>:user/<name>)"
)
def test_bucket_policy_grants_a_user(env: Env, bucket: str) -> None:
    doc = policy(
        {
            "Sid": "AliceReads",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:dwh:iam::default:user/alice"},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        },
        {
            "Sid": "BobLists",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::default:user/bob"]},
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
        },
    )
    alice, bob = env.s3("alice"), env.s3("bob")
    assert denied(lambda: alice.get_object(Bucket=bucket, Key="doc"))  # nothing allows it yet
    env.root.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert json.loads(env.root.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(doc)
    assert _get(alice, bucket, "doc") == b"the doc"
    assert denied(lambda: alice.list_objects_v2(Bucket=bucket))
    assert denied(lambda: alice.put_object(Bucket=bucket, Key="new", Body=b"x"))
    assert [o["Key"] for o in bob.list_objects_v2(Bucket=bucket)["Contents"]] == ["doc", "other"]
    assert denied(lambda: bob.get_object(Bucket=bucket, Key="doc"))
    assert not _public(env, bucket)
    assert denied(lambda: alice.get_bucket_policy(Bucket=bucket))


@pytest.mark.s3op(
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "GetBucketPolicyStatus",
    note='Principal "*": anonymous reads; IsPublic true/false; NoSuchBucketPolicy after delete',
)
@pytest.mark.s3op(
    "auth:anonymous",
    status="partial",
    note='allowed only where a bucket policy (Principal "*") or a public-read ACL grants it; else AccessDenied',
)
def test_public_read_policy(env: Env, bucket: str) -> None:
    assert not _public(env, bucket)
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    env.root.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ),
    )
    assert _public(env, bucket)
    assert _get(env.anon, bucket, "doc") == b"the doc"
    assert _url_get(env.server, bucket, "other") == 200
    assert denied(lambda: env.anon.put_object(Bucket=bucket, Key="anon", Body=b"x"))
    assert denied(lambda: env.anon.list_objects_v2(Bucket=bucket))
    assert denied(lambda: env.anon.delete_object(Bucket=bucket, Key="doc"))
    env.root.delete_bucket_policy(Bucket=bucket)
    assert error_code(lambda: env.root.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"
    assert not _public(env, bucket)
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    assert _url_get(env.server, bucket, "other") == 403


def test_object_attributes_need_the_read_and_the_attributes_action(env: Env, bucket: str) -> None:
    """AWS: GetObjectAttributes needs s3:GetObjectAttributes and s3:GetObject, one without the
    other is denied."""

    def allow(*actions: str) -> None:
        statement = {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::default:user/alice"},
            "Action": list(actions),
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
        env.root.put_bucket_policy(Bucket=bucket, Policy=policy(statement))

    alice = env.s3("alice")

    def attributes() -> Any:
        return alice.get_object_attributes(Bucket=bucket, Key="doc", ObjectAttributes=["ObjectSize"])

    allow("s3:GetObject")
    assert _get(alice, bucket, "doc") == b"the doc" and denied(attributes)
    allow("s3:GetObjectAttributes")
    assert denied(attributes)
    allow("s3:GetObject", "s3:GetObjectAttributes")
    assert attributes()["ObjectSize"] == len(b"the doc")


@pytest.mark.s3op("PutBucketPolicy", note="a Deny overrides the user's identity Allow")
def test_bucket_policy_deny_overrides_identity_allow(env: Env, bucket: str) -> None:
    carol = env.s3("carol")  # readwrite
    carol.delete_object(Bucket=bucket, Key="other")
    env.root.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Deny",
                "Principal": {"AWS": "arn:aws:iam::default:user/carol"},
                "Action": ["s3:DeleteObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ),
    )
    assert _get(carol, bucket, "doc") == b"the doc"
    assert denied(lambda: carol.delete_object(Bucket=bucket, Key="doc"))
    assert denied(lambda: carol.put_object(Bucket=bucket, Key="doc", Body=b"x"))
    env.root.put_object(Bucket=bucket, Key="doc", Body=b"root still may")  # the Deny names carol only


def test_root_can_repair_a_policy_that_denies_everyone(env: Env, bucket: str) -> None:
    env.root.put_bucket_policy(
        Bucket=bucket,
        Policy=policy(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ),
    )
    assert denied(lambda: env.root.get_object(Bucket=bucket, Key="doc"))  # a Deny binds root too
    assert "Deny" in env.root.get_bucket_policy(Bucket=bucket)["Policy"]
    env.root.delete_bucket_policy(Bucket=bucket)
    assert _get(env.root, bucket, "doc") == b"the doc"


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("bad JSON", '{"Version": "2012-10-17", "Statement": ['),
        (
            "unknown field",
            policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*", "Colour": "red"}),
        ),
        ("unknown action", policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjects", "Resource": "*"})),
        ("no principal", policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*"})),
        (
            "oversized",
            policy(
                *[
                    {
                        "Sid": f"S{i}",
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::x/{'k' * 200}{i}",
                    }
                    for i in range(120)
                ]
            ),
        ),
    ],
    ids=["bad-json", "unknown-field", "unknown-action", "no-principal", "oversized"],
)
@pytest.mark.s3op(
    "PutBucketPolicy", note="MalformedPolicy: bad JSON, unknown fields or actions, no Principal, over 20 KiB"
)
def test_malformed_policy(env: Env, bucket: str, what: str, text: str) -> None:
    assert error_code(lambda: env.root.put_bucket_policy(Bucket=bucket, Policy=text)) == "MalformedPolicy", what
    assert error_code(lambda: env.root.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"


# --- canned ACLs ----------------------------------------------------------------------------------


def _grants(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("URI") or g["Grantee"]["Type"], g["Permission"]) for g in acl["Grants"]}


@pytest.mark.s3op("PutBucketAcl", "GetBucketAcl", note="canned private / public-read; CreateBucket x-amz-acl")
def test_bucket_canned_acl(env: Env) -> None:
    name = unique_bucket("acl")
    env.root.create_bucket(Bucket=name, ACL="public-read")
    env.root.put_object(Bucket=name, Key="k", Body=b"public body")
    assert _get(env.anon, name, "k") == b"public body"
    assert _url_get(env.server, name, "k") == 200
    assert _public(env, name)
    assert (ALL_USERS, "READ") in _grants(env.root.get_bucket_acl(Bucket=name))
    assert denied(lambda: env.anon.put_object(Bucket=name, Key="anon", Body=b"x"))
    env.root.put_bucket_acl(Bucket=name, ACL="private")
    assert denied(lambda: env.anon.get_object(Bucket=name, Key="k"))
    assert not _public(env, name)
    assert _grants(env.root.get_bucket_acl(Bucket=name)) == {("CanonicalUser", "FULL_CONTROL")}
    env.root.put_bucket_acl(Bucket=name, ACL="public-read")
    assert _url_get(env.server, name, "k") == 200
    assert denied(lambda: env.s3("alice").put_bucket_acl(Bucket=name, ACL="private"))  # needs PutBucketAcl
    assert _url_get(env.server, name, "k") == 200


@pytest.mark.s3op("PutObjectAcl", "GetObjectAcl", note="canned private / public-read per key; PutObject x-amz-acl")
def test_object_canned_acl(env: Env, bucket: str) -> None:
    env.root.put_object(Bucket=bucket, Key="shared", Body=b"shared body", ACL="public-read")
    assert _get(env.anon, bucket, "shared") == b"shared body"
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))  # that key only
    assert (ALL_USERS, "READ") in _grants(env.root.get_object_acl(Bucket=bucket, Key="shared"))
    assert _grants(env.root.get_object_acl(Bucket=bucket, Key="doc")) == {("CanonicalUser", "FULL_CONTROL")}
    env.root.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read")
    assert _url_get(env.server, bucket, "doc") == 200
    env.root.put_object_acl(Bucket=bucket, Key="shared", ACL="private")
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="shared"))
    assert error_code(lambda: env.root.get_object_acl(Bucket=bucket, Key="missing")) == "NoSuchKey"
    # a public-read ACL on a write needs s3:PutObjectAcl besides s3:PutObject
    _let_alice_put(env, bucket)
    alice = env.s3("alice")
    alice.put_object(Bucket=bucket, Key="by-alice", Body=b"a", ACL="private")  # a no-op ACL needs nothing more
    assert denied(lambda: alice.put_object(Bucket=bucket, Key="by-alice-public", Body=b"a", ACL="public-read"))
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="by-alice"))


def _with_public_read(acl: dict[str, Any]) -> dict[str, Any]:
    """What ``s3cmd setacl --acl-public`` sends: the ACL as read, with AllUsers READ added."""
    grants = [*acl["Grants"], {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]
    return {"Owner": acl["Owner"], "Grants": grants}


@pytest.mark.s3op(
    "PutBucketAcl",
    "PutObjectAcl",
    note="ACL documents and x-amz-grant-* headers equal to private or public-read",
)
def test_acl_documents_and_grant_headers_equal_to_canned_acls(env: Env, bucket: str) -> None:
    read = env.root.get_bucket_acl(Bucket=bucket)
    owner_id = read["Owner"]["ID"]
    env.root.put_bucket_acl(Bucket=bucket, AccessControlPolicy=_with_public_read(read))
    assert _get(env.anon, bucket, "doc") == b"the doc"
    assert (ALL_USERS, "READ") in _grants(env.root.get_bucket_acl(Bucket=bucket))
    env.root.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": read["Owner"], "Grants": read["Grants"]})
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))  # the document as read: private again
    # per object, as a document and as grant headers
    acl = env.root.get_object_acl(Bucket=bucket, Key="doc")
    env.root.put_object_acl(Bucket=bucket, Key="doc", AccessControlPolicy=_with_public_read(acl))
    assert _url_get(env.server, bucket, "doc") == 200 and _url_get(env.server, bucket, "other") == 403
    env.root.put_object_acl(Bucket=bucket, Key="doc", GrantFullControl=f'id="{owner_id}"')
    assert _url_get(env.server, bucket, "doc") == 403
    env.root.put_object_acl(
        Bucket=bucket, Key="other", GrantFullControl=f'id="{owner_id}"', GrantRead=f'uri="{ALL_USERS}"'
    )
    assert _url_get(env.server, bucket, "other") == 200
    # and with the write that creates the object (PutObject, CopyObject, CreateBucket)
    env.root.put_object(
        Bucket=bucket, Key="granted", Body=b"g", GrantFullControl=f"id={owner_id}", GrantRead=f"uri={ALL_USERS}"
    )
    assert _url_get(env.server, bucket, "granted") == 200
    env.root.put_object(Bucket=bucket, Key="granted", Body=b"g2")  # a new object is private again
    assert _url_get(env.server, bucket, "granted") == 403
    env.root.copy_object(
        Bucket=bucket,
        Key="copied",
        CopySource=f"{bucket}/doc",
        GrantFullControl=f"id={owner_id}",
        GrantRead=f"uri={ALL_USERS}",
    )
    assert _url_get(env.server, bucket, "copied") == 200
    name = unique_bucket("grant")
    env.root.create_bucket(Bucket=name, GrantFullControl=f"id={owner_id}", GrantRead=f"uri={ALL_USERS}")
    env.root.put_object(Bucket=name, Key="k", Body=b"k")
    assert _url_get(env.server, name, "k") == 200
    # granting by headers needs s3:PutObjectAcl, like a granting x-amz-acl
    _let_alice_put(env, bucket)
    alice = env.s3("alice")
    assert denied(lambda: alice.put_object(Bucket=bucket, Key="by-alice", Body=b"a", GrantRead=f"uri={ALL_USERS}"))
    env.root.delete_bucket_policy(Bucket=bucket)


@pytest.mark.s3op(
    "PutBucketAcl",
    "PutObjectAcl",
    status="partial",
    note="other grants (another account, AuthenticatedUsers, WRITE, an owner without FULL_CONTROL) answer "
    "NotImplemented; public-read-write and other canned ACLs InvalidArgument",
)
def test_acl_grants_beyond_the_canned_acls_and_unsupported_canned_acls(env: Env, bucket: str) -> None:
    read = env.root.get_bucket_acl(Bucket=bucket)
    owner, owner_id = read["Owner"], read["Owner"]["ID"]
    full = {"Grantee": {"Type": "CanonicalUser", "ID": owner_id}, "Permission": "FULL_CONTROL"}
    refused = [
        [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}],  # the owner's grant left out
        [full, {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "WRITE"}],
        [full, {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "FULL_CONTROL"}],
        [
            full,
            {
                "Grantee": {"Type": "Group", "URI": ALL_USERS.replace("AllUsers", "AuthenticatedUsers")},
                "Permission": "READ",
            },
        ],
        [full, {"Grantee": {"Type": "CanonicalUser", "ID": "someone-else"}, "Permission": "READ"}],
        [full, {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@example.com"}, "Permission": "READ"}],
        [{"Grantee": {"Type": "CanonicalUser", "ID": owner_id}, "Permission": "READ"}],
    ]
    for grants in refused:
        document = {"Owner": owner, "Grants": grants}
        assert error_code(lambda: env.root.put_bucket_acl(Bucket=bucket, AccessControlPolicy=document)) == (
            "NotImplemented"
        ), grants
        assert error_code(lambda: env.root.put_object_acl(Bucket=bucket, Key="doc", AccessControlPolicy=document)) == (
            "NotImplemented"
        ), grants
    assert error_code(lambda: env.root.put_bucket_acl(Bucket=bucket, GrantRead=f"uri={ALL_USERS}")) == "NotImplemented"
    assert error_code(
        lambda: env.root.put_object(Bucket=bucket, Key="w", Body=b"x", GrantReadACP=f"uri={ALL_USERS}")
    ) == ("NotImplemented")
    # both a canned ACL and grants; a grant that is not kind=grantee; an ACL handing the object over
    both = lambda: env.root.put_object_acl(  # noqa: E731
        Bucket=bucket, Key="doc", ACL="public-read", GrantFullControl=f"id={owner_id}"
    )
    assert error_code(both) == "InvalidRequest"
    assert error_code(lambda: env.root.put_object_acl(Bucket=bucket, Key="doc", GrantRead="everyone")) == (
        "InvalidArgument"
    )
    other_owner = {"Owner": {"ID": "someone-else"}, "Grants": [full]}
    assert error_code(lambda: env.root.put_bucket_acl(Bucket=bucket, AccessControlPolicy=other_owner)) == (
        "AccessDenied"
    )
    # documents that are not an ACL, or an ACL given twice (headers and body)
    grant = f"<Grant><Grantee><ID>{owner_id}</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant>"
    document = f"<AccessControlPolicy><AccessControlList>{grant}</AccessControlList></AccessControlPolicy>"
    for body, code in [
        ("<AccessControlPolicy><Owner/></AccessControlPolicy>", "MalformedACLError"),
        (document.replace("FULL_CONTROL", "EVERYTHING"), "MalformedACLError"),
        (document.replace(f"<ID>{owner_id}</ID>", ""), "MalformedACLError"),
        (document[:-5], "MalformedXML"),
        ("<Tagging/>", "MalformedXML"),
    ]:
        assert_s3_error(signed(env.server, "PUT", f"/{bucket}?acl", body=body.encode()), 400, code)
    both = signed(env.server, "PUT", f"/{bucket}/doc?acl", body=document.encode(), headers={"x-amz-acl": "private"})
    assert_s3_error(both, 400, "UnexpectedContent")
    assert signed(env.server, "PUT", f"/{bucket}/doc?acl", body=document.encode()).status == 200
    assert_s3_error(signed(env.server, "PUT", f"/{bucket}?acl"), 400, "InvalidRequest")  # no ACL at all
    for canned in ("public-read-write", "authenticated-read"):
        assert status_of(lambda: env.root.put_bucket_acl(Bucket=bucket, ACL=canned)) == 400, canned
        assert status_of(lambda: env.root.put_object(Bucket=bucket, Key="prw", Body=b"x", ACL=canned)) == 400
    name = unique_bucket("prw")
    assert status_of(lambda: env.root.create_bucket(Bucket=name, ACL="public-read-write")) == 400
    assert name not in {b["Name"] for b in env.root.list_buckets()["Buckets"]}  # refused before creating
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="doc"))
    assert error_code(lambda: env.root.head_object(Bucket=bucket, Key="prw")) == "404"
    assert error_code(lambda: env.root.head_object(Bucket=bucket, Key="w")) == "404"


@pytest.mark.s3op(
    "CreateMultipartUpload", note="x-amz-acl and x-amz-grant-* kept with the upload, applied at completion"
)
def test_multipart_upload_acl_applies_at_completion(env: Env, bucket: str) -> None:
    def upload(key: str, **acl: str) -> None:
        made = env.root.create_multipart_upload(Bucket=bucket, Key=key, **acl)
        part = env.root.upload_part(Bucket=bucket, Key=key, UploadId=made["UploadId"], PartNumber=1, Body=b"p" * 100)
        parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
        env.root.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=made["UploadId"], MultipartUpload=parts)

    env.root.put_object(Bucket=bucket, Key="mp", Body=b"public", ACL="public-read")
    upload("mp")  # the new object is private, as after a PutObject without an ACL
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="mp"))
    upload("mp", ACL="public-read")
    assert _get(env.anon, bucket, "mp") == b"p" * 100
    upload("mp")
    assert denied(lambda: env.anon.get_object(Bucket=bucket, Key="mp"))
    owner_id = env.root.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    upload("mp", GrantRead=f"uri={ALL_USERS}", GrantFullControl=f"id={owner_id}")
    assert _url_get(env.server, bucket, "mp") == 200
    assert "x-amz-acl" not in str(env.root.head_object(Bucket=bucket, Key="mp")["ResponseMetadata"]["HTTPHeaders"])
    assert error_code(lambda: env.root.create_multipart_upload(Bucket=bucket, Key="x", ACL="public-read-write")) == (
        "InvalidArgument"
    )
