"""The AWS evaluation rules, table by table: explicit deny, implicit deny, Not* elements, wildcards,
principals, tenants, root, anonymous, session policies, variables and the built-in policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.errors import InvalidInput
from datawarehouse.service.policy import (
    BUILTIN_POLICIES,
    AuthzRequest,
    Policy,
    Principal,
    canned_acl_statements,
    evaluate,
    parse_policy,
)
from datawarehouse.service.policy_patterns import wildcard_match
from datawarehouse.service.s3_actions import actions_for

ALICE = Principal.user("acme", "alice", "AID-ALICE")
BOB = Principal.user("acme", "bob")
ROOT = Principal.root("acme")
MALLORY = Principal.user("evil", "mallory")
EVIL_ROOT = Principal.root("evil")
ANON = Principal.anonymous()


def identity(*statements: dict[str, Any], name: str = "p", version: str = "2012-10-17") -> Policy:
    return parse_policy(json.dumps({"Version": version, "Statement": list(statements)}), "identity", name=name)


def bucket(*statements: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), "bucket")


def allow(action: Any = "s3:GetObject", resource: Any = "arn:aws:s3:::b/*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any = "s3:GetObject", resource: Any = "arn:aws:s3:::b/*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def req(
    principal: Principal = ALICE,
    action: str = "s3:GetObject",
    resource: str = "arn:aws:s3:::b/k",
    tenant: str | None = "acme",
    **context: Any,
) -> AuthzRequest:
    return AuthzRequest(principal, action, resource, tenant, context)


# --- identity policies -------------------------------------------------------------------------


def test_implicit_deny_without_any_policy() -> None:
    decision = evaluate(req(), [], None)
    assert not decision and decision.outcome == "implicit-deny" and decision.source is None


def test_identity_allow_names_the_policy_and_sid() -> None:
    decision = evaluate(req(), [identity(allow(Sid="Read"), name="reader")], None)
    assert decision.allowed and (decision.source, decision.sid) == ("identity:reader", "Read")
    assert decision.describe() == "allowed by identity:reader (Read)"


def test_explicit_deny_in_another_policy_wins() -> None:
    decision = evaluate(req(), [identity(allow(), name="a"), identity(deny(Sid="No"), name="d")], None)
    assert not decision.allowed and decision.outcome == "explicit-deny"
    assert (decision.source, decision.sid) == ("identity:d", "No")


def test_explicit_deny_in_bucket_policy_beats_identity_allow() -> None:
    policy = bucket(deny(Principal={"AWS": "arn:aws:iam::acme:user/alice"}, Sid="NoAlice"))
    decision = evaluate(req(), [identity(allow())], policy)
    assert decision.outcome == "explicit-deny" and (decision.source, decision.sid) == ("bucket-policy", "NoAlice")
    assert evaluate(req(BOB), [identity(allow())], policy).allowed


@pytest.mark.parametrize(
    ("statement", "action", "resource", "expected"),
    [
        (allow("s3:*"), "s3:PutObject", "arn:aws:s3:::b/k", True),
        (allow("*"), "s3:PutObject", "arn:aws:s3:::b/k", True),
        (allow("s3:get*"), "s3:GetObjectVersion", "arn:aws:s3:::b/k", True),  # actions ignore case
        (allow("S3:GETOBJECT"), "s3:GetObject", "arn:aws:s3:::b/k", True),
        (allow("s3:GetObject?"), "s3:GetObject", "arn:aws:s3:::b/k", False),
        (allow("s3:Get?bject"), "s3:GetObject", "arn:aws:s3:::b/k", True),
        (allow(resource="arn:aws:s3:::b/*"), "s3:GetObject", "arn:aws:s3:::b/dir/deep/k", True),  # * spans /
        (allow(resource="arn:aws:s3:::b/*"), "s3:GetObject", "arn:aws:s3:::bb/k", False),
        (allow(resource="arn:aws:s3:::B/*"), "s3:GetObject", "arn:aws:s3:::b/k", False),  # resources keep case
        (allow(resource="arn:aws:s3:::b/?"), "s3:GetObject", "arn:aws:s3:::b/k", True),
        (allow(resource="arn:aws:s3:::b/?"), "s3:GetObject", "arn:aws:s3:::b/kk", False),
        (allow(resource="arn:aws:s3:::b"), "s3:GetObject", "arn:aws:s3:::b/k", False),
        (allow(resource="*"), "s3:GetObject", "arn:aws:s3:::b/k", True),
        (allow(resource="arn:dwh:s3:::b/*"), "s3:GetObject", "arn:aws:s3:::b/k", True),
        (allow(resource=["arn:aws:s3:::x", "arn:aws:s3:::b/k"]), "s3:GetObject", "arn:aws:s3:::b/k", True),
    ],
)
def test_action_and_resource_wildcards(statement: dict[str, Any], action: str, resource: str, expected: bool) -> None:
    assert evaluate(req(action=action, resource=resource), [identity(statement)], None).allowed is expected


def test_not_action_and_not_resource() -> None:
    everything_but_delete = identity({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"})
    assert evaluate(req(action="s3:PutObject"), [everything_but_delete], None).allowed
    assert not evaluate(req(action="s3:DeleteObject"), [everything_but_delete], None).allowed
    outside_secret = identity({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/secret/*"})
    assert evaluate(req(resource="arn:aws:s3:::b/public/x"), [outside_secret], None).allowed
    assert not evaluate(req(resource="arn:aws:s3:::b/secret/x"), [outside_secret], None).allowed
    # NotAction in a Deny: deny everything except reads
    read_only = [identity(allow("s3:*")), identity({"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*"})]
    assert evaluate(req(action="s3:GetObject"), read_only, None).allowed
    assert evaluate(req(action="s3:PutObject"), read_only, None).outcome == "explicit-deny"


def test_conditions_gate_statements() -> None:
    tls_only = identity(allow(Condition={"Bool": {"aws:SecureTransport": "true"}}))
    assert evaluate(req(**{"aws:SecureTransport": True}), [tls_only], None).allowed
    assert not evaluate(req(**{"aws:SecureTransport": False}), [tls_only], None).allowed
    assert not evaluate(req(), [tls_only], None).allowed  # missing key: condition false
    office = identity(allow("s3:*"), deny("s3:*", Condition={"NotIpAddress": {"aws:SourceIp": "2001:db8::/48"}}))
    assert evaluate(req(**{"aws:SourceIp": "2001:db8::10"}), [office], None).allowed
    assert evaluate(req(**{"aws:SourceIp": "198.51.100.1"}), [office], None).outcome == "explicit-deny"


def test_time_keys_come_from_now() -> None:
    until_2030 = identity(allow(Condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}))
    early = AuthzRequest(ALICE, "s3:GetObject", "arn:aws:s3:::b/k", "acme", now=datetime(2029, 12, 31, tzinfo=UTC))
    late = AuthzRequest(ALICE, "s3:GetObject", "arn:aws:s3:::b/k", "acme", now=datetime(2030, 1, 2, tzinfo=UTC))
    assert evaluate(early, [until_2030], None).allowed
    assert not evaluate(late, [until_2030], None).allowed
    by_epoch = identity(allow(Condition={"NumericLessThan": {"aws:EpochTime": 1893456000}}))
    assert evaluate(early, [by_epoch], None).allowed and not evaluate(late, [by_epoch], None).allowed
    assert not evaluate(req(), [until_2030], None).allowed  # no clock given: key missing


def test_policy_variables_in_resources() -> None:
    home = identity(allow("s3:*", "arn:aws:s3:::home/${aws:username}/*"))
    assert evaluate(req(resource="arn:aws:s3:::home/alice/x"), [home], None).allowed
    assert not evaluate(req(resource="arn:aws:s3:::home/bob/x"), [home], None).allowed
    assert not evaluate(req(BOB, resource="arn:aws:s3:::home/alice/x"), [home], None).allowed
    tenant_tree = identity(allow("s3:*", "arn:aws:s3:::shared/${aws:PrincipalTenant}/${aws:userid}/*"))
    assert evaluate(req(resource="arn:aws:s3:::shared/acme/AID-ALICE/f"), [tenant_tree], None).allowed
    # bob has no user id: the variable cannot be resolved, the resource matches nothing
    assert not evaluate(req(BOB, resource="arn:aws:s3:::shared/acme//f"), [tenant_tree], None).allowed
    literal = identity(allow("s3:*", "arn:aws:s3:::b/${*}"))
    assert evaluate(req(resource="arn:aws:s3:::b/*"), [literal], None).allowed
    assert not evaluate(req(resource="arn:aws:s3:::b/k"), [literal], None).allowed
    old = identity(allow("s3:*", "arn:aws:s3:::home/${aws:username}/*"), version="2008-10-17")
    assert not evaluate(req(resource="arn:aws:s3:::home/alice/x"), [old], None).allowed
    assert evaluate(req(resource="arn:aws:s3:::home/${aws:username}/x"), [old], None).allowed


def test_user_name_with_wildcard_characters_stays_literal() -> None:
    sneaky = Principal.user("acme", "*")
    home = identity(allow("s3:*", "arn:aws:s3:::home/${aws:username}/*"))
    assert not evaluate(req(sneaky, resource="arn:aws:s3:::home/alice/x"), [home], None).allowed
    assert evaluate(req(sneaky, resource="arn:aws:s3:::home/*/x"), [home], None).allowed


# --- bucket policies, principals, tenants --------------------------------------------------------


@pytest.mark.parametrize(
    ("principal_spec", "who", "expected"),
    [
        ("*", ALICE, True),
        ("*", ANON, True),
        ({"AWS": "*"}, ANON, True),
        ({"AWS": "arn:aws:iam::acme:user/alice"}, ALICE, True),
        ({"AWS": "arn:dwh:iam::acme:user/alice"}, ALICE, True),
        ({"AWS": "arn:aws:iam::acme:user/alice"}, BOB, False),
        ({"AWS": "arn:aws:iam::acme:user/alice"}, ANON, False),
        ({"AWS": "arn:aws:iam::acme:root"}, ROOT, True),
        ({"AWS": "acme"}, ROOT, True),
    ],
)
def test_bucket_policy_principals_same_tenant_without_identity_policies(
    principal_spec: object, who: Principal, expected: bool
) -> None:
    policy = bucket(allow(Principal=principal_spec))
    assert evaluate(req(who), [], policy).allowed is expected


def test_tenant_principal_delegates_to_identity_policies() -> None:
    """An Allow naming the tenant (not the user) does not grant a user by itself, as AWS."""
    policy = bucket(allow(Principal={"AWS": "acme"}))
    assert not evaluate(req(ALICE), [], policy).allowed
    assert evaluate(req(ALICE), [identity(allow())], policy).allowed
    # ... but a Deny naming the tenant binds all its users
    denying = bucket(deny(Principal={"AWS": "arn:aws:iam::acme:root"}))
    assert evaluate(req(ALICE), [identity(allow())], denying).outcome == "explicit-deny"


def test_not_principal() -> None:
    only_alice = bucket(
        allow("s3:*", Principal="*"),
        deny("s3:*", NotPrincipal={"AWS": "arn:aws:iam::acme:user/alice"}, Sid="OnlyAlice"),
    )
    assert evaluate(req(ALICE), [], only_alice).allowed
    assert evaluate(req(BOB), [], only_alice).sid == "OnlyAlice"
    assert evaluate(req(ANON), [], only_alice).outcome == "explicit-deny"
    everyone_but_bob = bucket(allow(NotPrincipal={"AWS": "arn:aws:iam::acme:user/bob"}))
    assert evaluate(req(ANON), [], everyone_but_bob).allowed
    assert not evaluate(req(BOB), [], everyone_but_bob).allowed


def test_cross_tenant_needs_both_sides() -> None:
    grant = bucket(allow(Principal={"AWS": "arn:aws:iam::evil:user/mallory"}))
    own_side = identity(allow())
    foreign = req(MALLORY)  # bucket b belongs to acme
    assert not evaluate(foreign, [own_side], None).allowed  # identity alone: no
    alone = evaluate(foreign, [], grant)
    assert not alone.allowed and "identity policies" in alone.reason  # bucket alone: no
    assert evaluate(foreign, [own_side], grant).allowed  # both: yes
    assert "bucket policy" in evaluate(foreign, [own_side], None).reason
    # the public can read a public bucket, so a foreign user can too (their side still needed)
    public = bucket(allow(Principal="*"))
    assert evaluate(foreign, [own_side], public).allowed
    assert not evaluate(foreign, [], public).allowed


def test_identity_policy_never_reaches_another_tenant() -> None:
    decision = evaluate(req(ALICE, tenant="evil"), [BUILTIN_POLICIES["readwrite"]], None)
    assert not decision.allowed and decision.outcome == "implicit-deny"


def test_root_in_own_tenant_is_not_subject_to_identity_policies() -> None:
    decision = evaluate(req(ROOT, action="s3:DeleteBucket", resource="arn:aws:s3:::b"), [identity(deny("*"))], None)
    assert decision.allowed and decision.source == "root"


def test_root_is_bound_by_bucket_policy_deny_except_policy_repair() -> None:
    lockout = bucket(deny("s3:*", ["arn:aws:s3:::b", "arn:aws:s3:::b/*"], Principal="*", Sid="Lock"))
    assert evaluate(req(ROOT), [], lockout).sid == "Lock"
    for action in ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"):
        assert evaluate(req(ROOT, action=action, resource="arn:aws:s3:::b"), [], lockout).allowed
        assert not evaluate(req(ALICE, action=action, resource="arn:aws:s3:::b"), [identity(allow("*", "*"))], lockout)


def test_foreign_root_needs_the_bucket_policy() -> None:
    assert not evaluate(req(EVIL_ROOT), [], None).allowed
    by_tenant = bucket(allow(Principal={"AWS": "evil"}))
    assert evaluate(req(EVIL_ROOT), [], by_tenant).allowed
    assert not evaluate(req(MALLORY), [], by_tenant).allowed  # mallory has no own-side allow


def test_anonymous_only_through_public_statements() -> None:
    assert not evaluate(req(ANON), [BUILTIN_POLICIES["admin"]], None).allowed  # identity policies ignored
    assert not evaluate(req(ANON), [], bucket(allow(Principal={"AWS": "acme"}))).allowed
    public_acl = canned_acl_statements("public-read", "b")
    decision = evaluate(req(ANON), [], None, acl=public_acl)
    assert decision.allowed and decision.source == "acl"
    assert not evaluate(req(ANON, action="s3:PutObject"), [], None, acl=public_acl).allowed
    assert not evaluate(req(ANON, resource="arn:aws:s3:::other/k"), [], None, acl=public_acl).allowed
    # a Deny in the bucket policy beats the ACL's Allow
    no_secret = bucket(deny(resource="arn:aws:s3:::b/secret*", Principal="*"))
    assert not evaluate(req(ANON, resource="arn:aws:s3:::b/secret.txt"), [], no_secret, acl=public_acl)


def test_object_acl_names_one_key_literally() -> None:
    acl = canned_acl_statements("public-read", "b", "dir/f*?$.txt")
    assert evaluate(req(ANON, resource="arn:aws:s3:::b/dir/f*?$.txt"), [], None, acl=acl).allowed
    assert not evaluate(req(ANON, resource="arn:aws:s3:::b/dir/fXY$.txt"), [], None, acl=acl).allowed


# --- session policies ----------------------------------------------------------------------------


def test_session_policy_intersects() -> None:
    parent = [BUILTIN_POLICIES["readwrite"]]
    session = identity(allow(["s3:GetObject", "s3:PutObject"]), name="svc")
    assert evaluate(req(), parent, None, session).allowed
    narrowed = evaluate(req(action="s3:DeleteObject"), parent, None, session)
    assert not narrowed.allowed and narrowed.source == "session"
    # the session cannot widen: parent lacks PutObject
    assert not evaluate(req(action="s3:PutObject"), [BUILTIN_POLICIES["readonly"]], None, session).allowed
    # a Deny in the session policy is an explicit deny
    assert evaluate(req(), parent, None, identity(allow("s3:*"), deny())).outcome == "explicit-deny"
    # the bucket policy can be the parent's side of the intersection
    by_bucket = bucket(allow(Principal={"AWS": "arn:aws:iam::acme:user/alice"}))
    assert evaluate(req(), [], by_bucket, session).allowed


# --- built-in policies ------------------------------------------------------------------------------


def test_readonly() -> None:
    ro = [BUILTIN_POLICIES["readonly"]]
    assert evaluate(req(action="s3:GetObjectVersion"), ro, None).allowed
    assert evaluate(req(action="s3:ListBucket", resource="arn:aws:s3:::b"), ro, None).allowed
    assert not evaluate(req(action="s3:PutObject"), ro, None).allowed


def writeonly(action: str, resource: str = "arn:aws:s3:::b/k", **context: Any) -> bool:
    """As a service account: parent readwrite, session writeonly."""
    request = req(action=action, resource=resource, **context)
    return evaluate(request, [BUILTIN_POLICIES["readwrite"]], None, BUILTIN_POLICIES["writeonly"]).allowed


def test_writeonly_backup_key() -> None:
    assert writeonly("s3:PutObject", **{"dwh:ObjectExists": False})
    assert not writeonly("s3:PutObject", **{"dwh:ObjectExists": True})  # no overwrite
    assert not writeonly("s3:PutObject")  # the fact is missing: fail closed
    assert writeonly("s3:ListBucket", "arn:aws:s3:::b") and writeonly("s3:GetBucketLocation", "arn:aws:s3:::b")
    assert writeonly("s3:AbortMultipartUpload") and writeonly("s3:ListMultipartUploadParts")
    assert not writeonly("s3:DeleteObject", **{"dwh:ObjectExists": False})
    # reads: only of objects this principal wrote; another's, or one whose writer is unknown, never
    mine, theirs = ALICE.arn, "arn:dwh:iam::acme:user/bob"
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert writeonly(action, **{"dwh:ObjectOwner": mine})
        assert not writeonly(action, **{"dwh:ObjectOwner": theirs})
        assert not writeonly(action, **{"dwh:ObjectOwner": ""})
        assert writeonly(action)  # no such object: the read gets its 404, which reveals nothing listing does not
    assert not writeonly("s3:GetObjectTagging", **{"dwh:ObjectOwner": theirs})
    for action in ("s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"):
        assert not writeonly(action, **{"dwh:ObjectExists": False})
    for action in ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutLifecycleConfiguration"):
        assert not writeonly(action, "arn:aws:s3:::b")
    assert not writeonly("s3:PutBucketVersioning", "arn:aws:s3:::b")
    # the whole multipart flow is s3:PutObject on the key
    for operation in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        for action, resource in actions_for(operation, "b", "k"):
            assert writeonly(action, resource, **{"dwh:ObjectExists": False})


def test_admin_policy_covers_admin_actions() -> None:
    admin = [BUILTIN_POLICIES["consoleAdmin"]]
    assert evaluate(req(action="dwh-admin:CreateUser", resource="*", tenant=None), admin, None).allowed
    rw = [BUILTIN_POLICIES["readwrite"]]
    assert not evaluate(req(action="dwh-admin:CreateUser", resource="*", tenant=None), rw, None).allowed


def test_principal_validation() -> None:
    with pytest.raises(InvalidInput):
        Principal("user", "acme")
    with pytest.raises(InvalidInput):
        Principal("root")
    with pytest.raises(InvalidInput):
        Principal("anonymous", "acme")


# --- properties ----------------------------------------------------------------------------------


@cache
def _reference(pattern: str, text: str) -> bool:
    """Obvious recursive wildcard matcher to check the regex-based one against."""
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return _reference(rest, text) or (bool(text) and _reference(pattern, text[1:]))
    if not text:
        return False
    return (head == "?" or head == text[0]) and _reference(rest, text[1:])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?/.\\[]^$", max_size=8), st.text(alphabet="ab/.\\[]^$*?", max_size=10))
def test_wildcard_matcher_agrees_with_reference(pattern: str, text: str) -> None:
    assert wildcard_match(pattern, text) is _reference(pattern, text)


ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
RESOURCES = ["arn:aws:s3:::b/k", "arn:aws:s3:::b/x/y", "arn:aws:s3:::b", "arn:aws:s3:::c/k"]
statement_st = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Action": st.sampled_from([*ACTIONS, "s3:*", "s3:Get*", "*"]),
        "Resource": st.sampled_from([*RESOURCES, "*", "arn:aws:s3:::b/*", "arn:aws:s3:::?/k"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(statement_st, min_size=1, max_size=4),
    st.lists(statement_st, min_size=0, max_size=3),
    st.sampled_from([ALICE, ROOT, MALLORY, ANON]),
    st.sampled_from(ACTIONS),
    st.sampled_from(RESOURCES),
    statement_st,
)
def test_adding_a_deny_never_turns_denied_into_allowed(
    ident: list[dict[str, Any]],
    resource_side: list[dict[str, Any]],
    who: Principal,
    action: str,
    resource: str,
    extra: dict[str, Any],
) -> None:
    request = req(who, action=action, resource=resource)
    policies = [identity(*ident)]
    bucket_policy = bucket(*[{**s, "Principal": "*"} for s in resource_side]) if resource_side else None
    before = evaluate(request, policies, bucket_policy)
    with_deny = [identity(*ident, {**extra, "Effect": "Deny"})]
    after = evaluate(request, with_deny, bucket_policy)
    assert not (after.allowed and not before.allowed)
    if before.allowed is False:
        assert after.allowed is False


def test_principal_keys_cannot_be_supplied_by_the_caller() -> None:
    home = identity(allow("s3:*", "arn:aws:s3:::home/${aws:username}/*"))
    spoofed = req(BOB, resource="arn:aws:s3:::home/alice/x", **{"AWS:UserName": "alice"})
    assert not evaluate(spoofed, [home], None).allowed
    anon_as_tenant = req(ANON, **{"aws:PrincipalTenant": "acme"})
    only_acme = bucket(allow(Principal="*", Condition={"StringEquals": {"aws:PrincipalTenant": "acme"}}))
    assert not evaluate(anon_as_tenant, [], only_acme).allowed
    assert evaluate(req(BOB), [], only_acme).allowed
