"""Selecting records: a time range and exact matches on principal, bucket and operation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from datawarehouse.errors import InvalidInput
from datawarehouse.service.audit.record import AuditRecord
from datawarehouse.service.audit.store import iter_stored_records
from datawarehouse.service.warehouse import Warehouse


@dataclass(frozen=True)
class AuditQuery:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    principal: str | None = None
    bucket: str | None = None
    operation: str | None = None  # case-insensitive

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            at = getattr(self, name)
            if at is not None and at.tzinfo is None:
                raise InvalidInput(f"--{name}: needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidInput("--until must be after --since")

    def matches(self, r: AuditRecord) -> bool:
        if self.principal is not None and r.principal != self.principal:
            return False
        if self.bucket is not None and r.bucket != self.bucket:
            return False
        if self.operation is not None and r.operation.lower() != self.operation.lower():
            return False
        if self.since is not None or self.until is not None:
            at = r.at
            if self.since is not None and at < self.since:
                return False
            if self.until is not None and at >= self.until:
                return False
        return True

    def filter(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        return (r for r in records if self.matches(r))


def query(wh: Warehouse, q: AuditQuery, *, limit: int | None = None) -> Iterator[AuditRecord]:
    """Matching records in seq order (sealed segments, then the spool)."""
    for count, r in enumerate(q.filter(iter_stored_records(wh)), start=1):
        yield r
        if limit is not None and count >= limit:
            return


def parse_when(text: str, option: str) -> datetime:
    """ISO 8601 with a zone (``Z`` allowed); a bare date is midnight UTC."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{option}: not a time: {text!r} (example: 2026-01-31T12:00:00Z)") from None
    if at.tzinfo is None:
        if len(raw) == 10:
            return at.replace(tzinfo=UTC)
        raise InvalidInput(f"{option}: add a time zone, e.g. {text}Z")
    return at
