"""SigV4 cryptography: signing-key derivation (cached), signatures, chunk and trailer chaining.

Kept apart from request parsing (``sigv4``) so the aws-chunked decoder can chain chunk
signatures without knowing anything about requests. Secrets and derived keys never appear in
reprs, and every signature comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

ALGORITHM: Final = "AWS4-HMAC-SHA256"
TERMINATOR: Final = "aws4_request"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_SIGNATURE = re.compile("[0-9a-f]{64}")


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    key = hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    key = hmac_sha256(key, region)
    key = hmac_sha256(key, service)
    return hmac_sha256(key, TERMINATOR)


def sign(signing_key: bytes, string_to_sign: str) -> str:
    """The lower-case hex signature of ``string_to_sign``."""
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_equal(expected: str, provided: str) -> bool:
    """Constant-time comparison; anything not shaped like a signature simply does not match."""
    candidate = provided.lower()
    if not _SIGNATURE.fullmatch(candidate):
        return False
    return hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii"))


class SigningKeyCache:
    """LRU of derived signing keys per (secret, date, region, service).

    A key is valid for one day and one scope, and every request of that day reuses it, so the four
    chained HMACs run once per key a day instead of per request. Entries are keyed by a SHA-256 of
    the secret, never the secret itself; thread-safe because servers verify on worker threads.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[tuple[bytes, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigningKeyCache(maxsize={self._maxsize}, size={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    def signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        entry = (hashlib.sha256(secret.encode("utf-8")).digest(), date, region, service)
        with self._lock:
            key = self._entries.get(entry)
            if key is not None:
                self._entries.move_to_end(entry)
                return key
        key = derive_signing_key(secret, date, region, service)
        with self._lock:
            self._entries[entry] = key
            self._entries.move_to_end(entry)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return key

    def clear(self) -> None:
        """Drop every key (for example after secrets were rotated or revoked)."""
        with self._lock:
            self._entries.clear()


DEFAULT_KEY_CACHE: Final = SigningKeyCache()


@dataclass(frozen=True, slots=True, eq=False)
class SigningContext:
    """What verifying an aws-chunked body needs from the verified request.

    ``timestamp`` is the request's X-Amz-Date (``YYYYMMDDTHHMMSSZ``), ``scope`` the credential scope
    (``date/region/s3/aws4_request``), ``seed_signature`` the request's own (verified) signature
    that starts the chunk chain. The key and the seed are hidden from repr.
    """

    signing_key: bytes = field(repr=False)
    timestamp: str
    scope: str
    seed_signature: str = field(repr=False)

    def chunk_signature(self, previous_signature: str, chunk_sha256_hex: str) -> str:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.timestamp,
                self.scope,
                previous_signature,
                EMPTY_SHA256,
                chunk_sha256_hex,
            )
        )
        return sign(self.signing_key, string_to_sign)

    def trailer_signature(self, previous_signature: str, trailer_sha256_hex: str) -> str:
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256-TRAILER", self.timestamp, self.scope, previous_signature, trailer_sha256_hex)
        )
        return sign(self.signing_key, string_to_sign)
