"""Exports of audit records: JSON lines, CSV and ArcSight CEF.

* ``json``: one canonical record per line (the stored form, ``hash`` and ``prev`` included, so an
  export can be re-checked).
* ``csv``: RFC 4180 (``csv`` module, minimal quoting, CRLF), a header row; ``detail`` is its
  canonical JSON. Text cells that a spreadsheet would run as a formula (starting with ``=``,
  ``+``, ``-``, ``@``, tab or CR) are prefixed with ``'`` (OWASP CSV injection advice).
* ``cef``: ``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``; in header
  fields ``\\`` and ``|`` are escaped, in extension values ``\\``, ``=`` and newlines
  (``\\n``/``\\r``), as the ArcSight CEF guide says.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from datawarehouse import __version__
from datawarehouse.errors import InvalidInput
from datawarehouse.service.audit.record import ALL_FIELDS, AuditRecord, canonical_json

FORMATS = ("json", "csv", "cef")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_json_line(r: AuditRecord) -> str:
    return r.line().decode("utf-8")


def csv_cell(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else canonical_json(value).decode()  # type: ignore[arg-type]
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(records: Iterable[AuditRecord]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def take(row: list[str]) -> str:
        writer.writerow(row)
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    yield take(list(ALL_FIELDS))
    for r in records:
        doc = r.to_doc()
        yield take([csv_cell(doc[name]) for name in ALL_FIELDS])


def cef_header(text: str) -> str:
    """A CEF header field: backslash and pipe escaped; line breaks (not allowed) become spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_value(text: str) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    return (
        text.replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    )


def cef_severity(status: int) -> int:
    if status >= 500:
        return 7
    if status >= 400:
        return 5
    return 3


def to_cef(r: AuditRecord) -> str:
    ext: list[tuple[str, str]] = [
        ("rt", str(int(r.at.timestamp() * 1000))),
        ("act", r.operation),
        ("outcome", str(r.status)),
        ("suser", r.principal),
        ("src", r.source_ip),
        ("in", str(r.bytes_in)),
        ("out", str(r.bytes_out)),
        ("externalId", r.request_id),
        ("requestClientApplication", r.user_agent),
        ("cs1Label", "bucket"),
        ("cs1", r.bucket),
        ("cs2Label", "key"),
        ("cs2", r.key),
        ("cs3Label", "versionId"),
        ("cs3", r.version_id),
        ("cs4Label", "tenant"),
        ("cs4", r.tenant),
        ("cs5Label", "accessKey"),
        ("cs5", r.access_key),
        ("cs6Label", "error"),
        ("cs6", r.error),
        ("cn1Label", "durationMicros"),
        ("cn1", str(r.duration_us)),
        ("cn2Label", "seq"),
        ("cn2", str(r.seq)),
        ("flexString1Label", "hash"),
        ("flexString1", r.hash),
    ]
    if r.query:
        ext.append(("request", r.query))
    extension = " ".join(f"{k}={cef_value(v)}" for k, v in ext if v != "")
    header = "|".join(
        cef_header(x)
        for x in (
            "DataWarehouse",
            "DataWarehouse",
            __version__,
            r.operation,
            f"S3 {r.operation}",
            str(cef_severity(r.status)),
        )
    )
    return f"CEF:0|{header}|{extension}"


def export_lines(records: Iterable[AuditRecord], fmt: str) -> Iterator[str]:
    """The export as text pieces, each ending with its line terminator."""
    if fmt == "json":
        return (to_json_line(r) + "\n" for r in records)
    if fmt == "csv":
        return csv_rows(records)
    if fmt == "cef":
        return (to_cef(r) + "\n" for r in records)
    raise InvalidInput(f"--format: one of {', '.join(FORMATS)} (got {fmt!r})")
