"""Who is calling and whether they may: the authorization use case of the S3 API.

The S3 adapter authenticates a request (SigV4) to a ``Caller`` and gathers the request's facts
(``RequestFacts``); ``authorize`` turns them into (action, resource) questions
(``s3_actions.actions_for``), finds the policies that apply (the caller's identity and session
policies, the bucket policy and canned ACL of every bucket involved) and asks the policy engine
(``policy.evaluate``). Everything that needs stored state lives here: bucket policies and ACLs
are bucket settings (journaled, read through the Warehouse's settings cache), and
``dwh:ObjectExists`` is looked up only when a policy could use it.

Buckets are named tenant-qualified (``ids.split_bucket_name``); ARNs carry the bare bucket name
and ``AuthzRequest.resource_tenant`` says whose bucket it is.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datawarehouse.errors import AclConflictsWithOwnership, AclsDisabled, InvalidInput, NotFound, PublicAccessBlocked
from datawarehouse.ids import DEFAULT_TENANT_NAME, UserId, split_bucket_name
from datawarehouse.records import BucketRecord, PrincipalKind
from datawarehouse.service import policy, s3_actions
from datawarehouse.service.iam import IamService
from datawarehouse.service.iam_auth import Identity
from datawarehouse.service.policy import AuthzRequest, ContextValue, Decision, Policy, Principal
from datawarehouse.service.public_access import (
    BLOCK_SETTING,
    BUCKET_OWNER_ENFORCED,
    OWNER_ONLY_ACL,
    OWNERSHIP_SETTING,
    AccessBlock,
    policy_is_public,
)
from datawarehouse.service.warehouse import OWNER_META, Warehouse

log = logging.getLogger(__name__)

POLICY_SETTING = "policy"  # the bucket policy's JSON text, as the client sent it
ACL_SETTING = "acl"  # {"bucket": canned ACL, "public_keys": [keys with a public-read object ACL]}
MAX_PUBLIC_OBJECTS = 10_000  # object ACL grants per bucket; a public bucket wants a bucket ACL

# Operations that create or replace an object: they carry dwh:ObjectExists (the write-only
# backup policy refuses overwrites with it).
OBJECT_WRITES = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    }
)
_OBJECT_EXISTS_KEY = "dwh:objectexists"
_OBJECT_OWNER_KEY = "dwh:objectowner"
_S3_ARN = "arn:aws:s3:::"
_COPY_SOURCE_READS = frozenset({"s3:GetObject", "s3:GetObjectVersion"})


@dataclass(frozen=True)
class Caller:
    """An authenticated (or anonymous) principal, with the policies that speak for it."""

    principal: Principal
    access_key: str | None = None
    secret: str = field(default="", repr=False)
    identity_policies: tuple[Policy, ...] = ()
    session_policy: Policy | None = None  # a service account's narrower policy
    user_id: UserId | None = None  # the IAM user (a service account's parent): owns the buckets it creates

    @property
    def tenant(self) -> str:
        """The tenant whose namespace bare bucket names resolve in (anonymous: the default)."""
        return self.principal.tenant or DEFAULT_TENANT_NAME

    @property
    def name(self) -> str:
        """For logs and the audit trail: the principal's ARN, or ``anonymous``."""
        return self.principal.arn or "anonymous"


ANONYMOUS = Caller(Principal.anonymous())


def root_caller(access_key: str, secret: str, tenant: str = DEFAULT_TENANT_NAME) -> Caller:
    return Caller(Principal.root(tenant), access_key, secret)


@dataclass(frozen=True)
class RequestFacts:
    """What the S3 adapter knows about a request, in service terms."""

    operation: str
    bucket: str | None = None  # tenant-qualified
    key: str | None = None
    version_id: str | None = None
    copy_source: tuple[str, str, str | None] | None = None  # (qualified bucket, key, version id)
    bypass_governance: bool = False
    sets_tagging: bool = False
    sets_retention: bool = False
    sets_legal_hold: bool = False
    enables_object_lock: bool = False
    sets_acl: bool = False  # x-amz-acl granting something, sent with a bucket or object creation
    sets_ownership: bool = False  # x-amz-object-ownership, sent with a bucket creation
    context: Mapping[str, ContextValue] = field(default_factory=dict)  # aws:SourceIp, s3:prefix, ...


