"""Object lock (WORM) with S3's semantics: retention (GOVERNANCE or COMPLIANCE until an instant)
and legal hold on object versions; a bucket's lock configuration and default retention.

* A bucket has object lock when created with it (which enables versioning; it can then never be
  suspended) or when it is turned on over an Enabled bucket. Its configuration is the bucket
  setting ``object-lock``: ``{"enabled": true, "rule": {"mode": ..., "days"|"years": n} | null}``.
* A version written to such a bucket takes the retention the write asks for, else the bucket's
  default; the commit decides (``apply_object_put``) and the journal records the outcome.
* ``check_removable`` is the one gate every removal or replacement of a version passes through,
  live (``catalog``): a legal hold, or unexpired COMPLIANCE retention, refuses it for everyone;
  unexpired GOVERNANCE retention refuses it unless the request bypasses governance *and* the
  caller may (``may_bypass_governance``). Nothing else in the system removes a version: GC
  removes only unreferenced chunks (a locked version references its chunks), scrub and repair
  rewrite shards, rebuild-meta replays the journal (lock state included).

Time is the server's clock (``Engine.now``, injectable): see docs/invariants.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from datawarehouse.errors import InvalidBucketState, InvalidInput, ObjectLocked
from datawarehouse.ids import BucketId
from datawarehouse.meta.repo import MetaTx
from datawarehouse.records import ObjectVersion

if TYPE_CHECKING:
    from datawarehouse.service.warehouse import Warehouse

SETTING = "object-lock"
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
MAX_DAYS = 36500  # 100 years, as S3


@dataclass(frozen=True)
class DefaultRetention:
    mode: str
    days: int | None = None
    years: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput(f"object lock mode must be GOVERNANCE or COMPLIANCE (got {self.mode!r})")
        if (self.days is None) == (self.years is None):
            raise InvalidInput("a default retention needs either Days or Years")
        n = self.days if self.days is not None else (self.years or 0)
        limit = MAX_DAYS if self.days is not None else MAX_DAYS // 365
        if not 1 <= n <= limit:
            raise InvalidInput(f"the default retention period must be between 1 and {limit}")

    def until(self, at: datetime) -> datetime:
        days = self.days if self.days is not None else 365 * (self.years or 0)
        return at + timedelta(days=days)


@dataclass(frozen=True)
class LockConfig:
    enabled: bool
    rule: DefaultRetention | None = None

    def to_json(self) -> str:
        rule = None
        if self.rule is not None:
            rule = {"mode": self.rule.mode, "days": self.rule.days, "years": self.rule.years}
        return json.dumps({"enabled": self.enabled, "rule": rule}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockConfig:
        d = json.loads(text)
        r = d.get("rule")
        return cls(bool(d["enabled"]), DefaultRetention(r["mode"], r.get("days"), r.get("years")) if r else None)


@dataclass(frozen=True)
class LockRequest:
    """What a write asks for: retention (both or neither) and legal hold (``None``: not asked)."""

    mode: str | None = None
    until: datetime | None = None
    legal_hold: bool | None = None

    def __post_init__(self) -> None:
        if (self.mode is None) != (self.until is None):
            raise InvalidInput("x-amz-object-lock-mode and x-amz-object-lock-retain-until-date go together")
        if self.mode is not None and self.mode not in MODES:
            raise InvalidInput(f"object lock mode must be GOVERNANCE or COMPLIANCE (got {self.mode!r})")

    @property
    def empty(self) -> bool:
        return self.mode is None and self.legal_hold is None

    def to_doc(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "until": self.until.isoformat() if self.until else None,
            "hold": self.legal_hold,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any] | None) -> LockRequest:
        if not d:
            return cls()
        until = d.get("until")
        return cls(d.get("mode"), datetime.fromisoformat(until) if until else None, d.get("hold"))


def may_bypass_governance(principal: str | None = None) -> bool:
    """Whether ``principal`` holds s3:BypassGovernanceRetention. There is only the root user
    today, and root holds it; IAM (a later issue) decides here."""
    return True


def config_of(tx: MetaTx, bucket_id: BucketId) -> LockConfig | None:
    text = tx.get_bucket_setting(bucket_id, SETTING)
    return LockConfig.from_json(text) if text else None


def lock_enabled(wh: Warehouse, bucket: str) -> bool:
    text = wh.get_bucket_setting(bucket, SETTING)
    return bool(text) and LockConfig.from_json(text or "{}").enabled


def get_config(wh: Warehouse, bucket: str) -> LockConfig | None:
    text = wh.get_bucket_setting(bucket, SETTING)
    return LockConfig.from_json(text) if text else None


def put_config(wh: Warehouse, bucket: str, rule: DefaultRetention | None) -> None:
    """Turn object lock on (allowed on a bucket whose versioning is Enabled) and set, replace or
    (``None``) remove the default retention."""
    from datawarehouse.service.versioning import get_versioning

    if get_versioning(wh, bucket) != "Enabled":
        raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration")
    wh.set_bucket_setting(bucket, SETTING, LockConfig(True, rule).to_json())


# --- decisions inside the commit -----------------------------------------------------------------------


def lock_for_write(
    tx: MetaTx, bucket_id: BucketId, request: LockRequest, at: datetime
) -> tuple[str | None, datetime | None, bool | None]:
    """(mode, until, legal hold) of a new version: what the write asks for, else the bucket's
    default retention. Asking for lock on a bucket without it is refused."""
    config = config_of(tx, bucket_id)
    if config is None or not config.enabled:
        if not request.empty:
            raise InvalidBucketState("Bucket is missing Object Lock Configuration")
        return None, None, None
    mode, until = request.mode, request.until
    if mode is not None and until is not None and until <= at:
        raise InvalidInput("The retain until date must be in the future")
    if mode is None and config.rule is not None:
        mode, until = config.rule.mode, config.rule.until(at)
    return mode, until, request.legal_hold


def check_removable(tx: MetaTx, v: ObjectVersion, now: datetime, bypass_governance: bool) -> None:
    """Refuse to remove or replace a locked version (see the module docstring)."""
    if v.legal_hold:
        raise ObjectLocked(f"version {v.s3_version_id} of {v.key!r} is under legal hold")
    if v.lock_mode is None or v.lock_until is None or v.lock_until <= now:
        return
    if v.lock_mode == COMPLIANCE:
        raise ObjectLocked(f"version {v.s3_version_id} of {v.key!r} is locked (COMPLIANCE) until {v.lock_until}")
    if not (bypass_governance and may_bypass_governance()):
        raise ObjectLocked(f"version {v.s3_version_id} of {v.key!r} is locked (GOVERNANCE) until {v.lock_until}")


def check_retention_change(
    v: ObjectVersion, mode: str | None, until: datetime | None, now: datetime, bypass_governance: bool
) -> None:
    """PutObjectRetention: extending (same mode, later date) is always allowed; a COMPLIANCE
    retention in force cannot be shortened, weakened or removed by anyone; a GOVERNANCE one only
    with the bypass."""
    if (mode is None) != (until is None):
        raise InvalidInput("a retention needs both Mode and RetainUntilDate")
    if mode is not None and mode not in MODES:
        raise InvalidInput(f"object lock mode must be GOVERNANCE or COMPLIANCE (got {mode!r})")
    if until is not None and until <= now:
        raise InvalidInput("The retain until date must be in the future")
    active = v.lock_mode is not None and v.lock_until is not None and v.lock_until > now
    if not active or v.lock_until is None:
        return
    weaker = mode is None or until is None or until < v.lock_until or (v.lock_mode == COMPLIANCE and mode != COMPLIANCE)
    if not weaker:
        return
    if v.lock_mode == COMPLIANCE:
        raise ObjectLocked(f"version {v.s3_version_id} of {v.key!r}: a COMPLIANCE retention cannot be shortened")
    if not (bypass_governance and may_bypass_governance()):
        raise ObjectLocked(f"version {v.s3_version_id} of {v.key!r}: changing a GOVERNANCE retention needs the bypass")


# --- use cases -------------------------------------------------------------------------------------


def _lock_op(wh: Warehouse, bucket: str, key: str, version_id: str | None, fields: dict[str, Any]) -> ObjectVersion:
    from datawarehouse.service import catalog

    rec, v = wh.lookup(bucket, key, version_id)
    if not lock_enabled(wh, bucket):
        raise InvalidBucketState("Bucket is missing Object Lock Configuration")
    doc = {
        "op": "object.lock",
        "bucket_id": rec.bucket_id,
        "key": key,
        "version_id": v.version_id,
        "at": wh.engine.now().isoformat(),
        **fields,
    }
    wh.engine.commit(
        lambda tx: catalog.apply_object_lock(tx, doc, replay=False), rec.domain_id, lambda: doc, announce=False
    )
    return v


def put_retention(
    wh: Warehouse,
    bucket: str,
    key: str,
    mode: str | None,
    until: datetime | None,
    *,
    version_id: str | None = None,
    bypass_governance: bool = False,
) -> ObjectVersion:
    """PutObjectRetention on the current (or named) version; ``mode``/``until`` both ``None``
    removes the retention (only where no retention in force forbids it)."""
    retention = {"mode": mode, "until": until.isoformat() if until else None}
    return _lock_op(wh, bucket, key, version_id, {"retention": retention, "bypass_governance": bypass_governance})


def put_legal_hold(wh: Warehouse, bucket: str, key: str, on: bool, *, version_id: str | None = None) -> ObjectVersion:
    return _lock_op(wh, bucket, key, version_id, {"legal_hold": on})
