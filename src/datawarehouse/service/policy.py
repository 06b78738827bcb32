"""AWS-IAM-style authorization: who may do which S3 (or admin) action on which resource.

Pure code: no I/O, no SQL, no clock. The caller (the S3 app, the admin API) gathers the facts and
asks one question per (action, resource) pair.

Public API (everything a caller needs)::

    parse_policy(text, kind, *, name=None) -> Policy      # kind "bucket" | "identity"; InvalidPolicy
    Principal.root(tenant) / .user(tenant, username, user_id) / .anonymous()
    AuthzRequest(principal, action, resource, resource_tenant=None, context={}, now=None)
    evaluate(request, identity_policies, bucket_policy, session_policy=None, *, acl=()) -> Decision
    Decision.allowed / .reason / .source / .sid / .describe()
    canned_acl_statements(acl, bucket, key=None) -> tuple[Statement, ...]   # pass as evaluate(acl=...)
    BUILTIN_POLICIES["readwrite" | "readonly" | "writeonly" | "consoleAdmin" | "admin"] -> Policy
    s3_actions.actions_for(operation, bucket, key, ...) -> [(action, resource_arn)]  # all must allow
    SERVER_CONDITION_KEYS                                   # the condition keys the server supplies

Typical S3 use: for each ``(action, arn)`` from ``actions_for``, build an ``AuthzRequest`` with
the context (``aws:SourceIp``, ``s3:prefix``, ``dwh:ObjectExists``, ...; principal keys and the
time keys are added here) and call ``evaluate`` with the principal's identity policies, the
policy of the bucket named in ``arn`` and, for a service account, its session policy. Any denial
means AccessDenied; ``Decision.describe()`` goes to the audit log.

Rules (AWS's, with tenants in the place of accounts):

1. An explicit ``Deny`` in any applicable policy (identity, session, bucket policy, ACL grants)
   wins over every Allow.
2. A session policy (a service account bound to a parent user) only narrows: the request must be
   allowed by the session policy *and* by the parent's identity or bucket policies.
3. Same tenant: an Allow in an identity policy *or* in the bucket policy suffices.
4. Another tenant's bucket: both sides are needed: the caller's identity policy must allow it
   *and* the bucket policy must allow the caller (by user ARN, tenant root ARN or ``"*"``). An
   identity policy alone never reaches into another tenant; a bucket policy alone never lets a
   foreign user act without its own tenant's consent.
5. A tenant's root is not subject to identity policies: it may do anything in its own tenant,
   but an explicit Deny in a bucket policy still binds it, except for Get/Put/DeleteBucketPolicy
   (as AWS: the root can always repair a policy that locked everyone out). In another tenant the
   root needs the bucket policy's Allow (its own side is implicitly granted).
6. Anonymous requests can only be allowed by a bucket policy (or ACL) statement whose principal
   is ``"*"`` / ``{"AWS": "*"}`` (or a NotPrincipal that does not exclude them).
7. Otherwise: implicit deny.

A bucket-policy Allow whose principal matched only through a *tenant* entry (``"tenant"`` or
``arn:...:<tenant>:root``) delegates to that tenant, as AWS: it grants its root, but a user of
that tenant still needs an identity Allow. A Deny with such an entry binds every principal of the
tenant. Resources are S3 ARNs (``arn:aws:s3:::bucket`` and ``arn:aws:s3:::bucket/key``); ``*``
and ``?`` match any characters including ``/``; actions match case-insensitively, resources
case-sensitively. Admin API checks use ``dwh-admin:<Name>`` actions with resource ``"*"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from datawarehouse.errors import InvalidInput
from datawarehouse.service.policy_builtin import BUILTIN_POLICIES, builtin_policy
from datawarehouse.service.policy_conditions import SERVER_CONDITION_KEYS, all_hold
from datawarehouse.service.policy_parse import (
    MAX_BUCKET_POLICY_BYTES,
    MAX_IDENTITY_POLICY_CHARS,
    Policy,
    PolicyKind,
    PrincipalSpec,
    Statement,
    canonical_principal_arn,
    parse_policy,
)
from datawarehouse.service.policy_patterns import Context, wildcard_match

__all__ = [
    "BUILTIN_POLICIES",
    "MAX_BUCKET_POLICY_BYTES",
    "MAX_IDENTITY_POLICY_CHARS",
    "ROOT_LOCKOUT_EXEMPT_ACTIONS",
    "SERVER_CONDITION_KEYS",
    "AuthzRequest",
    "Decision",
    "Policy",
    "PolicyKind",
    "Principal",
    "Statement",
    "acl_grants",
    "builtin_policy",
    "canned_acl_statements",
    "evaluate",
    "parse_policy",
]

PrincipalKind = Literal["root", "user", "anonymous"]
ContextValue = str | bool | int | float | datetime | Sequence[str]

# Bucket-policy actions an explicit Deny cannot take from the bucket's own tenant root (AWS
# behaves so that a policy denying everyone can still be read, replaced or removed).
ROOT_LOCKOUT_EXEMPT_ACTIONS: Final = frozenset({"s3:getbucketpolicy", "s3:putbucketpolicy", "s3:deletebucketpolicy"})

_PRINCIPAL_TYPES: Final[Mapping[PrincipalKind, str]] = {"root": "Account", "user": "User", "anonymous": "Anonymous"}


@dataclass(frozen=True)
class Principal:
    """Who is asking. A service account acts as its parent user (``kind="user"``) and brings its
    own narrower policy as ``session_policy`` to ``evaluate``."""

    kind: PrincipalKind
    tenant: str | None = None
    username: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "anonymous":
            if self.tenant or self.username or self.user_id:
                raise InvalidInput("principal: an anonymous principal has no tenant or user")
        elif not self.tenant:
            raise InvalidInput(f"principal: a {self.kind} principal needs a tenant")
        if self.kind == "user" and not self.username:
            raise InvalidInput("principal: a user principal needs a username")

    @classmethod
    def root(cls, tenant: str) -> Principal:
        return cls("root", tenant)

    @classmethod
    def user(cls, tenant: str, username: str, user_id: str | None = None) -> Principal:
        return cls("user", tenant, username, user_id)

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous")

    @property
    def arn(self) -> str | None:
        if self.tenant is None:
            return None
        return canonical_principal_arn(self.tenant, "root" if self.kind == "root" else f"user/{self.username}")


@dataclass(frozen=True)
class AuthzRequest:
    """One authorization question.

    ``resource_tenant`` is the tenant owning the bucket in ``resource`` (None for account-level
    actions such as ListAllMyBuckets or CreateBucket, which stay within the caller's tenant).
    ``context`` holds request condition keys (names case-insensitive); the principal keys
    (aws:username, aws:userid, aws:PrincipalArn, aws:PrincipalType, aws:PrincipalTenant) and, when
    ``now`` is given, aws:CurrentTime and aws:EpochTime are derived here (values for them in
    ``context`` are ignored, so client input can never impersonate a principal).
    """

    principal: Principal
    action: str
    resource: str
    resource_tenant: str | None = None
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    now: datetime | None = None


Outcome = Literal["allowed", "explicit-deny", "implicit-deny"]


@dataclass(frozen=True)
class Decision:
    """The answer and why: ``source`` is ``"identity:<name>"``, ``"session"``, ``"bucket-policy"``,
    ``"acl"`` or ``"root"``; ``sid`` the deciding statement's Sid (or ``statement #n``)."""

    allowed: bool
    outcome: Outcome
    source: str | None = None
    sid: str | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed

    def describe(self) -> str:
        where = f" by {self.source}" + (f" ({self.sid})" if self.sid else "") if self.source else ""
        return f"{self.outcome}{where}" + (f": {self.reason}" if self.reason else "")


# --- context ------------------------------------------------------------------------------------


def _values(value: ContextValue) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, datetime):
        return (_iso(value),)
    if isinstance(value, int | float):
        return (str(value),)
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DERIVED_KEYS: Final = (
    "aws:principaltype",
    "aws:principalarn",
    "aws:principaltenant",
    "aws:username",
    "aws:userid",
    "aws:currenttime",
    "aws:epochtime",
)