class BucketAccess:
    """Parsed bucket policies and ACLs, cached by their settings text (the Warehouse's settings
    cache already avoids the metadata read; this avoids re-parsing JSON per request)."""

    def __init__(self, wh: Warehouse) -> None:
        self._wh = wh
        self._parsed: dict[str, Policy] = {}
        self._public: dict[str, bool] = {}
        self._lock = threading.Lock()

    def policy(self, rec: BucketRecord) -> Policy | None:
        text = self._wh.bucket_setting_cached(rec, POLICY_SETTING)
        if not text:
            return None
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = policy.parse_policy(text, "bucket")
            with self._lock:
                if len(self._parsed) > 4096:
                    self._parsed.clear()
                self._parsed[text] = parsed
        return parsed

    def policy_public(self, parsed: Policy) -> bool:
        public = self._public.get(parsed.text)
        if public is None:
            public = policy_is_public(parsed)
            with self._lock:
                if len(self._public) > 4096:
                    self._public.clear()
                self._public[parsed.text] = public
        return public

    def acl(self, rec: BucketRecord) -> dict[str, Any]:
        text = self._wh.bucket_setting_cached(rec, ACL_SETTING)
        return json.loads(text) if text else {}


@functools.lru_cache(maxsize=1024)
def _parsed_block(text: str | None) -> AccessBlock:
    return AccessBlock.from_json(text)


def cached_block(wh: Warehouse, rec: BucketRecord) -> AccessBlock:
    """The bucket's public access block from the settings cache (none: every flag false)."""
    return _parsed_block(wh.bucket_setting_cached(rec, BLOCK_SETTING))


def acls_disabled(wh: Warehouse, rec: BucketRecord) -> bool:
    return wh.bucket_setting_cached(rec, OWNERSHIP_SETTING) == BUCKET_OWNER_ENFORCED


def acls_ignored(wh: Warehouse, rec: BucketRecord) -> bool:
    """Whether the bucket's ACLs grant nothing: ACLs are off (BucketOwnerEnforced) or its public
    access block ignores public ACLs (the only ACLs here that grant anything)."""
    return acls_disabled(wh, rec) or cached_block(wh, rec).ignore_public_acls


def acl_statements(acl: Mapping[str, Any], bucket: str, key: str | None) -> tuple[policy.Statement, ...]:
    """The statements a bucket's stored canned ACLs stand for, for a request on ``key``."""
    out: tuple[policy.Statement, ...] = policy.canned_acl_statements(acl.get("bucket", "private"), bucket)
    if key is not None and key in set(acl.get("public_keys", ())):
        out += policy.canned_acl_statements("public-read", bucket, key)
    return out


