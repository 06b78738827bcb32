"""S3 operation handlers, one module per area, registered by operation name.

A handler takes the request ``Context`` and returns a ``Response``; it parses, calls one service,
renders — nothing else. Operations with no handler answer ``NotImplemented``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datawarehouse.api.s3 import authz
from datawarehouse.api.s3.http import Offload, Request, Response
from datawarehouse.api.s3.router import Endpoint
from datawarehouse.api.s3.sigv4 import AuthResult
from datawarehouse.clock import Clock, SystemClock
from datawarehouse.service.access import ANONYMOUS, Authorizer, Caller

if TYPE_CHECKING:
    from datawarehouse.service.warehouse import Warehouse


@dataclass
class Context:
    warehouse: Warehouse
    offload: Offload
    request: Request
    endpoint: Endpoint  # its bucket is tenant-qualified (authz.qualify)
    auth: AuthResult | None
    region: str
    lookup_secret: Callable[[str], str | None] | None = None  # for handlers that verify their own auth
    caller: Caller = ANONYMOUS
    authorizer: Authorizer | None = None
    secure: bool = False  # the connection is TLS (aws:SecureTransport)
    clock: Clock = field(default_factory=SystemClock)
    lookup_caller: Callable[[str], Caller | None] | None = None  # for handlers that verify their own auth
    signature_v2: bool = True  # AWS Signature Version 2 is accepted (server.signature_v2)
    post_signature: str | None = None  # a browser POST's signature version, once its form is verified

    def qualify(self, bucket: str) -> str:
        """A bucket named in the request (a copy source): in the caller's tenant unless qualified."""
        return authz.qualify(self.caller, bucket)

    async def authorize(
        self,
        *,
        caller: Caller | None = None,
        copy_source: tuple[str, str, str | None] | None = None,
        operation: str | None = None,
        key: str | None = None,
        version_id: str | None = None,
    ) -> None:
        """Raise AccessDenied unless the caller may do this request (or, with the overrides, one
        part of it: a key of DeleteObjects, the upload of a browser POST)."""
        if self.authorizer is None:
            return
        who = caller or self.caller
        source = authz.qualify(who, copy_source[0]) if copy_source is not None else None
        if self.authorizer.fast_allow(who, self.endpoint.bucket, source):
            return
        facts = authz.request_facts(
            self.request,
            self.endpoint,
            who,
            secure=self.secure,
            copy_source=copy_source,
            operation=operation,
            key=key,
            version_id=version_id,
            signature=self._signature(),
        )
        await self.offload.run(authz.check, self.authorizer, who, facts, self.clock.now())

    def _signature(self) -> tuple[str, str] | None:
        """(s3:signatureversion, s3:authType) of the request, None when it is anonymous."""
        if self.post_signature is not None:
            return self.post_signature, "POST"
        if self.auth is None:
            return None
        return self.auth.version, "REST-QUERY-STRING" if self.auth.presigned else "REST-HEADER"

    @property
    def bucket(self) -> str:
        assert self.endpoint.bucket is not None
        return self.endpoint.bucket

    @property
    def key(self) -> str:
        assert self.endpoint.key is not None
        return self.endpoint.key


Handler = Callable[[Context], Awaitable[Response]]
HANDLERS: dict[str, Handler] = {}


def handles(*operations: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in operations:
            HANDLERS[op] = fn
        return fn

    return register


def load_all() -> None:
    """Import every handler module so that it registers itself."""
    from datawarehouse.api.s3.handlers import (  # noqa: F401
        batch,
        buckets,
        copy,
        cors,
        encryption,
        lifecycle,
        listing,
        multipart,
        objectlock,
        objects,
        parts,
        policy,
        post,
        public_access,
        tagging,
        unconfigured,
        versioning,
    )