def build_context(request: AuthzRequest) -> Context:
    """The lower-cased condition context of a request: the caller's keys plus the derived ones."""
    p = request.principal
    derived: dict[str, ContextValue] = {"aws:principaltype": _PRINCIPAL_TYPES[p.kind]}
    if p.arn is not None:
        derived["aws:principalarn"] = p.arn
    if p.tenant is not None:
        derived["aws:principaltenant"] = p.tenant
    if p.username is not None:
        derived["aws:username"] = p.username
    if p.user_id is not None:
        derived["aws:userid"] = p.user_id
    if request.now is not None:
        derived["aws:currenttime"] = request.now
        derived["aws:epochtime"] = int(request.now.timestamp())
    context = {key.lower(): _values(value) for key, value in request.context.items()}
    # principal and time keys always come from the principal and ``now``, never from the caller's
    # map, so nothing a client sends can impersonate aws:username or aws:PrincipalArn
    for key in _DERIVED_KEYS:
        context.pop(key, None)
    context.update({k: _values(v) for k, v in derived.items()})
    return context


# --- matching -----------------------------------------------------------------------------------

PrincipalMatch = Literal["direct", "tenant"] | None


def _principal_match(spec: PrincipalSpec, principal: Principal) -> PrincipalMatch:
    if spec.everyone:
        return "direct"
    if principal.arn is None:
        return None
    if principal.arn in spec.arns:
        return "direct"
    if canonical_principal_arn(principal.tenant or "", "root") in spec.arns:
        return "tenant"
    return None


