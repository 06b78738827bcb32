"""``AuditRecord``: one audited S3 request or admin action, and its canonical serialization.

Canonical JSON (what is hashed, stored and exported): keys sorted, no whitespace, UTF-8 (not
ASCII-escaped). The stored line is the canonical JSON of every field including ``hash``; the
hash covers the canonical JSON of every field *except* ``hash`` (so it covers ``prev``, which
chains the records). Times are UTC ISO 8601 with microseconds and a ``Z``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from datawarehouse.errors import CorruptFrame, InvalidInput

# The event fields (what a caller reports), in the order exports use.
EVENT_FIELDS = (
    "time",
    "tenant",
    "principal",
    "access_key",
    "source_ip",
    "operation",
    "bucket",
    "key",
    "version_id",
    "status",
    "error",
    "bytes_in",
    "bytes_out",
    "duration_us",
    "request_id",
    "user_agent",
    "query",
    "detail",
)
CHAIN_FIELDS = ("seq", "prev", "hash")
ALL_FIELDS = ("seq", *EVENT_FIELDS, "prev", "hash")
_INT_FIELDS = ("seq", "status", "bytes_in", "bytes_out", "duration_us")
# The canonical JSON sorts keys: the fields that come before ``hash`` and those after it.
_BEFORE_HASH = tuple(sorted(f for f in ALL_FIELDS if f < "hash"))
_AFTER_HASH = tuple(sorted(f for f in ALL_FIELDS if f > "hash"))
MAX_FIELD_CHARS = 8192  # a record stays a line of reasonable size whatever a client sends


def format_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise InvalidInput("audit time must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidInput(f"not an audit time: {text!r}") from exc


@dataclass(frozen=True)
class AuditRecord:
    """One audited request. ``status`` is the HTTP status (admin actions: 200 or the CLI's
    outcome mapped the same way), ``error`` the S3 error code ('' on success); ``query`` and
    ``detail`` were redacted (redact.py) before the record was made."""

    seq: int
    time: str
    operation: str
    tenant: str = ""
    principal: str = ""
    access_key: str = ""
    source_ip: str = ""
    bucket: str = ""
    key: str = ""
    version_id: str = ""
    status: int = 0
    error: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    duration_us: int = 0
    request_id: str = ""
    user_agent: str = ""
    query: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)
    prev: str = ""
    hash: str = ""

    @property
    def at(self) -> datetime:
        return parse_time(self.time)

    def to_doc(self, *, with_hash: bool = True) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in ALL_FIELDS}
        doc["detail"] = dict(self.detail)
        if not with_hash:
            del doc["hash"]
        return doc

    @functools.cached_property
    def _halves(self) -> tuple[bytes, bytes]:
        """The canonical JSON of the fields sorting before ``hash`` and of those after it, each
        without its closing / opening brace: the body and the stored line are both made of them,
        so a record is encoded once (the writer thread encodes every request's record)."""
        state = self.__dict__
        before = {name: state[name] for name in _BEFORE_HASH}
        before["detail"] = dict(self.detail)
        after = canonical_json({name: state[name] for name in _AFTER_HASH})
        return canonical_json(before)[:-1], after[1:]

    def body_bytes(self) -> bytes:
        """The canonical bytes the hash covers (every field but ``hash``)."""
        before, after = self._halves
        return before + b"," + after

    def line(self) -> bytes:
        """The stored form: canonical JSON of every field, without the newline."""
        before, after = self._halves
        return before + b',"hash":' + json.dumps(self.hash, ensure_ascii=False).encode() + b"," + after

    def with_chain(self, seq: int, prev: str, hash_: str) -> AuditRecord:
        """A copy with the chain fields set. Copied field by field rather than through
        ``dataclasses.replace``, which re-runs ``__init__`` (nothing to validate here: the chain
        fields are the writer's own) and took half of the writer thread's time per request."""
        linked: AuditRecord = object.__new__(AuditRecord)
        state = linked.__dict__
        state.update(self.__dict__)
        state["seq"], state["prev"], state["hash"] = seq, prev, hash_
        if (seq, prev) != (self.seq, self.prev):
            state.pop("_halves", None)  # the canonical halves include ``seq`` and ``prev``
        return linked


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_from_doc(doc: Any) -> AuditRecord:
    """A record from its parsed JSON; anything else than exactly the known fields of the right
    types raises ``CorruptFrame`` (verify reports it as an edited record)."""
    if not isinstance(doc, dict) or set(doc) != set(ALL_FIELDS):
        raise CorruptFrame("audit record: unexpected or missing fields")
    for name in ALL_FIELDS:
        value = doc[name]
        if name in _INT_FIELDS:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif name == "detail":
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        else:
            ok = isinstance(value, str)
        if not ok:
            raise CorruptFrame(f"audit record: field {name!r} has the wrong type")
    return AuditRecord(**doc)


def parse_line(line: bytes) -> AuditRecord:
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFrame("audit record: not JSON") from exc
    return record_from_doc(doc)


def clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 3] + "..."
