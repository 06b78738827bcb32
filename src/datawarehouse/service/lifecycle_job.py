"""The lifecycle job: apply every bucket's lifecycle rules once (``run``).

The server runs it periodically (``server.lifecycle_interval``); ``dwh lifecycle run`` runs it
now. Each key's versions are read newest first from a snapshot, ``lifecycle.plan_key`` decides,
and each action goes through the same service calls an S3 client's request would (so versioning
and object lock apply exactly as they do to clients: a locked version is refused there, and
counted here as ``refused``). Every action is counted in the report and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from datawarehouse.errors import DwhError, NotFound, ObjectLocked
from datawarehouse.ids import BucketId
from datawarehouse.meta.repo import VersionSummary
from datawarehouse.service.lifecycle import (
    SETTING,
    Action,
    LifecycleRule,
    VersionInfo,
    plan_key,
    plan_upload,
    rules_from_json,
)
from datawarehouse.service.multipart import Multipart
from datawarehouse.service.warehouse import Warehouse

log = logging.getLogger(__name__)
PAGE = 1000


@dataclass
class LifecycleReport:
    buckets: int = 0
    keys: int = 0
    versions: int = 0
    expired_current: int = 0  # delete markers added (versioned) or objects deleted (unversioned)
    versions_deleted: int = 0
    markers_removed: int = 0
    uploads_aborted: int = 0
    skipped_locked: int = 0  # versions the rules wanted gone that object lock protects
    refused: int = 0  # actions the service refused (a lock, a concurrent change)
    errors: list[str] = field(default_factory=list)

    def total_actions(self) -> int:
        return self.expired_current + self.versions_deleted + self.markers_removed + self.uploads_aborted


def _keys(wh: Warehouse, bucket_id: BucketId) -> Iterator[tuple[str, list[VersionSummary]]]:
    """Every key of the bucket with its versions newest first, a page of rows per snapshot."""
    after_key, after_version = "", None
    key: str | None = None
    group: list[VersionSummary] = []
    while True:
        with wh.engine.repo.read() as tx:
            rows = tx.list_versions(bucket_id, "", after_key, after_version, PAGE)
        for row in rows:
            if row.key != key:
                if key is not None:
                    yield key, group
                key, group = row.key, []
            group.append(row)
        if len(rows) < PAGE:
            break
        after_key, after_version = rows[-1].key, rows[-1].version_id
    if key is not None:
        yield key, group


def _infos(wh: Warehouse, bucket: str, key: str, rows: list[VersionSummary], tags: bool) -> list[VersionInfo]:
    out = []
    for r in rows:
        version_tags: dict[str, str] = {}
        if tags and not r.is_delete_marker:
            try:
                version_tags = dict(wh.head_object(bucket, key, r.s3_version_id).tags)
            except NotFound:
                continue  # removed meanwhile
        out.append(VersionInfo(r.s3_version_id, r.created_at, r.is_delete_marker, r.size, version_tags))
    return out


def _kept_locked(bucket: str, action: Action, report: LifecycleReport) -> None:
    report.skipped_locked += 1
    log.info(
        "lifecycle %s/%s: version %s kept (locked), rule %r", bucket, action.key, action.version_id, action.rule_id
    )


def _execute(wh: Warehouse, bucket: str, action: Action, report: LifecycleReport) -> None:
    if action.kind == "skip_locked":
        _kept_locked(bucket, action, report)
        return
    try:
        if action.kind == "expire_current":
            wh.delete_object(bucket, action.key)
            report.expired_current += 1
        elif action.kind == "delete_version":
            wh.delete_object(bucket, action.key, action.version_id)
            report.versions_deleted += 1
        else:
            wh.delete_object(bucket, action.key, action.version_id)
            report.markers_removed += 1
    except ObjectLocked:  # object lock decides, in the same gate every client's delete passes
        _kept_locked(bucket, action, report)
        return
    except DwhError as exc:
        report.refused += 1
        log.info("lifecycle %s/%s: %s refused: %s", bucket, action.key, action.kind, exc)
        return
    log.info("lifecycle %s/%s: %s %s (rule %r)", bucket, action.key, action.kind, action.version_id, action.rule_id)


def run_bucket(
    wh: Warehouse, bucket: str, rules: tuple[LifecycleRule, ...], now: datetime, report: LifecycleReport
) -> None:
    rec = wh.get_bucket(bucket)
    tags = any(r.filter.tags for r in rules)
    for key, rows in _keys(wh, rec.bucket_id):
        report.keys += 1
        report.versions += len(rows)
        for action in plan_key(rules, key, _infos(wh, bucket, key, rows, tags), now):
            _execute(wh, bucket, action, report)
    if any(r.abort_multipart_days is not None for r in rules):
        multipart = Multipart(wh)
        key_marker, upload_marker = "", ""
        while True:
            uploads = multipart.list_uploads(bucket, "", key_marker, upload_marker, PAGE)
            for up in uploads:
                rule = plan_upload(rules, up.key, up.created_at, now)
                if rule is None:
                    continue
                try:
                    multipart.abort(bucket, up.key, up.upload_id)
                except DwhError as exc:
                    report.refused += 1
                    log.info("lifecycle %s/%s: abort of upload %s refused: %s", bucket, up.key, up.upload_id, exc)
                    continue
                report.uploads_aborted += 1
                log.info("lifecycle %s/%s: upload %s aborted (rule %r)", bucket, up.key, up.upload_id, rule)
            if len(uploads) < PAGE:
                break
            key_marker, upload_marker = uploads[-1].key, uploads[-1].upload_id


def run(wh: Warehouse, now: datetime | None = None) -> LifecycleReport:
    """Apply every bucket's rules once, at ``now`` (the engine's clock by default)."""
    moment = now or wh.engine.now()
    report = LifecycleReport()
    for bucket in wh.list_buckets():
        name = wh.qualified_name(bucket)
        try:
            value = wh.get_bucket_setting(name, SETTING)
            if not value:
                continue
            report.buckets += 1
            run_bucket(wh, name, rules_from_json(value), moment, report)
        except NotFound:
            continue  # deleted meanwhile
        except DwhError as exc:
            report.errors.append(f"{name}: {exc}")
            log.warning("lifecycle: bucket %s: %s", name, exc)
    return report
