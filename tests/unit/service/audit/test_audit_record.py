"""Records, canonical JSON, the hash chain and redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datawarehouse.errors import CorruptFrame, InvalidInput
from datawarehouse.service.audit.chain import ChainHead, genesis_hash, record_hash
from datawarehouse.service.audit.record import ALL_FIELDS, AuditRecord, format_time, parse_line, parse_time
from datawarehouse.service.audit.redact import REDACTED, redact_detail, redact_query, redact_text


def rec(**kw: object) -> AuditRecord:
    base: dict[str, object] = {"seq": 0, "time": "2026-01-02T03:04:05.000006Z", "operation": "PutObject"}
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


def test_canonical_json_is_sorted_compact_utf8() -> None:
    r = rec(key="clé ü", bucket="b", detail={"z": "1", "a": "2"})
    line = r.line()
    doc = json.loads(line)
    assert list(doc) == sorted(doc) and set(doc) == set(ALL_FIELDS)
    assert b" " not in line.replace("clé ü".encode(), b"")
    assert "clé ü".encode() in line  # UTF-8, not \\u escapes
    assert line.index(b'"a"') < line.index(b'"z"')
    assert parse_line(line) == r


def test_hash_covers_prev_and_every_field_but_itself() -> None:
    r = rec(seq=1, prev="00" * 32)
    h = record_hash(r)
    assert record_hash(r.with_chain(1, "00" * 32, h)) == h  # the hash field is not covered
    assert record_hash(rec(seq=1, prev="11" * 32)) != h
    assert record_hash(rec(seq=1, prev="00" * 32, status=201)) != h
    assert record_hash(rec(seq=1, prev="00" * 32, detail={"x": "y"})) != h


def test_chain_links_each_record_to_the_previous() -> None:
    head = ChainHead(0, genesis_hash("dd-1"))
    first, head = head.link(rec(key="a"))
    second, head = head.link(rec(key="b"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev == genesis_hash("dd-1") and second.prev == first.hash
    assert record_hash(first) == first.hash and head == ChainHead(2, second.hash)
    assert genesis_hash("dd-1") != genesis_hash("dd-2")  # bound to the data directory


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1,2]",
        b'{"seq": 1}',
        rec().line().replace(b'"status":0', b'"status":"0"'),
        rec().line().replace(b'"status":0', b'"status":true'),
        rec().line().replace(b'"detail":{}', b'"detail":{"a":1}'),
        rec().line()[:-1] + b',"extra":"x"}',
    ],
)
def test_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(CorruptFrame):
        parse_line(line)


def test_times_are_utc_with_microseconds() -> None:
    at = datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    assert format_time(at) == "2026-05-06T07:08:09.000010Z"
    assert parse_time(format_time(at)) == at
    with pytest.raises(InvalidInput):
        format_time(datetime(2026, 1, 1))
    with pytest.raises(InvalidInput):
        parse_time("yesterday")


def test_presigned_url_signature_is_redacted_but_the_credential_scope_stays() -> None:
    q = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=deadbeefcafe0123&X-Amz-Security-Token=tok123&versionId=abc"
    )
    out = redact_query(q)
    assert "deadbeefcafe0123" not in out and "tok123" not in out
    assert f"X-Amz-Signature={REDACTED}" in out
    # kept values stay as the client encoded them (no decode and re-quote on every request)
    assert "AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request" in out and "versionId=abc" in out
    assert (
        redact_query("X-Amz-Signatur%65=abc&n=%53ignature%3Dsecret")
        == f"X-Amz-Signature={REDACTED}&n=Signature%3D{REDACTED}"
    )


def test_detail_secrets_and_inline_signatures_are_redacted() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab12cd"
    out = redact_detail({"SecretAccessKey": "s3cr3t", "password": "pw", "note": auth, "user": "alice", "n": 5})
    assert out["SecretAccessKey"] == REDACTED and out["password"] == REDACTED
    assert "ab12cd" not in out["note"] and "Signature=REDACTED" in out["note"]
    assert out["user"] == "alice" and out["n"] == "5"
    assert redact_text("plain text") == "plain text"


@given(
    st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3),
    st.text(max_size=20),
    st.integers(min_value=0, max_value=2**40),
)
def test_the_one_pass_encoding_is_the_canonical_json(detail: dict[str, str], text: str, n: int) -> None:
    """line() and body_bytes() are spliced from two half encodings: they must stay byte-identical
    to the canonical JSON of the whole record (and of it without ``hash``), whatever the values."""
    from datawarehouse.service.audit.record import canonical_json

    r = AuditRecord(seq=n, time=text, operation="Op", key=text, query=text, detail=detail, prev=text, hash=text)
    assert r.line() == canonical_json(r.to_doc())
    assert r.body_bytes() == canonical_json(r.to_doc(with_hash=False))
    linked = r.with_chain(r.seq, r.prev, "ff")
    assert linked.line() == canonical_json(linked.to_doc())