class Authorizer:
    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self.buckets = BucketAccess(wh)

    def fast_allow(self, caller: Caller, *buckets: str | None) -> bool:
        """The common case decided without the policy engine or a metadata read (so on the
        event loop, before any request facts are gathered): a tenant's root in its own buckets
        (qualified names), none of which has a bucket policy in the settings cache. False means
        "ask ``authorize``", never "denied"."""
        p = caller.principal
        if p.kind != "root":
            return False
        for name in buckets:
            if name is None:
                continue
            if split_bucket_name(name)[0] != p.tenant or not self.wh.cached_bucket_has_no(name, POLICY_SETTING):
                return False
        return True

    def authorize(self, caller: Caller, facts: RequestFacts, now: datetime) -> Decision:
        """The first denial among everything the request needs, or the last allow."""
        bare_bucket = split_bucket_name(facts.bucket)[1] if facts.bucket else None
        copy_source = None
        if facts.copy_source is not None:
            src_bucket, src_key, src_version = facts.copy_source
            copy_source = (split_bucket_name(src_bucket)[1], src_key, src_version)
        needs = s3_actions.actions_for(
            facts.operation,
            bare_bucket,
            facts.key,
            version_id=facts.version_id,
            has_bypass_header=facts.bypass_governance,
            copy_source=copy_source,
            sets_tagging=facts.sets_tagging,
            sets_retention=facts.sets_retention,
            sets_legal_hold=facts.sets_legal_hold,
            enables_object_lock=facts.enables_object_lock,
            sets_acl=facts.sets_acl,
            sets_ownership=facts.sets_ownership,
        )
        if not needs:
            return Decision(True, "allowed", reason="no permission needed")
        decision = Decision(False, "implicit-deny", reason="no permission checked")
        for action, arn in needs:
            decision = self._decide(caller, facts, action, arn, now)
            if not decision.allowed:
                return decision
        return decision

    def _decide(self, caller: Caller, facts: RequestFacts, action: str, arn: str, now: datetime) -> Decision:
        qualified, key = self._target(facts, action, arn)
        bucket_policy: Policy | None = None
        acl: Sequence[policy.Statement] = ()
        tenant: str | None = None
        rec: BucketRecord | None = None
        if qualified is not None:
            tenant, bare = split_bucket_name(qualified)
            try:
                rec = self.wh.bucket_for_write(qualified)
            except NotFound:
                rec = None  # the handler answers NoSuchBucket (for whoever may ask)
            if rec is not None:
                bucket_policy = self.buckets.policy(rec)
                if not acls_ignored(self.wh, rec):
                    acl = acl_statements(self.buckets.acl(rec), bare, key)
        p = caller.principal
        own_bucket = tenant is None or tenant == p.tenant
        if (
            not own_bucket
            and rec is not None
            and bucket_policy is not None
            and cached_block(self.wh, rec).restrict_public_buckets
            and self.buckets.policy_public(bucket_policy)
        ):
            bucket_policy = _denies_only(bucket_policy)  # RestrictPublicBuckets: own tenant only
        if p.kind == "root" and own_bucket and bucket_policy is None:
            return Decision(True, "allowed", source="root", reason="tenant root, no bucket policy")
        context: dict[str, ContextValue] = dict(facts.context)
        if rec is not None and key is not None:
            if facts.operation in OBJECT_WRITES and self._mentions(caller, bucket_policy, _OBJECT_EXISTS_KEY):
                context["dwh:ObjectExists"] = "true" if self._exists(qualified or "", key) else "false"
            if action.startswith(("s3:GetObject", "s3:DeleteObject")) and self._mentions(
                caller, bucket_policy, _OBJECT_OWNER_KEY
            ):
                reads_source = facts.copy_source is not None and action in _COPY_SOURCE_READS
                version = facts.copy_source[2] if facts.copy_source is not None and reads_source else facts.version_id
                owner = self._owner(qualified or "", key, version)
                if owner is not None:
                    context["dwh:ObjectOwner"] = owner
        request = AuthzRequest(p, action, arn, resource_tenant=tenant, context=context, now=now)
        return policy.evaluate(request, caller.identity_policies, bucket_policy, caller.session_policy, acl=acl)

    @staticmethod
    def _target(facts: RequestFacts, action: str, arn: str) -> tuple[str | None, str | None]:
        """The qualified bucket and key an (action, ARN) from ``actions_for`` is about: a copy's
        source for the copy's read (ARNs alone cannot tell two tenants' same-named buckets
        apart), else the request's own bucket."""
        if not arn.startswith(_S3_ARN) or arn == s3_actions.ALL_BUCKETS_ARN:
            return None, None
        if facts.copy_source is not None and action in _COPY_SOURCE_READS:
            src_bucket, src_key, _ = facts.copy_source
            return src_bucket, src_key
        _, _, key = arn[len(_S3_ARN) :].partition("/")
        return facts.bucket, (key or None)

    @staticmethod
    def _mentions(caller: Caller, bucket_policy: Policy | None, key: str) -> bool:
        """Whether a policy that applies could read condition key ``key`` (lower case): the
        facts that cost a metadata read are looked up only then."""
        texts = [p.text for p in caller.identity_policies]
        if caller.session_policy is not None:
            texts.append(caller.session_policy.text)
        if bucket_policy is not None:
            texts.append(bucket_policy.text)
        return any(key in t.lower() for t in texts)

    def _owner(self, bucket: str, key: str, version_id: str | None) -> str | None:
        """dwh:ObjectOwner: the ARN that wrote the version a read would return ("" when not
        recorded: written by the CLI or before owners were recorded); None when there is no
        such version, so a read of a missing key gets its 404 rather than a denial."""
        try:
            version = self.wh.head_object(bucket, key, version_id)
        except (NotFound, InvalidInput):
            return None
        return version.system_meta.get(OWNER_META, "")

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self.wh.head_object(bucket, key)
        except NotFound:
            return False
        except InvalidInput:
            return False
        return True


