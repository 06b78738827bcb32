"""Export formats: CEF escaping (header: backslash and pipe; extension: backslash, equals,
newlines), CSV quoting and formula neutralising, JSON lines as stored; syslog message format."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from datawarehouse.errors import InvalidInput
from datawarehouse.service.audit.export import cef_header, cef_value, csv_rows, export_lines, to_cef
from datawarehouse.service.audit.forward import BOM, SD_ID, format_syslog, sd_escape
from datawarehouse.service.audit.record import ALL_FIELDS, AuditRecord


def rec(**kw: object) -> AuditRecord:
    base: dict[str, object] = {
        "seq": 7,
        "time": "2026-01-02T03:04:05.000006Z",
        "operation": "PutObject",
        "principal": "alice",
        "bucket": "photos",
        "key": "a|b=c\\d\nnext",
        "status": 200,
        "prev": "aa" * 32,
        "hash": "bb" * 32,
    }
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


def test_cef_escapes() -> None:
    assert cef_header("a|b\\c") == "a\\|b\\\\c"
    assert cef_value("a=b\\c\nd\re") == "a\\=b\\\\c\\nd\\re"
    assert cef_value("x|y") == "x|y"  # pipes need no escape in extension values


def test_cef_line_structure() -> None:
    line = to_cef(rec(operation="Put|Object"))
    assert "\n" not in line
    # split on unescaped pipes: 8 parts (7 header fields + extension)
    parts = re.split(r"(?<!\\)\|", line, maxsplit=7)
    assert parts[0] == "CEF:0" and parts[1] == "DataWarehouse" and parts[4] == "Put\\|Object"
    assert len(parts) == 8
    ext = parts[7]
    assert "cs2=a|b\\=c\\\\d\\nnext" in ext
    assert "suser=alice" in ext and "cn2=7" in ext and "rt=1767323045000" in ext


def test_csv_quotes_and_neutralises_formulas() -> None:
    text = "".join(csv_rows([rec(principal="=HYPERLINK(1)", key='say "hi", then\nleave')]))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(ALL_FIELDS)
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["principal"] == "'=HYPERLINK(1)"
    assert row["key"] == 'say "hi", then\nleave'
    assert row["seq"] == "7" and row["detail"] == "{}"
    assert '"say ""hi"", then\nleave"' in text  # RFC 4180 quoting


def test_json_lines_are_the_stored_form() -> None:
    r = rec()
    (line,) = list(export_lines([r], "json"))
    assert line.encode() == r.line() + b"\n"
    assert json.loads(line)["key"] == r.key
    with pytest.raises(InvalidInput):
        list(export_lines([r], "xml"))


def test_syslog_rfc5424_header_and_structured_data() -> None:
    r = rec(status=404, error="NoSuchKey", principal='bob "the" [admin]\\x')
    msg = format_syslog(r, hostname="host one", procid="42")
    text = msg.decode()
    m = re.match(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[(.*)\] (.*)$", text, re.S)
    assert m, text
    pri, ts, host, app, procid, msgid, sd, body = m.groups()
    assert int(pri) == 13 * 8 + 4  # log audit, warning for a 4xx
    assert ts == r.time and host == "hostone" and app == "dwh" and procid == "42" and msgid == "PutObject"
    assert sd.startswith(SD_ID + " ")
    assert 'principal="bob \\"the\\" [admin\\]\\\\x"' in sd
    assert 'error="NoSuchKey"' in sd and 'seq="7"' in sd
    assert body.startswith(BOM) and json.loads(body[1:])["seq"] == 7
    assert sd_escape('a"b]c\\') == 'a\\"b\\]c\\\\'
    nil = format_syslog(rec(operation=""), hostname="", procid="").decode()
    assert nil.split(" ")[2:6] == ["-", "dwh", "-", "-"]
