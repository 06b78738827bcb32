"""Condition operators one by one, with AWS's rules for missing keys, IfExists, set qualifiers,
negation (NOR over values), case-insensitive key names and policy variables."""

from __future__ import annotations

from typing import Any

import pytest

from datawarehouse.service.policy_conditions import SERVER_CONDITION_KEYS, Condition, parse_conditions
from datawarehouse.service.policy_patterns import Context


def cond(operator: str, key: str, values: Any, *, variables: bool = True) -> Condition:
    (condition,) = parse_conditions({operator: {key: values}}, "test", variables=variables)
    return condition


def ctx(**values: Any) -> Context:
    out: dict[str, tuple[str, ...]] = {}
    for key, value in values.items():
        name = key.replace("__", ":").replace("_", "-").lower()
        out[name] = tuple(value) if isinstance(value, list) else (value,)
    return out


CASES: list[tuple[str, Any, Any, bool]] = [
    # operator, policy values, request value (None = missing), expected
    ("StringEquals", "abc", "abc", True),
    ("StringEquals", "abc", "ABC", False),
    ("StringEquals", "a*", "abc", False),  # no wildcards in Equals
    ("StringEquals", "a*", "a*", True),
    ("StringEquals", ["x", "abc"], "abc", True),  # values ORed
    ("StringEquals", "abc", None, False),
    ("StringNotEquals", "abc", "abd", True),
    ("StringNotEquals", ["x", "abc"], "abc", False),  # NOR
    ("StringNotEquals", "abc", None, True),  # negated + missing -> true
    ("StringEqualsIgnoreCase", "AbC", "aBc", True),
    ("StringNotEqualsIgnoreCase", "AbC", "aBc", False),
    ("StringNotEqualsIgnoreCase", "AbC", "abd", True),
    ("StringLike", "home/*", "home/alice/x", True),
    ("StringLike", "home/?", "home/ab", False),
    ("StringLike", "home/??", "home/ab", True),
    ("StringLike", "Home/*", "home/x", False),  # case-sensitive
    ("StringLike", "a", None, False),
    ("StringNotLike", ["a*", "b*"], "bcd", False),
    ("StringNotLike", ["a*", "b*"], "cde", True),
    ("StringNotLike", "a*", None, True),
    ("NumericEquals", "10", "10.0", True),
    ("NumericEquals", 10, "11", False),
    ("NumericNotEquals", "10", "11", True),
    ("NumericNotEquals", "10", "10", False),
    ("NumericLessThan", "100", "99", True),
    ("NumericLessThan", "100", "100", False),
    ("NumericLessThanEquals", "100", "100", True),
    ("NumericGreaterThan", "100", "100", False),
    ("NumericGreaterThan", "100", "1000", True),
    ("NumericGreaterThanEquals", "100", "100", True),
    ("NumericLessThan", "100", "not-a-number", False),
    ("NumericLessThan", "100", None, False),
    ("DateEquals", "2024-01-01T00:00:00Z", "1704067200", True),  # ISO vs epoch
    ("DateEquals", "2024-01-01", "2024-01-01T00:00:00+00:00", True),  # date only = midnight UTC
    ("DateNotEquals", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", True),
    ("DateLessThan", "2024-06-01T00:00:00Z", "2024-05-31T23:59:59Z", True),
    ("DateLessThan", "2024-06-01T00:00:00Z", "2024-06-01T02:00:00+02:00", False),  # same instant
    ("DateLessThanEquals", "2024-06-01T00:00:00Z", "2024-06-01T02:00:00+02:00", True),
    ("DateGreaterThan", "1717200000", "2024-06-02T00:00:00Z", True),
    ("DateGreaterThanEquals", "2024-06-01T00:00:00Z", "2024-05-01T00:00:00Z", False),
    ("DateGreaterThan", "2024-06-01T00:00:00Z", "garbage", False),
    ("Bool", "true", "true", True),
    ("Bool", True, "TRUE", True),
    ("Bool", "true", "false", False),
    ("Bool", "false", None, False),
    ("IpAddress", "10.0.0.0/8", "10.1.2.3", True),
    ("IpAddress", "10.0.0.0/8", "11.1.2.3", False),
    ("IpAddress", ["192.168.0.0/16", "203.0.113.7"], "203.0.113.7", True),  # bare address = /32
    ("IpAddress", "2001:db8::/32", "2001:db8:1::5", True),
    ("IpAddress", "2001:db8::/32", "2001:db9::5", False),
    ("IpAddress", "10.0.0.0/8", "2001:db8::1", False),  # families never match
    ("IpAddress", "10.0.0.0/8", "not-an-ip", False),
    ("NotIpAddress", "10.0.0.0/8", "11.0.0.1", True),
    ("NotIpAddress", ["10.0.0.0/8", "fd00::/8"], "fd00::1", False),
    ("NotIpAddress", "10.0.0.0/8", None, True),
    ("ArnEquals", "arn:dwh:iam::acme:user/alice", "arn:dwh:iam::acme:user/alice", True),
    ("ArnLike", "arn:dwh:iam::acme:user/*", "arn:dwh:iam::acme:user/alice", True),
    ("ArnLike", "arn:dwh:iam::*:root", "arn:dwh:iam::other:root", True),
    ("ArnLike", "arn:dwh:iam::a*:root", "arn:dwh:iam::a:b:root", False),  # * never spans ':'
    ("ArnLike", "arn:dwh:iam::acme:user/*", "arn:dwh:iam::other:user/alice", False),
    ("ArnNotEquals", "arn:dwh:iam::acme:root", "arn:dwh:iam::acme:root", False),
    ("ArnNotLike", "arn:dwh:iam::acme:*", "arn:dwh:iam::other:root", True),
    ("ArnNotLike", "arn:dwh:iam::acme:*", None, True),
]


@pytest.mark.parametrize(("operator", "values", "request_value", "expected"), CASES)
def test_operator(operator: str, values: Any, request_value: Any, expected: bool) -> None:
    context: Context = {} if request_value is None else {"k": (request_value,)}
    assert cond(operator, "k", values).holds(context) is expected


@pytest.mark.parametrize(
    ("operator", "policy_value", "request_value", "expected"),
    [
        ("StringEqualsIfExists", "abc", None, True),
        ("StringEqualsIfExists", "abc", "abc", True),
        ("StringEqualsIfExists", "abc", "xyz", False),
        ("StringNotEqualsIfExists", "abc", None, True),
        ("NumericLessThanIfExists", "5", None, True),
        ("NumericLessThanIfExists", "5", "7", False),
        ("BoolIfExists", "true", None, True),
        ("BoolIfExists", "true", "false", False),
        ("IpAddressIfExists", "10.0.0.0/8", None, True),
        ("DateLessThanIfExists", "2024-01-01", None, True),
    ],
)
def test_if_exists(operator: str, policy_value: str, request_value: str | None, expected: bool) -> None:
    context: Context = {} if request_value is None else {"k": (request_value,)}
    assert cond(operator, "k", policy_value).holds(context) is expected


@pytest.mark.parametrize(
    ("operator", "values", "request_values", "expected"),
    [
        ("ForAnyValue:StringEquals", ["a", "b"], ["x", "b"], True),
        ("ForAnyValue:StringEquals", ["a", "b"], ["x", "y"], False),
        ("ForAnyValue:StringEquals", ["a"], None, False),
        ("ForAnyValue:StringEquals", ["a"], [], False),
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "b"], True),
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "c"], False),
        ("ForAllValues:StringEquals", ["a"], None, True),  # vacuous truth, as AWS warns
        ("ForAllValues:StringLike", ["tmp/*"], ["tmp/a", "tmp/b"], True),
        ("ForAnyValue:StringNotEquals", ["a"], ["a", "b"], True),  # b is not a
        ("ForAllValues:StringNotEquals", ["a"], ["a", "b"], False),
        ("ForAllValues:StringNotEquals", ["a"], ["c", "b"], True),
        ("forallvalues:stringequals", ["a"], ["a"], True),  # operator names are case-insensitive
        ("StringEquals", ["a"], ["x", "a"], True),  # unqualified multi-valued: any
        ("StringNotEquals", ["a"], ["x", "a"], False),  # negated: none may match
    ],
)
def test_set_qualifiers(operator: str, values: list[str], request_values: list[str] | None, expected: bool) -> None:
    context: Context = {} if request_values is None else {"k": tuple(request_values)}
    assert cond(operator, "k", values).holds(context) is expected


