"""Object lock over S3: the request documents (ObjectLockConfiguration, Retention, LegalHold),
parsed only through ``xml.parse_document``, their renderings, and the ``x-amz-object-lock-*``
headers of writes and reads."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from xml.etree.ElementTree import Element, SubElement

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.errors import S3Error, invalid_argument, malformed_xml
from datawarehouse.api.s3.http import Response
from datawarehouse.api.s3.xml import child_text, children, parse_document
from datawarehouse.api.s3.xmlrender import add_rows, s3_root, timestamp, to_document
from datawarehouse.errors import InvalidInput
from datawarehouse.records import ObjectVersion
from datawarehouse.service.objectlock import MODES, DefaultRetention, LockConfig, LockRequest

MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
CONFIG_LIMIT = 64 * 1024


def parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 instant (``2026-11-24T00:00:00.000Z``), or an HTTP date; None if neither.
    An instant without a zone is UTC."""
    value = text.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- ObjectLockConfiguration ---------------------------------------------------------------------------


def _positive(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    stripped = text.strip()
    n = whole_number(stripped, signed=True)
    if n is None:
        raise malformed_xml()
    if n <= 0:
        raise invalid_argument("Default retention period must be a positive integer value.", name=what, value=stripped)
    return n


def parse_lock_configuration(body: bytes) -> DefaultRetention | None:
    """The default retention of an ObjectLockConfiguration (None: no Rule). ObjectLockEnabled
    must say Enabled; a Rule needs a DefaultRetention with a Mode and Days or Years (not both)."""
    root = parse_document(body, "ObjectLockConfiguration", limit=CONFIG_LIMIT)
    enabled = child_text(root, "ObjectLockEnabled")
    if enabled is None or enabled.strip() != "Enabled":
        raise malformed_xml()
    rules = children(root, "Rule")
    if not rules:
        return None
    if len(rules) > 1:
        raise malformed_xml()
    retention = children(rules[0], "DefaultRetention")
    if len(retention) != 1:
        raise malformed_xml()
    mode = (child_text(retention[0], "Mode") or "").strip()
    days = _positive(child_text(retention[0], "Days"), "Days")
    years = _positive(child_text(retention[0], "Years"), "Years")
    if mode not in MODES or (days is None) == (years is None):
        raise malformed_xml()
    try:
        return DefaultRetention(mode, days, years)
    except InvalidInput as exc:
        raise invalid_argument(str(exc)) from None


def render_lock_configuration(config: LockConfig) -> bytes:
    root = s3_root("ObjectLockConfiguration")
    add_rows(root, [("ObjectLockEnabled", "Enabled" if config.enabled else None)])
    if config.rule is not None:
        retention = SubElement(SubElement(root, "Rule"), "DefaultRetention")
        rule = config.rule
        add_rows(retention, [("Mode", rule.mode), ("Days", rule.days), ("Years", rule.years)])
    return to_document(root)


# --- Retention, LegalHold ------------------------------------------------------------------------------


def parse_retention(body: bytes) -> tuple[str | None, datetime | None]:
    """(mode, retain until) of a Retention document; both None removes the retention."""
    root = parse_document(body, "Retention", limit=CONFIG_LIMIT)
    mode_text = child_text(root, "Mode")
    until_text = child_text(root, "RetainUntilDate")
    mode = mode_text.strip() if mode_text is not None else None
    if mode is not None and mode not in MODES:
        raise malformed_xml()
    until = None
    if until_text is not None:
        until = parse_timestamp(until_text)
        if until is None:
            raise malformed_xml()
    if (mode is None) != (until is None):
        raise malformed_xml()
    return mode, until


def render_retention(v: ObjectVersion) -> bytes:
    root = s3_root("Retention")
    add_rows(root, [("Mode", v.lock_mode), ("RetainUntilDate", v.lock_until)])
    return to_document(root)


def parse_legal_hold(body: bytes) -> bool:
    root = parse_document(body, "LegalHold", limit=CONFIG_LIMIT)
    status = (child_text(root, "Status") or "").strip()
    if status not in ("ON", "OFF"):
        raise malformed_xml()
    return status == "ON"


def render_legal_hold(v: ObjectVersion) -> bytes:
    root: Element = s3_root("LegalHold")
    add_rows(root, [("Status", "ON" if v.legal_hold else "OFF")])
    return to_document(root)


# --- headers -------------------------------------------------------------------------------------------


def lock_request(headers: dict[str, str]) -> LockRequest | None:
    """The lock a write asks for through x-amz-object-lock-* (None: it asks for none). The mode
    and the date go together; InvalidArgument as S3 otherwise."""
    mode = headers.get(MODE_HEADER)
    until_text = headers.get(UNTIL_HEADER)
    hold_text = headers.get(HOLD_HEADER)
    if mode is None and until_text is None and hold_text is None:
        return None
    if (mode is None) != (until_text is None):
        raise invalid_argument("x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied")
    until = None
    if mode is not None and mode not in MODES:
        raise invalid_argument("Unknown wormMode directive.", name=MODE_HEADER, value=mode)
    if until_text is not None:
        until = parse_timestamp(until_text)
        if until is None:
            raise invalid_argument(
                "The retain until date must be provided in ISO 8601 format", name=UNTIL_HEADER, value=until_text
            )
    hold = None
    if hold_text is not None:
        if hold_text not in ("ON", "OFF"):
            raise invalid_argument("Legal Hold must be either of 'ON' or 'OFF'", name=HOLD_HEADER, value=hold_text)
        hold = hold_text == "ON"
    return LockRequest(mode, until, hold)


def lock_headers(resp: Response, v: ObjectVersion) -> Response:
    """x-amz-object-lock-* of a version that has retention or legal hold (GET, HEAD)."""
    if v.lock_mode is not None and v.lock_until is not None:
        resp.header(MODE_HEADER, v.lock_mode)
        resp.header(UNTIL_HEADER, timestamp(v.lock_until))
    if v.legal_hold:
        resp.header(HOLD_HEADER, "ON")
    return resp


def missing_lock_configuration() -> S3Error:
    """What S3 answers to lock operations and lock headers on a bucket without object lock."""
    return S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
