"""Object operations: PutObject, GetObject (ranges, conditions, response overrides), HeadObject,
DeleteObject."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.acl import requested_acl
from datawarehouse.api.s3.body import BodyReader, BodyResult
from datawarehouse.api.s3.errors import S3Error, invalid_argument, not_implemented, precondition_failed, s3_error
from datawarehouse.api.s3.handlers import Context, handles
from datawarehouse.api.s3.handlers.buckets import owner
from datawarehouse.api.s3.handlers.parts import part_checksum, part_range, requested_part
from datawarehouse.api.s3.handlers.tagging import header_tags
from datawarehouse.api.s3.handlers.versioning import requested_version, version_headers
from datawarehouse.api.s3.http import Response, header_value_ok, http_date
from datawarehouse.api.s3.objectlock_xml import lock_headers, lock_request, missing_lock_configuration
from datawarehouse.errors import InvalidRange, NoSuchKey, WouldBlock
from datawarehouse.records import BucketRecord, ObjectVersion
from datawarehouse.service import access
from datawarehouse.service.objectlock import lock_enabled
from datawarehouse.service.warehouse import MAX_PUT_SIZE, SYSTEM_HEADERS, ObjectRead, Warehouse, with_owner

MAX_USER_META = 2 * 1024  # S3: user-defined metadata is limited to 2 KB
# A PutObject body up to this size is read before the upload is opened, and stored in one
# worker-thread hop; a larger one streams into the upload piece by piece.
ONE_HOP_PUT_BYTES = 1024 * 1024
# A GET reads this much on its one worker-thread hop before answering (a 1 MiB object is then
# a single hop); the rest of a larger object is streamed, prefetched on the engine pool.
ONE_HOP_BYTES = 2 * 1024 * 1024
READ_AHEAD = 4  # chunks a streaming GET keeps in flight on the engine pool
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def etag_header(etag: str) -> str:
    return f'"{etag}"'


def user_metadata(headers: dict[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` of a PUT's headers or a POST's form fields (which, unlike headers, may hold
    what no header can carry: refused, since every GET would have to send it back)."""
    meta = {k[len("x-amz-meta-") :]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_USER_META:
        raise s3_error(
            "MetadataTooLarge",
            f"Your metadata headers exceed the maximum allowed metadata size ({MAX_USER_META} bytes).",
        )
    for name, value in meta.items():
        require_header_value(f"x-amz-meta-{name}", value)
    return meta


def system_metadata(headers: dict[str, str]) -> dict[str, str]:
    """Content-Encoding, Cache-Control and the other headers stored to be sent back (checked as
    ``user_metadata``; the Content-Type is kept apart)."""
    stored = {name: headers[name] for name in SYSTEM_HEADERS if name in headers}
    for name, value in stored.items():
        require_header_value(name, value)
    return stored


def require_header_value(name: str, value: str) -> None:
    """InvalidArgument for a value that is to be sent back as a header and cannot be."""
    if not header_value_ok(value):
        raise invalid_argument(f"{name}: a header value cannot hold control characters", name=name)


SSE_S3 = "AES256"


def check_encryption_request(headers: dict[str, str] | Any) -> str | None:
    """Server-side encryption asked of a write. Everything is always encrypted at rest with the
    server's keys, which is what SSE-S3 (``AES256``) promises: it is accepted, and every write
    and read answers ``x-amz-server-side-encryption: AES256`` whether it was asked or not, as S3
    does since every bucket has SSE-S3 by default.
    KMS keys and customer-provided keys are not supported: NotImplemented, never a silent
    acceptance of a promise this server does not keep."""
    if any(name.startswith("x-amz-server-side-encryption-customer-") for name in headers):
        raise not_implemented("SSE-C (customer-provided keys) is not supported; data is encrypted with server keys")
    asked = headers.get("x-amz-server-side-encryption")
    if asked is None:
        return None
    if asked.strip() != SSE_S3:
        raise not_implemented(f"server-side encryption {asked!r} is not supported (only AES256, always on)")
    return SSE_S3


def object_spec(headers: dict[str, str], owner: str | None = None) -> dict[str, Any]:
    """What a new object carries from its request headers (PutObject, CreateMultipartUpload),
    its object lock (x-amz-object-lock-*) included, and who wrote it (``access.OWNER_META``)."""
    return {
        "content_type": headers.get("content-type") or "binary/octet-stream",
        "user_meta": user_metadata(headers),
        "system_meta": with_owner(system_metadata(headers), owner),
        "tags": header_tags(headers.get("x-amz-tagging")),
        "lock": lock_request(headers),
    }


async def check_lock_headers(ctx: Context, bucket: str, spec: dict[str, Any]) -> None:
    """A write asking for object lock in a bucket without it: InvalidRequest, as S3 (checked
    again inside the commit; this only gives the S3 answer)."""
    if spec.get("lock") is not None and not await ctx.offload.run(lock_enabled, ctx.warehouse, bucket):
        raise missing_lock_configuration()


def announced_size(headers: dict[str, str]) -> int | None:
    """The object size the client announced: the decoded length of an aws-chunked body, else
    Content-Length (for a quota check before the body is read; the body reader enforces it)."""
    value = headers.get("x-amz-decoded-content-length") or headers.get("content-length")
    return whole_number(value)


class Sink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...
    def abort(self) -> None: ...


async def stream_into(ctx: Context, reader: BodyReader, sink: Sink) -> BodyResult:
    """Stream the request body into an upload (or part), then verify every digest; on any
    failure the upload is aborted, so nothing unverified is ever committed."""
    try:
        async for piece in reader.pieces():
            await ctx.offload.run(sink.write, piece)
        return reader.verify()
    except BaseException:
        sink.abort()
        raise


def object_headers(resp: Response, v: ObjectVersion, *, checksums: bool = False) -> Response:
    """The stored headers of a version. Checksums only when asked for (x-amz-checksum-mode:
    ENABLED) and the whole object is returned: they describe the whole object, and clients
    verify the body against them."""
    resp.header("etag", etag_header(v.etag))
    resp.header("last-modified", http_date(v.created_at))
    resp.header("accept-ranges", "bytes")
    resp.header("x-amz-server-side-encryption", SSE_S3)  # every object is encrypted at rest
    for name, value in v.system_meta.items():
        if name in SYSTEM_HEADERS or (checksums and name.startswith("x-amz-checksum-")):
            resp.header(name, value)
    for name, value in v.user_meta.items():
        resp.header(f"x-amz-meta-{name}", value)
    if v.tags:
        resp.header("x-amz-tagging-count", len(v.tags))
    return lock_headers(resp, v)


# --- PUT -----------------------------------------------------------------------------------------------


@handles("PutObject")
async def put_object(ctx: Context) -> Response:
    headers = ctx.request.headers
    reader = BodyReader(ctx.request, ctx.auth, MAX_PUT_SIZE)
    conditions = _write_conditions(headers)
    wh = ctx.warehouse
    size = announced_size(headers)
    spec = object_spec(headers, ctx.caller.principal.arn)
    check_encryption_request(headers)
    canned = await write_acl(ctx)
    await check_lock_headers(ctx, ctx.bucket, spec)
    length = whole_number(headers.get("content-length"))
    if length is not None and length <= ONE_HOP_PUT_BYTES:
        # A small body is read first (it is one piece anyway); then opening the upload, the
        # early condition check, the write, the digest checks and the commit take one hop.
        body = [piece async for piece in reader.pieces()]

        def start() -> tuple[Future[ObjectVersion], dict[str, str]]:
            upload = wh.open_upload(ctx.bucket, ctx.key, expected_size=size, md5_etag=True, **spec)
            try:
                if conditions:
                    _check_write_conditions(ctx, conditions)
                for piece in body:
                    upload.write(piece)
                meta = _checksum_meta(reader.verify())
            except BaseException:
                upload.abort()
                raise
            return upload.finish_later(extra_system_meta=meta, conditions=conditions), meta

        if length <= wh.inline_max_size and wh.reads_are_local:
            # An inline object: sealing it takes microseconds and touches no disk (its bytes go
            # to the journal with the commit), so it is done here and only the commit is awaited,
            # with no worker thread parked on it: three thread hand-offs fewer per small PUT.
            pending, checksum_meta = start()
            version = await asyncio.wrap_future(pending)
        else:

            def store() -> tuple[ObjectVersion, dict[str, str]]:
                pending, meta = start()
                return pending.result(), meta

            version, checksum_meta = await ctx.offload.run(store)
    else:
        upload = await ctx.offload.run(
            lambda: wh.open_upload(ctx.bucket, ctx.key, expected_size=size, md5_etag=True, **spec)
        )
        if conditions:
            try:
                await ctx.offload.run(_check_write_conditions, ctx, conditions)
            except BaseException:
                upload.abort()
                raise
        checksum_meta = _checksum_meta(await stream_into(ctx, reader, upload))
        version = await ctx.offload.run(lambda: upload.finish(extra_system_meta=checksum_meta, conditions=conditions))
    await object_acl_after_write(ctx, canned)
    resp = Response(200).header("etag", etag_header(version.etag)).header("x-amz-server-side-encryption", SSE_S3)
    for name, value in checksum_meta.items():
        resp.header(name, value)
    return version_headers(resp, version)


async def write_acl(ctx: Context) -> str | None:
    """The canned ACL an object write asks for (x-amz-acl, or grant headers equal to one; None
    means S3's default, private), refused before anything is stored when the server does not
    support it or the bucket does not take it (``check_acl``)."""
    canned = requested_acl(ctx.request.headers, owner(ctx).id)
    await check_acl(ctx, canned)
    return canned


async def check_acl(ctx: Context, canned: str | None) -> None:
    """``access.check_requested_acl`` on a worker thread only when the bucket might refuse the
    ACL (ACLs off, or a public access block); otherwise the support check alone, on the loop."""
    if access.acl_checks_needed(ctx.warehouse, ctx.bucket, canned):
        await ctx.offload.run(access.check_requested_acl, ctx.warehouse, ctx.bucket, canned)
    else:
        access.check_canned_acl(canned, ctx.bucket)


async def object_acl_after_write(ctx: Context, canned: str | None, key: str | None = None) -> None:
    """The written key's canned ACL (from ``write_acl``; None is private), usually a no-op
    decided without leaving the event loop. ``key`` defaults to the request's."""
    if not access.acl_unaffected(ctx.warehouse, ctx.bucket, canned):
        await ctx.offload.run(access.acl_after_write, ctx.warehouse, ctx.bucket, key or ctx.key, canned)


def _checksum_meta(verified: BodyResult) -> dict[str, str]:
    return {f"x-amz-checksum-{alg.lower()}": value for alg, value in verified.checksums.items()}


def _write_conditions(headers: dict[str, str]) -> dict[str, str]:
    return {k: headers[k] for k in ("if-match", "if-none-match") if k in headers}


def _check_write_conditions(ctx: Context, conditions: dict[str, str]) -> None:
    """Early check (before the body is read); ``finish`` re-checks atomically at commit."""
    try:
        current: ObjectVersion | None = ctx.warehouse.head_object(ctx.bucket, ctx.key)
    except NoSuchKey:
        current = None
    check_write_conditions(conditions, current)


def check_write_conditions(conditions: dict[str, str], current: ObjectVersion | None) -> None:
    if_none = conditions.get("if-none-match")
    if if_none is not None:
        if if_none.strip() != "*":
            raise not_implemented_condition("If-None-Match on PUT supports only '*'")
        if current is not None:
            raise precondition_failed("If-None-Match")
    if_match = conditions.get("if-match")
    if if_match is not None:
        if current is None:
            raise s3_error("NoSuchKey")
        if not _etag_matches(if_match, current.etag):
            raise precondition_failed("If-Match")


def not_implemented_condition(message: str) -> S3Error:
    return s3_error("NotImplemented", message)


# --- GET / HEAD ----------------------------------------------------------------------------------------


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        c = candidate.strip()
        if c == "*" or c.strip('"') == etag or c.removeprefix("W/").strip('"') == etag:
            return True
    return False


def _http_time(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def evaluate_read_conditions(headers: dict[str, str], v: ObjectVersion) -> int | None:
    """The status the conditional headers force (412, 304), or None to proceed — S3's order."""
    modified = v.created_at.replace(microsecond=0)
    if_match = headers.get("if-match")
    if if_match is not None and not _etag_matches(if_match, v.etag):
        return 412
    since = headers.get("if-unmodified-since")
    if if_match is None and since is not None:
        moment = _http_time(since)
        if moment is not None and modified > moment:
            return 412
    if_none = headers.get("if-none-match")
    if if_none is not None and _etag_matches(if_none, v.etag):
        return 304
    mod_since = headers.get("if-modified-since")
    if if_none is None and mod_since is not None:
        moment = _http_time(mod_since)
        if moment is not None and modified <= moment:
            return 304
    return None


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` → [start, end) or None for the whole object (unsupported
    forms are ignored, as S3 does); InvalidRange when it does not overlap the object."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:
        n = int(last)
        if n == 0:
            raise InvalidRange(f"bytes=-0 on an object of {size} bytes")
        return max(0, size - n), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        return None
    if start >= size:
        raise InvalidRange(f"range starts at {start}, object has {size} bytes")
    return start, min(end, size)


async def _lookup_for_read(ctx: Context, version_id: str | None) -> tuple[BucketRecord, ObjectVersion]:
    if _lookup_here(ctx, version_id):
        return ctx.warehouse.lookup(ctx.bucket, ctx.key)
    return await ctx.offload.run(ctx.warehouse.lookup, ctx.bucket, ctx.key, version_id)


def _lookup_here(ctx: Context, version_id: str | None) -> bool:
    """Whether the metadata read of a GET/HEAD runs on the event loop: the current version on a
    local database (one SELECT that never waits for a writer, tens of microseconds). Handing it
    to a worker thread and back cost more than the read itself: two thread switches and GIL
    hand-offs, ~26 context switches per 4 KiB GET at concurrency 16, against 1 on the loop
    (bench/s3.py)."""
    return version_id is None and ctx.warehouse.reads_are_local


def _check_read_params(ctx: Context) -> tuple[str | None, int | None]:
    """The version and the part (``partNumber``) a GET or HEAD asks for, both checked."""
    return requested_version(ctx), requested_part(ctx)


def _wants_checksums(ctx: Context) -> bool:
    return ctx.request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def _read_headers(
    ctx: Context, resp: Response, v: ObjectVersion, rng: tuple[int, int] | None, part: int | None
) -> Response:
    """A GET's or HEAD's stored headers. Asked for (x-amz-checksum-mode: ENABLED), checksums
    go with what the body is: the whole object's, or the part's for a ``partNumber`` read of a
    multipart object whose parts had them; a byte range has none."""
    wants = _wants_checksums(ctx)
    object_headers(resp, v, checksums=wants and not rng)
    if wants and part is not None and rng is not None:
        found = part_checksum(v, part)
        if found is not None:
            resp.header(*found)
    return resp


def _overrides(ctx: Context, resp: Response) -> None:
    for param, header in RESPONSE_OVERRIDES.items():
        value = ctx.request.param(param)
        if value is not None:
            if ctx.auth is None:
                raise invalid_argument("response-* overrides need a signed request")
            require_header_value(param, value)
            resp.headers = [(n, v) for n, v in resp.headers if n.lower() != header]
            if header == "content-type":
                resp.content_type = value
            else:
                resp.header(header, value)


@handles("HeadObject")
async def head_object(ctx: Context) -> Response:
    version_id, part = _check_read_params(ctx)
    _, v = await _lookup_for_read(ctx, version_id)
    named = version_id is not None
    status = evaluate_read_conditions(ctx.request.headers, v)
    if status is not None:
        return version_headers(object_headers(Response(status), v), v, named=named) if status == 304 else Response(412)
    if part is None:
        rng, count = parse_range(ctx.request.headers.get("range"), v.size), None
    else:
        rng, count = part_range(v, part)
    resp = _read_headers(ctx, Response(206 if rng else 200), v, rng, part)
    resp.header("x-amz-mp-parts-count", count)
    version_headers(resp, v, named=named)
    resp.content_type = v.content_type
    start, end = rng or (0, v.size)
    resp.header("content-length", end - start)
    if rng:
        resp.header("content-range", f"bytes {start}-{end - 1}/{v.size}")
    _overrides(ctx, resp)
    return resp


@dataclass
class _Opened:
    """What the worker thread of a GET found: the version, the status its conditions force (or
    ``None``), the range, the bytes read so far and, for a large object, the rest to stream."""

    version: ObjectVersion
    status: int | None = None
    rng: tuple[int, int] | None = None
    parts_count: int | None = None  # a partNumber GET of a multipart object: x-amz-mp-parts-count
    pieces: list[bytes] = field(default_factory=list)
    rest: Iterator[bytes] | None = None


def _open_for_get(
    wh: Warehouse,
    bucket: str,
    key: str,
    headers: dict[str, str],
    busy: bool,
    version_id: str | None = None,
    part: int | None = None,
) -> _Opened:
    """The whole GET of a small object on one worker thread: one metadata statement, the
    conditions, the range, the shards read and opened. A large object returns its first
    ``ONE_HOP_BYTES`` and the iterator of the rest (prefetching on the engine pool meanwhile).
    ``busy``: other requests are being served."""
    found, opened = _lookup_for_get(wh, bucket, key, headers, version_id, part)
    return _read_for_get(wh, found, opened, busy)


def _lookup_for_get(
    wh: Warehouse, bucket: str, key: str, headers: dict[str, str], version_id: str | None, part: int | None
) -> tuple[ObjectRead, _Opened]:
    """The metadata half of a GET: the version (and its first chunk records), the status its
    conditions force, the range (of the ``part`` asked for, if one was)."""
    found = wh.open_object(bucket, key, version_id=version_id)
    v = found.version
    status = evaluate_read_conditions(headers, v)
    if status is not None:
        return found, _Opened(v, status)
    if part is not None:
        rng, count = part_range(v, part)
        return found, _Opened(v, None, rng, count)
    try:
        rng = parse_range(headers.get("range"), v.size)
    except InvalidRange:
        raise s3_error("InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(v.size)) from None
    return found, _Opened(v, None, rng)


def _read_for_get(wh: Warehouse, found: ObjectRead, opened: _Opened, busy: bool, cached_only: bool = False) -> _Opened:
    """The data half of a GET: read (and verify) the first bytes, keep the iterator of the rest.
    ``cached_only``: from memory only, all on this thread (``WouldBlock`` otherwise)."""
    if opened.status is not None:
        return opened
    start, end = opened.rng or (0, opened.version.size)
    if end > start:
        # Read before the status line goes out, so that a chunk that cannot be read (too many
        # shards lost) is a proper S3 error, not a truncated 200.
        # Other requests in flight keep the cores busy: then a small read is done on this thread
        # alone (no hand-off to the engine pool and back); a lone request reads its chunks ahead.
        here = busy and end - start <= ONE_HOP_BYTES
        it = wh.read_object(found, start, end, prefetch=0 if here else READ_AHEAD, cached_only=cached_only)
        got = 0
        try:
            for piece in it:
                opened.pieces.append(piece)
                got += len(piece)
                if got >= end - start:
                    break
                if got >= ONE_HOP_BYTES:
                    opened.rest = it
                    break
        finally:
            if opened.rest is None:
                _close(it)
    return opened


async def _read_data(ctx: Context, found: ObjectRead, opened: _Opened, busy: bool) -> _Opened:
    """The data half of a GET whose metadata was read on the event loop.

    Up to ``ONE_HOP_BYTES`` whose shards are all in the page cache are read right here, on the
    loop: a worker thread and back cost more than the read (~40 thread switches per 1 MiB GET
    at concurrency 8, each a GIL hand-off; 2.6 against 1.9 ms of server CPU, bench/s3.py).
    Anything that would wait for a disk, or needs more than the data shards (a lost or bad
    shard), raises ``WouldBlock`` before any byte goes out, and the whole read is done again
    on a worker thread, which may wait, and reports and heals what it finds."""
    start, end = opened.rng or (0, opened.version.size)
    if opened.status is None and end - start <= ONE_HOP_BYTES:
        try:
            return _read_for_get(ctx.warehouse, found, opened, True, cached_only=True)
        except WouldBlock:
            opened.pieces.clear()
    return await ctx.offload.run(_read_for_get, ctx.warehouse, found, opened, busy)


def _close(it: Iterator[bytes]) -> None:
    """Close a reader's generator: its prefetches are cancelled."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


@handles("GetObject")
async def get_object(ctx: Context) -> Response:
    version_id, part = _check_read_params(ctx)
    headers = ctx.request.headers
    busy = ctx.offload.in_flight > 0
    wh = ctx.warehouse
    if _lookup_here(ctx, version_id):
        found, opened = _lookup_for_get(wh, ctx.bucket, ctx.key, headers, None, part)
        if found.version.inline_data is not None:
            # The bytes are in the metadata row: opening them (AEAD over at most the inline
            # limit, 64 KiB by default) takes microseconds; no disk is touched.
            opened = _read_for_get(wh, found, opened, True)
        else:
            opened = await _read_data(ctx, found, opened, busy)
    else:
        opened = await ctx.offload.run(_open_for_get, wh, ctx.bucket, ctx.key, headers, busy, version_id, part)
    v = opened.version
    named = version_id is not None
    if opened.status == 304:
        return version_headers(object_headers(Response(304), v), v, named=named)
    if opened.status == 412:
        raise precondition_failed("If-Match" if "if-match" in headers else "If-Unmodified-Since")
    rng = opened.rng
    start, end = rng or (0, v.size)
    resp = _read_headers(ctx, Response(206 if rng else 200), v, rng, part)
    version_headers(resp, v, named=named)
    resp.content_type = v.content_type
    resp.header("content-length", end - start)
    if rng:
        resp.header("content-range", f"bytes {start}-{end - 1}/{v.size}")
    resp.header("x-amz-mp-parts-count", opened.parts_count)
    try:
        _overrides(ctx, resp)
    except BaseException:
        if opened.rest is not None:
            _close(opened.rest)
        raise
    if opened.rest is None:
        resp.body = opened.pieces
    else:
        resp.body = _stream(ctx, opened.pieces, opened.rest)
    return resp


async def _stream(ctx: Context, first: list[bytes], pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    for piece in first:
        yield piece
    # Not closed here if the client goes away: a worker may be inside next() at that moment;
    # the generator's own cleanup (cancelling prefetches) runs when it is collected.
    async for piece in ctx.offload.iterate(pieces):
        yield piece


# --- DELETE --------------------------------------------------------------------------------------------


def bypass_governance(ctx: Context) -> bool:
    """``x-amz-bypass-governance-retention: true`` (the permission is checked by the service)."""
    return ctx.request.headers.get("x-amz-bypass-governance-retention", "").strip().lower() == "true"


@handles("DeleteObject")
async def delete_object(ctx: Context) -> Response:
    version_id = requested_version(ctx)
    outcome = await ctx.offload.run(
        lambda: ctx.warehouse.delete_object(ctx.bucket, ctx.key, version_id, bypass_governance=bypass_governance(ctx))
    )
    resp = Response(204)
    if outcome.delete_marker:
        resp.header("x-amz-delete-marker", "true")
    if outcome.version_id is not None:
        resp.header("x-amz-version-id", outcome.version_id)
    return resp


__all__ = ["quote"]
