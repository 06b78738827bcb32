"""Policy documents: accepted forms, the parsed shape, and one clear error per malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from datawarehouse.api.s3.errors import s3_error_from
from datawarehouse.errors import InvalidInput, InvalidPolicy
from datawarehouse.service.policy import (
    BUILTIN_POLICIES,
    MAX_BUCKET_POLICY_BYTES,
    MAX_IDENTITY_POLICY_CHARS,
    builtin_policy,
    canned_acl_statements,
    parse_policy,
)


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17", **top: Any) -> str:
    body: dict[str, Any] = {"Statement": list(statements), **top}
    if version is not None:
        body["Version"] = version
    return json.dumps(body)


ALLOW_GET = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}


def test_minimal_identity_policy_and_round_trip_text() -> None:
    text = doc({"Sid": "Read", **ALLOW_GET}, Id="p1")
    policy = parse_policy(text, "identity", name="mine")
    assert policy.text == text
    assert (policy.version, policy.id, policy.name, policy.kind) == ("2012-10-17", "p1", "mine", "identity")
    (statement,) = policy.statements
    assert statement.sid == "Read" and statement.effect == "Allow"
    assert statement.actions == ("s3:GetObject",) and not statement.not_action
    assert [r.text for r in statement.resources] == ["arn:aws:s3:::b/*"]
    assert statement.principal is None and statement.conditions == ()


def test_statement_may_be_a_single_object_and_lists_are_accepted_everywhere() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Deny",
                "NotAction": ["s3:GetObject", "s3:List*"],
                "NotResource": ["arn:aws:s3:::a", "arn:aws:s3:::a/*"],
                "Principal": {"AWS": ["arn:aws:iam::acme:user/bob", "other"]},
            },
        }
    )
    (statement,) = parse_policy(text, "bucket").statements
    assert statement.not_action and statement.not_resource and not statement.not_principal
    assert statement.principal is not None
    assert statement.principal.arns == ("arn:dwh:iam::acme:user/bob", "arn:dwh:iam::other:root")
    assert statement.label == "statement #1"


def test_dwh_partition_is_a_synonym_and_bytes_are_accepted() -> None:
    text = doc({**ALLOW_GET, "Resource": "arn:dwh:s3:::b/x"})
    (statement,) = parse_policy(text.encode(), "identity").statements
    assert statement.resources[0].text == "arn:aws:s3:::b/x"


def test_missing_version_defaults_to_2008_where_variables_are_literal() -> None:
    policy = parse_policy(doc({**ALLOW_GET, "Resource": "arn:aws:s3:::${aws:username}"}, version=None), "identity")
    assert policy.version == "2008-10-17" and not policy.variables
    assert not policy.statements[0].resources[0].has_variables


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ["*"]}])
def test_everyone_principal_forms(principal: object) -> None:
    (statement,) = parse_policy(doc({**ALLOW_GET, "Principal": principal}), "bucket").statements
    assert statement.principal is not None and statement.principal.everyone


def test_admin_actions_and_star_are_accepted() -> None:
    text = doc({"Effect": "Allow", "Action": ["dwh-admin:*", "dwh-admin:CreateUser", "*", "S3:get*"], "Resource": "*"})
    assert parse_policy(text, "identity").statements[0].actions[0] == "dwh-admin:*"


def test_builtin_policies_parse_and_are_named() -> None:
    assert set(BUILTIN_POLICIES) == {"readwrite", "readonly", "writeonly", "consoleAdmin", "admin"}
    for name, policy in BUILTIN_POLICIES.items():
        assert policy.name == name and policy.kind == "identity"
        assert parse_policy(policy.text, "identity").statements == policy.statements
    with pytest.raises(InvalidInput, match="no built-in policy"):
        builtin_policy("superuser")


BAD: list[tuple[str, str, str]] = [
    ("not json", "identity", "not valid JSON"),
    ("[]", "identity", "must be a JSON object"),
    (json.dumps({"Version": "2012-10-17"}), "identity", "Statement is required"),
    (doc(), "identity", "non-empty list"),
    (doc(ALLOW_GET, version="2020-01-01"), "identity", "Version must be one of"),
    (doc(ALLOW_GET, Extra=1), "identity", "unknown top-level field 'Extra'"),
    (doc(ALLOW_GET, Id=5), "identity", "Id must be a string"),
    ('{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}', "identity", "appears twice"),
    (doc("nope"), "identity", "statement #1: must be an object"),  # type: ignore[arg-type]
    (doc({**ALLOW_GET, "Sid": "S1", "Effects": "Allow"}), "identity", "statement 'S1': unknown field 'Effects'"),
    (doc({**ALLOW_GET, "Effect": "allow"}), "identity", 'Effect must be "Allow" or "Deny"'),
    (doc({"Effect": "Allow", "Resource": "*"}), "identity", "needs Action or NotAction"),
    (doc({**ALLOW_GET, "NotAction": "s3:PutObject"}), "identity", "has both Action and NotAction"),
    (doc({**ALLOW_GET, "Action": []}), "identity", "must not be an empty list"),
    (doc({**ALLOW_GET, "Action": "GetObject"}), "identity", "'GetObject' is not an action"),
    (doc({**ALLOW_GET, "Action": "ec2:RunInstances"}), "identity", "is not an action"),
    (doc({**ALLOW_GET, "Action": "s3:DeleteObjects"}), "identity", "'s3:DeleteObjects' is not an Amazon S3 action"),
    (doc({**ALLOW_GET, "Action": 5}), "identity", "must be a non-empty string"),
    (doc({"Effect": "Allow", "Action": "s3:*"}), "identity", "needs Resource or NotResource"),
    (doc({**ALLOW_GET, "Resource": "bucket/key"}), "identity", "is not '*' or an S3 ARN"),
    (doc({**ALLOW_GET, "Resource": "arn:aws:iam::acme:user/x"}), "identity", "is not '*' or an S3 ARN"),
    (doc({**ALLOW_GET, "Resource": "arn:aws:s3:::"}), "identity", "is not '*' or an S3 ARN"),
    (doc({**ALLOW_GET, "Resource": "arn:aws:s3:::${bad key}"}), "identity", "not a valid condition key"),
    (doc({**ALLOW_GET, "Principal": "*"}), "identity", "only allowed in bucket policies"),
    (doc(ALLOW_GET), "bucket", "needs Principal or NotPrincipal"),
    (doc({**ALLOW_GET, "Principal": "bob"}), "bucket", 'must be "*" or {"AWS": ...}'),
    (doc({**ALLOW_GET, "Principal": {"Service": "x"}}), "bucket", "principal type 'Service' is not supported"),
    (doc({**ALLOW_GET, "Principal": {"AWS": "arn:aws:iam::acme:user/*"}}), "bucket", "no wildcards"),
    (doc({**ALLOW_GET, "Principal": {"AWS": "arn:aws:iam::acme:group/g"}}), "bucket", "is not '*', a tenant id"),
    (doc({**ALLOW_GET, "Principal": "*", "NotPrincipal": "*"}), "bucket", "has both Principal and NotPrincipal"),
    (doc({**ALLOW_GET, "Sid": "A"}, {**ALLOW_GET, "Sid": "A"}), "identity", "Sid must be unique"),
    (doc({**ALLOW_GET, "Sid": 3}), "identity", "Sid must be a string"),
    (doc({**ALLOW_GET, "Condition": []}), "identity", "Condition must be an object"),
    (doc({**ALLOW_GET, "Condition": {"StringEqualz": {"k": "v"}}}), "identity", "unknown condition operator"),
    (doc({**ALLOW_GET, "Condition": {"StringEquals": {}}}), "identity", "non-empty object"),
    (doc({**ALLOW_GET, "Condition": {"StringEquals": {"k": []}}}), "identity", "needs at least one value"),
    (doc({**ALLOW_GET, "Condition": {"StringEquals": {"k": {"a": 1}}}}), "identity", "strings, numbers or booleans"),
    (doc({**ALLOW_GET, "Condition": {"NumericEquals": {"k": "ten"}}}), "identity", "'ten' is not a number"),
    (doc({**ALLOW_GET, "Condition": {"DateLessThan": {"k": "yesterday"}}}), "identity", "not an ISO 8601 date"),
    (doc({**ALLOW_GET, "Condition": {"Bool": {"k": "yes"}}}), "identity", "must be true or false"),
    (doc({**ALLOW_GET, "Condition": {"Null": {"k": "maybe"}}}), "identity", "must be true or false"),
    (doc({**ALLOW_GET, "Condition": {"IpAddress": {"k": "10.0.0.300/8"}}}), "identity", "not an IP address"),
    (doc({**ALLOW_GET, "Condition": {"ForAnyValue:Null": {"k": "true"}}}), "identity", "Null takes no qualifier"),
    (doc({**ALLOW_GET, "Condition": {"StringEquals": {"K": "a", "k": "b"}}}), "identity", "appears twice"),
]


@pytest.mark.parametrize(("text", "kind", "message"), BAD)
def test_malformed_documents_are_refused_with_a_clear_message(text: str, kind: str, message: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy(text, kind)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_error_names_statement_by_sid() -> None:
    with pytest.raises(InvalidPolicy, match="statement 'Mine': Condition 'Bool' key 'aws:SecureTransport'"):
        parse_policy(doc({**ALLOW_GET, "Sid": "Mine", "Condition": {"Bool": {"aws:SecureTransport": "1"}}}), "identity")


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(InvalidPolicy, match="UTF-8"):
        parse_policy(b"\xff{", "identity")


def test_size_limits() -> None:
    padding = "x" * (MAX_BUCKET_POLICY_BYTES + 1)
    with pytest.raises(InvalidPolicy, match="may not exceed 20480 bytes"):
        parse_policy(doc({**ALLOW_GET, "Principal": "*", "Sid": padding}), "bucket")
    many = [{**ALLOW_GET, "Sid": f"S{i}"} for i in range(MAX_IDENTITY_POLICY_CHARS // 60)]
    with pytest.raises(InvalidPolicy, match="6144 characters"):
        parse_policy(doc(*many), "identity")
    # whitespace does not count toward the identity limit, as AWS
    few = [{**ALLOW_GET, "Sid": f"S{i}"} for i in range(40)]
    pretty = json.dumps({"Version": "2012-10-17", "Statement": few}, indent=40)
    assert len(pretty) > MAX_IDENTITY_POLICY_CHARS
    assert len(parse_policy(pretty, "identity").statements) == 40


def test_invalid_policy_maps_to_malformed_policy_in_s3() -> None:
    error = s3_error_from(InvalidPolicy("statement #1: Effect must be ..."))
    assert (error.code, error.http_status) == ("MalformedPolicy", 400)
    assert "statement #1" in error.message


def test_canned_acls() -> None:
    assert canned_acl_statements("private", "b") == ()
    assert canned_acl_statements("bucket-owner-full-control", "b") == ()
    (statement,) = canned_acl_statements("public-read", "b")
    assert statement.principal is not None and statement.principal.everyone
    assert statement.actions == ("s3:GetObject",) and statement.resources[0].text == "arn:aws:s3:::b/*"
    for acl in ("public-read-write", "authenticated-read", "nonsense"):
        with pytest.raises(InvalidInput, match="only private and public-read"):
            canned_acl_statements(acl, "b")
