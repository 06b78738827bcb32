"""Bucket CORS: the configuration (Put/Get/Delete), preflight OPTIONS, and the CORS headers of
actual requests from a browser (``Origin``)."""

from __future__ import annotations

import json
from dataclasses import asdict

from datawarehouse.api.s3.body import BodyReader
from datawarehouse.api.s3.errors import s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.xml import parse_cors_configuration
from datawarehouse.api.s3.xmlmodel import CorsRule
from datawarehouse.api.s3.xmlrender import render_cors_configuration
from datawarehouse.errors import NotFound
from datawarehouse.service.warehouse import Warehouse

MAX_BODY = 64 * 1024
SETTING = "cors"


def _matches(pattern: str, value: str) -> bool:
    """S3 allows one '*' wildcard in an origin or header pattern (``?`` and ``[`` are literal);
    callers lower-case header names on both sides."""
    if pattern == "*":
        return True
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


def load_rules(wh: Warehouse, bucket: str) -> list[CorsRule]:
    try:
        value = wh.get_bucket_setting(bucket, SETTING)
    except NotFound:
        return []
    if value is None:
        return []
    return [
        CorsRule(
            allowed_methods=tuple(r["allowed_methods"]),
            allowed_origins=tuple(r["allowed_origins"]),
            allowed_headers=tuple(r.get("allowed_headers", ())),
            expose_headers=tuple(r.get("expose_headers", ())),
            max_age_seconds=r.get("max_age_seconds"),
            id=r.get("id"),
        )
        for r in json.loads(value)
    ]


def match_rule(rules: list[CorsRule], origin: str, method: str, headers: list[str]) -> CorsRule | None:
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        if not any(_matches(o, origin) for o in rule.allowed_origins):
            continue
        allowed = [h.lower() for h in rule.allowed_headers]
        if all(any(_matches(a, h.lower()) for a in allowed) for h in headers):
            return rule
    return None


def cors_headers(rule: CorsRule, origin: str, method: str, requested: list[str] | None = None) -> list[tuple[str, str]]:
    wildcard = "*" in rule.allowed_origins
    out = [
        ("access-control-allow-origin", "*" if wildcard else origin),
        ("access-control-allow-methods", ", ".join(rule.allowed_methods)),
        ("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
    ]
    if not wildcard:
        out.append(("access-control-allow-credentials", "true"))
    if requested:
        out.append(("access-control-allow-headers", ", ".join(requested)))
    if rule.expose_headers:
        out.append(("access-control-expose-headers", ", ".join(rule.expose_headers)))
    if rule.max_age_seconds is not None:
        out.append(("access-control-max-age", str(rule.max_age_seconds)))
    return out


@handles("PutBucketCors")
async def put_bucket_cors(ctx: Context) -> Response:
    body = await BodyReader(ctx.request, ctx.auth, MAX_BODY).read_all(MAX_BODY)
    rules = parse_cors_configuration(body)
    value = json.dumps([asdict(r) for r in rules])
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, value)
    return Response(200)


@handles("GetBucketCors")
async def get_bucket_cors(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.get_bucket, ctx.bucket)
    rules = await ctx.offload.run(load_rules, ctx.warehouse, ctx.bucket)
    if not rules:
        raise s3_error("NoSuchCORSConfiguration").with_resource(f"/{ctx.bucket}")
    return xml_response(render_cors_configuration(rules))


@handles("DeleteBucketCors")
async def delete_bucket_cors(ctx: Context) -> Response:
    await ctx.offload.run(ctx.warehouse.set_bucket_setting, ctx.bucket, SETTING, None)
    return Response(204)


@handles("CorsPreflight")
async def preflight(ctx: Context) -> Response:
    headers = ctx.request.headers
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    if not origin or not method or ctx.endpoint.bucket is None:
        raise s3_error("InvalidRequest", "Insufficient information. Origin request header needed.")
    requested = [h.strip() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()]
    rules = await ctx.offload.run(load_rules, ctx.warehouse, ctx.bucket)
    rule = match_rule(rules, origin, method.upper(), requested)
    if rule is None:
        raise s3_error("AccessForbidden")
    resp = Response(200)
    resp.headers.extend(cors_headers(rule, origin, method.upper(), requested))
    return resp
