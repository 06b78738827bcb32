"""Bucket lifecycle rules: what they say, and what they ask to be done to a key's versions now.

A rule set is stored as a bucket setting (JSON, ``SETTING``) and evaluated by the lifecycle job.
The evaluation is a pure function of the rules, one key's versions (newest first) and the time:
``plan_key`` returns the actions due, so every S3 rule of the supported kinds is table-tested
without a server or a clock. Semantics follow S3:

- ``Expiration`` (``Days`` or ``Date``) expires the *current* version: in a versioned bucket a
  delete marker is added (the version stays, noncurrent); in an unversioned one it is deleted.
  ``Days`` counts from the version's creation, rounded up to the next midnight UTC.
- ``ExpiredObjectDeleteMarker`` removes a current delete marker that has no other version left.
- ``NoncurrentVersionExpiration`` deletes a noncurrent version ``NoncurrentDays`` after it
  became noncurrent (when its successor was written), keeping the ``NewerNoncurrentVersions``
  newest noncurrent versions whatever their age.
- ``AbortIncompleteMultipartUpload`` aborts uploads started ``DaysAfterInitiation`` days ago.
- Filters: key prefix, tags (all must match), object size bounds (strict, as S3).

A version under retention or legal hold is never deleted: it is reported as ``skip_locked``
instead, so the job can count what the rules wanted but the lock refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

SETTING = "lifecycle"

ActionKind = Literal["expire_current", "delete_version", "remove_delete_marker", "skip_locked"]


@dataclass(frozen=True)
class LifecycleFilter:
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None

    def matches(self, key: str, size: int, tags: Mapping[str, str]) -> bool:
        if not key.startswith(self.prefix):
            return False
        if any(tags.get(k) != v for k, v in self.tags):
            return False
        if self.size_greater_than is not None and not size > self.size_greater_than:
            return False
        return self.size_less_than is None or size < self.size_less_than


@dataclass(frozen=True)
class LifecycleRule:
    rule_id: str
    enabled: bool
    filter: LifecycleFilter = field(default_factory=LifecycleFilter)
    expiration_days: int | None = None
    expiration_date: datetime | None = None
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    abort_multipart_days: int | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One version of a key as the planner needs it (the list is newest first)."""

    version_id: str
    created_at: datetime
    is_delete_marker: bool
    size: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    locked: bool = False  # under retention or legal hold now


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    key: str
    version_id: str | None
    rule_id: str


# --- storage as a bucket setting ---------------------------------------------------------------------


