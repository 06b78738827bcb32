"""What a handler gets: the server's state (``AdminState``) and one request (``Call``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from datawarehouse.api.admin.auth import AdminCaller, LookupCaller
from datawarehouse.api.admin.tokens import TokenStore
from datawarehouse.api.s3.http import Offload
from datawarehouse.clock import Clock
from datawarehouse.service.maintenance import Jobs
from datawarehouse.service.warehouse import Warehouse

if TYPE_CHECKING:
    from datawarehouse.api.admin.registry import Operation
    from datawarehouse.service.audit.log import AuditLog

T = TypeVar("T")


@dataclass
class AdminState:
    warehouse: Warehouse
    lookup_caller: LookupCaller
    clock: Clock
    offload: Offload
    jobs: Jobs
    audit: AuditLog | None = None
    tokens: TokenStore[AdminCaller] = field(default_factory=TokenStore)
    started_at: datetime | None = None
    started_monotonic: float = field(default_factory=time.monotonic)


@dataclass
class Call:
    op: Operation
    state: AdminState
    request_id: str
    caller: AdminCaller | None
    path: dict[str, str]
    query: dict[str, Any]
    body: Any
    bucket: str = ""  # for the audit record
    detail: dict[str, object] = field(default_factory=dict)  # for the audit record (redacted there)

    @property
    def wh(self) -> Warehouse:
        return self.state.warehouse

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking service call, on the server's worker threads."""
        return await self.state.offload.run(fn, *args)
