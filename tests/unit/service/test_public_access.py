"""When a bucket policy is public (S3's rule, service/public_access.py), and the stored block."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datawarehouse.service.policy import parse_policy
from datawarehouse.service.public_access import AccessBlock, policy_is_public

RESOURCE = "arn:aws:s3:::b/*"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal: Any = "*", condition: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject", "Resource": RESOURCE, **extra}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def public(*statements: dict[str, Any]) -> bool:
    return policy_is_public(parse_policy(_policy(*statements), "bucket"))


@pytest.mark.parametrize(
    ("what", "statement"),
    [
        ('Principal "*"', _allow()),
        ('{"AWS": "*"}', _allow({"AWS": "*"})),
        (
            "NotPrincipal",
            {k: v for k, v in _allow().items() if k != "Principal"} | {"NotPrincipal": {"AWS": "arn:aws:iam::t:root"}},
        ),
        ("a network wider than /8", _allow(condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/7"}})),
        (
            "one wide network among narrow ones",
            _allow(condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/24", "0.0.0.0/0"]}}),
        ),
        ("an IPv6 network wider than /32", _allow(condition={"IpAddress": {"aws:SourceIp": "2001:db8::/31"}})),
        ("NotIpAddress", _allow(condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/24"}})),
        ("a wildcard", _allow(condition={"StringLike": {"aws:SourceAccount": "12*"}})),
        ("a policy variable", _allow(condition={"StringEquals": {"aws:userid": "${aws:username}"}})),
        ("IfExists", _allow(condition={"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}})),
        ("ForAllValues", _allow(condition={"ForAllValues:StringEquals": {"aws:SourceVpc": "vpc-1"}})),
        ("a negated operator", _allow(condition={"StringNotEquals": {"aws:PrincipalTenant": "t"}})),
        ("a key that names nothing about the caller", _allow(condition={"StringEquals": {"s3:prefix": "home/"}})),
        (
            "aws:username alone (any tenant may have the name)",
            _allow(condition={"StringEquals": {"aws:username": "a"}}),
        ),
        ("a time window", _allow(condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})),
    ],
)
def test_public(what: str, statement: dict[str, Any]) -> None:
    assert public(statement), what


@pytest.mark.parametrize(
    ("what", "statement"),
    [
        ("a user", _allow({"AWS": "arn:aws:iam::t:user/a"})),
        ("another tenant (delegation, not public)", _allow({"AWS": "arn:dwh:iam::other:root"})),
        ("a Deny for everyone", {**_allow(), "Effect": "Deny"}),
        ("a /8 network", _allow(condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
        ("one address", _allow(condition={"IpAddress": {"aws:SourceIp": ["127.0.0.1/32", "::1/128"]}})),
        ("a /32 IPv6 network", _allow(condition={"IpAddress": {"aws:SourceIp": "2001:db8::/32"}})),
        ("a fixed tenant", _allow(condition={"StringEquals": {"aws:PrincipalTenant": "t"}})),
        ("a fixed principal ARN", _allow(condition={"ArnEquals": {"aws:PrincipalArn": "arn:dwh:iam::t:user/a"}})),
        ("a fixed VPC endpoint", _allow(condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})),
        ("a fixed source account, any case", _allow(condition={"StringEqualsIgnoreCase": {"AWS:SourceAccount": "1"}})),
        ("StringLike without a wildcard", _allow(condition={"StringLike": {"aws:PrincipalOrgID": "o-1"}})),
        ("an escaped star is literal", _allow(condition={"StringLike": {"aws:userid": "a${*}"}})),
        (
            "a pin next to a key that pins nothing",
            _allow(condition={"StringEquals": {"s3:prefix": "x", "aws:SourceVpc": "v"}}),
        ),
    ],
)
def test_not_public(what: str, statement: dict[str, Any]) -> None:
    assert not public(statement), what


def test_one_public_statement_makes_the_policy_public() -> None:
    user = _allow({"AWS": "arn:aws:iam::t:user/a"}, Sid="User")
    assert not public(user)
    assert public(user, _allow(Sid="Everyone"))


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_access_block_round_trip(a: bool, b: bool, c: bool, d: bool) -> None:
    block = AccessBlock(a, b, c, d)
    assert AccessBlock.from_json(block.to_json()) == block
