"""Authentication look-ups for the S3 endpoint: access key id -> ``Identity``, on the hot path.

``IdentityCache`` keeps resolved keys (and refusals) until any IAM change clears it; a look-up
that raced with a change is not cached (generation counter, as the Warehouse's bucket cache).
Expiry is compared with the caller's clock at every look-up, cached or not.

``LastUsedTracker`` records when keys were used. It is deliberately best-effort: the instants are
kept in memory and written to the metadata database in one batch at most every ``interval``
(and when the service closes), never journaled (a hot counter would flood the journal); a crash
or a rebuilt index loses at most the last interval, and ``last_used_at`` only moves forward.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from datawarehouse.errors import AccessKeyExpired, CredentialsRefused, DwhError
from datawarehouse.ids import DomainId, TenantId, UserId
from datawarehouse.records import PrincipalKind

log = logging.getLogger(__name__)

MAX_CACHED = 10_000  # identities kept; the cache starts over when it is full


@dataclass(frozen=True)
class Identity:
    """Who an access key speaks for, with what the authorizer needs.

    ``policies``: the identity policies of the principal — attached to the user directly, then
    via its groups — as (name, document) pairs, in that order without duplicates; a ``None``
    document names a policy the tenant does not store (a built-in policy, resolved by the policy
    module). For a service account they are the parent user's, and ``session_policy`` narrows
    them (effective permissions = parent's ∩ session policy). Root has no policies: it may do
    everything in the default tenant. ``secret`` (for signature checks) is never in ``repr``.
    """

    tenant_id: TenantId
    tenant_name: str
    domain_id: DomainId
    kind: PrincipalKind
    user_name: str
    user_id: UserId | None
    access_key_id: str
    secret: str = field(repr=False)
    policies: tuple[tuple[str, str | None], ...] = ()
    session_policy: str | None = None
    parent_user: str | None = None
    parent_user_id: UserId | None = None

    @property
    def is_root(self) -> bool:
        return self.kind is PrincipalKind.ROOT


@dataclass(frozen=True)
class Resolved:
    """A cache entry: an identity, or the refusal to give for the key (disabled key, user,
    parent or tenant), and the key's expiry (checked at every look-up)."""

    identity: Identity | None
    refusal: CredentialsRefused | None = None
    expires_at: datetime | None = None


class IdentityCache:
    def __init__(self) -> None:
        self._entries: dict[str, Resolved | None] = {}
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, access_key_id: str) -> tuple[bool, Resolved | None]:
        """(found, entry); an entry of ``None`` is a cached unknown key."""
        with self._lock:
            if access_key_id in self._entries:
                return True, self._entries[access_key_id]
        return False, None

    def put(self, access_key_id: str, entry: Resolved | None, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # an IAM change landed while this entry was read
            if len(self._entries) >= MAX_CACHED:
                self._entries.clear()
            self._entries[access_key_id] = entry

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


def verdict(entry: Resolved | None, access_key_id: str, now: datetime) -> Identity | None:
    """What a look-up answers for a (cached) entry at ``now``."""
    if entry is None:
        return None
    if entry.refusal is not None:
        raise type(entry.refusal)(str(entry.refusal))  # a fresh exception per request
    if entry.expires_at is not None and now >= entry.expires_at:
        raise AccessKeyExpired(f"access key {access_key_id} expired at {entry.expires_at.isoformat()}")
    return entry.identity


class LastUsedTracker:
    """Best-effort ``last_used_at`` of access keys (see module docstring)."""

    def __init__(self, write: Callable[[Mapping[str, datetime]], None], interval: timedelta = timedelta(seconds=60)):
        self._write = write
        self._interval = interval
        self._pending: dict[str, datetime] = {}
        self._last_flush: datetime | None = None
        self._lock = threading.Lock()

    def touch(self, access_key_id: str, at: datetime) -> None:
        """Record a use; writes the batch when the interval has passed since the last write."""
        with self._lock:
            seen = self._pending.get(access_key_id)
            if seen is None or at > seen:
                self._pending[access_key_id] = at
            if self._last_flush is None:
                self._last_flush = at
            due = at - self._last_flush >= self._interval
        if due:
            self.flush(at)

    def pending(self, access_key_id: str) -> datetime | None:
        """A use not written yet (listings merge it with the stored value)."""
        with self._lock:
            return self._pending.get(access_key_id)

    def flush(self, at: datetime | None = None) -> None:
        """Write what is pending; on failure keep it for the next attempt (and log, without ids'
        secrets — there are none here)."""
        with self._lock:
            batch, self._pending = self._pending, {}
            if at is not None:
                self._last_flush = at
        if not batch:
            return
        try:
            self._write(batch)
        except DwhError as exc:
            log.warning("could not record access key use (%d keys): %s", len(batch), exc)
            with self._lock:
                for key, when in batch.items():
                    if key not in self._pending or self._pending[key] < when:
                        self._pending[key] = when