def _denies_only(parsed: Policy) -> Policy:
    return dataclasses.replace(parsed, statements=tuple(s for s in parsed.statements if s.effect == "Deny"))


# --- bucket policy and ACL settings ---------------------------------------------------------------


def put_bucket_policy(wh: Warehouse, bucket: str, text: str) -> Policy:
    """Validate and store a bucket policy (``InvalidPolicy`` for a malformed one;
    ``PublicAccessBlocked`` for a public one when the bucket blocks public policies)."""
    parsed = policy.parse_policy(text, "bucket")
    if cached_block(wh, wh.bucket_for_write(bucket)).block_public_policy and policy_is_public(parsed):
        raise PublicAccessBlocked("the bucket's public access block (BlockPublicPolicy) refuses a public policy")
    wh.set_bucket_setting(bucket, POLICY_SETTING, text)
    return parsed


def get_bucket_policy(wh: Warehouse, bucket: str) -> str | None:
    return wh.get_bucket_setting(bucket, POLICY_SETTING)


def delete_bucket_policy(wh: Warehouse, bucket: str) -> None:
    wh.set_bucket_setting(bucket, POLICY_SETTING, None)


def _stored_acl(wh: Warehouse, bucket: str) -> dict[str, Any]:
    """The bucket's ACL setting as written by ``set_bucket_acl``/``set_object_acl`` ({} if none)."""
    doc: dict[str, Any] = json.loads(wh.get_bucket_setting(bucket, ACL_SETTING) or "{}")
    return doc


def is_public(wh: Warehouse, bucket: str) -> bool:
    """GetBucketPolicyStatus: whether the bucket policy is public (``policy_is_public``) or an
    ACL that is not ignored grants anything to everyone."""
    acl = _stored_acl(wh, bucket)
    public_acl = acl.get("bucket") == "public-read" or bool(acl.get("public_keys"))
    if public_acl and not acls_ignored(wh, wh.bucket_for_write(bucket)):
        return True
    text = wh.get_bucket_setting(bucket, POLICY_SETTING)
    return text is not None and policy_is_public(policy.parse_policy(text, "bucket"))


# --- public access blocks and object ownership (service/public_access.py) -------------------------


def get_access_block(wh: Warehouse, bucket: str) -> AccessBlock | None:
    """The bucket's public access block, None when it has none (every flag false)."""
    text = wh.get_bucket_setting(bucket, BLOCK_SETTING)
    return AccessBlock.from_json(text) if text is not None else None


def set_access_block(wh: Warehouse, bucket: str, block: AccessBlock | None) -> None:
    """Store (``None``: remove) the bucket's public access block. As on S3 it changes no ACL or
    policy already set: it refuses new public ones and, by its other two flags, limits what
    the existing ones grant."""
    wh.set_bucket_setting(bucket, BLOCK_SETTING, block.to_json() if block is not None else None)


def get_ownership(wh: Warehouse, bucket: str) -> str | None:
    return wh.get_bucket_setting(bucket, OWNERSHIP_SETTING)


