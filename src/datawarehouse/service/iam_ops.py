"""IAM changes as journal documents, and their idempotent application (live and on replay).

Every operation puts a whole row (``action: put``) or deletes one (``action: delete``), so
applying a record twice, or a prefix of the journal again, ends in the same state. Records are
sealed under the default domain's journal key. Operations (docs/format.md):

``iam.tenant`` · ``iam.user`` · ``iam.service_account`` (a service account and its key, one
record) · ``iam.group`` · ``iam.member`` · ``iam.policy`` · ``iam.attach`` · ``iam.key`` ·
``iam.quota``. Access keys travel as ciphertext only (sealed under the master key).
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any

from datawarehouse.errors import CorruptFrame, DwhError
from datawarehouse.ids import GroupId, TenantId, UserId
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
    UserRecord,
)

log = logging.getLogger(__name__)

PUT = "put"
DELETE = "delete"


def _at(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# --- documents ---------------------------------------------------------------------------------


def tenant_put(t: TenantRecord) -> dict[str, Any]:
    row = {"tenant_id": t.tenant_id, "name": t.name, "created_at": _at(t.created_at), "disabled": t.disabled}
    return {"op": "iam.tenant", "action": PUT, "tenant": row}


def tenant_delete(tenant_id: TenantId) -> dict[str, Any]:
    return {"op": "iam.tenant", "action": DELETE, "tenant_id": tenant_id}


def _user_doc(u: UserRecord) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "tenant_id": u.tenant_id,
        "name": u.name,
        "kind": u.kind.value,
        "parent_user_id": u.parent_user_id,
        "created_at": _at(u.created_at),
        "disabled": u.disabled,
    }


def user_put(u: UserRecord) -> dict[str, Any]:
    return {"op": "iam.user", "action": PUT, "user": _user_doc(u)}


def user_delete(user_id: UserId) -> dict[str, Any]:
    return {"op": "iam.user", "action": DELETE, "user_id": user_id}


def _key_doc(k: AccessKeyRecord) -> dict[str, Any]:
    return {
        "access_key_id": k.access_key_id,
        "tenant_id": k.tenant_id,
        "user_id": k.user_id,
        "secret_ciphertext": base64.b64encode(k.secret_ciphertext).decode(),
        "master_key_id": k.master_key_id,
        "status": k.status.value,
        "created_at": _at(k.created_at),
        "expires_at": _at(k.expires_at),
        "session_policy": k.session_policy,
        "description": k.description,
    }


def service_account_put(u: UserRecord, k: AccessKeyRecord) -> dict[str, Any]:
    return {"op": "iam.service_account", "action": PUT, "user": _user_doc(u), "key": _key_doc(k)}


def group_put(g: GroupRecord) -> dict[str, Any]:
    row = {"group_id": g.group_id, "tenant_id": g.tenant_id, "name": g.name, "created_at": _at(g.created_at)}
    return {"op": "iam.group", "action": PUT, "group": row}


def group_delete(group_id: GroupId) -> dict[str, Any]:
    return {"op": "iam.group", "action": DELETE, "group_id": group_id}


def member(action: str, group_id: GroupId, user_id: UserId) -> dict[str, Any]:
    return {"op": "iam.member", "action": action, "group_id": group_id, "user_id": user_id}


def policy_put(p: PolicyRecord) -> dict[str, Any]:
    row = {
        "tenant_id": p.tenant_id,
        "name": p.name,
        "document": p.document,
        "created_at": _at(p.created_at),
        "updated_at": _at(p.updated_at),
    }
    return {"op": "iam.policy", "action": PUT, "policy": row}


def policy_delete(tenant_id: TenantId, name: str) -> dict[str, Any]:
    return {"op": "iam.policy", "action": DELETE, "tenant_id": tenant_id, "name": name}


def attach(action: str, a: AttachmentRecord) -> dict[str, Any]:
    return {
        "op": "iam.attach",
        "action": action,
        "tenant_id": a.tenant_id,
        "target": a.target.value,
        "target_id": a.target_id,
        "policy_name": a.policy_name,
    }


def key_put(k: AccessKeyRecord) -> dict[str, Any]:
    return {"op": "iam.key", "action": PUT, "key": _key_doc(k)}


def key_delete(access_key_id: str) -> dict[str, Any]:
    return {"op": "iam.key", "action": DELETE, "access_key_id": access_key_id}


def quota_put(q: QuotaRecord) -> dict[str, Any]:
    row = {
        "scope": q.scope.value,
        "scope_id": q.scope_id,
        "max_bytes": q.max_bytes,
        "max_objects": q.max_objects,
        "max_buckets": q.max_buckets,
    }
    return {"op": "iam.quota", "action": PUT, "quota": row}


def quota_delete(scope: QuotaScope, scope_id: int) -> dict[str, Any]:
    return {"op": "iam.quota", "action": DELETE, "scope": scope.value, "scope_id": scope_id}


# --- documents back to records -----------------------------------------------------------------


def _user(d: dict[str, Any]) -> UserRecord:
    parent = d.get("parent_user_id")
    return UserRecord(
        user_id=UserId(int(d["user_id"])),
        tenant_id=TenantId(int(d["tenant_id"])),
        name=str(d["name"]),
        kind=PrincipalKind(d["kind"]),
        created_at=datetime.fromisoformat(d["created_at"]),
        disabled=bool(d.get("disabled", False)),
        parent_user_id=None if parent is None else UserId(int(parent)),
    )


def _key(d: dict[str, Any]) -> AccessKeyRecord:
    return AccessKeyRecord(
        access_key_id=str(d["access_key_id"]),
        tenant_id=TenantId(int(d["tenant_id"])),
        user_id=UserId(int(d["user_id"])),
        secret_ciphertext=base64.b64decode(d["secret_ciphertext"], validate=True),
        master_key_id=str(d["master_key_id"]),
        status=KeyStatus(d["status"]),
        created_at=datetime.fromisoformat(d["created_at"]),
        expires_at=_from_at(d.get("expires_at")),
        session_policy=d.get("session_policy"),
        description=str(d.get("description", "")),
    )


# --- application -------------------------------------------------------------------------------


def apply(tx: MetaTx, doc: dict[str, Any]) -> None:
    """Apply one ``iam.*`` document (validated already when live). Raises what the repository
    raises (``EntityAlreadyExists``, ``DeleteConflict``...)."""
    op, put = doc["op"], doc["action"] == PUT
    if op == "iam.tenant":
        if put:
            t = doc["tenant"]
            created = datetime.fromisoformat(t["created_at"])
            tx.put_tenant(TenantRecord(TenantId(int(t["tenant_id"])), t["name"], created, bool(t["disabled"])))
        else:
            tx.delete_tenant(TenantId(int(doc["tenant_id"])))
    elif op == "iam.user":
        if put:
            tx.put_user(_user(doc["user"]))
        else:
            tx.delete_user(UserId(int(doc["user_id"])))
    elif op == "iam.service_account":
        tx.put_user(_user(doc["user"]))
        tx.put_access_key(_key(doc["key"]))
    elif op == "iam.group":
        if put:
            g = doc["group"]
            group = GroupRecord(
                GroupId(int(g["group_id"])),
                TenantId(int(g["tenant_id"])),
                g["name"],
                datetime.fromisoformat(g["created_at"]),
            )
            tx.put_group(group)
        else:
            tx.delete_group(GroupId(int(doc["group_id"])))
    elif op == "iam.member":
        group_id, user_id = GroupId(int(doc["group_id"])), UserId(int(doc["user_id"]))
        if put:
            tx.add_group_member(group_id, user_id)
        else:
            tx.remove_group_member(group_id, user_id)
    elif op == "iam.policy":
        if put:
            p = doc["policy"]
            created, updated = datetime.fromisoformat(p["created_at"]), datetime.fromisoformat(p["updated_at"])
            tx.put_policy(PolicyRecord(TenantId(int(p["tenant_id"])), p["name"], p["document"], created, updated))
        else:
            tx.delete_policy(TenantId(int(doc["tenant_id"])), doc["name"])
    elif op == "iam.attach":
        target = AttachTarget(doc["target"])
        if put:
            rec = AttachmentRecord(TenantId(int(doc["tenant_id"])), target, int(doc["target_id"]), doc["policy_name"])
            tx.attach_policy(rec)
        else:
            tx.detach_policy(target, int(doc["target_id"]), doc["policy_name"])
    elif op == "iam.key":
        if put:
            tx.put_access_key(_key(doc["key"]))
        else:
            tx.delete_access_key(str(doc["access_key_id"]))
    elif op == "iam.quota":
        if put:
            q = doc["quota"]
            tx.put_quota(
                QuotaRecord(
                    QuotaScope(q["scope"]), int(q["scope_id"]), q["max_bytes"], q["max_objects"], q["max_buckets"]
                )
            )
        else:
            tx.delete_quota(QuotaScope(doc["scope"]), int(doc["scope_id"]))
    else:
        log.warning("journal: unknown IAM operation %r skipped", op)


def _parents_missing(tx: MetaTx, doc: dict[str, Any]) -> bool:
    """Whether a put names a tenant, user or group that is not there (checked before writing: a
    failed foreign key would abort the whole transaction on PostgreSQL)."""
    if doc["action"] != PUT:
        return False
    row = doc.get("user") or doc.get("key") or doc.get("group") or doc.get("policy") or doc
    tenant = row.get("tenant_id")
    if tenant is not None and tx.get_tenant(TenantId(int(tenant))) is None:
        return True
    users = [doc["key"]["user_id"]] if doc["op"] == "iam.key" else []
    if doc["op"] == "iam.member":
        users.append(doc["user_id"])
        if tx.get_group_by_id(GroupId(int(doc["group_id"]))) is None:
            return True
    parent = (doc.get("user") or {}).get("parent_user_id")
    if parent is not None:
        users.append(parent)
    return any(tx.get_user_by_id(UserId(int(u))) is None for u in users)


def replay(tx: MetaTx, doc: dict[str, Any]) -> None:
    """Apply an ``iam.*`` record during catch-up or rebuild. A record that no longer applies
    (its tenant or user is gone, which a later record in the journal explains) is skipped with a
    warning that names the operation, never the row's content."""
    try:
        if _parents_missing(tx, doc):
            log.warning("journal: %s %s skipped: its tenant, user or group is gone", doc["op"], doc["action"])
            return
        apply(tx, doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFrame(f"journal: malformed {doc.get('op')} record ({exc.__class__.__name__})") from exc
    except DwhError as exc:
        log.warning("journal: %s %s skipped: %s", doc.get("op"), doc.get("action"), exc.__class__.__name__)
