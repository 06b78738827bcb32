"""Parsing and validation of JSON policy documents into frozen dataclasses (pure code).

Strict on purpose: a policy that is accepted but means something other than its author thought is
a security hole (a misspelt action in a Deny silently denies nothing). So: unknown keys, duplicate
JSON keys, duplicate Sids, unknown operators, unknown ``s3:`` action names, malformed ARNs and
principal forms we do not support are all refused with an ``InvalidPolicy`` that names the
statement and the field. The original text is kept for Get*Policy round-trips.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final, Literal

from datawarehouse.errors import InvalidPolicy
from datawarehouse.service.policy_conditions import Condition, parse_conditions
from datawarehouse.service.policy_patterns import Pattern, compile_pattern

PolicyKind = Literal["identity", "bucket"]
Effect = Literal["Allow", "Deny"]

# Size limits as AWS: a bucket policy counts bytes of the document, an identity (managed) policy
# counts characters other than whitespace.
MAX_BUCKET_POLICY_BYTES: Final = 20 * 1024
MAX_IDENTITY_POLICY_CHARS: Final = 6 * 1024
VERSIONS: Final = ("2012-10-17", "2008-10-17")
DEFAULT_VERSION: Final = "2008-10-17"  # AWS's default when Version is absent (no policy variables)
ADMIN_ACTION_PREFIX: Final = "dwh-admin"

# Every IAM action name of the Amazon S3 service reference that a policy may name without a
# wildcard (we accept the ones we do not implement too, so policies written for AWS load).
_S3_ACTION_NAMES: Final = (
    "AbortMultipartUpload BypassGovernanceRetention CreateAccessPoint CreateBucket CreateJob "
    "CreateMultiRegionAccessPoint CreateSession DeleteAccessPoint DeleteAccessPointPolicy DeleteBucket "
    "DeleteBucketOwnershipControls DeleteBucketPolicy DeleteBucketWebsite DeleteJobTagging DeleteObject "
    "DeleteObjectTagging DeleteObjectVersion DeleteObjectVersionTagging DeleteStorageLensConfiguration "
    "DescribeJob GetAccelerateConfiguration GetAccessPoint GetAccessPointPolicy GetAccountPublicAccessBlock "
    "GetAnalyticsConfiguration GetBucketAcl GetBucketCORS GetBucketLocation GetBucketLogging "
    "GetBucketNotification GetBucketObjectLockConfiguration GetBucketOwnershipControls GetBucketPolicy "
    "GetBucketPolicyStatus GetBucketPublicAccessBlock GetBucketRequestPayment GetBucketTagging "
    "GetBucketVersioning GetBucketWebsite GetEncryptionConfiguration GetIntelligentTieringConfiguration "
    "GetInventoryConfiguration GetJobTagging GetLifecycleConfiguration GetMetricsConfiguration GetObject "
    "GetObjectAcl GetObjectAttributes GetObjectLegalHold GetObjectRetention GetObjectTagging "
    "GetObjectTorrent GetObjectVersion GetObjectVersionAcl GetObjectVersionAttributes "
    "GetObjectVersionForReplication GetObjectVersionTagging GetObjectVersionTorrent "
    "GetReplicationConfiguration GetStorageLensConfiguration GetStorageLensDashboard InitiateReplication "
    "ListAccessPoints ListAllMyBuckets ListBucket ListBucketMultipartUploads ListBucketVersions ListJobs "
    "ListMultipartUploadParts ListStorageLensConfigurations ObjectOwnerOverrideToBucketOwner "
    "PutAccelerateConfiguration PutAccessPointPolicy PutAccountPublicAccessBlock PutAnalyticsConfiguration "
    "PutBucketAcl PutBucketCORS PutBucketLogging PutBucketNotification PutBucketObjectLockConfiguration "
    "PutBucketOwnershipControls PutBucketPolicy PutBucketPublicAccessBlock PutBucketRequestPayment "
    "PutBucketTagging PutBucketVersioning PutBucketWebsite PutEncryptionConfiguration "
    "PutIntelligentTieringConfiguration PutInventoryConfiguration PutJobTagging PutLifecycleConfiguration "
    "PutMetricsConfiguration PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention PutObjectTagging "
    "PutObjectVersionAcl PutObjectVersionTagging PutReplicationConfiguration PutStorageLensConfiguration "
    "ReplicateDelete ReplicateObject ReplicateTags RestoreObject UpdateJobPriority UpdateJobStatus"
)
KNOWN_S3_ACTIONS: Final[frozenset[str]] = frozenset(name.lower() for name in _S3_ACTION_NAMES.split())

_TOP_KEYS: Final = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS: Final = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal", "Condition"}
)
_ACTION: Final = re.compile(r"(?i)(s3|dwh-admin):[A-Za-z0-9*?]+")
_S3_ARN: Final = re.compile(r"arn:(aws|dwh):s3:::(.+)", re.DOTALL)
TENANT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IAM_ARN: Final = re.compile(r"arn:(?:aws|dwh):iam::([^:]+):(root|user/.+)", re.DOTALL)


@dataclass(frozen=True)
class PrincipalSpec:
    """A bucket policy's Principal/NotPrincipal: ``everyone`` for ``"*"`` / ``{"AWS": "*"}``,
    else canonical principal ARNs (``arn:dwh:iam::<tenant>:root`` or ``...:user/<name>``)."""

    everyone: bool
    arns: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: Effect
    actions: tuple[str, ...]  # as written; matched case-insensitively with wildcards
    not_action: bool  # True when the list came from NotAction
    resources: tuple[Pattern, ...]
    not_resource: bool
    principal: PrincipalSpec | None  # bucket policies only
    not_principal: bool
    conditions: tuple[Condition, ...]
    index: int  # position in the document, for messages when there is no Sid

    @property
    def label(self) -> str:
        return self.sid if self.sid else f"statement #{self.index + 1}"


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``text`` is the document exactly as stored (Get*Policy returns it)."""

    kind: PolicyKind
    version: str
    id: str | None
    statements: tuple[Statement, ...]
    text: str
    name: str | None = None  # an identity policy's name, for audit (Decision.source)

    @property
    def variables(self) -> bool:
        return self.version == "2012-10-17"


