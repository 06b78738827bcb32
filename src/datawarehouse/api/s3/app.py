"""The S3 ASGI application: authenticate, route, dispatch, render errors the S3 way.

Every failure becomes an S3 error document with the request id; nothing below ever shows a
client a stack trace. Unexpected exceptions are logged (without request secrets) and answered
``InternalError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from datawarehouse.api.s3 import authn
from datawarehouse.api.s3.authz import qualify
from datawarehouse.api.s3.errors import (
    S3Error,
    access_denied,
    internal_error,
    key_too_long,
    not_implemented,
    s3_error_from,
)
from datawarehouse.api.s3.handlers import HANDLERS, Context, load_all
from datawarehouse.api.s3.handlers.copy import copy_source
from datawarehouse.api.s3.handlers.cors import cors_headers, load_rules, match_rule
from datawarehouse.api.s3.http import (
    Message,
    Offload,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    error_response,
    send_response,
)
from datawarehouse.api.s3.router import OPERATIONS, Endpoint, route
from datawarehouse.api.s3.sigv4 import SignedRequest
from datawarehouse.api.s3.worker import INTERNAL_PREFIX, LOCAL_WRITES, PassOn
from datawarehouse.clock import Clock, SystemClock
from datawarehouse.errors import DwhError
from datawarehouse.ids import split_bucket_name
from datawarehouse.service.access import ANONYMOUS, Authorizer, Caller
from datawarehouse.service.naming import MAX_KEY_BYTES, SNAPSHOT_MARK, is_system_bucket
from datawarehouse.service.warehouse import Warehouse

if TYPE_CHECKING:
    from datawarehouse.api.s3.worker import InternalEndpoint
    from datawarehouse.service.audit.log import AuditLog

log = logging.getLogger(__name__)
AUDIT_EXPIRY_INTERVAL = 3600.0
ADMIN_PREFIX = "/admin/v1"  # the admin API (api/admin); the bucket name "admin" is reserved for it

# Operations that authorize themselves in their handler: a browser POST is signed inside its form,
# DeleteObjects is decided key by key (denied keys are reported in the result), and a CORS
# preflight needs no permission.
SELF_AUTHORIZED = frozenset({"CorsPreflight", "PostObject", "DeleteObjects"})
# What a snapshot view (a ``<bucket>--snap--<name>`` bucket) answers; every other operation on
# it is refused (CreateBucket goes on to the handler, which refuses the reserved name).
SNAPSHOT_OK = frozenset(
    {op for op in OPERATIONS if op.startswith(("Get", "Head", "List"))} | {"CorsPreflight", "CreateBucket"}
)
# Request ids: unique, not secret (S3's are neither). A random start and a counter: no system
# call per request (os.urandom releases the GIL, and the event loop then waits to get it back).
_REQUEST_IDS = itertools.count(secrets.randbits(63))


class _PassedOn(Exception):
    """Raised once routing shows that a read worker does not serve the request (caught in
    ``S3App.__call__``, which hands it to the primary before any of its body is read)."""


def new_request_id() -> str:
    return f"{next(_REQUEST_IDS) & 0xFFFFFFFFFFFFFFFF:016X}"


class S3App:
    def __init__(
        self,
        warehouse: Warehouse,
        lookup_caller: Callable[[str], Caller | None],
        *,
        domain: str | None = None,
        region: str = "us-east-1",
        clock: Clock | None = None,
        threads: int = 16,
        lifecycle_interval: float = 0,
        audit: AuditLog | None = None,
        secure: bool = False,
        record_audit: Callable[..., None] | None = None,
        internal: InternalEndpoint | None = None,
        pass_on: PassOn | None = None,
        signature_v2: bool = True,
    ) -> None:
        """``lookup_caller``: the principal (with its secret and policies) of an access key id,
        None for an unknown key; it may raise a ``DwhError`` for a disabled or expired key.
        ``audit``: the data directory's audit log (records, expiry, the admin API's queries);
        ``record_audit``: where request records go instead (a read worker's link to the
        primary's log; called with ``AuditLog.record``'s keywords). ``internal``: the primary's
        endpoint for its read workers; ``pass_on``: a read worker's way to the primary, for the
        requests it does not serve (both api/s3/worker.py). ``signature_v2``: accept AWS
        Signature Version 2 (``server.signature_v2``; version 4 is always accepted)."""
        from datawarehouse.api.admin.app import AdminApp

        load_all()
        self.lifecycle_interval = lifecycle_interval
        self._background: asyncio.Task[None] | None = None
        self.warehouse = warehouse
        self.lookup_caller = lookup_caller
        self.domain = domain
        self.region = region
        self.clock = clock or SystemClock()
        self.offload = Offload(threads)
        self.authorizer = Authorizer(warehouse)
        self.audit = audit
        self.record_audit = record_audit or (audit.record if audit is not None else None)
        self.internal = internal
        self.pass_on = pass_on
        self.secure = secure
        self.signature_v2 = signature_v2
        self._audit_expiry: asyncio.Task[None] | None = None
        self.admin = AdminApp(warehouse, lookup_caller, audit=audit, clock=self.clock, offload=self.offload)

    def lookup_secret(self, access_key: str) -> str | None:
        caller = self.lookup_caller(access_key)
        return caller.secret if caller is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if self.internal is not None and self.internal.from_worker(scope):
            if self.internal.is_call(scope):
                await self.internal.handle(scope, receive, send)
                return
            scope = self.internal.with_client(scope)
        request_id = new_request_id()
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            if self.pass_on is not None:
                await self.pass_on(scope, receive, send, request_id)
            else:
                await self.admin(scope, receive, send)
            return
        head = scope.get("method") == "HEAD"
        request: Request | None = None
        started = time.perf_counter()
        error = ""
        try:
            request = Request.from_scope(scope, receive, request_id)
            request.notes["scheme"] = scope.get("scheme", "http")
            # A read worker never passes the internal path on, whatever it routes to.
            response = await self._handle(
                request, may_pass_on=self.pass_on is not None and not path.startswith(INTERNAL_PREFIX)
            )
        except _PassedOn:
            assert self.pass_on is not None
            await self.pass_on(scope, receive, send, request_id)
            return
        except S3Error as err:
            response, error = error_response(err, request_id), err.code
        except DwhError as exc:
            mapped = s3_error_from(exc)
            response, error = error_response(mapped, request_id), mapped.code
        except Exception:
            log.exception("request %s failed", request_id)
            response, error = error_response(internal_error(), request_id), "InternalError"
        if request is None or request.body_left_unread:
            response.header("connection", "close")
        if self.record_audit is None:
            await send_response(send, response, request_id, head_only=head)
            return
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal sent
            body = message.get("body")
            if isinstance(body, bytes | bytearray | memoryview):
                sent += len(body)
            await send(message)

        try:
            await send_response(counting_send, response, request_id, head_only=head)
        finally:
            self._audit(scope, request, response.status, error, sent, time.perf_counter() - started, request_id)

    def _audit(
        self,
        scope: Scope,
        request: Request | None,
        status: int,
        error: str,
        sent: int,
        seconds: float,
        request_id: str,
    ) -> None:
        """One audit record per request, allowed or not (never its secrets: the audit log has no
        field for the Authorization header and redacts signatures from the query)."""
        assert self.record_audit is not None
        caller: Caller = request.notes.get("caller", ANONYMOUS) if request is not None else ANONYMOUS
        endpoint: Endpoint | None = request.notes.get("endpoint") if request is not None else None
        headers = request.headers if request is not None else {}
        try:
            received = int(headers.get("x-amz-decoded-content-length") or headers.get("content-length") or 0)
        except ValueError:
            received = 0
        try:
            self.record_audit(
                operation=endpoint.operation if endpoint is not None else f"{scope.get('method', '?')} (unrouted)",
                tenant=caller.principal.tenant or "",
                principal=caller.name,
                access_key=caller.access_key or "",
                source_ip=request.client or "" if request is not None else "",
                bucket=(endpoint.bucket or "") if endpoint is not None else "",
                key=(endpoint.key or "") if endpoint is not None else "",
                version_id=request.param("versionId") or "" if request is not None else "",
                status=status,
                error=error,
                bytes_in=max(0, received),
                bytes_out=sent,
                duration_us=int(seconds * 1_000_000),
                request_id=request_id,
                user_agent=headers.get("user-agent", ""),
                query=request.raw_query if request is not None else "",
            )
        except DwhError:
            log.exception("audit: request %s could not be recorded", request_id)

    def _caller(self, access_key: str) -> Caller:
        caller = self.lookup_caller(access_key)
        if caller is None:  # verify_request already refused unknown keys
            raise access_denied("Access Denied")
        return caller

    async def _handle(self, request: Request, *, may_pass_on: bool = False) -> Response:
        endpoint = route(request.method, request.raw_path, request.query, request.headers, self.domain)
        if may_pass_on and self.pass_on is not None and self.pass_on.takes(endpoint.operation):
            raise _PassedOn
        request.notes["endpoint"] = endpoint
        if self.warehouse.engine.follower:
            # Another process writes: whatever it committed since the last request is seen here.
            self.warehouse.refresh_if_changed()
        found: list[Caller] = []

        def secret_of(access_key: str) -> str | None:
            caller = self.lookup_caller(access_key)
            if caller is None:
                return None
            found.append(caller)
            return caller.secret

        auth = authn.verify(
            SignedRequest(request.method, request.raw_path, request.query, request.header_list),
            now=self.clock.now(),
            lookup_secret=secret_of,
            signature_v2=self.signature_v2,
            domain=self.domain,
        )
        caller = ANONYMOUS if auth is None else (found[-1] if found else self._caller(auth.access_key_id))
        request.notes["caller"] = caller
        if auth is not None and auth.session_token is not None:
            raise access_denied("This server issues no temporary credentials")
        if endpoint.bucket:
            bare = split_bucket_name(endpoint.bucket)[1]
            if is_system_bucket(bare):
                raise access_denied("system buckets are not reachable over S3")
            if SNAPSHOT_MARK in bare and endpoint.operation not in SNAPSHOT_OK:
                raise access_denied("snapshots are read-only")
            qualified = qualify(caller, endpoint.bucket)
            if qualified != endpoint.bucket:
                endpoint = Endpoint(endpoint.operation, qualified, endpoint.key)
                request.notes["endpoint"] = endpoint
        if endpoint.key is not None and len(endpoint.key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise key_too_long(MAX_KEY_BYTES)
        if (
            may_pass_on
            and endpoint.operation in LOCAL_WRITES
            and self.pass_on is not None
            and endpoint.bucket
            and not self.pass_on.writes_here(self.warehouse, request.headers, endpoint.bucket)
        ):
            raise _PassedOn  # nothing of the body was read: the primary gets the whole request
        handler = HANDLERS.get(endpoint.operation)
        if handler is None:
            raise not_implemented(f"{endpoint.operation} is not implemented by this server")
        ctx = Context(
            self.warehouse,
            self.offload,
            request,
            endpoint,
            auth,
            self.region,
            self.lookup_secret,
            caller=caller,
            authorizer=self.authorizer,
            secure=self.secure or request.notes.get("scheme") == "https",
            clock=self.clock,
            lookup_caller=self.lookup_caller,
            signature_v2=self.signature_v2,
        )
        if endpoint.operation not in SELF_AUTHORIZED:
            copy = request.headers.get("x-amz-copy-source")
            await ctx.authorize(copy_source=copy_source(copy) if copy else None)
        try:
            response = await handler(ctx)
        except (DwhError, S3Error) as exc:
            resource = f"/{endpoint.bucket}" + (f"/{endpoint.key}" if endpoint.key else "") if endpoint.bucket else None
            err = exc if isinstance(exc, S3Error) else s3_error_from(exc, resource=resource)
            cors = await self._cors(ctx)  # a browser may read an error only with CORS headers
            if cors:
                err = S3Error(
                    err.code,
                    err.message,
                    http_status=err.http_status,
                    resource=err.resource,
                    extra=err.extra,
                    headers=(*err.headers, *cors),
                )
            if err is exc:
                raise
            raise err from exc
        response.headers.extend(await self._cors(ctx))
        return response

    async def _cors(self, ctx: Context) -> list[tuple[str, str]]:
        """A browser's actual request (Origin): the headers of the bucket's CORS rule for its
        origin and method, if any."""
        origin = ctx.request.headers.get("origin")
        if not origin or ctx.endpoint.bucket is None or ctx.endpoint.operation == "CorsPreflight":
            return []
        rules = await self.offload.run(load_rules, self.warehouse, ctx.bucket)
        rule = match_rule(rules, origin, ctx.request.method, [])
        return cors_headers(rule, origin, ctx.request.method) if rule is not None else []

    async def _lifecycle_loop(self) -> None:
        """The lifecycle job every ``lifecycle_interval`` seconds, on a worker thread; a failed
        run is logged and the next one tried (it never takes the server down)."""
        from datawarehouse.service import lifecycle_job

        while True:
            await asyncio.sleep(self.lifecycle_interval)
            try:
                report = await self.offload.run(lifecycle_job.run, self.warehouse)
            except Exception:
                log.exception("lifecycle job failed")
                continue
            if report.total_actions() or report.refused or report.skipped_locked or report.errors:
                log.info(
                    "lifecycle: %d expired, %d versions and %d markers deleted, %d uploads aborted, "
                    "%d kept (locked), %d refused, %d errors",
                    report.expired_current,
                    report.versions_deleted,
                    report.markers_removed,
                    report.uploads_aborted,
                    report.skipped_locked,
                    report.refused,
                    len(report.errors),
                )

    async def _audit_expiry_loop(self) -> None:
        """Audit segments past their retention removed every ``AUDIT_EXPIRY_INTERVAL`` seconds
        (the first run shortly after start); a failure is logged and retried next time."""
        assert self.audit is not None
        await asyncio.sleep(60)
        while True:
            try:
                removed = await self.offload.run(self.audit.expire)
                if removed:
                    log.info("audit: %d segments past their retention removed", removed)
            except Exception:
                log.exception("audit expiry failed")
            await asyncio.sleep(AUDIT_EXPIRY_INTERVAL)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.lifecycle_interval > 0:
                    self._background = asyncio.create_task(self._lifecycle_loop())
                if self.audit is not None:
                    self._audit_expiry = asyncio.create_task(self._audit_expiry_loop())
                if self.internal is not None:
                    await self.internal.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in (self._background, self._audit_expiry):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if self.internal is not None:
                    await self.internal.close()
                self.admin.close()
                self.offload.close()
                if self.pass_on is not None:
                    self.pass_on.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
