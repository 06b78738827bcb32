"""``AdminApp``: the admin API as an ASGI app (Starlette), which ``S3App`` hands every request
under ``/admin/v1`` to.

Each route is one ``registry.Operation``; ``_endpoint`` wraps its handler with what every admin
request goes through, in order: read the body (bounded), authenticate, authorize
``dwh-admin:<Name>``, validate query and body against the declared schemas, run, answer JSON.
Whatever happens (denied, invalid, failed), the request is recorded in the audit log as
``admin:<Name>`` and the client gets a JSON error, never a stack trace.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from datawarehouse.api.admin.auth import AdminCaller, LookupCaller, authenticate, authorize
from datawarehouse.api.admin.call import AdminState, Call
from datawarehouse.api.admin.errors import AdminError, bad_request, from_dwh_error
from datawarehouse.api.admin.registry import Operation, load_all
from datawarehouse.api.admin.schema import check
from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3.canonical import parse_query
from datawarehouse.api.s3.http import Offload
from datawarehouse.clock import Clock, SystemClock
from datawarehouse.errors import DwhError
from datawarehouse.ids import DEFAULT_TENANT_NAME
from datawarehouse.service.maintenance import Jobs
from datawarehouse.service.warehouse import Warehouse

if TYPE_CHECKING:
    from datawarehouse.service.audit.log import AuditLog

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024  # admin documents are small; policies are the largest (a few KiB)
JSON = "application/json"


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(value: Any, status: int = 200, request_id: str = "") -> Response:
    body = json.dumps(value, default=json_default, separators=(",", ":")).encode()
    return Response(body, status, media_type=JSON, headers={"x-request-id": request_id})


def error_response(err: AdminError, request_id: str) -> Response:
    return json_response(err.document(request_id), err.status, request_id)


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


class AdminApp:
    def __init__(
        self,
        warehouse: Warehouse,
        lookup_caller: LookupCaller,
        *,
        audit: AuditLog | None = None,
        clock: Clock | None = None,
        offload: Offload | None = None,
    ) -> None:
        clock = clock or SystemClock()
        self.state = AdminState(
            warehouse=warehouse,
            lookup_caller=lookup_caller,
            clock=clock,
            offload=offload or Offload(4),
            jobs=Jobs(warehouse),
            audit=audit,
            started_at=clock.now(),
        )
        self.operations = load_all()
        routes = [Route(op.full_path, self._endpoint(op), methods=[op.method]) for op in self.operations]
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Stop background jobs (the S3 app calls this at shutdown)."""
        self.state.jobs.close()

    # --- one request ------------------------------------------------------------------------------

    def _endpoint(self, op: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._handle(op, request)

        return endpoint

    async def _handle(self, op: Operation, request: Request) -> Response:
        began = time.monotonic()
        request_id = new_request_id()
        call: Call | None = None
        caller: AdminCaller | None = None
        body = b""
        response: Response
        try:
            body = await read_body(request)
            raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
            query = parse_query(request.scope.get("query_string", b"").decode("latin-1"))
            if op.auth != "none":
                headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]]
                caller = authenticate(
                    method=request.method,
                    raw_path=raw_path,
                    query=query,
                    headers=headers,
                    body=body,
                    now=self.state.clock.now(),
                    lookup_caller=self.state.lookup_caller,
                    tokens=self.state.tokens,
                    allow_token=op.auth == "any",
                )
                decision = authorize(caller, op.action, self.state.clock.now())
                if not decision.allowed:
                    raise AdminError(403, "AccessDenied", f"{op.action} is not allowed ({decision.describe()})")
                check_scope(op, caller, request.path_params)
            call = Call(
                op=op,
                state=self.state,
                request_id=request_id,
                caller=caller,
                path=dict(request.path_params),
                query=parse_params(op, query),
                body=parse_body(op, body),
            )
            result = await op.handler(call)
            if op.response is None:
                response = Response(status_code=204, headers={"x-request-id": request_id})
            else:
                response = json_response(result, op.status, request_id)
        except AdminError as err:
            response = error_response(err, request_id)
        except DwhError as exc:
            response = error_response(from_dwh_error(exc), request_id)
        except ClientDisconnect:
            response = error_response(bad_request("the client disconnected before the body was complete"), request_id)
        except Exception:
            log.exception("admin request %s (%s) failed", request_id, op.name)
            response = error_response(
                AdminError(500, "InternalError", "the server could not complete the request (see its log)"),
                request_id,
            )
        self._audit(op.name, request, request_id, caller, call, body, response, began)
        return response

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own answers (no such route, method not allowed) in the API's JSON shape."""
        request_id = new_request_id()
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            err = AdminError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}")
        else:
            err = AdminError(404, "NoSuchRoute", f"no admin API route {request.url.path[:200]}")
        response = error_response(err, request_id)
        self._audit("NoSuchRoute", request, request_id, None, None, b"", response, time.monotonic())
        return response

    def _audit(
        self,
        name: str,
        request: Request,
        request_id: str,
        caller: AdminCaller | None,
        call: Call | None,
        body: bytes,
        response: Response,
        began: float,
    ) -> None:
        audit = self.state.audit
        if audit is None:
            return
        error = ""
        if response.status_code >= 400:
            try:
                error = json.loads(bytes(response.body))["error"]["code"]
            except (ValueError, KeyError, TypeError):
                error = "Error"
        detail: dict[str, object] = {"method": request.method, **dict(request.path_params)}
        if caller is not None:
            detail["auth"] = caller.via
        if call is not None:
            detail.update(call.detail)
        try:
            audit.record(
                operation=f"admin:{name}",
                tenant=caller.tenant if caller else "",
                principal=caller.display if caller else "",
                access_key=caller.access_key if caller else "",
                source_ip=request.client.host if request.client else "",
                bucket=(call.bucket if call else "") or str(request.path_params.get("bucket", "")),
                status=response.status_code,
                error=error,
                bytes_in=len(body),
                bytes_out=len(bytes(response.body)),
                duration_us=int((time.monotonic() - began) * 1_000_000),
                request_id=request_id,
                user_agent=request.headers.get("user-agent", ""),
                query=request.scope.get("query_string", b"").decode("latin-1"),
                detail=detail,
            )
        except DwhError as exc:  # closed at shutdown: the answer still goes out
            log.error("admin request %s not audited: %s", request_id, exc)