def canonical_principal_arn(tenant: str, suffix: str) -> str:
    """``arn:dwh:iam::<tenant>:<root|user/name>``: one spelling so comparisons are exact."""
    return f"arn:dwh:iam::{tenant}:{suffix}"


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidPolicy(f"policy: JSON key {key!r} appears twice in one object")
        result[key] = value
    return result


def _strings(value: object, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise InvalidPolicy(f"{where}: must not be an empty list")
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidPolicy(f"{where}: must be a non-empty string or a list of them")
    return tuple(items)  # type: ignore[arg-type]


def _check_action(action: str, where: str) -> str:
    if action == "*":
        return action
    if not _ACTION.fullmatch(action):
        raise InvalidPolicy(f"{where}: {action!r} is not an action (want 's3:Name', 's3:*', 'dwh-admin:Name' or '*')")
    service, name = action.split(":", 1)
    if service.lower() == "s3" and "*" not in name and "?" not in name and name.lower() not in KNOWN_S3_ACTIONS:
        raise InvalidPolicy(f"{where}: {action!r} is not an Amazon S3 action")
    return action


def _check_resource(resource: str, where: str, variables: bool) -> Pattern:
    if resource != "*":
        found = _S3_ARN.fullmatch(resource)
        if found is None or found.group(2).startswith("/"):
            raise InvalidPolicy(f"{where}: {resource!r} is not '*' or an S3 ARN 'arn:aws:s3:::bucket[/key]'")
        resource = "arn:aws:s3:::" + found.group(2)  # partition "dwh" is a synonym of "aws"
    return compile_pattern(resource, variables=variables, where=where)


def _principal_arn(entry: str, where: str) -> str:
    if TENANT_ID.fullmatch(entry):  # a bare tenant id means the tenant, as an account id in AWS
        return canonical_principal_arn(entry, "root")
    found = _IAM_ARN.fullmatch(entry)
    if found is None or not TENANT_ID.fullmatch(found.group(1)) or "*" in entry or "?" in entry:
        raise InvalidPolicy(
            f"{where}: {entry!r} is not '*', a tenant id or a principal ARN "
            "'arn:aws:iam::<tenant>:root' / 'arn:aws:iam::<tenant>:user/<name>' (no wildcards)"
        )
    return canonical_principal_arn(found.group(1), found.group(2))


def _parse_principal(value: object, where: str) -> PrincipalSpec:
    if value == "*":
        return PrincipalSpec(True, ())
    if not isinstance(value, dict) or not value:
        raise InvalidPolicy(f'{where}: must be "*" or {{"AWS": ...}}')
    unsupported = set(value) - {"AWS"}
    if unsupported:
        raise InvalidPolicy(f'{where}: principal type {sorted(unsupported)[0]!r} is not supported (only "AWS")')
    entries = _strings(value["AWS"], f"{where}.AWS")
    if "*" in entries:
        return PrincipalSpec(True, ())
    return PrincipalSpec(False, tuple(_principal_arn(e, f"{where}.AWS") for e in entries))


def _one_of(raw: dict[str, object], positive: str, negative: str, where: str, *, required: bool) -> str | None:
    if positive in raw and negative in raw:
        raise InvalidPolicy(f"{where}: has both {positive} and {negative}")
    if positive in raw:
        return positive
    if negative in raw:
        return negative
    if required:
        raise InvalidPolicy(f"{where}: needs {positive} or {negative}")
    return None


def _parse_statement(raw: object, index: int, kind: PolicyKind, variables: bool) -> Statement:
    where = f"statement #{index + 1}"
    if not isinstance(raw, dict):
        raise InvalidPolicy(f"{where}: must be an object")
    sid = raw.get("Sid")
    if sid is not None:
        if not isinstance(sid, str):
            raise InvalidPolicy(f"{where}: Sid must be a string")
        if sid:
            where = f"statement {sid!r}"
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise InvalidPolicy(f"{where}: unknown field {sorted(unknown)[0]!r}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise InvalidPolicy(f'{where}: Effect must be "Allow" or "Deny"')

    action_key = _one_of(raw, "Action", "NotAction", where, required=True)
    assert action_key is not None
    actions = tuple(
        _check_action(a, f"{where}: {action_key}") for a in _strings(raw[action_key], f"{where}: {action_key}")
    )

    resource_key = _one_of(raw, "Resource", "NotResource", where, required=True)
    assert resource_key is not None
    resources = tuple(
        _check_resource(r, f"{where}: {resource_key}", variables)
        for r in _strings(raw[resource_key], f"{where}: {resource_key}")
    )

    principal_key = _one_of(raw, "Principal", "NotPrincipal", where, required=kind == "bucket")
    if principal_key is not None and kind == "identity":
        raise InvalidPolicy(f"{where}: {principal_key} is only allowed in bucket policies")
    principal = _parse_principal(raw[principal_key], f"{where}: {principal_key}") if principal_key else None

    conditions = parse_conditions(raw["Condition"], where, variables=variables) if "Condition" in raw else ()
    return Statement(
        sid=sid or None,
        effect=effect,  # type: ignore[arg-type]
        actions=actions,
        not_action=action_key == "NotAction",
        resources=resources,
        not_resource=resource_key == "NotResource",
        principal=principal,
        not_principal=principal_key == "NotPrincipal",
        conditions=conditions,
        index=index,
    )


def _check_size(text: str, kind: PolicyKind) -> None:
    if kind == "bucket":
        if len(text.encode("utf-8")) > MAX_BUCKET_POLICY_BYTES:
            raise InvalidPolicy(f"policy: a bucket policy may not exceed {MAX_BUCKET_POLICY_BYTES} bytes")
    elif sum(1 for c in text if not c.isspace()) > MAX_IDENTITY_POLICY_CHARS:
        raise InvalidPolicy(
            f"policy: an identity policy may not exceed {MAX_IDENTITY_POLICY_CHARS} characters (whitespace excluded)"
        )


def parse_policy(text: str | bytes, kind: PolicyKind, *, name: str | None = None) -> Policy:
    """Parse and validate a policy document.

    ``kind`` is ``"bucket"`` for S3 bucket policies (Principal required) or ``"identity"`` for
    user, group and session policies (Principal refused). Raises ``InvalidPolicy``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPolicy("policy: must be UTF-8 JSON") from None
    _check_size(text, kind)
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidPolicy(f"policy: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(document, dict):
        raise InvalidPolicy("policy: must be a JSON object")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise InvalidPolicy(f"policy: unknown top-level field {sorted(unknown)[0]!r}")
    version = document.get("Version", DEFAULT_VERSION)
    if version not in VERSIONS:
        raise InvalidPolicy(f"policy: Version must be one of {', '.join(VERSIONS)}")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise InvalidPolicy("policy: Id must be a string")
    if "Statement" not in document:
        raise InvalidPolicy("policy: Statement is required")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise InvalidPolicy("policy: Statement must be an object or a non-empty list of objects")
    statements = tuple(_parse_statement(raw, i, kind, version == "2012-10-17") for i, raw in enumerate(raw_statements))
    sids = [s.sid for s in statements if s.sid]
    for sid in sids:
        if sids.count(sid) > 1:
            raise InvalidPolicy(f"statement {sid!r}: Sid must be unique within the policy")
    return Policy(kind=kind, version=version, id=policy_id, statements=statements, text=text, name=name)