def set_ownership(wh: Warehouse, bucket: str, ownership: str | None) -> None:
    """Store (``None``: remove) the bucket's object ownership. ``BucketOwnerEnforced`` needs a
    bucket ACL that grants nothing beyond the owner (S3's rule; object ACLs are kept, ignored,
    and grant again if ownership controls are removed)."""
    with _acl_lock:
        if ownership == BUCKET_OWNER_ENFORCED and policy.acl_grants(_stored_acl(wh, bucket).get("bucket", "private")):
            raise AclConflictsWithOwnership(
                "the bucket ACL grants public-read: set it to private before turning ACLs off (BucketOwnerEnforced)"
            )
        wh.set_bucket_setting(bucket, OWNERSHIP_SETTING, ownership)


def check_requested_acl(wh: Warehouse, bucket: str, canned: str | None) -> None:
    """Refuse, before anything is written, an ACL a request names that the bucket does not take:
    when ACLs are off, anything but ``bucket-owner-full-control`` (``AclsDisabled``); an ACL this
    server does not support (``InvalidInput``); a public ACL under BlockPublicAcls
    (``PublicAccessBlocked``). ``None`` (no ACL named) is always accepted."""
    if canned is None:
        return
    canned = canned.strip()
    rec = wh.bucket_for_write(bucket)
    if acls_disabled(wh, rec):
        if canned != OWNER_ONLY_ACL:
            raise AclsDisabled("The bucket does not allow ACLs")
        return
    check_canned_acl(canned, bucket)
    if policy.acl_grants(canned) and cached_block(wh, rec).block_public_acls:
        raise PublicAccessBlocked("the bucket's public access block (BlockPublicAcls) refuses a public ACL")


def acl_checks_needed(wh: Warehouse, bucket: str, canned: str | None) -> bool:
    """False when ``check_requested_acl`` has nothing to refuse, decided without a metadata read
    (no ACL named; or the bucket, with neither setting, already in memory): the event loop's
    test before it hands the check to a thread."""
    if canned is None:
        return False
    return not (wh.cached_bucket_has_no(bucket, OWNERSHIP_SETTING) and wh.cached_bucket_has_no(bucket, BLOCK_SETTING))


_acl_lock = threading.Lock()


def set_bucket_acl(wh: Warehouse, bucket: str, canned: str) -> None:
    policy.canned_acl_statements(canned, split_bucket_name(bucket)[1])  # refuses unsupported ACLs
    with _acl_lock:
        acl = _stored_acl(wh, bucket)
        acl["bucket"] = canned
        wh.set_bucket_setting(bucket, ACL_SETTING, json.dumps(acl, sort_keys=True))


def set_object_acl(wh: Warehouse, bucket: str, key: str, canned: str) -> None:
    """A canned object ACL: ``public-read`` grants anonymous reads of ``key`` (its current and
    future versions: ACLs here belong to the key, not to one version)."""
    policy.canned_acl_statements(canned, split_bucket_name(bucket)[1], key)
    with _acl_lock:
        acl = _stored_acl(wh, bucket)
        keys = set(acl.get("public_keys", ()))
        if canned == "public-read":
            if key not in keys and len(keys) >= MAX_PUBLIC_OBJECTS:
                raise InvalidInput(
                    f"more than {MAX_PUBLIC_OBJECTS} public objects in one bucket: make the bucket public-read "
                    "or use a bucket policy"
                )
            keys.add(key)
        else:
            keys.discard(key)
        acl["public_keys"] = sorted(keys)
        if not acl["public_keys"]:
            del acl["public_keys"]
        wh.set_bucket_setting(bucket, ACL_SETTING, json.dumps(acl, sort_keys=True) if acl else None)


def put_bucket_acl(wh: Warehouse, bucket: str, canned: str) -> None:
    """PutBucketAcl: the ACL checked against the bucket's settings (``check_requested_acl``),
    then stored."""
    check_requested_acl(wh, bucket, canned)
    set_bucket_acl(wh, bucket, canned)


def put_object_acl(wh: Warehouse, bucket: str, key: str, canned: str) -> None:
    """PutObjectAcl: the ACL checked against the bucket's settings, the key looked up
    (NoSuchKey), then the ACL stored."""
    check_requested_acl(wh, bucket, canned)
    wh.head_object(bucket, key)
    set_object_acl(wh, bucket, key, canned)