def _statement_applies(statement: Statement, request: AuthzRequest, context: Context) -> bool:
    """Action, resource and condition match (the principal is checked by the caller)."""
    action_hit = any(wildcard_match(a, request.action, ignore_case=True) for a in statement.actions)
    if action_hit == statement.not_action:
        return False
    resource_hit = any(r.matches(request.resource, context) for r in statement.resources)
    if resource_hit == statement.not_resource:
        return False
    return all_hold(statement.conditions, context)


@dataclass(frozen=True)
class _Hit:
    source: str
    statement: Statement


def _identity_hits(
    policies: Sequence[Policy], source_of: str | None, request: AuthzRequest, context: Context
) -> tuple[list[_Hit], list[_Hit]]:
    allows: list[_Hit] = []
    denies: list[_Hit] = []
    for policy in policies:
        source = source_of or f"identity:{policy.name or 'unnamed'}"
        for statement in policy.statements:
            if _statement_applies(statement, request, context):
                (denies if statement.effect == "Deny" else allows).append(_Hit(source, statement))
    return allows, denies


def _resource_hits(
    statements: Sequence[tuple[str, Statement]], request: AuthzRequest, context: Context
) -> tuple[list[_Hit], list[_Hit]]:
    """Bucket policy / ACL statements: an Allow counts only when it grants this principal
    directly (or it is the tenant's root); a Deny binds anyone its principal covers."""
    allows: list[_Hit] = []
    denies: list[_Hit] = []
    p = request.principal
    for source, statement in statements:
        spec = statement.principal
        if spec is None:
            continue
        match = _principal_match(spec, p)
        if statement.not_principal:
            match = None if match else "direct"
        if match is None or not _statement_applies(statement, request, context):
            continue
        if statement.effect == "Deny":
            denies.append(_Hit(source, statement))
        elif match == "direct" or p.kind == "root":
            allows.append(_Hit(source, statement))
    return allows, denies


def _decide(allowed: bool, outcome: Outcome, hit: _Hit | None, reason: str, source: str | None = None) -> Decision:
    if hit is not None:
        return Decision(allowed, outcome, hit.source, hit.statement.label, reason)
    return Decision(allowed, outcome, source, None, reason)


