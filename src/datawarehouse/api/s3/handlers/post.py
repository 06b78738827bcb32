"""PostObject: browser form uploads authorised by a signed POST policy.

The multipart/form-data body is parsed as it streams (python-multipart); the fields before
``file`` are small and collected; when the ``file`` part starts, the policy's signature and
conditions are verified, and only then is the file streamed into an upload. The size condition is
checked at the end, before the object is committed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from datawarehouse.api.s3 import post_policy
from datawarehouse.api.s3.errors import S3Error, invalid_argument, malformed_post, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.objects import (
    SSE_S3,
    check_acl,
    check_encryption_request,
    check_lock_headers,
    etag_header,
    object_acl_after_write,
    require_header_value,
    system_metadata,
    user_metadata,
)
from datawarehouse.api.s3.handlers.versioning import version_headers
from datawarehouse.api.s3.http import Response, xml_response
from datawarehouse.api.s3.objectlock_xml import lock_request
from datawarehouse.api.s3.xml import parse_tagging
from datawarehouse.api.s3.xmlrender import render_post_response
from datawarehouse.service import access
from datawarehouse.service.warehouse import MAX_PUT_SIZE, with_owner

MAX_FIELDS_SIZE = 64 * 1024  # all fields before the file together
BATCH = 1024 * 1024


class _Events:
    """Collects what the parser saw during one ``write``; the handler acts on it afterwards."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._field = b""
        self._value = b""
        self.headers: dict[str, bytes] = {}

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: setattr(self, "_field", self._field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.items.append(("headers", dict(self.headers))),
            "on_part_data": lambda d, s, e: self.items.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.items.append(("end", None)),
        }

    def _begin(self) -> None:
        self.headers.clear()

    def _header_end(self) -> None:
        self.headers[self._field.decode("latin-1").lower()] = self._value
        self._field, self._value = b"", b""


def _disposition(headers: dict[str, bytes]) -> tuple[str, str | None]:
    _, params = parse_options_header(headers.get("content-disposition", b""))
    name = params.get(b"name", b"").decode("utf-8", "replace")
    filename = params.get(b"filename")
    return name, filename.decode("utf-8", "replace") if filename is not None else None


@handles("PostObject")
async def post_object(ctx: Context) -> Response:
    ctype, params = parse_options_header(ctx.request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise malformed_post("the body must be multipart/form-data with a boundary")
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())
    fields: dict[str, str] = {}
    fields_size = 0
    current: tuple[str, str | None] | None = None
    value = b""
    upload: Any = None
    policy: post_policy.Policy | None = None
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    key = ""
    file_done = False  # fields after the file are ignored, as S3 does
    try:
        async for raw in ctx.request.raw_body():
            _feed(parser, raw)
            for kind, item in events.items:
                if file_done:
                    continue
                if kind == "headers":
                    current = _disposition(item)
                    value = b""
                    if current[0] == "file":
                        upload, policy, key = await _start(ctx, fields, current[1], item)
                elif kind == "data" and current is not None:
                    if current[0] == "file":
                        size += len(item)
                        if policy is not None and policy.max_size is not None and size > policy.max_size:
                            post_policy.check_size(policy, size)
                        pending.append(item)
                        pending_size += len(item)
                        if pending_size >= BATCH:
                            await ctx.offload.run(upload.write, b"".join(pending))
                            pending, pending_size = [], 0
                    else:
                        fields_size += len(item)
                        if fields_size > MAX_FIELDS_SIZE:
                            raise malformed_post("form fields exceed 64 KiB")
                        value += item
                elif kind == "end" and current is not None:
                    if current[0] == "file":
                        file_done = True
                    else:
                        fields[current[0].lower()] = value.decode("utf-8", "replace")
                    current = None
            events.items.clear()
        parser.finalize()
        if upload is None or policy is None:
            raise malformed_post("the form has no file field (it must be the last field)")
        if not file_done:  # the body ended inside the file part: never store a truncated file
            raise malformed_post("the form ended before the end of the file")
        if pending:
            await ctx.offload.run(upload.write, b"".join(pending))
        post_policy.check_size(policy, size)
    except BaseException:
        if upload is not None:
            upload.abort()
        raise
    version = await ctx.offload.run(upload.finish)
    await object_acl_after_write(ctx, fields.get("acl"), key)
    return version_headers(_success(ctx, fields, key, version.etag), version)


