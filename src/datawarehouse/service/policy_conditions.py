"""IAM ``Condition`` blocks: parsing, validation and evaluation (pure code).

Semantics follow AWS IAM:

- Several operators in one block, and several keys under one operator, are ANDed.
- Several values for one key are ORed; for a negated operator (``StringNotEquals``, ``NotIpAddress``,
  ``ArnNotLike``, ...) the key must match *none* of them (NOR).
- A key missing from the request context makes the condition false, except: ``...IfExists`` is
  true when the key is missing; negated operators are true when the key is missing; ``Null``
  tests presence itself; ``ForAllValues:`` is (vacuously) true for a missing key and
  ``ForAnyValue:`` is false.
- ``ForAnyValue:Op`` holds when at least one request value satisfies ``Op``; ``ForAllValues:Op``
  when every request value does. Without a qualifier a multi-valued key behaves as ForAnyValue for
  positive operators and as "no value matches" for negated ones.
- Condition key names are case-insensitive; values are compared as each operator says.
- Values are validated at parse time (a number for Numeric*, a date for Date*, a CIDR for
  IpAddress, ``true``/``false`` for Bool and Null) so a typo is an error, not a silently false
  condition. Policy variables work in String* and Arn* values (version 2012-10-17).

Unknown operators are refused (``InvalidPolicy``): an unrecognised Deny condition that evaluated
to false would silently disable the Deny.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from datawarehouse.errors import InvalidPolicy
from datawarehouse.service.policy_patterns import Context, Pattern, compile_pattern

# Condition keys this server puts in every request context it can (documented for policy
# authors; other keys may appear in policies but are simply missing from the context).
SERVER_CONDITION_KEYS: Final[tuple[str, ...]] = (
    "aws:SourceIp",  # client address (IPv4 or IPv6)
    "aws:SecureTransport",  # "true" over TLS
    "aws:CurrentTime",  # ISO 8601, UTC
    "aws:EpochTime",  # seconds since the epoch
    "aws:username",  # the user's name (absent for root and anonymous)
    "aws:userid",  # the user's stable id
    "aws:PrincipalArn",  # arn:dwh:iam::<tenant>:user/<name> or ...:root
    "aws:PrincipalType",  # "Account" (root), "User", "Anonymous"
    "aws:PrincipalTenant",  # dwh: the caller's tenant
    "s3:prefix",  # ListObjects*, ListObjectVersions, ListMultipartUploads
    "s3:delimiter",
    "s3:max-keys",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-acl",
    "s3:x-amz-grant-read",  # the x-amz-grant-* headers, as sent
    "s3:x-amz-grant-write",
    "s3:x-amz-grant-read-acp",
    "s3:x-amz-grant-write-acp",
    "s3:x-amz-grant-full-control",
    "s3:ExistingObjectTag/<key>",  # one key per tag of the existing object
    "s3:RequestObjectTag/<key>",  # one key per tag sent with the request
    "s3:VersionId",
    "s3:if-none-match",
    "s3:object-lock-mode",
    "s3:object-lock-retain-until-date",
    "s3:object-lock-legal-hold",
    "s3:signatureversion",  # "AWS4-HMAC-SHA256", or "AWS" for Signature Version 2 (absent: anonymous)
    "s3:authType",  # "REST-HEADER", "REST-QUERY-STRING" (presigned) or "POST" (browser form)
    "dwh:ObjectExists",  # Bool: the key already has a current version (write-only keys: no overwrite)
    "dwh:ObjectOwner",  # the ARN of the principal that wrote the version a read returns ("" if unknown)
)

Qualifier = Literal["ForAnyValue", "ForAllValues"]

# base operator -> (value kind, negated)
_OPERATORS: Final[Mapping[str, tuple[str, bool]]] = {
    "StringEquals": ("string", False),
    "StringNotEquals": ("string", True),
    "StringEqualsIgnoreCase": ("string-ci", False),
    "StringNotEqualsIgnoreCase": ("string-ci", True),
    "StringLike": ("string-like", False),
    "StringNotLike": ("string-like", True),
    "NumericEquals": ("numeric", False),
    "NumericNotEquals": ("numeric", True),
    "NumericLessThan": ("numeric", False),
    "NumericLessThanEquals": ("numeric", False),
    "NumericGreaterThan": ("numeric", False),
    "NumericGreaterThanEquals": ("numeric", False),
    "DateEquals": ("date", False),
    "DateNotEquals": ("date", True),
    "DateLessThan": ("date", False),
    "DateLessThanEquals": ("date", False),
    "DateGreaterThan": ("date", False),
    "DateGreaterThanEquals": ("date", False),
    "Bool": ("bool", False),
    "IpAddress": ("ip", False),
    "NotIpAddress": ("ip", True),
    "ArnEquals": ("arn", False),
    "ArnNotEquals": ("arn", True),
    "ArnLike": ("arn", False),
    "ArnNotLike": ("arn", True),
    "Null": ("null", False),
}
_BY_LOWER: Final = {name.lower(): name for name in _OPERATORS}

_ORDER: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "Equals": lambda a, b: a == b,
    "NotEquals": lambda a, b: a == b,  # negation is applied by the caller (NOR over values)
    "LessThan": lambda a, b: a < b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanEquals": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Condition:
    """One (operator, key) pair of a Condition block with its parsed values."""

    operator: str  # as written, for messages
    base: str  # canonical operator name without qualifier or IfExists
    qualifier: Qualifier | None
    if_exists: bool
    key: str  # lower-cased
    values: tuple[PolicyValue, ...]

    @property
    def negated(self) -> bool:
        return _OPERATORS[self.base][1]

    def holds(self, context: Context) -> bool:
        """Whether the condition holds for a request with this context."""
        present = context.get(self.key) or ()
        kind = _OPERATORS[self.base][0]
        if kind == "null":
            return any(bool(v) == (not present) for v in self.values)
        if not present:
            if self.qualifier == "ForAllValues":
                return True
            if self.qualifier == "ForAnyValue":
                return False
            return self.if_exists or self.negated
        if self.qualifier == "ForAllValues":
            return all(self._satisfied(v, context) for v in present)
        if self.qualifier == "ForAnyValue":
            return any(self._satisfied(v, context) for v in present)
        if self.negated:
            return all(self._satisfied(v, context) for v in present)
        return any(self._satisfied(v, context) for v in present)

    def _satisfied(self, request_value: str, context: Context) -> bool:
        """One request value against the policy values: OR for positive operators, NOR for
        negated ones."""
        matched = any(self._matches(request_value, pv, context) for pv in self.values)
        return not matched if self.negated else matched

    def _matches(self, request_value: str, policy_value: PolicyValue, context: Context) -> bool:
        kind = _OPERATORS[self.base][0]
        if kind == "arn":
            assert isinstance(policy_value, ArnValue)
            return policy_value.matches(request_value, context)
        if kind in ("string", "string-ci", "string-like"):
            assert isinstance(policy_value, Pattern)
            return _string_match(kind, request_value, policy_value, context)
        if kind == "bool":
            return request_value.strip().lower() == ("true" if policy_value else "false")
        if kind == "ip":
            assert isinstance(policy_value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            try:
                address = ipaddress.ip_address(request_value.strip())
            except ValueError:
                return False
            return address.version == policy_value.version and address in policy_value
        compare = _ORDER[self.base.removeprefix("Numeric").removeprefix("Date")]
        try:
            ours = _number(request_value) if kind == "numeric" else _date(request_value)
        except ValueError:
            return False
        return compare(ours, policy_value)


@dataclass(frozen=True)
class ArnValue:
    """An ArnEquals/ArnLike value: compared component by component when it has the six
    ``arn:partition:service:region:account:resource`` parts, so a wildcard never spans a ':'
    between components (as IAM); otherwise as one pattern."""

    whole: Pattern
    parts: tuple[Pattern, ...] | None

    def matches(self, value: str, context: Context) -> bool:
        if self.parts is None:
            return self.whole.matches(value, context)
        ours = value.split(":", 5)
        if len(ours) != 6:
            return False
        return all(p.matches(o, context) for p, o in zip(self.parts, ours, strict=True))


PolicyValue = Pattern | ArnValue | Decimal | datetime | bool | ipaddress.IPv4Network | ipaddress.IPv6Network


def _string_match(kind: str, request_value: str, policy_value: Pattern, context: Context) -> bool:
    if kind == "string-like":
        return policy_value.matches(request_value, context)
    text = policy_value.literal(context)
    if text is None:
        return False
    if kind == "string-ci":
        return text.casefold() == request_value.casefold()
    return text == request_value


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(text) from exc
    if not value.is_finite():
        raise ValueError(text)
    return value


def _date(text: str) -> datetime:
    """ISO 8601 (date or date-time; naive means UTC) or integer/decimal epoch seconds."""
    stripped = text.strip()
    try:
        return datetime.fromtimestamp(float(_number(stripped)), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError as exc:
        raise ValueError(text) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _split_operator(name: str, where: str) -> tuple[str, Qualifier | None, bool]:
    qualifier: Qualifier | None = None
    rest = name
    for q in ("ForAnyValue", "ForAllValues"):
        if rest.lower().startswith(q.lower() + ":"):
            qualifier = q  # type: ignore[assignment]
            rest = rest[len(q) + 1 :]
            break
    if_exists = rest.lower().endswith("ifexists")
    if if_exists:
        rest = rest[: -len("IfExists")]
    base = _BY_LOWER.get(rest.lower())
    if base is None:
        raise InvalidPolicy(f"{where}: unknown condition operator {name!r}")
    if base == "Null" and (qualifier or if_exists):
        raise InvalidPolicy(f"{where}: operator {name!r}: Null takes no qualifier and no IfExists")
    return base, qualifier, if_exists


def _scalar(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise InvalidPolicy(f"{where}: condition values must be strings, numbers or booleans")


def _parse_value(kind: str, text: str, where: str, variables: bool) -> PolicyValue:
    if kind in ("string", "string-ci", "string-like"):
        return compile_pattern(text, variables=variables, where=where)
    if kind == "arn":
        components = text.split(":", 5)
        parts = (
            tuple(compile_pattern(c, variables=variables, where=where) for c in components)
            if len(components) == 6
            else None
        )
        return ArnValue(compile_pattern(text, variables=variables, where=where), parts)
    if kind == "numeric":
        try:
            return _number(text)
        except ValueError:
            raise InvalidPolicy(f"{where}: {text!r} is not a number") from None
    if kind == "date":
        try:
            return _date(text)
        except ValueError:
            raise InvalidPolicy(f"{where}: {text!r} is not an ISO 8601 date or epoch seconds") from None
    if kind in ("bool", "null"):
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidPolicy(f"{where}: {text!r} must be true or false")
        return lowered == "true"
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidPolicy(f"{where}: {text!r} is not an IP address or CIDR block") from None


def parse_conditions(block: object, where: str, *, variables: bool) -> tuple[Condition, ...]:
    """Parse a statement's ``Condition`` object; ``where`` prefixes error messages."""
    if not isinstance(block, dict):
        raise InvalidPolicy(f"{where}: Condition must be an object of operator -> {{key: value(s)}}")
    conditions: list[Condition] = []
    for operator, keys in block.items():
        base, qualifier, if_exists = _split_operator(operator, where)
        kind = _OPERATORS[base][0]
        if not isinstance(keys, dict) or not keys:
            raise InvalidPolicy(f"{where}: Condition {operator!r} must be a non-empty object of key -> value(s)")
        seen: set[str] = set()
        for key, raw in keys.items():
            here = f"{where}: Condition {operator!r} key {key!r}"
            if not isinstance(key, str) or not key.strip():
                raise InvalidPolicy(f"{where}: Condition {operator!r} has an empty key")
            if key.lower() in seen:
                raise InvalidPolicy(f"{here}: the key appears twice (keys are case-insensitive)")
            seen.add(key.lower())
            items = raw if isinstance(raw, list) else [raw]
            if not items:
                raise InvalidPolicy(f"{here}: needs at least one value")
            values = tuple(_parse_value(kind, _scalar(item, here), here, variables) for item in items)
            conditions.append(Condition(operator, base, qualifier, if_exists, key.lower(), values))
    return tuple(conditions)


def all_hold(conditions: tuple[Condition, ...], context: Context) -> bool:
    return all(condition.holds(context) for condition in conditions)
