"""``LifecycleConfiguration`` documents: parsed (untrusted, through ``xml.parse_document``) into
the service's rules with S3's validation and error codes, and rendered back.

Supported actions: ``Expiration`` (Days, Date, ExpiredObjectDeleteMarker),
``NoncurrentVersionExpiration`` (NoncurrentDays, NewerNoncurrentVersions) and
``AbortIncompleteMultipartUpload``. Transitions move data to another storage tier, which this
server does not have: a rule with ``Transition`` or ``NoncurrentVersionTransition`` is refused
with ``NotImplemented`` rather than accepted and ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from xml.etree.ElementTree import Element, SubElement

from datawarehouse.api.s3.errors import S3Error, invalid_argument, malformed_xml, not_implemented
from datawarehouse.api.s3.xml import (
    check_tag,
    child_text,
    children,
    local_name,
    parse_document,
    parse_int,
    required_text,
)
from datawarehouse.api.s3.xmlrender import s3_root, to_document
from datawarehouse.service.lifecycle import LifecycleFilter, LifecycleRule

MAX_RULES: Final = 1000
MAX_ID_CHARS: Final = 255


def _positive(text: str, name: str) -> int:
    value = parse_int(text, lambda: invalid_argument(f"'{name}' must be a positive integer", name=name, value=text))
    if value <= 0:
        raise invalid_argument(f"'{name}' for lifecycle rules must be a positive integer", name=name, value=text)
    return value


def _non_negative(text: str, name: str) -> int:
    value = parse_int(text, lambda: invalid_argument(f"'{name}' must be an integer", name=name, value=text))
    if value < 0:
        raise invalid_argument(f"'{name}' must not be negative", name=name, value=text)
    return value


def _date(text: str) -> datetime:
    """An ISO 8601 date at midnight UTC (S3 refuses any other time of day)."""
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00")) if "T" in raw else datetime.fromisoformat(raw)
    except ValueError:
        raise invalid_argument("Date must be in ISO 8601 format", name="Date", value=raw) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        raise invalid_argument("'Date' must be at midnight GMT", name="Date", value=raw)
    return moment


def _tag(element: Element) -> tuple[str, str]:
    key, value = required_text(element, "Key"), required_text(element, "Value")
    check_tag(key, value)
    return key, value


def _filter(rule: Element) -> LifecycleFilter:
    """``Filter`` (with one condition, or ``And`` of several), or the legacy top-level ``Prefix``."""
    filters = children(rule, "Filter")
    legacy = child_text(rule, "Prefix")
    if len(filters) > 1 or (filters and legacy is not None):
        raise malformed_xml()
    if not filters:
        return LifecycleFilter(prefix=legacy or "")
    element = filters[0]
    conditions = [
        c for c in element if local_name(c) in ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
    ]
    if len(conditions) > 1:
        raise malformed_xml("A Filter holds one condition; combine several with And.")
    if conditions and local_name(conditions[0]) == "And":
        element = conditions[0]
    prefix = child_text(element, "Prefix") or ""
    tags = tuple(_tag(t) for t in children(element, "Tag"))
    if len({k for k, _ in tags}) != len(tags):
        raise invalid_argument("Duplicate Tag Keys are not allowed.", name="Tag")
    gt_text = child_text(element, "ObjectSizeGreaterThan")
    lt_text = child_text(element, "ObjectSizeLessThan")
    gt = _non_negative(gt_text, "ObjectSizeGreaterThan") if gt_text is not None else None
    lt = _positive(lt_text, "ObjectSizeLessThan") if lt_text is not None else None
    if gt is not None and lt is not None and gt >= lt:
        raise invalid_argument(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan", name="ObjectSizeLessThan", value=str(lt)
        )
    return LifecycleFilter(prefix=prefix, tags=tags, size_greater_than=gt, size_less_than=lt)


def _rule(element: Element) -> LifecycleRule:
    rule_id = (child_text(element, "ID") or "").strip()
    if len(rule_id) > MAX_ID_CHARS:
        raise invalid_argument("ID length should not exceed allowed limit of 255", name="ID", value=rule_id[:64])
    status = required_text(element, "Status").strip()
    if status not in ("Enabled", "Disabled"):
        raise malformed_xml("Status must be Enabled or Disabled.")
    if children(element, "Transition") or children(element, "NoncurrentVersionTransition"):
        raise not_implemented("Transitions are not supported: this server has a single storage tier.")
    rule_filter = _filter(element)

    days = date = None
    delete_marker = False
    expirations = children(element, "Expiration")
    if len(expirations) > 1:
        raise malformed_xml()
    if expirations:
        exp = expirations[0]
        days_text, date_text = child_text(exp, "Days"), child_text(exp, "Date")
        marker_text = child_text(exp, "ExpiredObjectDeleteMarker")
        given = [t for t in (days_text, date_text, marker_text) if t is not None]
        if len(given) != 1:
            raise malformed_xml("Expiration takes exactly one of Days, Date or ExpiredObjectDeleteMarker.")
        if days_text is not None:
            days = _positive(days_text, "Days")
        elif date_text is not None:
            date = _date(date_text)
        else:
            assert marker_text is not None
            if marker_text.strip().lower() not in ("true", "false"):
                raise malformed_xml()
            delete_marker = marker_text.strip().lower() == "true"
            if delete_marker and rule_filter.tags:
                raise invalid_argument(
                    "ExpiredObjectDeleteMarker cannot be specified with a tag filter.", name="ExpiredObjectDeleteMarker"
                )

    noncurrent_days = newer = None
    noncurrent = children(element, "NoncurrentVersionExpiration")
    if len(noncurrent) > 1:
        raise malformed_xml()
    if noncurrent:
        nd_text = child_text(noncurrent[0], "NoncurrentDays")
        newer_text = child_text(noncurrent[0], "NewerNoncurrentVersions")
        if nd_text is None:
            raise malformed_xml("NoncurrentVersionExpiration needs NoncurrentDays.")
        noncurrent_days = _positive(nd_text, "NoncurrentDays")
        if newer_text is not None:
            newer = _positive(newer_text, "NewerNoncurrentVersions")
            if newer > 100:
                raise invalid_argument(
                    "NewerNoncurrentVersions must be at most 100", name="NewerNoncurrentVersions", value=newer_text
                )

    abort_days = None
    aborts = children(element, "AbortIncompleteMultipartUpload")
    if len(aborts) > 1:
        raise malformed_xml()
    if aborts:
        abort_days = _positive(required_text(aborts[0], "DaysAfterInitiation"), "DaysAfterInitiation")
        if rule_filter.tags or rule_filter.size_greater_than is not None or rule_filter.size_less_than is not None:
            raise invalid_argument(
                "AbortIncompleteMultipartUpload cannot be specified with tags or object size filters.",
                name="AbortIncompleteMultipartUpload",
            )

    if not (expirations or noncurrent or aborts):
        raise invalid_request_no_action()
    return LifecycleRule(
        rule_id=rule_id,
        enabled=status == "Enabled",
        filter=rule_filter,
        expiration_days=days,
        expiration_date=date,
        expired_object_delete_marker=delete_marker,
        noncurrent_days=noncurrent_days,
        newer_noncurrent_versions=newer,
        abort_multipart_days=abort_days,
    )


def invalid_request_no_action() -> S3Error:
    return malformed_xml("A lifecycle rule needs at least one action.")


def parse_lifecycle_configuration(body: bytes, *, limit: int = 1024 * 1024) -> tuple[LifecycleRule, ...]:
    root = parse_document(body, "LifecycleConfiguration", limit=limit)
    elements = children(root, "Rule")
    if not elements:
        raise malformed_xml("A lifecycle configuration needs at least one Rule.")
    if len(elements) > MAX_RULES:
        raise invalid_argument(f"A lifecycle configuration holds at most {MAX_RULES} rules.", name="Rule")
    rules = [_rule(e) for e in elements]
    ids = [r.rule_id for r in rules if r.rule_id]
    if len(set(ids)) != len(ids):
        raise invalid_argument("Rule ID must be unique. Found same ID for more than one rule", name="ID")
    return tuple(rules)


def render_lifecycle_configuration(rules: tuple[LifecycleRule, ...]) -> bytes:
    root = s3_root("LifecycleConfiguration")
    for rule in rules:
        el = SubElement(root, "Rule")
        if rule.rule_id:
            SubElement(el, "ID").text = rule.rule_id
        f = SubElement(el, "Filter")
        conditions = (
            (1 if rule.filter.prefix else 0)
            + len(rule.filter.tags)
            + (rule.filter.size_greater_than is not None)
            + (rule.filter.size_less_than is not None)
        )
        parent = SubElement(f, "And") if conditions > 1 else f
        if rule.filter.prefix or conditions == 0:
            SubElement(parent, "Prefix").text = rule.filter.prefix
        for key, value in rule.filter.tags:
            tag = SubElement(parent, "Tag")
            SubElement(tag, "Key").text = key
            SubElement(tag, "Value").text = value
        if rule.filter.size_greater_than is not None:
            SubElement(parent, "ObjectSizeGreaterThan").text = str(rule.filter.size_greater_than)
        if rule.filter.size_less_than is not None:
            SubElement(parent, "ObjectSizeLessThan").text = str(rule.filter.size_less_than)
        SubElement(el, "Status").text = "Enabled" if rule.enabled else "Disabled"
        if rule.expiration_days is not None or rule.expiration_date is not None or rule.expired_object_delete_marker:
            exp = SubElement(el, "Expiration")
            if rule.expiration_days is not None:
                SubElement(exp, "Days").text = str(rule.expiration_days)
            elif rule.expiration_date is not None:
                SubElement(exp, "Date").text = rule.expiration_date.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            else:
                SubElement(exp, "ExpiredObjectDeleteMarker").text = "true"
        if rule.noncurrent_days is not None:
            nc = SubElement(el, "NoncurrentVersionExpiration")
            SubElement(nc, "NoncurrentDays").text = str(rule.noncurrent_days)
            if rule.newer_noncurrent_versions is not None:
                SubElement(nc, "NewerNoncurrentVersions").text = str(rule.newer_noncurrent_versions)
        if rule.abort_multipart_days is not None:
            ab = SubElement(el, "AbortIncompleteMultipartUpload")
            SubElement(ab, "DaysAfterInitiation").text = str(rule.abort_multipart_days)
    return to_document(root)
