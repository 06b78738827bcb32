"""``IamService``: tenants, users, groups, policies, access keys, service accounts, quotas, and the
access-key look-up of the S3 endpoint.

Every change is one journaled operation (``iam_ops``), committed through the engine like bucket
changes, sealed under the default domain's journal key, so ``rebuild-meta`` restores IAM with the
rest. Entities are named by (tenant name, entity name) in this API; ids stay inside.

Secrets: an access key's secret is generated here, returned once (``NewAccessKey``) and stored
only as AES-256-GCM ciphertext under a key derived from the master key (``KeyRing.seal_secret``,
label ``ACCESS_KEY_LABEL``, the access key id as AAD). The running server opens it to verify
signatures; nothing here logs it or puts it in an error or a ``repr``. A master key rotation
reseals every secret (``reseal_secrets``, registered as an engine rotation hook).

Tenants own users, buckets and a dedup/encryption domain of their own (``Engine.create_domain``):
two tenants never share a chunk or a key. Root (``keys/root-credentials.json``) stays the
bootstrap principal of the default tenant, outside the tables.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
import secrets
import string
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from datawarehouse.engine.engine import Engine
from datawarehouse.errors import (
    AccessKeyDisabled,
    CredentialsRefused,
    DeleteConflict,
    EntityAlreadyExists,
    InvalidIamName,
    InvalidInput,
    MalformedPolicyDocument,
    NoSuchAccessKey,
    NoSuchGroup,
    NoSuchPolicy,
    NoSuchTenant,
    NoSuchUser,
    PrincipalDisabled,
    QuotaExceeded,
)
from datawarehouse.ids import DEFAULT_DOMAIN, DEFAULT_TENANT, DomainId, TenantId, UserId
from datawarehouse.meta.repo import MetaTx
from datawarehouse.records import (
    AccessKeyRecord,
    AttachmentRecord,
    AttachTarget,
    GroupRecord,
    KeyStatus,
    PolicyRecord,
    PrincipalKind,
    QuotaRecord,
    QuotaScope,
    TenantRecord,
    UsageTotals,
    UserRecord,
)
from datawarehouse.service import iam_ops as ops
from datawarehouse.service import policy
from datawarehouse.service.credentials import Credentials
from datawarehouse.service.iam_auth import Identity, IdentityCache, LastUsedTracker, Resolved, verdict

ACCESS_KEY_LABEL = "dwh access-key secret v1"  # HKDF info of the key that seals access-key secrets
DEFAULT_TENANT_NAME = "default"
MAX_POLICY_SIZE = 20 * 1024
_TENANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IAM_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_POLICY_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,128}")
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class NewAccessKey:
    """The only time a secret is handed out: show it to the caller once, store it nowhere."""

    access_key_id: str
    secret_key: str = field(repr=False)
    user: str
    kind: PrincipalKind
    expires_at: datetime | None = None


@dataclass(frozen=True)
class AccessKeyInfo:
    """An access key as listed (no secret, no ciphertext)."""

    access_key_id: str
    user: str
    kind: PrincipalKind
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    description: str
    session_policy: str | None = None
    parent_user: str | None = None


def check_tenant_name(name: str) -> None:
    if not isinstance(name, str) or not _TENANT_NAME.fullmatch(name):
        raise InvalidIamName("tenant name: 1-63 lowercase letters, digits and hyphens, not starting or ending with '-'")


def check_iam_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _IAM_NAME.fullmatch(name):
        raise InvalidIamName(f"{what} name: 1-64 characters among letters, digits and +=,.@_-")


def check_policy_name(name: str) -> None:
    if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
        raise InvalidIamName("policy name: 1-128 characters among letters, digits and +=,.@_-")


def _validate_policy_document(text: str) -> str:
    """The hook where the policy module's full validation plugs in. For now: size, JSON, and the
    shape (an object whose ``Statement`` is an object or a non-empty list of objects). Returns
    the document to store (compact JSON, key order kept)."""
    if not isinstance(text, str):
        raise MalformedPolicyDocument("policy document: expected JSON text")
    if len(text.encode()) > MAX_POLICY_SIZE:
        raise MalformedPolicyDocument(f"policy document: larger than {MAX_POLICY_SIZE} bytes")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedPolicyDocument(f"policy document: not valid JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(doc, dict):
        raise MalformedPolicyDocument("policy document: must be a JSON object")
    statement = doc.get("Statement")
    statements = [statement] if isinstance(statement, dict) else statement
    if not isinstance(statements, list) or not statements or not all(isinstance(s, dict) for s in statements):
        raise MalformedPolicyDocument("policy document: Statement must be an object or a non-empty list of objects")
    compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    policy.parse_policy(compact, "identity")  # the evaluator's own rules (InvalidPolicy)
    return compact


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidInput("expires_at: a timezone-aware instant is required")
    if expires_at <= now:
        raise InvalidInput("expires_at: must be in the future")


def _applier(doc: dict[str, Any]) -> Callable[[MetaTx], None]:
    def apply(tx: MetaTx) -> None:
        ops.apply(tx, doc)

    return apply


def _new_access_key_id() -> str:
    return "DWH" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))


def _new_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


class IamService:
    """The IAM use cases of one data directory (thread-safe; one per ``Warehouse``)."""

    def __init__(
        self,
        engine: Engine,
        root: Credentials | None = None,
        *,
        last_used_interval: timedelta = timedelta(seconds=60),
    ) -> None:
        self.engine = engine
        self._root = root
        self._root_identity: Identity | None = None
        self._cache = IdentityCache()
        self._quotas: dict[tuple[QuotaScope, int], QuotaRecord | None] = {}
        self._last_used = LastUsedTracker(self._write_last_used, last_used_interval)
        engine.master_rotation_hooks.append(self._reseal_on_rotation)

    def set_root_credentials(self, root: Credentials | None) -> None:
        """The root pair (loaded by the server from ``keys/root-credentials.json``)."""
        self._root = root
        self._root_identity = None
        self.forget_cached()

    def close(self) -> None:
        """Write pending ``last_used_at`` instants."""
        self._last_used.flush(self.engine.now())

    # --- plumbing ----------------------------------------------------------------------------

    def forget_cached(self) -> None:
        """Drop cached identities and quotas: after every IAM change here, and in a follower
        after another process committed."""
        self._cache.clear()
        self._quotas.clear()

    def _commit(self, apply: Callable[[MetaTx], Any], doc: dict[str, Any] | Callable[[], dict[str, Any]]) -> Any:
        """One journaled IAM change; the caches forget everything whatever the outcome."""
        try:
            return self.engine.commit(apply, DEFAULT_DOMAIN, doc)
        finally:
            self.forget_cached()

    def _apply_doc(self, check: Callable[[MetaTx], dict[str, Any]]) -> Any:
        """Commit the document ``check`` returns after validating inside the transaction."""
        docs: list[dict[str, Any]] = []

        def apply(tx: MetaTx) -> None:
            doc = check(tx)
            ops.apply(tx, doc)
            docs.append(doc)

        return self._commit(apply, lambda: docs[-1])

    def _read(self) -> AbstractContextManager[MetaTx]:
        return self.engine.repo.read()

    @staticmethod
    def _tenant(tx: MetaTx, name: str) -> TenantRecord:
        rec = tx.get_tenant_by_name(name)
        if rec is None:
            raise NoSuchTenant(f"tenant {name!r} does not exist")
        return rec

    @staticmethod
    def _user(tx: MetaTx, tenant: TenantRecord, name: str) -> UserRecord:
        rec = tx.get_user(tenant.tenant_id, name)
        if rec is None:
            raise NoSuchUser(f"user {name!r} does not exist in tenant {tenant.name!r}")
        return rec

    @staticmethod
    def _group(tx: MetaTx, tenant: TenantRecord, name: str) -> GroupRecord:
        rec = tx.get_group(tenant.tenant_id, name)
        if rec is None:
            raise NoSuchGroup(f"group {name!r} does not exist in tenant {tenant.name!r}")
        return rec

    @staticmethod
    def _key(tx: MetaTx, tenant: TenantRecord, access_key_id: str) -> AccessKeyRecord:
        rec = tx.get_access_key(access_key_id)
        if rec is None or rec.tenant_id != tenant.tenant_id:
            raise NoSuchAccessKey(f"access key {access_key_id} does not exist in tenant {tenant.name!r}")
        return rec

    # --- tenants -----------------------------------------------------------------------------

    def create_tenant(self, name: str) -> TenantRecord:
        """A tenant and its own dedup/encryption domain (a fresh secret wrapped by the master key)."""
        check_tenant_name(name)
        now = self.engine.now()
        made: list[TenantRecord] = []

        def apply(tx: MetaTx) -> TenantRecord:
            rec = tx.create_tenant(name, now)
            made.append(rec)
            return rec

        rec: TenantRecord = self._commit(apply, lambda: ops.tenant_put(made[-1]))
        return dataclasses.replace(rec, domain_id=self._ensure_domain(rec))

    def _ensure_domain(self, tenant: TenantRecord) -> DomainId:
        """The tenant's domain, made now if it has none (a crash between the tenant's commit and
        its domain's leaves a tenant without one; the next use repairs it)."""
        if tenant.domain_id is not None:
            return tenant.domain_id
        try:
            return self.engine.create_domain(tenant.tenant_id)
        finally:
            self.forget_cached()

    def get_tenant(self, name: str) -> TenantRecord:
        with self._read() as tx:
            rec = self._tenant(tx, name)
        if rec.domain_id is None:
            rec = dataclasses.replace(rec, domain_id=self._ensure_domain(rec))
        return rec

    def tenant_domain(self, name: str) -> DomainId:
        """The domain a tenant's buckets are created in (``Warehouse.create_bucket(domain_id=)``)."""
        domain = self.get_tenant(name).domain_id
        if domain is None:  # pragma: no cover - get_tenant made one
            raise NoSuchTenant(f"tenant {name!r} has no domain")
        return domain

    def list_tenants(self) -> list[TenantRecord]:
        with self._read() as tx:
            return list(tx.list_tenants())

    def set_tenant_disabled(self, name: str, disabled: bool) -> TenantRecord:
        """A disabled tenant's keys are refused (``PrincipalDisabled``); its data stays."""
        if name == DEFAULT_TENANT_NAME:
            raise InvalidInput("the default tenant (root's) cannot be disabled")

        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.tenant_put(dataclasses.replace(self._tenant(tx, name), disabled=disabled))

        self._apply_doc(check)
        return self.get_tenant(name)

    def delete_tenant(self, name: str) -> None:
        """Refused (``DeleteConflict``) while the tenant owns buckets or users (or chunks GC has
        not collected). Its groups, policies, quota and domain secret go with it."""
        if name == DEFAULT_TENANT_NAME:
            raise InvalidInput("the default tenant cannot be deleted")

        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.tenant_delete(self._tenant(tx, name).tenant_id)

        self._apply_doc(check)

    # --- users -------------------------------------------------------------------------------

    def create_user(self, tenant: str, name: str) -> UserRecord:
        check_iam_name("user", name)
        now = self.engine.now()
        made: list[UserRecord] = []

        def apply(tx: MetaTx) -> UserRecord:
            t = self._tenant(tx, tenant)
            rec = tx.create_user(t.tenant_id, name, PrincipalKind.USER, now)
            made.append(rec)
            return rec

        user: UserRecord = self._commit(apply, lambda: ops.user_put(made[-1]))
        return user

    def get_user(self, tenant: str, name: str) -> UserRecord:
        with self._read() as tx:
            return self._user(tx, self._tenant(tx, tenant), name)

    def list_users(self, tenant: str, *, kind: PrincipalKind | None = None) -> list[UserRecord]:
        """Users and service accounts of a tenant by name (``kind`` filters)."""
        with self._read() as tx:
            users = tx.list_users(self._tenant(tx, tenant).tenant_id)
        return [u for u in users if kind is None or u.kind == kind]

    def set_user_disabled(self, tenant: str, name: str, disabled: bool) -> UserRecord:
        """A disabled user's keys, and its service accounts' keys, are refused."""

        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.user_put(dataclasses.replace(self._user(tx, self._tenant(tx, tenant), name), disabled=disabled))

        self._apply_doc(check)
        return self.get_user(tenant, name)

    def delete_user(self, tenant: str, name: str) -> None:
        """With its service accounts, access keys, memberships, attached policies and quota. The
        buckets it created stay with the tenant."""

        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.user_delete(self._user(tx, self._tenant(tx, tenant), name).user_id)

        self._apply_doc(check)

    # --- groups ------------------------------------------------------------------------------

    def create_group(self, tenant: str, name: str) -> GroupRecord:
        check_iam_name("group", name)
        now = self.engine.now()
        made: list[GroupRecord] = []

        def apply(tx: MetaTx) -> GroupRecord:
            rec = tx.create_group(self._tenant(tx, tenant).tenant_id, name, now)
            made.append(rec)
            return rec

        group: GroupRecord = self._commit(apply, lambda: ops.group_put(made[-1]))
        return group

    def list_groups(self, tenant: str) -> list[GroupRecord]:
        with self._read() as tx:
            return list(tx.list_groups(self._tenant(tx, tenant).tenant_id))

    def delete_group(self, tenant: str, name: str) -> None:
        """With its memberships and attached policies (the users stay)."""

        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.group_delete(self._group(tx, self._tenant(tx, tenant), name).group_id)

        self._apply_doc(check)

    def add_user_to_group(self, tenant: str, group: str, user: str) -> None:
        self._membership(tenant, group, user, ops.PUT)

    def remove_user_from_group(self, tenant: str, group: str, user: str) -> None:
        self._membership(tenant, group, user, ops.DELETE)

    def _membership(self, tenant: str, group: str, user: str, action: str) -> None:
        def check(tx: MetaTx) -> dict[str, Any]:
            t = self._tenant(tx, tenant)
            g, u = self._group(tx, t, group), self._user(tx, t, user)
            if u.kind != PrincipalKind.USER:
                raise InvalidInput(f"{user!r} is a service account; only users join groups")
            return ops.member(action, g.group_id, u.user_id)

        self._apply_doc(check)

    def list_group_members(self, tenant: str, group: str) -> list[str]:
        with self._read() as tx:
            g = self._group(tx, self._tenant(tx, tenant), group)
            return [u.name for u in tx.list_group_members(g.group_id)]

    def list_user_groups(self, tenant: str, user: str) -> list[str]:
        with self._read() as tx:
            u = self._user(tx, self._tenant(tx, tenant), user)
            return [g.name for g in tx.list_user_groups(u.user_id)]

    # --- policies ----------------------------------------------------------------------------

    def put_policy(self, tenant: str, name: str, document: str) -> PolicyRecord:
        """Create or replace the tenant's policy ``name`` (validated: ``_validate_policy_document``)."""
        check_policy_name(name)
        text = _validate_policy_document(document)
        now = self.engine.now()

        def check(tx: MetaTx) -> dict[str, Any]:
            t = self._tenant(tx, tenant)
            old = tx.get_policy(t.tenant_id, name)
            return ops.policy_put(PolicyRecord(t.tenant_id, name, text, old.created_at if old else now, now))

        self._apply_doc(check)
        return self.get_policy(tenant, name)

    def get_policy(self, tenant: str, name: str) -> PolicyRecord:
        with self._read() as tx:
            t = self._tenant(tx, tenant)
            rec = tx.get_policy(t.tenant_id, name)
        if rec is None:
            raise NoSuchPolicy(f"policy {name!r} does not exist in tenant {tenant!r}")
        return rec

    def list_policies(self, tenant: str) -> list[PolicyRecord]:
        with self._read() as tx:
            return list(tx.list_policies(self._tenant(tx, tenant).tenant_id))

    def delete_policy(self, tenant: str, name: str) -> None:
        """Refused (``DeleteConflict``) while the policy is attached to a user or a group."""

        def check(tx: MetaTx) -> dict[str, Any]:
            t = self._tenant(tx, tenant)
            if tx.get_policy(t.tenant_id, name) is None:
                raise NoSuchPolicy(f"policy {name!r} does not exist in tenant {tenant!r}")
            if tx.policy_in_use(t.tenant_id, name):
                raise DeleteConflict(f"policy {name!r} is still attached; detach it first")
            return ops.policy_delete(t.tenant_id, name)

        self._apply_doc(check)

    def _target(self, tx: MetaTx, t: TenantRecord, user: str | None, group: str | None) -> tuple[AttachTarget, int]:
        if (user is None) == (group is None):
            raise InvalidInput("name exactly one of user or group")
        if user is not None:
            u = self._user(tx, t, user)
            if u.kind != PrincipalKind.USER:
                raise InvalidInput(f"{user!r} is a service account; its permissions come from its session policy")
            return AttachTarget.USER, u.user_id
        return AttachTarget.GROUP, self._group(tx, t, group or "").group_id

    def attach_policy(self, tenant: str, policy: str, *, user: str | None = None, group: str | None = None) -> None:
        """Attach by name: a policy of the tenant or a built-in one (resolved by the policy module)."""
        self._attachment(tenant, policy, user, group, ops.PUT)

    def detach_policy(self, tenant: str, policy: str, *, user: str | None = None, group: str | None = None) -> None:
        self._attachment(tenant, policy, user, group, ops.DELETE)

    def _attachment(self, tenant: str, policy: str, user: str | None, group: str | None, action: str) -> None:
        check_policy_name(policy)

        def check(tx: MetaTx) -> dict[str, Any]:
            t = self._tenant(tx, tenant)
            target, target_id = self._target(tx, t, user, group)
            return ops.attach(action, AttachmentRecord(t.tenant_id, target, target_id, policy))

        self._apply_doc(check)

    def list_attached_policies(self, tenant: str, *, user: str | None = None, group: str | None = None) -> list[str]:
        with self._read() as tx:
            target, target_id = self._target(tx, self._tenant(tx, tenant), user, group)
            return list(tx.list_attached(target, target_id))

    # --- access keys and service accounts ------------------------------------------------------

    def _seal(self, access_key_id: str, secret: str) -> tuple[str, bytes]:
        return self.engine.keyring.seal_secret(ACCESS_KEY_LABEL, access_key_id.encode(), secret.encode())

    def _fresh_key(
        self,
        tenant_id: TenantId,
        user_id: UserId,
        now: datetime,
        expires_at: datetime | None,
        description: str,
        session_policy: str | None = None,
    ) -> tuple[AccessKeyRecord, str]:
        access_key_id = _new_access_key_id()
        secret = _new_secret()
        master_key_id, sealed = self._seal(access_key_id, secret)
        rec = AccessKeyRecord(
            access_key_id,
            tenant_id,
            user_id,
            sealed,
            master_key_id,
            KeyStatus.ACTIVE,
            now,
            expires_at,
            None,
            session_policy,
            description,
        )
        return rec, secret

    def _check_new_key(self, tx: MetaTx, rec: AccessKeyRecord) -> None:
        root = self._root
        if tx.get_access_key(rec.access_key_id) is not None or (
            root is not None and hmac.compare_digest(root.access_key, rec.access_key_id)
        ):
            raise EntityAlreadyExists("access key id collision; retry")

    def create_access_key(
        self, tenant: str, user: str, *, expires_at: datetime | None = None, description: str = ""
    ) -> NewAccessKey:
        """A new active key for a user. The returned secret is never shown again."""
        now = self.engine.now()
        _check_expiry(expires_at, now)
        if len(description) > 256:
            raise InvalidInput("access key description: at most 256 characters")
        made: list[AccessKeyRecord] = []

        def check(tx: MetaTx) -> dict[str, Any]:
            u = self._user(tx, self._tenant(tx, tenant), user)
            if u.kind != PrincipalKind.USER:
                raise InvalidInput(f"{user!r} is a service account; create service accounts for their keys")
            rec, secret = self._fresh_key(u.tenant_id, u.user_id, now, expires_at, description)
            self._check_new_key(tx, rec)
            made.append(rec)
            secrets_out.append(secret)
            return ops.key_put(rec)

        secrets_out: list[str] = []
        self._apply_doc(check)
        return NewAccessKey(made[-1].access_key_id, secrets_out[-1], user, PrincipalKind.USER, expires_at)

    def create_service_account(
        self,
        tenant: str,
        parent_user: str,
        session_policy: str,
        *,
        expires_at: datetime | None = None,
        name: str | None = None,
        description: str = "",
    ) -> NewAccessKey:
        """A service account bound to ``parent_user`` with one key: its permissions are the
        parent's narrowed by ``session_policy``; disabling or deleting the parent stops it."""
        now = self.engine.now()
        _check_expiry(expires_at, now)
        policy = _validate_policy_document(session_policy)
        if name is not None:
            check_iam_name("service account", name)
        made: list[tuple[UserRecord, AccessKeyRecord, str]] = []

        def apply(tx: MetaTx) -> None:
            t = self._tenant(tx, tenant)
            parent = self._user(tx, t, parent_user)
            if parent.kind != PrincipalKind.USER:
                raise InvalidInput("a service account's parent must be a user")
            probe, secret = self._fresh_key(t.tenant_id, UserId(0), now, expires_at, description, policy)
            self._check_new_key(tx, probe)
            account = tx.create_user(
                t.tenant_id, name or f"svc-{probe.access_key_id.lower()}", PrincipalKind.SERVICE, now, parent.user_id
            )
            key = dataclasses.replace(probe, user_id=account.user_id)
            tx.put_access_key(key)
            made.append((account, key, secret))

        self._commit(apply, lambda: ops.service_account_put(made[-1][0], made[-1][1]))
        account, key, secret = made[-1]
        return NewAccessKey(key.access_key_id, secret, account.name, PrincipalKind.SERVICE, expires_at)

    def delete_service_account(self, tenant: str, name: str) -> None:
        def check(tx: MetaTx) -> dict[str, Any]:
            account = self._user(tx, self._tenant(tx, tenant), name)
            if account.kind != PrincipalKind.SERVICE:
                raise NoSuchUser(f"{name!r} is not a service account")
            return ops.user_delete(account.user_id)

        self._apply_doc(check)

    def list_access_keys(self, tenant: str, user: str | None = None) -> list[AccessKeyInfo]:
        """Keys of the tenant (or of one user or service account), oldest first; no secrets."""
        with self._read() as tx:
            t = self._tenant(tx, tenant)
            users = {u.user_id: u for u in tx.list_users(t.tenant_id)}
            owner = None if user is None else self._user(tx, t, user).user_id
            keys = tx.list_access_keys(t.tenant_id, owner)
        out = []
        for k in keys:
            u = users.get(k.user_id)
            parent = users.get(u.parent_user_id) if u is not None and u.parent_user_id is not None else None
            pending = self._last_used.pending(k.access_key_id)
            used = max((d for d in (k.last_used_at, pending) if d is not None), default=None)
            out.append(
                AccessKeyInfo(
                    k.access_key_id,
                    u.name if u else "",
                    u.kind if u else PrincipalKind.USER,
                    k.status,
                    k.created_at,
                    k.expires_at,
                    used,
                    k.description,
                    k.session_policy,
                    parent.name if parent else None,
                )
            )
        return out

    def _change_key(
        self, tenant: str, access_key_id: str, change: Callable[[AccessKeyRecord], AccessKeyRecord]
    ) -> None:
        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.key_put(change(self._key(tx, self._tenant(tx, tenant), access_key_id)))

        self._apply_doc(check)

    def disable_access_key(self, tenant: str, access_key_id: str) -> None:
        self._change_key(tenant, access_key_id, lambda k: dataclasses.replace(k, status=KeyStatus.DISABLED))

    def enable_access_key(self, tenant: str, access_key_id: str) -> None:
        self._change_key(tenant, access_key_id, lambda k: dataclasses.replace(k, status=KeyStatus.ACTIVE))

    def set_access_key_expiry(self, tenant: str, access_key_id: str, expires_at: datetime | None) -> None:
        """``None``: never expires."""
        _check_expiry(expires_at, self.engine.now())
        self._change_key(tenant, access_key_id, lambda k: dataclasses.replace(k, expires_at=expires_at))

    def delete_access_key(self, tenant: str, access_key_id: str) -> None:
        def check(tx: MetaTx) -> dict[str, Any]:
            return ops.key_delete(self._key(tx, self._tenant(tx, tenant), access_key_id).access_key_id)

        self._apply_doc(check)

    def reseal_secrets(self) -> int:
        """Reseal every secret not sealed under the current master key (a rotation hook: both
        keys are loaded then). Returns how many were resealed."""
        keyring = self.engine.keyring
        current = keyring.current_master_id()
        with self._read() as tx:
            stale = [
                k for t in tx.list_tenants() for k in tx.list_access_keys(t.tenant_id) if k.master_key_id != current
            ]
        for k in stale:
            aad = k.access_key_id.encode()
            secret = keyring.open_secret(ACCESS_KEY_LABEL, aad, k.master_key_id, k.secret_ciphertext)
            master_key_id, sealed = keyring.seal_secret(ACCESS_KEY_LABEL, aad, secret)
            resealed = dataclasses.replace(k, secret_ciphertext=sealed, master_key_id=master_key_id)
            self._commit(_applier(ops.key_put(resealed)), ops.key_put(resealed))
        return len(stale)

    def _reseal_on_rotation(self) -> None:
        self.reseal_secrets()

    # --- authentication ------------------------------------------------------------------------

    def resolve_access_key(self, access_key_id: str, now: datetime | None = None) -> Identity | None:
        """The identity an access key speaks for, or ``None`` for an unknown key. A known key
        that may not be used raises ``AccessKeyDisabled``, ``AccessKeyExpired`` or
        ``PrincipalDisabled`` (all ``CredentialsRefused``). Cached until the next IAM change;
        records the use (best-effort ``last_used_at``)."""
        root = self._root
        if root is not None and hmac.compare_digest(root.access_key.encode(), access_key_id.encode()):
            if self._root_identity is None or self._root_identity.access_key_id != root.access_key:
                self._root_identity = Identity(
                    DEFAULT_TENANT,
                    DEFAULT_TENANT_NAME,
                    DEFAULT_DOMAIN,
                    PrincipalKind.ROOT,
                    "root",
                    None,
                    root.access_key,
                    root.secret_key,
                )
            return self._root_identity  # one object: callers may cache what they derive from it
        now = now or self.engine.now()
        found, entry = self._cache.get(access_key_id)
        if not found:
            generation = self._cache.generation
            entry = self._load_identity(access_key_id)
            self._cache.put(access_key_id, entry, generation)
        identity = verdict(entry, access_key_id, now)
        if identity is not None and not self.engine.follower:
            self._last_used.touch(access_key_id, now)
        return identity

    def note_key_use(self, access_key_id: str, at: datetime) -> None:
        """A use of a key that another process (a read worker) served: recorded here, by the
        one process that writes, as if it had served it (root's key has no row to update)."""
        if self._root is None or access_key_id != self._root.access_key:
            self._last_used.touch(access_key_id, at)

    def _load_identity(self, access_key_id: str) -> Resolved | None:
        with self._read() as tx:
            key = tx.get_access_key(access_key_id)
            if key is None:
                return None
            user = tx.get_user_by_id(key.user_id)
            tenant = tx.get_tenant(key.tenant_id)
            if user is None or tenant is None:  # pragma: no cover - deleted with their keys
                return None
            parent = None if user.parent_user_id is None else tx.get_user_by_id(user.parent_user_id)
            refusal = self._refusal(key, tenant, user, parent)
            if refusal is not None:
                return Resolved(None, refusal, key.expires_at)
            principal = parent or user
            names = list(tx.list_attached(AttachTarget.USER, principal.user_id))
            for g in tx.list_user_groups(principal.user_id):
                names += tx.list_attached(AttachTarget.GROUP, g.group_id)
            policies = []
            for name in dict.fromkeys(names):
                stored = tx.get_policy(tenant.tenant_id, name)
                policies.append((name, None if stored is None else stored.document))
        if tenant.domain_id is None:
            tenant = dataclasses.replace(tenant, domain_id=self._ensure_domain(tenant))
        secret = self.engine.keyring.open_secret(
            ACCESS_KEY_LABEL, access_key_id.encode(), key.master_key_id, key.secret_ciphertext
        ).decode()
        identity = Identity(
            tenant.tenant_id,
            tenant.name,
            tenant.domain_id or DEFAULT_DOMAIN,
            user.kind,
            user.name,
            user.user_id,
            access_key_id,
            secret,
            tuple(policies),
            key.session_policy,
            parent.name if parent else None,
            parent.user_id if parent else None,
        )
        return Resolved(identity, None, key.expires_at)

    @staticmethod
    def _refusal(
        key: AccessKeyRecord, tenant: TenantRecord, user: UserRecord, parent: UserRecord | None
    ) -> CredentialsRefused | None:
        if key.status != KeyStatus.ACTIVE:
            return AccessKeyDisabled(f"access key {key.access_key_id} is disabled")
        if tenant.disabled:
            return PrincipalDisabled(f"tenant {tenant.name!r} is disabled")
        if user.disabled:
            return PrincipalDisabled(f"user {user.name!r} is disabled")
        if user.kind == PrincipalKind.SERVICE and (parent is None or parent.disabled):
            return PrincipalDisabled(f"the parent user of service account {user.name!r} is disabled")
        return None

    def _write_last_used(self, used: Any) -> None:
        with self.engine.repo.transaction() as tx:
            tx.record_key_use(used)

    def flush_last_used(self) -> None:
        """Write pending ``last_used_at`` instants now (otherwise at most every interval)."""
        self._last_used.flush(self.engine.now())

    # --- quotas and usage ----------------------------------------------------------------------

    def _scope(self, tx: MetaTx, tenant: str, user: str | None) -> tuple[QuotaScope, int]:
        t = self._tenant(tx, tenant)
        if user is None:
            return QuotaScope.TENANT, t.tenant_id
        return QuotaScope.USER, self._user(tx, t, user).user_id

    def set_quota(
        self,
        tenant: str,
        *,
        user: str | None = None,
        max_bytes: int | None = None,
        max_objects: int | None = None,
        max_buckets: int | None = None,
    ) -> QuotaRecord | None:
        """Set the hard limits of a tenant (or of one of its users); all ``None`` removes them."""
        for what, value in (("max_bytes", max_bytes), ("max_objects", max_objects), ("max_buckets", max_buckets)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidInput(f"quota {what}: a non-negative integer or None")

        def check(tx: MetaTx) -> dict[str, Any]:
            scope, scope_id = self._scope(tx, tenant, user)
            if max_bytes is None and max_objects is None and max_buckets is None:
                return ops.quota_delete(scope, scope_id)
            return ops.quota_put(QuotaRecord(scope, scope_id, max_bytes, max_objects, max_buckets))

        self._apply_doc(check)
        return self.get_quota(tenant, user=user)

    def get_quota(self, tenant: str, *, user: str | None = None) -> QuotaRecord | None:
        with self._read() as tx:
            scope, scope_id = self._scope(tx, tenant, user)
            return tx.get_quota(scope, scope_id)

    def usage(self, tenant: str, *, user: str | None = None) -> UsageTotals:
        """What the tenant's buckets hold (or the buckets the user created)."""
        with self._read() as tx:
            scope, scope_id = self._scope(tx, tenant, user)
            if scope == QuotaScope.TENANT:
                return tx.tenant_usage(TenantId(scope_id))
            return tx.user_usage(UserId(scope_id))

    def has_quota(self, tenant_id: TenantId, user_id: UserId | None = None) -> bool:
        """Whether a tenant or user quota applies to a write there (cached: the hot path asks)."""
        slots = [(QuotaScope.TENANT, int(tenant_id))]
        if user_id is not None:
            slots.append((QuotaScope.USER, int(user_id)))
        if any(slot not in self._quotas for slot in slots):
            with self._read() as tx:
                for scope, scope_id in slots:
                    self._cached_quota(tx, scope, scope_id)
        return any(self._quotas.get(slot) is not None for slot in slots)

    def _cached_quota(self, tx: MetaTx, scope: QuotaScope, scope_id: int) -> QuotaRecord | None:
        slot = (scope, scope_id)
        if slot not in self._quotas:
            self._quotas[slot] = tx.get_quota(scope, scope_id)
        return self._quotas[slot]

    def check_quota(
        self,
        tenant_id: TenantId,
        user_id: UserId | None = None,
        *,
        add_bytes: int = 0,
        add_objects: int = 0,
        add_buckets: int = 0,
        tx: MetaTx | None = None,
    ) -> None:
        """Raise ``QuotaExceeded`` if adding this much would take the tenant (or the user) past
        its quota. Call it before storing data, and with ``tx`` (the commit's transaction, after
        the write was applied, adding 0) for the race-free verdict, as bucket quotas do."""
        if tx is None:
            with self._read() as read_tx:
                self._check_quota(read_tx, tenant_id, user_id, add_bytes, add_objects, add_buckets)
        else:
            self._check_quota(tx, tenant_id, user_id, add_bytes, add_objects, add_buckets)

    def _check_quota(
        self,
        tx: MetaTx,
        tenant_id: TenantId,
        user_id: UserId | None,
        add_bytes: int,
        add_objects: int,
        add_buckets: int,
    ) -> None:
        scopes: list[tuple[QuotaScope, int]] = [(QuotaScope.TENANT, tenant_id)]
        if user_id is not None:
            scopes.append((QuotaScope.USER, user_id))
        for scope, scope_id in scopes:
            limit = self._cached_quota(tx, scope, scope_id)
            if limit is None:
                continue
            used = (
                tx.tenant_usage(TenantId(scope_id)) if scope == QuotaScope.TENANT else tx.user_usage(UserId(scope_id))
            )
            for what, have, adding, cap in (
                ("bytes", used.bytes, add_bytes, limit.max_bytes),
                ("objects", used.objects, add_objects, limit.max_objects),
                ("buckets", used.buckets, add_buckets, limit.max_buckets),
            ):
                if cap is not None and have + adding > cap and (adding > 0 or have > cap):
                    raise QuotaExceeded(
                        f"{scope.value} {scope_id}: {what} quota {cap} would be exceeded ({have} used, {adding} more)"
                    )
