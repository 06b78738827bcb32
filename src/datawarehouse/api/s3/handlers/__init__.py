"""S3 operation handlers, one module per area, registered by operation name.

A handler takes the request ``Context`` and returns a ``Response``; it parses, calls one service,
renders — nothing else. Operations with no handler answer ``NotImplemented``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datawarehouse.api.s3.http import Offload, Request, Response
from datawarehouse.api.s3.router import Endpoint
from datawarehouse.api.s3.sigv4 import AuthResult

if TYPE_CHECKING:
    from datawarehouse.service.warehouse import Warehouse


@dataclass
class Context:
    warehouse: Warehouse
    offload: Offload
    request: Request
    endpoint: Endpoint
    auth: AuthResult | None
    region: str
    lookup_secret: Callable[[str], str | None] | None = None  # for handlers that verify their own auth

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
        lifecycle,
        listing,
        multipart,
        objectlock,
        objects,
        post,
        tagging,
        versioning,
    )
