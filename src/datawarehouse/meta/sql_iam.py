"""SQL for identity and access: tenants and their domains, IAM users and service accounts, groups,
policies, attachments, access keys, quotas and per-tenant/per-user usage (migration 0006).

A mixin of ``SqlMetaTx`` like ``sql_usage``: it relies on the transaction's helpers. Two kinds of
writes, as for buckets: ``create_*`` allocates an id (live), ``put_*`` writes a whole row with a
given id and is idempotent (journal replay, and every later change of the row). Deletions remove
what depends on the row in the same transaction (the schema's ON DELETE CASCADE is not relied
upon: it would differ between backends' settings).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from datawarehouse.errors import DeleteConflict, EntityAlreadyExists, MetadataError, NoSuchTenant
from datawarehouse.ids import DomainId, GroupId, TenantId, UserId
from datawarehouse.meta import schema as s
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

_P = sa.bindparam
_TN = s.tenants
_DM = s.domains
_US = s.iam_users
_GR = s.iam_groups
_GM = s.iam_group_members
_PO = s.iam_policies
_AT = s.iam_attachments
_AK = s.iam_access_keys
_QU = s.iam_quotas
_BK = s.buckets
_BU = s.bucket_usage

_TENANT_DOMAIN = (
    sa.select(sa.func.min(_DM.c.domain_id)).where(_DM.c.tenant_id == _TN.c.tenant_id).scalar_subquery().label("domain")
)
_TENANT_COLUMNS = (_TN.c.tenant_id, _TN.c.name, _TN.c.created_at, _TN.c.disabled, _TENANT_DOMAIN)
_TENANT_BY_ID = sa.select(*_TENANT_COLUMNS).where(_TN.c.tenant_id == _P("p_tenant"))
_TENANT_BY_NAME = sa.select(*_TENANT_COLUMNS).where(_TN.c.name == _P("p_name"))
_LIST_TENANTS = sa.select(*_TENANT_COLUMNS).order_by(_TN.c.tenant_id)
_DOMAIN_BY_ID = sa.select(_DM.c.tenant_id).where(_DM.c.domain_id == _P("p_domain"))
_DOMAINS_OF = sa.select(_DM.c.domain_id).where(_DM.c.tenant_id == _P("p_tenant"))
_ANY_BUCKET_OF = sa.select(_BK.c.bucket_id).where(_BK.c.tenant_id == _P("p_tenant")).limit(1)
_ANY_USER_OF = sa.select(_US.c.user_id).where(_US.c.tenant_id == _P("p_tenant")).limit(1)
_ANY_CHUNK_IN = sa.select(s.chunks.c.chunk_id).where(s.chunks.c.domain_id.in_(_P("p_domains", expanding=True))).limit(1)

_USER_BY_ID = sa.select(_US).where(_US.c.user_id == _P("p_user"))
_USER_BY_NAME = sa.select(_US).where(_US.c.tenant_id == _P("p_tenant"), _US.c.name == _P("p_name"))
_LIST_USERS = sa.select(_US).where(_US.c.tenant_id == _P("p_tenant")).order_by(_US.c.name)
_CHILDREN = sa.select(_US.c.user_id).where(_US.c.parent_user_id == _P("p_user"))

_GROUP_BY_ID = sa.select(_GR).where(_GR.c.group_id == _P("p_group"))
_GROUP_BY_NAME = sa.select(_GR).where(_GR.c.tenant_id == _P("p_tenant"), _GR.c.name == _P("p_name"))
_LIST_GROUPS = sa.select(_GR).where(_GR.c.tenant_id == _P("p_tenant")).order_by(_GR.c.name)
_MEMBERS = (
    sa.select(_US).join(_GM, _GM.c.user_id == _US.c.user_id).where(_GM.c.group_id == _P("p_group")).order_by(_US.c.name)
)
_GROUPS_OF_USER = (
    sa.select(_GR).join(_GM, _GM.c.group_id == _GR.c.group_id).where(_GM.c.user_id == _P("p_user")).order_by(_GR.c.name)
)
_DELETE_MEMBER = sa.delete(_GM).where(_GM.c.group_id == _P("p_group"), _GM.c.user_id == _P("p_user"))

_POLICY = sa.select(_PO).where(_PO.c.tenant_id == _P("p_tenant"), _PO.c.name == _P("p_name"))
_LIST_POLICIES = sa.select(_PO).where(_PO.c.tenant_id == _P("p_tenant")).order_by(_PO.c.name)
_DELETE_POLICY = sa.delete(_PO).where(_PO.c.tenant_id == _P("p_tenant"), _PO.c.name == _P("p_name"))
_POLICY_IN_USE = (
    sa.select(_AT.c.target).where(_AT.c.tenant_id == _P("p_tenant"), _AT.c.policy_name == _P("p_name")).limit(1)
)

_ATTACHED = (
    sa.select(_AT.c.policy_name)
    .where(_AT.c.target == _P("p_target"), _AT.c.target_id == _P("p_id"))
    .order_by(_AT.c.policy_name)
)
_DETACH = sa.delete(_AT).where(
    _AT.c.target == _P("p_target"), _AT.c.target_id == _P("p_id"), _AT.c.policy_name == _P("p_name")
)
_DETACH_ALL = sa.delete(_AT).where(_AT.c.target == _P("p_target"), _AT.c.target_id == _P("p_id"))

_KEY = sa.select(_AK).where(_AK.c.access_key_id == _P("p_key"))
_KEYS_OF_TENANT = (
    sa.select(_AK).where(_AK.c.tenant_id == _P("p_tenant")).order_by(_AK.c.created_at, _AK.c.access_key_id)
)
_KEYS_OF_USER = sa.select(_AK).where(_AK.c.user_id == _P("p_user")).order_by(_AK.c.created_at, _AK.c.access_key_id)
_DELETE_KEY = sa.delete(_AK).where(_AK.c.access_key_id == _P("p_key"))
_DELETE_KEYS_OF_USER = sa.delete(_AK).where(_AK.c.user_id == _P("p_user"))
# last use only moves forward (two processes' batches may land out of order)
_TOUCH_KEY = (
    sa.update(_AK)
    .where(
        _AK.c.access_key_id == _P("p_key"),
        sa.or_(_AK.c.last_used_at.is_(None), _AK.c.last_used_at < _P("p_at", type_=s.UTCDateTime)),
    )
    .values(last_used_at=_P("p_at", type_=s.UTCDateTime))
)

_QUOTA = sa.select(_QU).where(_QU.c.scope == _P("p_scope"), _QU.c.scope_id == _P("p_id"))
_DELETE_QUOTA = sa.delete(_QU).where(_QU.c.scope == _P("p_scope"), _QU.c.scope_id == _P("p_id"))


def _usage_of(condition: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(
            sa.func.count(_BK.c.bucket_id),
            sa.func.coalesce(sa.func.sum(_BU.c.objects), 0),
            sa.func.coalesce(sa.func.sum(_BU.c.bytes + _BU.c.upload_bytes), 0),
        )
        .select_from(_BK.outerjoin(_BU, _BU.c.bucket_id == _BK.c.bucket_id))
        .where(condition)
    )


_TENANT_USAGE = _usage_of(_BK.c.tenant_id == _P("p_tenant"))
_USER_USAGE = _usage_of(_BK.c.owner_user_id == _P("p_user"))


def _pg_advance(table: str, column: str) -> sa.TextClause:
    """PostgreSQL: move a serial sequence past an id inserted explicitly (replay), never back.
    ``table``/``column`` are constants of this module, never input."""
    seq = f"pg_get_serial_sequence('{table}', '{column}')"
    return sa.text(
        f"SELECT setval({seq}, :p_id) WHERE :p_id > COALESCE(pg_sequence_last_value({seq}::regclass), 0)"
    ).bindparams(sa.bindparam("p_id", type_=sa.BigInteger))


_PG_ADVANCE = {
    "tenants": _pg_advance("tenants", "tenant_id"),
    "domains": _pg_advance("domains", "domain_id"),
    "iam_users": _pg_advance("iam_users", "user_id"),
    "iam_groups": _pg_advance("iam_groups", "group_id"),
}


# settings rows that remember the highest id ever used (see IamMixin._advance)
_LAST_ID = {
    "tenants": "last-tenant-id",
    "domains": "last-domain-id",
    "iam_users": "last-user-id",
    "iam_groups": "last-group-id",
}


@functools.cache
def _upsert_keeping(table: sa.Table, keys: tuple[str, ...], keep: tuple[str, ...], pg: bool) -> sa.Executable:
    """INSERT .. ON CONFLICT (keys) DO UPDATE every column but ``keys`` and ``keep``."""
    ins = postgresql.insert(table) if pg else sqlite.insert(table)
    return ins.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in keys and c.name not in keep},
    )


# --- rows to records ---------------------------------------------------------------------------


def _tenant(row: sa.Row[Any]) -> TenantRecord:
    return TenantRecord(
        tenant_id=TenantId(row.tenant_id),
        name=row.name,
        created_at=row.created_at,
        disabled=bool(row.disabled),
        domain_id=None if row.domain is None else DomainId(row.domain),
    )


def _user(row: sa.Row[Any]) -> UserRecord:
    return UserRecord(
        user_id=UserId(row.user_id),
        tenant_id=TenantId(row.tenant_id),
        name=row.name,
        kind=PrincipalKind(row.kind),
        created_at=row.created_at,
        disabled=bool(row.disabled),
        parent_user_id=None if row.parent_user_id is None else UserId(row.parent_user_id),
    )


def _group(row: sa.Row[Any]) -> GroupRecord:
    return GroupRecord(GroupId(row.group_id), TenantId(row.tenant_id), row.name, row.created_at)


def _policy(row: sa.Row[Any]) -> PolicyRecord:
    return PolicyRecord(TenantId(row.tenant_id), row.name, row.document, row.created_at, row.updated_at)


def _key(row: sa.Row[Any]) -> AccessKeyRecord:
    return AccessKeyRecord(
        access_key_id=row.access_key_id,
        tenant_id=TenantId(row.tenant_id),
        user_id=UserId(row.user_id),
        secret_ciphertext=bytes(row.secret_ciphertext),
        master_key_id=row.master_key_id,
        status=KeyStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        session_policy=row.session_policy,
        description=row.description,
    )


def _quota(row: sa.Row[Any]) -> QuotaRecord:
    return QuotaRecord(QuotaScope(row.scope), int(row.scope_id), row.max_bytes, row.max_objects, row.max_buckets)


def _totals(row: sa.Row[Any] | None) -> UsageTotals:
    if row is None:
        return UsageTotals()
    buckets, objects, size = tuple(row)
    return UsageTotals(int(buckets), int(objects), int(size))


class IamMixin:
    if TYPE_CHECKING:
        _pg: bool

        def _x(self, stmt: sa.Executable, params: Any = None) -> sa.CursorResult[Any]: ...
        def _rows(self, stmt: sa.Executable, params: Any = None) -> list[sa.Row[Any]]: ...
        def _first(self, stmt: sa.Executable, params: Any = None) -> sa.Row[Any] | None: ...
        def _upsert(self, table: sa.Table, keys: tuple[str, ...], values: Mapping[str, Any]) -> None: ...
        def _insert_ignore(self, table: sa.Table, keys: tuple[str, ...], values: Mapping[str, Any]) -> bool: ...
        def get_setting(self, name: str) -> str | None: ...
        def set_setting(self, name: str, value: str) -> None: ...

    def _insert_with_id(self, table: sa.Table, values: Mapping[str, Any]) -> int:
        pk = self._x(sa.insert(table), values).inserted_primary_key
        if pk is None:
            raise MetadataError(f"metadata: insert into {table.name}: no id was generated")
        return int(pk[0])

    def _advance(self, table: str, value: int) -> None:
        """Note an id as used: it is never handed out again, even after its row is deleted and
        the index rebuilt from the journal (which names it)."""
        if self._pg:
            self._x(_PG_ADVANCE[table], {"p_id": value})
        counter = _LAST_ID[table]
        if value > int(self.get_setting(counter) or 0):
            self.set_setting(counter, str(value))

    def _allocate(self, table: str, column: sa.Column[Any]) -> int:
        """The next id of ``tenants`` or ``domains``: above every id in the table and every id
        ever noted. Those tables have no AUTOINCREMENT on SQLite (the initial schema), and a
        reused domain id would let a new tenant's shards meet a deleted tenant's."""
        top = self._first(sa.select(sa.func.coalesce(sa.func.max(column), 0).label("n")))
        new = max(int(top.n) if top is not None else 0, int(self.get_setting(_LAST_ID[table]) or 0)) + 1
        self._advance(table, new)
        return new

    # --- tenants and domains ---------------------------------------------------------------------

    def create_tenant(self, name: str, created_at: datetime) -> TenantRecord:
        if self._first(_TENANT_BY_NAME, {"p_name": name}) is not None:
            raise EntityAlreadyExists(f"tenant {name!r} already exists")
        tenant_id = self._allocate("tenants", _TN.c.tenant_id)
        self._x(sa.insert(_TN), {"tenant_id": tenant_id, "name": name, "created_at": created_at, "disabled": False})
        return TenantRecord(TenantId(tenant_id), name, created_at)

    def put_tenant(self, rec: TenantRecord) -> None:
        other = self._first(_TENANT_BY_NAME, {"p_name": rec.name})
        if other is not None and other.tenant_id != rec.tenant_id:
            raise EntityAlreadyExists(f"tenant {rec.name!r} already exists with another id")
        values = {"tenant_id": rec.tenant_id, "name": rec.name, "created_at": rec.created_at, "disabled": rec.disabled}
        self._upsert(_TN, ("tenant_id",), values)
        self._advance("tenants", rec.tenant_id)

    def get_tenant(self, tenant_id: TenantId) -> TenantRecord | None:
        row = self._first(_TENANT_BY_ID, {"p_tenant": tenant_id})
        return None if row is None else _tenant(row)

    def get_tenant_by_name(self, name: str) -> TenantRecord | None:
        row = self._first(_TENANT_BY_NAME, {"p_name": name})
        return None if row is None else _tenant(row)

    def list_tenants(self) -> list[TenantRecord]:
        return [_tenant(r) for r in self._rows(_LIST_TENANTS)]

    def delete_tenant(self, tenant_id: TenantId) -> None:
        """Remove a tenant, its groups, policies, attachments, quota, domains and their secrets
        (crypto-shredding whatever the domains ever sealed). Refused (``DeleteConflict``) while it
        owns buckets, users, or chunks that GC has not collected yet. No-op if it is absent."""
        params = {"p_tenant": tenant_id}
        if self._first(_TENANT_BY_ID, params) is None:
            return
        if self._first(_ANY_BUCKET_OF, params) is not None:
            raise DeleteConflict(f"tenant {tenant_id} still owns buckets")
        if self._first(_ANY_USER_OF, params) is not None:
            raise DeleteConflict(f"tenant {tenant_id} still has users")
        domains = [int(r.domain_id) for r in self._rows(_DOMAINS_OF, params)]
        if domains and self._first(_ANY_CHUNK_IN, {"p_domains": domains}) is not None:
            raise DeleteConflict(f"tenant {tenant_id} still has chunks awaiting garbage collection; run gc first")
        for group in self._rows(_LIST_GROUPS, params):
            self.delete_group(GroupId(group.group_id))
        self._x(sa.delete(_AT).where(_AT.c.tenant_id == _P("p_tenant")), params)
        self._x(sa.delete(_PO).where(_PO.c.tenant_id == _P("p_tenant")), params)
        self.delete_quota(QuotaScope.TENANT, tenant_id)
        if domains:
            self._x(sa.delete(s.domain_secrets).where(s.domain_secrets.c.domain_id.in_(domains)))
            self._x(sa.delete(_DM).where(_DM.c.domain_id.in_(domains)))
        self._x(sa.delete(_TN).where(_TN.c.tenant_id == _P("p_tenant")), params)

    def create_domain(self, tenant_id: TenantId) -> DomainId:
        """A new dedup/encryption domain owned by the tenant (its secret is the engine's business)."""
        if self._first(_TENANT_BY_ID, {"p_tenant": tenant_id}) is None:
            raise NoSuchTenant(f"tenant {tenant_id} does not exist")
        domain_id = self._allocate("domains", _DM.c.domain_id)
        self._x(sa.insert(_DM), {"domain_id": domain_id, "tenant_id": tenant_id})
        return DomainId(domain_id)

    def insert_domain(self, domain_id: DomainId, tenant_id: TenantId) -> None:
        """Replay: the domain row with a given id; no-op if it exists."""
        if self._first(_DOMAIN_BY_ID, {"p_domain": domain_id}) is not None:
            return
        if self._first(_TENANT_BY_ID, {"p_tenant": tenant_id}) is None:
            raise NoSuchTenant(f"tenant {tenant_id} does not exist")
        self._x(sa.insert(_DM), {"domain_id": domain_id, "tenant_id": tenant_id})
        self._advance("domains", domain_id)

    # --- users and service accounts --------------------------------------------------------------

    def create_user(
        self,
        tenant_id: TenantId,
        name: str,
        kind: PrincipalKind,
        created_at: datetime,
        parent_user_id: UserId | None = None,
    ) -> UserRecord:
        if self._first(_USER_BY_NAME, {"p_tenant": tenant_id, "p_name": name}) is not None:
            raise EntityAlreadyExists(f"user {name!r} already exists")
        rec = UserRecord(UserId(0), tenant_id, name, kind, created_at, False, parent_user_id)
        values = self._user_values(rec)
        del values["user_id"]
        return dataclasses.replace(rec, user_id=UserId(self._insert_with_id(_US, values)))

    @staticmethod
    def _user_values(rec: UserRecord) -> dict[str, Any]:
        return {
            "user_id": rec.user_id,
            "tenant_id": rec.tenant_id,
            "name": rec.name,
            "kind": PrincipalKind(rec.kind).value,
            "parent_user_id": rec.parent_user_id,
            "created_at": rec.created_at,
            "disabled": rec.disabled,
        }

    def put_user(self, rec: UserRecord) -> None:
        other = self._first(_USER_BY_NAME, {"p_tenant": rec.tenant_id, "p_name": rec.name})
        if other is not None and other.user_id != rec.user_id:
            raise EntityAlreadyExists(f"user {rec.name!r} already exists with another id")
        self._upsert(_US, ("user_id",), self._user_values(rec))
        self._advance("iam_users", rec.user_id)

    def get_user(self, tenant_id: TenantId, name: str) -> UserRecord | None:
        row = self._first(_USER_BY_NAME, {"p_tenant": tenant_id, "p_name": name})
        return None if row is None else _user(row)

    def get_user_by_id(self, user_id: UserId) -> UserRecord | None:
        row = self._first(_USER_BY_ID, {"p_user": user_id})
        return None if row is None else _user(row)

    def list_users(self, tenant_id: TenantId) -> list[UserRecord]:
        """Users and service accounts of the tenant, by name."""
        return [_user(r) for r in self._rows(_LIST_USERS, {"p_tenant": tenant_id})]

    def delete_user(self, user_id: UserId) -> None:
        """Remove a user with its service accounts, access keys, group memberships, attached
        policies and user quota. Its buckets stay (owned by the tenant). No-op if absent."""
        for child in self._rows(_CHILDREN, {"p_user": user_id}):
            self.delete_user(UserId(child.user_id))
        self._x(_DELETE_KEYS_OF_USER, {"p_user": user_id})
        self._x(sa.delete(_GM).where(_GM.c.user_id == _P("p_user")), {"p_user": user_id})
        self._x(_DETACH_ALL, {"p_target": AttachTarget.USER.value, "p_id": user_id})
        self.delete_quota(QuotaScope.USER, user_id)
        self._x(sa.delete(_US).where(_US.c.user_id == _P("p_user")), {"p_user": user_id})

    # --- groups ----------------------------------------------------------------------------------

    def create_group(self, tenant_id: TenantId, name: str, created_at: datetime) -> GroupRecord:
        if self._first(_GROUP_BY_NAME, {"p_tenant": tenant_id, "p_name": name}) is not None:
            raise EntityAlreadyExists(f"group {name!r} already exists")
        group_id = self._insert_with_id(_GR, {"tenant_id": tenant_id, "name": name, "created_at": created_at})
        return GroupRecord(GroupId(group_id), tenant_id, name, created_at)

    def put_group(self, rec: GroupRecord) -> None:
        other = self._first(_GROUP_BY_NAME, {"p_tenant": rec.tenant_id, "p_name": rec.name})
        if other is not None and other.group_id != rec.group_id:
            raise EntityAlreadyExists(f"group {rec.name!r} already exists with another id")
        values = {"group_id": rec.group_id, "tenant_id": rec.tenant_id, "name": rec.name, "created_at": rec.created_at}
        self._upsert(_GR, ("group_id",), values)
        self._advance("iam_groups", rec.group_id)

    def get_group(self, tenant_id: TenantId, name: str) -> GroupRecord | None:
        row = self._first(_GROUP_BY_NAME, {"p_tenant": tenant_id, "p_name": name})
        return None if row is None else _group(row)

    def get_group_by_id(self, group_id: GroupId) -> GroupRecord | None:
        row = self._first(_GROUP_BY_ID, {"p_group": group_id})
        return None if row is None else _group(row)

    def list_groups(self, tenant_id: TenantId) -> list[GroupRecord]:
        return [_group(r) for r in self._rows(_LIST_GROUPS, {"p_tenant": tenant_id})]

    def delete_group(self, group_id: GroupId) -> None:
        """Remove a group with its memberships and attached policies. No-op if absent."""
        params = {"p_group": group_id}
        self._x(sa.delete(_GM).where(_GM.c.group_id == _P("p_group")), params)
        self._x(_DETACH_ALL, {"p_target": AttachTarget.GROUP.value, "p_id": group_id})
        self._x(sa.delete(_GR).where(_GR.c.group_id == _P("p_group")), params)

    def add_group_member(self, group_id: GroupId, user_id: UserId) -> None:
        """Idempotent."""
        self._insert_ignore(_GM, ("group_id", "user_id"), {"group_id": group_id, "user_id": user_id})

    def remove_group_member(self, group_id: GroupId, user_id: UserId) -> bool:
        return self._x(_DELETE_MEMBER, {"p_group": group_id, "p_user": user_id}).rowcount == 1

    def list_group_members(self, group_id: GroupId) -> list[UserRecord]:
        return [_user(r) for r in self._rows(_MEMBERS, {"p_group": group_id})]

    def list_user_groups(self, user_id: UserId) -> list[GroupRecord]:
        return [_group(r) for r in self._rows(_GROUPS_OF_USER, {"p_user": user_id})]

    # --- policies and attachments ----------------------------------------------------------------

    def put_policy(self, rec: PolicyRecord) -> None:
        """Insert or replace the tenant's policy of that name."""
        values = {
            "tenant_id": rec.tenant_id,
            "name": rec.name,
            "document": rec.document,
            "created_at": rec.created_at,
            "updated_at": rec.updated_at,
        }
        self._upsert(_PO, ("tenant_id", "name"), values)

    def get_policy(self, tenant_id: TenantId, name: str) -> PolicyRecord | None:
        row = self._first(_POLICY, {"p_tenant": tenant_id, "p_name": name})
        return None if row is None else _policy(row)

    def list_policies(self, tenant_id: TenantId) -> list[PolicyRecord]:
        return [_policy(r) for r in self._rows(_LIST_POLICIES, {"p_tenant": tenant_id})]

    def policy_in_use(self, tenant_id: TenantId, name: str) -> bool:
        return self._first(_POLICY_IN_USE, {"p_tenant": tenant_id, "p_name": name}) is not None

    def delete_policy(self, tenant_id: TenantId, name: str) -> bool:
        return self._x(_DELETE_POLICY, {"p_tenant": tenant_id, "p_name": name}).rowcount == 1

    def attach_policy(self, rec: AttachmentRecord) -> None:
        """Idempotent."""
        values = {
            "target": AttachTarget(rec.target).value,
            "target_id": rec.target_id,
            "policy_name": rec.policy_name,
            "tenant_id": rec.tenant_id,
        }
        self._insert_ignore(_AT, ("target", "target_id", "policy_name"), values)

    def detach_policy(self, target: AttachTarget, target_id: int, policy_name: str) -> bool:
        params = {"p_target": AttachTarget(target).value, "p_id": target_id, "p_name": policy_name}
        return self._x(_DETACH, params).rowcount == 1

    def list_attached(self, target: AttachTarget, target_id: int) -> list[str]:
        """Names of the policies attached to a user or group, sorted."""
        rows = self._rows(_ATTACHED, {"p_target": AttachTarget(target).value, "p_id": target_id})
        return [r.policy_name for r in rows]

    # --- access keys -----------------------------------------------------------------------------

    def put_access_key(self, rec: AccessKeyRecord) -> None:
        """Insert or replace a key (status, expiry, ciphertext after a master key rotation); the
        stored ``last_used_at`` is kept (it is not journaled)."""
        values = {
            "access_key_id": rec.access_key_id,
            "tenant_id": rec.tenant_id,
            "user_id": rec.user_id,
            "secret_ciphertext": rec.secret_ciphertext,
            "master_key_id": rec.master_key_id,
            "status": KeyStatus(rec.status).value,
            "created_at": rec.created_at,
            "expires_at": rec.expires_at,
            "last_used_at": rec.last_used_at,
            "session_policy": rec.session_policy,
            "description": rec.description,
        }
        self._x(_upsert_keeping(_AK, ("access_key_id",), ("last_used_at",), self._pg), values)

    def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None:
        row = self._first(_KEY, {"p_key": access_key_id})
        return None if row is None else _key(row)

    def list_access_keys(self, tenant_id: TenantId, user_id: UserId | None = None) -> list[AccessKeyRecord]:
        """The tenant's keys (or one user's), oldest first."""
        if user_id is None:
            return [_key(r) for r in self._rows(_KEYS_OF_TENANT, {"p_tenant": tenant_id})]
        return [_key(r) for r in self._rows(_KEYS_OF_USER, {"p_user": user_id})]

    def delete_access_key(self, access_key_id: str) -> bool:
        return self._x(_DELETE_KEY, {"p_key": access_key_id}).rowcount == 1

    def record_key_use(self, used: Mapping[str, datetime]) -> None:
        """Move ``last_used_at`` forward for many keys (unknown keys are ignored)."""
        if used:
            self._x(_TOUCH_KEY, [{"p_key": k, "p_at": at} for k, at in used.items()])

    # --- quotas and usage ------------------------------------------------------------------------

    def put_quota(self, rec: QuotaRecord) -> None:
        values = {
            "scope": QuotaScope(rec.scope).value,
            "scope_id": rec.scope_id,
            "max_bytes": rec.max_bytes,
            "max_objects": rec.max_objects,
            "max_buckets": rec.max_buckets,
        }
        self._upsert(_QU, ("scope", "scope_id"), values)

    def get_quota(self, scope: QuotaScope, scope_id: int) -> QuotaRecord | None:
        row = self._first(_QUOTA, {"p_scope": QuotaScope(scope).value, "p_id": scope_id})
        return None if row is None else _quota(row)

    def delete_quota(self, scope: QuotaScope, scope_id: int) -> bool:
        return self._x(_DELETE_QUOTA, {"p_scope": QuotaScope(scope).value, "p_id": scope_id}).rowcount == 1

    def tenant_usage(self, tenant_id: TenantId) -> UsageTotals:
        """Sum of the tenant's buckets' counters (one aggregate over ``bucket_usage``)."""
        return _totals(self._first(_TENANT_USAGE, {"p_tenant": tenant_id}))

    def user_usage(self, user_id: UserId) -> UsageTotals:
        """Sum over the buckets the user created (``buckets.owner_user_id``)."""
        return _totals(self._first(_USER_USAGE, {"p_user": user_id}))