@pytest.mark.parametrize(
    ("value", "present", "expected"), [("true", False, True), ("true", True, False), ("false", True, True)]
)
def test_null(value: str, present: bool, expected: bool) -> None:
    context: Context = {"k": ("x",)} if present else {}
    assert cond("Null", "k", value).holds(context) is expected


def test_key_names_are_case_insensitive() -> None:
    condition = cond("StringEquals", "AWS:UserName", "alice")
    assert condition.key == "aws:username"
    assert condition.holds(ctx(aws__username="alice"))


def test_several_keys_are_anded() -> None:
    conditions = parse_conditions({"StringEquals": {"a": "1", "b": "2"}, "Bool": {"c": "true"}}, "test", variables=True)
    full = {"a": ("1",), "b": ("2",), "c": ("true",)}
    assert all(c.holds(full) for c in conditions)
    assert not all(c.holds({**full, "b": ("3",)}) for c in conditions)


def test_policy_variables_in_condition_values() -> None:
    condition = cond("StringLike", "s3:prefix", ["home/${aws:username}/*", "shared/*"])
    assert condition.holds({"s3:prefix": ("home/alice/docs",), "aws:username": ("alice",)})
    assert not condition.holds({"s3:prefix": ("home/bob/docs",), "aws:username": ("alice",)})
    assert condition.holds({"s3:prefix": ("shared/x",)})  # the other value still works without a username
    # a variable's value is literal: a '*' in a user name is no wildcard
    assert not condition.holds({"s3:prefix": ("home/alXce/docs",), "aws:username": ("al*ce",)})
    # escapes and defaults
    star = cond("StringEquals", "k", "a${*}b")
    assert star.holds({"k": ("a*b",)}) and not star.holds({"k": ("axb",)})
    default = cond("StringEquals", "k", "${aws:username, 'nobody'}")
    assert default.holds({"k": ("nobody",)})
    # in 2008-10-17 documents the text is literal
    literal = cond("StringEquals", "k", "${aws:username}", variables=False)
    assert literal.holds({"k": ("${aws:username}",), "aws:username": ("alice",)})


def test_server_keys_are_documented() -> None:
    for key in ("aws:SourceIp", "aws:SecureTransport", "aws:PrincipalTenant", "dwh:ObjectExists", "s3:prefix"):
        assert key in SERVER_CONDITION_KEYS