def check_scope(op: Operation, caller: AdminCaller, path: Mapping[str, Any]) -> None:
    """Tenant admins act in their own tenant; the server is the default tenant's business."""
    if caller.tenant == DEFAULT_TENANT_NAME or op.scope == "caller":
        return
    if op.scope == "tenant" and path.get("tenant") == caller.tenant:
        return
    where = "the server" if op.scope == "server" else f"tenant {str(path.get('tenant'))[:64]!r}"
    raise AdminError(403, "AccessDenied", f"{op.action}: {where} is not the business of tenant {caller.tenant!r}")


async def read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    size = whole_number(length)
    if length is not None and (size is None or size > MAX_BODY_BYTES):
        raise AdminError(413, "EntityTooLarge", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    pieces: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise AdminError(413, "EntityTooLarge", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def parse_params(op: Operation, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query values converted to the declared types and checked; unknown names are ignored
    (SigV4 presigning adds its own), a repeated name is refused."""
    declared = {p.name: p for p in op.query}
    out: dict[str, Any] = {}
    for name, value in pairs:
        param = declared.get(name)
        if param is None:
            continue
        if name in out:
            raise bad_request(f"query parameter {name}: given more than once")
        out[name] = _convert(value, param.schema, name)
        check(out[name], param.schema, f"query parameter {name}")
    for p in op.query:
        if p.required and p.name not in out:
            raise bad_request(f"query parameter {p.name}: required")
    return out


def _convert(value: str, schema: dict[str, Any], name: str) -> Any:
    types = schema.get("type")
    names = types if isinstance(types, list) else [types]
    if "integer" in names:
        number = whole_number(value.strip(), signed=True)
        if number is None:
            raise bad_request(f"query parameter {name}: expected an integer")
        return number
    if "boolean" in names:
        if value.lower() not in ("true", "false"):
            raise bad_request(f"query parameter {name}: expected true or false")
        return value.lower() == "true"
    return value


def parse_body(op: Operation, body: bytes) -> Any:
    if op.request is None:
        if body.strip():
            raise bad_request(f"{op.name} takes no request body")
        return None
    if not body.strip():
        body = b"{}"
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise bad_request("the body is not valid JSON (UTF-8)", "MalformedJSON") from None
    check(doc, op.request, "body")
    return doc