def evaluate(
    request: AuthzRequest,
    identity_policies: Sequence[Policy],
    bucket_policy: Policy | None,
    session_policy: Policy | None = None,
    *,
    acl: Sequence[Statement] = (),
) -> Decision:
    """Decide one request under the rules in this module's docstring."""
    p = request.principal
    context = build_context(request)
    applies_identity = p.kind == "user"
    id_allows, id_denies = _identity_hits(identity_policies if applies_identity else (), None, request, context)
    has_session = session_policy is not None and p.kind != "anonymous"
    s_allows, s_denies = _identity_hits(
        [session_policy] if has_session and session_policy else (), "session", request, context
    )
    resource_statements = [("bucket-policy", s) for s in (bucket_policy.statements if bucket_policy else ())]
    resource_statements += [("acl", s) for s in acl]
    r_allows, r_denies = _resource_hits(resource_statements, request, context)

    own_tenant = request.resource_tenant is None or request.resource_tenant == p.tenant
    if p.kind == "root" and own_tenant and request.action.lower() in ROOT_LOCKOUT_EXEMPT_ACTIONS:
        r_denies = []
    for denies in (id_denies, s_denies, r_denies):
        if denies:
            return _decide(False, "explicit-deny", denies[0], "an explicit Deny applies")
    if has_session and not s_allows:
        return _decide(False, "implicit-deny", None, "the session policy does not allow it", "session")

    identity_allows = p.kind == "root" or bool(id_allows)
    if p.kind == "anonymous":
        allowed = bool(r_allows)
    elif own_tenant:
        allowed = identity_allows or bool(r_allows)
    else:
        allowed = identity_allows and bool(r_allows)
    if not allowed:
        if p.kind != "anonymous" and not own_tenant and (identity_allows or r_allows):
            missing = "the bucket policy" if identity_allows else "the caller's identity policies"
            return _decide(False, "implicit-deny", None, f"another tenant's bucket: {missing} does not allow it")
        return _decide(False, "implicit-deny", None, "no statement allows it")
    if id_allows:
        return _decide(True, "allowed", id_allows[0], "")
    if r_allows:
        return _decide(True, "allowed", r_allows[0], "")
    return _decide(True, "allowed", None, "a tenant root may act in its own tenant", "root")


# --- canned ACLs --------------------------------------------------------------------------------

# ACLs that change nothing in our model (the bucket's tenant already owns every object in it):
# accepted so tools that always send them (``bucket-owner-full-control``) keep working.
PRIVATE_ACLS: Final = frozenset({"private", "bucket-owner-read", "bucket-owner-full-control"})


def acl_grants(acl: str) -> bool:
    """Whether a canned ACL grants anything beyond the bucket's tenant (``private`` and the
    bucket-owner-* ACLs do not; an unsupported ACL counts as granting, to be refused)."""
    return acl not in PRIVATE_ACLS


def canned_acl_statements(acl: str, bucket: str, key: str | None = None) -> tuple[Statement, ...]:
    """The bucket-policy statements a canned ACL stands for (pass them as ``evaluate(acl=...)``).

    ``private`` (and the bucket-owner-* ACLs, no-ops here) grant nothing; ``public-read`` lets
    anyone GetObject the bucket's objects (or the one object ``key``, for an object ACL). Every
    other canned ACL is refused: ``public-read-write`` would let anyone write, and the
    authenticated/log-delivery ACLs have no meaning without AWS's global accounts.
    """
    if acl in PRIVATE_ACLS:
        return ()
    if acl != "public-read":
        raise InvalidInput(f"canned ACL {acl!r} is not supported (only private and public-read)")
    # an object ACL names one key: its '*', '?' and '$' must stay literal, hence the escapes
    escaped = key.replace("$", "${$}").replace("*", "${*}").replace("?", "${?}") if key is not None else None
    resource = f"arn:aws:s3:::{bucket}/{escaped}" if escaped is not None else f"arn:aws:s3:::{bucket}/*"
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CannedAclPublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": resource,
            }
        ],
    }
    return parse_policy(json.dumps(document), "bucket", name="acl").statements
