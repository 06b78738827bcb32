"""Short-lived bearer tokens the admin API issues to a SigV4-authenticated caller.

A token is 32 random bytes (url-safe base64); the server keeps only its SHA-256 with the caller
it stands for and its expiry, in memory (a restart revokes every token). Looking a token up by
its digest compares digests, never the token, so its timing reveals nothing usable about it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Generic, Literal, TypeVar

DEFAULT_TTL: Final = timedelta(minutes=15)
MIN_TTL: Final = timedelta(seconds=60)
MAX_TTL: Final = timedelta(hours=12)
MAX_TOKENS: Final = 10_000  # live tokens kept; issuing more refuses (a client leaking tokens)

C = TypeVar("C")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _Entry(Generic[C]):
    caller: C
    expires_at: datetime


@dataclass(frozen=True)
class Lookup(Generic[C]):
    state: Literal["live", "expired", "unknown"]
    digest: str
    caller: C | None = None


class TokenStore(Generic[C]):
    def __init__(self) -> None:
        self._entries: dict[str, _Entry[C]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenStore({len(self._entries)} tokens)"

    def issue(self, caller: C, now: datetime, ttl: timedelta) -> tuple[str, str, datetime]:
        """(token, its digest, expiry) — the token is shown to the client once and never kept."""
        token = secrets.token_urlsafe(32)
        digest = token_digest(token)
        expires_at = now + ttl
        with self._lock:
            self._purge(now)
            if len(self._entries) >= MAX_TOKENS:
                from datawarehouse.errors import Conflict

                raise Conflict(f"too many live admin tokens ({MAX_TOKENS}); revoke some or wait for them to expire")
            self._entries[digest] = _Entry(caller, expires_at)
        return token, digest, expires_at

    def resolve(self, token: str, now: datetime) -> Lookup[C]:
        """A live token's caller; else whether it expired or is unknown (never issued, revoked)."""
        digest = token_digest(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return Lookup("unknown", digest)
            if entry.expires_at <= now:
                del self._entries[digest]
                return Lookup("expired", digest)
            return Lookup("live", digest, entry.caller)

    def revoke(self, digest: str) -> bool:
        with self._lock:
            return self._entries.pop(digest, None) is not None

    def _purge(self, now: datetime) -> None:
        for digest in [d for d, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[digest]
