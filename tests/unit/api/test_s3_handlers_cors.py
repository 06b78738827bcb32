"""CORS: origin and header patterns, rule matching, the headers answered, and the preflight
handler on a real warehouse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.handlers import Context
from datawarehouse.api.s3.handlers.cors import _matches, cors_headers, load_rules, match_rule, preflight
from datawarehouse.api.s3.http import Offload, Request, Response
from datawarehouse.api.s3.router import Endpoint
from datawarehouse.api.s3.xml import parse_cors_configuration
from datawarehouse.api.s3.xmlmodel import CorsRule
from datawarehouse.service.warehouse import Warehouse

APP = CorsRule(
    allowed_methods=("GET", "PUT"),
    allowed_origins=("https://app.example.com", "https://*.example.org"),
    allowed_headers=("content-*", "X-Amz-Meta-Owner"),
    expose_headers=("ETag", "x-amz-request-id"),
    max_age_seconds=600,
    id="app",
)
ANYONE = CorsRule(allowed_methods=("GET", "HEAD"), allowed_origins=("*",))


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        ("*", "anything", True),
        ("https://a.com", "https://a.com", True),
        ("https://a.com", "https://a.com.evil.net", False),
        ("https://*.a.com", "https://x.a.com", True),
        ("https://*.a.com", "https://x.y.a.com", True),
        ("https://*.a.com", "https://a.com", False),
        ("https://*.a.com", "http://x.a.com", False),
        ("x-amz-*", "x-amz-date", True),
        ("*-id", "x-request-id", True),
        ("a?c", "abc", False),  # '?' and '[' are literal, not glob syntax
        ("a?c", "a?c", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("ab*ba", "aba", False),  # head and tail may not overlap
    ],
)
def test_patterns(pattern: str, value: str, ok: bool) -> None:
    assert _matches(pattern, value) is ok


def test_match_rule() -> None:
    rules = [APP, ANYONE]
    assert match_rule(rules, "https://app.example.com", "PUT", ["Content-Type", "x-amz-meta-owner"]) is APP
    assert match_rule(rules, "https://cdn.example.org", "GET", []) is APP
    assert match_rule(rules, "https://app.example.com", "PUT", ["x-amz-date"]) is None  # header not allowed
    assert match_rule(rules, "https://app.example.com", "DELETE", []) is None
    assert match_rule(rules, "https://evil.example.net", "GET", []) is ANYONE  # the first matching rule wins
    assert match_rule(rules, "https://evil.example.net", "PUT", []) is None
    assert match_rule(rules, "https://evil.example.net", "HEAD", ["x-anything"]) is None  # ANYONE allows no headers
    assert match_rule([], "https://app.example.com", "GET", []) is None


def test_headers() -> None:
    got = dict(cors_headers(APP, "https://app.example.com", "PUT", ["content-type"]))
    assert got["access-control-allow-origin"] == "https://app.example.com"
    assert got["access-control-allow-methods"] == "GET, PUT"
    assert got["access-control-allow-headers"] == "content-type"
    assert got["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert got["access-control-max-age"] == "600"
    assert got["access-control-allow-credentials"] == "true"
    assert "Origin" in got["vary"]
    got = dict(cors_headers(ANYONE, "https://x.net", "GET"))
    assert got["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in got
    assert "access-control-max-age" not in got and "access-control-allow-headers" not in got


def test_configuration_round_trip_through_the_stored_json(tmp_path: Path) -> None:
    body = b"""<CORSConfiguration><CORSRule><ID>app</ID><AllowedOrigin>https://app.example.com</AllowedOrigin>
    <AllowedOrigin>https://*.example.org</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>
    <AllowedHeader>content-*</AllowedHeader><AllowedHeader>X-Amz-Meta-Owner</AllowedHeader><ExposeHeader>ETag</ExposeHeader>
    <ExposeHeader>x-amz-request-id</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>"""
    rules = parse_cors_configuration(body)
    assert rules == (APP,)
    with Warehouse.init(tmp_path / "dwh") as wh:
        wh.create_bucket("cors-unit")
        assert load_rules(wh, "cors-unit") == [] and load_rules(wh, "no-such-bucket") == []
        wh.set_bucket_setting("cors-unit", "cors", json.dumps([asdict(r) for r in rules]))
        assert load_rules(wh, "cors-unit") == [APP]


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    w = Warehouse.init(tmp_path / "dwh")
    w.create_bucket("cors-unit")
    w.set_bucket_setting("cors-unit", "cors", json.dumps([asdict(APP), asdict(ANYONE)]))
    try:
        yield w
    finally:
        w.close()


def ask(wh: Warehouse, headers: dict[str, str], bucket: str | None = "cors-unit") -> Response:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    request = Request("OPTIONS", "/cors-unit/k", "", [], headers, list(headers.items()), None, receive, "RID")
    offload = Offload(1)
    try:
        ctx = Context(wh, offload, request, Endpoint("CorsPreflight", bucket, "k"), None, "us-east-1")
        return asyncio.run(preflight(ctx))
    finally:
        offload.close()


def test_preflight(wh: Warehouse) -> None:
    resp = ask(
        wh,
        {
            "origin": "https://app.example.com",
            "access-control-request-method": "PUT",
            "access-control-request-headers": "Content-Type, X-Amz-Meta-Owner",
        },
    )
    got = dict(resp.headers)
    assert resp.status == 200 and got["access-control-allow-origin"] == "https://app.example.com"
    assert got["access-control-allow-headers"] == "Content-Type, X-Amz-Meta-Owner"
    for headers, code in [
        ({"origin": "https://evil.example.net", "access-control-request-method": "PUT"}, "AccessForbidden"),
        ({"origin": "https://app.example.com", "access-control-request-method": "DELETE"}, "AccessForbidden"),
        ({"access-control-request-method": "GET"}, "InvalidRequest"),
        ({"origin": "https://app.example.com"}, "InvalidRequest"),
    ]:
        with pytest.raises(S3Error) as exc:
            ask(wh, headers)
        assert exc.value.code == code
        if code == "AccessForbidden":
            assert exc.value.http_status == 403 and "This CORS request is not allowed" in exc.value.message
    with pytest.raises(S3Error) as exc:
        ask(wh, {"origin": "https://a.com", "access-control-request-method": "GET"}, bucket="missing-bucket")
    assert exc.value.code == "AccessForbidden"