def _feed(parser: MultipartParser, data: bytes) -> None:
    try:
        parser.write(data)
    except MultipartParseError as exc:
        raise malformed_post() from exc


async def _start(ctx: Context, fields: dict[str, str], filename: str | None, headers: dict[str, bytes]) -> Any:
    """Verify the policy (the fields are complete once the file part starts) and open the upload."""
    if ctx.lookup_secret is None:
        raise s3_error("AccessDenied")
    if "policy" not in fields:
        raise s3_error("AccessDenied", "POST uploads need a signed policy")
    access_key, ctx.post_signature = post_policy.verify_signature(
        fields, ctx.lookup_secret, signature_v2=ctx.signature_v2
    )
    policy = post_policy.parse_policy(fields["policy"])
    key = fields.get("key", "")
    if not key:
        raise invalid_argument("Bucket POST must contain a field named 'key'.", name="key")
    key = key.replace("${filename}", filename or "")
    check_encryption_request(fields)
    access.check_canned_acl(fields.get("acl"), ctx.bucket)
    caller = ctx.lookup_caller(access_key) if ctx.lookup_caller is not None else None
    if caller is None:
        raise s3_error("AccessDenied")
    ctx.caller = caller
    ctx.request.notes["caller"] = caller
    await ctx.authorize(operation="PostObject", key=key)
    await check_acl(ctx, fields.get("acl"))
    now = ctx.warehouse.engine.now()
    try:
        post_policy.check_conditions(policy, {**fields, "key": key}, ctx.bucket, now)
    except S3Error:
        # A policy may name the key as the form does, ${filename} and all.
        if key == fields["key"]:
            raise
        post_policy.check_conditions(policy, fields, ctx.bucket, now)
    content_type = fields.get("content-type") or headers.get("content-type", b"binary/octet-stream").decode("latin-1")
    require_header_value("Content-Type", content_type)
    for name in ("success_action_redirect", "redirect"):
        if name in fields:
            require_header_value(name, fields[name])  # sent back as the Location header
    user_meta = user_metadata(fields)
    system_meta = with_owner(system_metadata(fields), ctx.caller.principal.arn)
    tags = {t.key: t.value for t in parse_tagging(fields["tagging"].encode())} if fields.get("tagging") else {}
    lock = lock_request(fields)  # x-amz-object-lock-* form fields, as the headers of a PUT
    await check_lock_headers(ctx, ctx.bucket, {"lock": lock})
    wh = ctx.warehouse
    upload = await ctx.offload.run(
        lambda: wh.open_upload(
            ctx.bucket,
            key,
            content_type=content_type,
            user_meta=user_meta,
            system_meta=system_meta,
            tags=tags,
            lock=lock,
            max_size=policy.max_size if policy.max_size is not None else MAX_PUT_SIZE,
            md5_etag=True,
        )
    )
    return upload, policy, key


def _success(ctx: Context, fields: dict[str, str], key: str, etag: str) -> Response:
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        query = urlencode({"bucket": ctx.bucket, "key": key, "etag": etag_header(etag)})
        sep = "&" if "?" in redirect else "?"
        return Response(303).header("location", f"{redirect}{sep}{query}").header("etag", etag_header(etag))
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = render_post_response(f"/{ctx.bucket}/{key}", ctx.bucket, key, etag)
        resp = xml_response(body, 201).header("x-amz-server-side-encryption", SSE_S3)
        return resp.header("etag", etag_header(etag)).header("location", f"/{ctx.bucket}/{quote(key, safe='/~')}")
    resp = Response(200 if status == "200" else 204).header("etag", etag_header(etag))
    resp.header("x-amz-server-side-encryption", SSE_S3)
    return resp.header("location", f"/{ctx.bucket}/{quote(key, safe='/~')}")