def acl_of(wh: Warehouse, bucket: str, key: str | None = None) -> str:
    """The canned ACL a Get*Acl answer describes: ``public-read`` or ``private`` (always
    ``private`` when ACLs are off: the owner's FULL_CONTROL alone, as S3 shows it)."""
    if acls_disabled(wh, wh.bucket_for_write(bucket)):
        return "private"
    acl = _stored_acl(wh, bucket)
    if acl.get("bucket") == "public-read":
        return "public-read"
    if key is not None and key in set(acl.get("public_keys", ())):
        return "public-read"
    return "private"


# --- callers from IAM identities ----------------------------------------------------------------


class CallerDirectory:
    """Access key id -> ``Caller``, through IAM (which caches identities until an IAM change):
    the stored policy documents are parsed once per identity, not per request."""

    def __init__(self, iam: IamService) -> None:
        self.iam = iam
        self._callers: dict[str, tuple[Identity, Caller]] = {}
        self._lock = threading.Lock()

    def lookup(self, access_key: str) -> Caller | None:
        """None for an unknown key; ``CredentialsRefused`` for a disabled or expired one."""
        identity = self.iam.resolve_access_key(access_key)
        if identity is None:
            return None
        cached = self._callers.get(access_key)
        if cached is not None and (cached[0] is identity or cached[0] == identity):
            return cached[1]
        caller = caller_of(identity)
        with self._lock:
            if len(self._callers) > 65536:
                self._callers.clear()
            self._callers[access_key] = (identity, caller)
        return caller


def caller_of(identity: Identity) -> Caller:
    """The policy engine's view of an IAM identity. A service account acts as its parent user
    (``aws:username`` is the parent's) with its own policy as the session policy."""
    tenant = identity.tenant_name
    if identity.is_root:
        principal = Principal.root(tenant)
    elif identity.kind is PrincipalKind.SERVICE:
        principal = Principal.user(tenant, identity.parent_user or identity.user_name, str(identity.parent_user_id))
    else:
        principal = Principal.user(tenant, identity.user_name, str(identity.user_id))
    policies: list[Policy] = []
    for name, document in identity.policies:
        try:
            policies.append(
                policy.builtin_policy(name)
                if document is None
                else policy.parse_policy(document, "identity", name=name)
            )
        except InvalidInput as exc:  # a policy stored before a stricter parser: it grants nothing
            log.warning("IAM policy %r of %s is not usable: %s", name, identity.access_key_id, exc)
    session = None
    if identity.session_policy:
        session = policy.parse_policy(identity.session_policy, "identity", name="session")
    owner = identity.parent_user_id if identity.kind is PrincipalKind.SERVICE else identity.user_id
    return Caller(principal, identity.access_key_id, identity.secret, tuple(policies), session, owner)


def check_canned_acl(canned: str | None, bucket: str) -> None:
    """Refuse an unsupported ``x-amz-acl`` before anything is written (InvalidInput)."""
    if canned is not None:
        policy.canned_acl_statements(canned.strip(), split_bucket_name(bucket)[1])


def acl_after_write(wh: Warehouse, bucket: str, key: str, canned: str | None) -> None:
    """An object write sets the key's ACL: ``public-read`` grants it, anything else (or no
    ``x-amz-acl``: S3's default ``private``) withdraws a grant the key had."""
    canned = canned.strip() if canned is not None else "private"
    rec = wh.bucket_for_write(bucket)
    acl = json.loads(wh.bucket_setting_cached(rec, ACL_SETTING) or "{}")
    public = key in set(acl.get("public_keys", ()))
    if (canned == "public-read") != public:
        set_object_acl(wh, bucket, key, "public-read" if canned == "public-read" else "private")


def acl_unaffected(wh: Warehouse, bucket: str, canned: str | None) -> bool:
    """True when an object write cannot change any ACL (no ``x-amz-acl`` and the bucket has no
    ACL setting in the cache): the common case, decided without a metadata read."""
    return canned is None and wh.cached_bucket_has_no(bucket, ACL_SETTING)