def rules_to_json(rules: Sequence[LifecycleRule]) -> str:
    def one(rule: LifecycleRule) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": rule.rule_id,
            "enabled": rule.enabled,
            "filter": {
                "prefix": rule.filter.prefix,
                "tags": [list(t) for t in rule.filter.tags],
                "size_gt": rule.filter.size_greater_than,
                "size_lt": rule.filter.size_less_than,
            },
        }
        optional = {
            "expiration_days": rule.expiration_days,
            "expiration_date": rule.expiration_date.isoformat() if rule.expiration_date else None,
            "expired_object_delete_marker": rule.expired_object_delete_marker or None,
            "noncurrent_days": rule.noncurrent_days,
            "newer_noncurrent_versions": rule.newer_noncurrent_versions,
            "abort_multipart_days": rule.abort_multipart_days,
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc

    return json.dumps([one(r) for r in rules], sort_keys=True, separators=(",", ":"))


def rules_from_json(text: str) -> tuple[LifecycleRule, ...]:
    rules = []
    for doc in json.loads(text):
        f = doc.get("filter", {})
        date = doc.get("expiration_date")
        rules.append(
            LifecycleRule(
                rule_id=doc["id"],
                enabled=bool(doc["enabled"]),
                filter=LifecycleFilter(
                    prefix=f.get("prefix", ""),
                    tags=tuple((str(k), str(v)) for k, v in f.get("tags", [])),
                    size_greater_than=f.get("size_gt"),
                    size_less_than=f.get("size_lt"),
                ),
                expiration_days=doc.get("expiration_days"),
                expiration_date=datetime.fromisoformat(date) if date else None,
                expired_object_delete_marker=bool(doc.get("expired_object_delete_marker", False)),
                noncurrent_days=doc.get("noncurrent_days"),
                newer_noncurrent_versions=doc.get("newer_noncurrent_versions"),
                abort_multipart_days=doc.get("abort_multipart_days"),
            )
        )
    return tuple(rules)


# --- evaluation -----------------------------------------------------------------------------------------

NEVER = datetime.max.replace(tzinfo=UTC)


def due_after(start: datetime, days: int) -> datetime:
    """``start + days``, rounded up to the next midnight UTC (S3's rule for day counts); a day
    count past the calendar's end (year 9999; a rule may say any 19-digit number) is never due."""
    try:
        moment = start.astimezone(UTC) + timedelta(days=days)
        midnight = datetime.combine(moment.date(), time(0), tzinfo=UTC)
        return midnight if midnight == moment else midnight + timedelta(days=1)
    except OverflowError:
        return NEVER


def _current_expired(rule: LifecycleRule, current: VersionInfo, now: datetime) -> bool:
    if rule.expiration_date is not None and now >= rule.expiration_date:
        return True
    return rule.expiration_days is not None and now >= due_after(current.created_at, rule.expiration_days)


def _applies(rule: LifecycleRule, key: str, version: VersionInfo) -> bool:
    """A delete marker has no tags and no size: only a rule without tag conditions reaches it."""
    if version.is_delete_marker:
        return key.startswith(rule.filter.prefix) and not rule.filter.tags
    return rule.filter.matches(key, version.size, version.tags)


def plan_key(rules: Sequence[LifecycleRule], key: str, versions: Sequence[VersionInfo], now: datetime) -> list[Action]:
    """The actions due now for one key; ``versions`` newest first (the first is current).

    Each version gets at most one action, from the first enabled rule that asks for it.
    """
    if not versions:
        return []
    enabled = [r for r in rules if r.enabled]
    actions: list[Action] = []
    current = versions[0]

    # The current version: expiration (a delete marker in versioned buckets, the job decides).
    if not current.is_delete_marker:
        for rule in enabled:
            if rule.filter.matches(key, current.size, current.tags) and _current_expired(rule, current, now):
                actions.append(Action("expire_current", key, current.version_id, rule.rule_id))
                break

    # Noncurrent versions: each became noncurrent when the next newer version was written.
    planned: dict[int, Action] = {}
    for rule in enabled:
        if rule.noncurrent_days is None and rule.newer_noncurrent_versions is None:
            continue
        kept = 0
        for i in range(1, len(versions)):
            version = versions[i]
            if not _applies(rule, key, version):
                continue
            kept += 1
            if rule.newer_noncurrent_versions is not None and kept <= rule.newer_noncurrent_versions:
                continue
            since = versions[i - 1].created_at
            if rule.noncurrent_days is not None and now < due_after(since, rule.noncurrent_days):
                continue
            if i not in planned:
                kind: ActionKind = "skip_locked" if version.locked else "delete_version"
                planned[i] = Action(kind, key, version.version_id, rule.rule_id)
    actions.extend(planned[i] for i in sorted(planned))

    # A current delete marker with nothing behind it is removed (the key then disappears).
    if current.is_delete_marker and len(versions) == 1:
        for rule in enabled:
            if rule.expired_object_delete_marker and _applies(rule, key, current):
                actions.append(Action("remove_delete_marker", key, current.version_id, rule.rule_id))
                break
    return actions


def plan_upload(rules: Sequence[LifecycleRule], key: str, initiated: datetime, now: datetime) -> str | None:
    """The id of the rule that aborts an incomplete multipart upload now, or ``None``."""
    for rule in rules:
        if (
            rule.enabled
            and rule.abort_multipart_days is not None
            and key.startswith(rule.filter.prefix)
            and now >= due_after(initiated, rule.abort_multipart_days)
        ):
            return rule.rule_id
    return None
