"""Bucket public access blocks and object ownership: the two switches that keep a bucket from
being opened to everyone by an ACL or a policy (pure code; ``service.access`` stores and
enforces them).

A **public access block** has four independent flags, as S3's ``PublicAccessBlockConfiguration``:

- ``BlockPublicAcls``: a request that sets a public ACL (bucket, object, or with an object
  write) is refused with AccessDenied; ACLs already set stay.
- ``IgnorePublicAcls``: public ACLs already set grant nothing.
- ``BlockPublicPolicy``: a bucket policy that is public (``policy_is_public``) is refused.
- ``RestrictPublicBuckets``: while the bucket's policy is public, that policy allows only
  principals of the bucket's own tenant (no anonymous, no other tenant); its Denys still bind.

**Object ownership** ``BucketOwnerEnforced`` turns ACLs off: the bucket's tenant owns every object
(which is true here of every bucket), no ACL grants anything, a request may name no ACL but
``bucket-owner-full-control`` (or a document granting the owner alone FULL_CONTROL), and Get*Acl
shows the owner's FULL_CONTROL only. ``ObjectWriter`` and ``BucketOwnerPreferred`` describe
objects owned by the account that wrote them, which this server does not have, so they are
refused rather than stored and not honoured.

When is a policy public? As S3 decides it: an Allow statement whose principal is everyone
(``"*"``, or a NotPrincipal) is public unless one of its conditions pins a fixed value (no
wildcard, no policy variable) on a key that names who or where the caller is: a set of
``aws:SourceIp`` networks no wider than /8 (IPv4) or /32 (IPv6), or ``aws:SourceArn``,
``aws:SourceVpc``, ``aws:SourceVpce``, ``aws:SourceOwner``, ``aws:SourceAccount``,
``aws:userid``, ``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``aws:PrincipalOrgID``,
``s3:x-amz-server-side-encryption-aws-kms-key-id``, and this server's ``aws:PrincipalTenant``.
A condition that can hold without the key (``...IfExists``, ``ForAllValues:``, a negated operator)
pins nothing.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from typing import Final

from datawarehouse.service.policy import Policy, Statement
from datawarehouse.service.policy_conditions import ArnValue, Condition, PolicyValue
from datawarehouse.service.policy_patterns import Pattern

BLOCK_SETTING: Final = "public_access_block"  # AccessBlock.to_json()
OWNERSHIP_SETTING: Final = "ownership"  # the ObjectOwnership value (only BUCKET_OWNER_ENFORCED is kept)

BUCKET_OWNER_ENFORCED: Final = "BucketOwnerEnforced"
OWNERSHIP_VALUES: Final = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
OWNER_ONLY_ACL: Final = "bucket-owner-full-control"  # the one ACL a request may name when ACLs are off

# condition keys (lower case) whose fixed value makes an everyone-statement non-public
_PINNING_KEYS: Final = frozenset(
    {
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:userid",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principalorgid",
        "aws:principaltenant",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    }
)
_WIDEST_PREFIX: Final = {4: 8, 6: 32}  # aws:SourceIp networks wider than these are public


@dataclass(frozen=True)
class AccessBlock:
    """A bucket's PublicAccessBlockConfiguration (every flag absent is false)."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AccessBlock:
        if not text:
            return NO_BLOCK
        doc = json.loads(text)
        return cls(**{name: bool(doc.get(name, False)) for name in cls.__dataclass_fields__})


NO_BLOCK: Final = AccessBlock()


def policy_is_public(policy: Policy) -> bool:
    return any(statement_is_public(s) for s in policy.statements)


def statement_is_public(statement: Statement) -> bool:
    if statement.effect != "Allow" or statement.principal is None:
        return False
    if not (statement.principal.everyone or statement.not_principal):
        return False
    return not any(_pins_caller(c) for c in statement.conditions)


def _pins_caller(condition: Condition) -> bool:
    if condition.if_exists or condition.qualifier == "ForAllValues" or condition.negated or not condition.values:
        return False
    if condition.key == "aws:sourceip":
        return condition.base == "IpAddress" and all(_narrow_network(v) for v in condition.values)
    if condition.key not in _PINNING_KEYS:
        return False
    return condition.base in ("StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike") and all(
        _fixed(v) for v in condition.values
    )


def _narrow_network(value: PolicyValue) -> bool:
    if not isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return False
    return value.prefixlen >= _WIDEST_PREFIX[value.version]


def _fixed(value: PolicyValue) -> bool:
    """A string or ARN value with no wildcard and no policy variable (an escaped ``${*}`` is a
    literal character)."""
    if isinstance(value, ArnValue):
        value = value.whole
    if not isinstance(value, Pattern):
        return False
    return all(isinstance(token, str) for token in value.tokens)
