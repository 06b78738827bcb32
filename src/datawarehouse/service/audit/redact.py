"""What must never reach the audit log: signatures, credentials' secret parts, tokens.

The log is kept for a year under a lock nobody can lift, exported and forwarded to other
systems: a secret written once could never be removed. So records are redacted before they are
made, by name (query parameters and detail keys that carry secrets) and by shape (a SigV4
``Authorization`` value that slipped into a free-text field).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote_plus

REDACTED = "REDACTED"
# Query parameters of presigned URLs and POST policies whose values are secret. The credential
# scope (X-Amz-Credential: key id/date/region/service) is not secret and is kept.
SECRET_PARAMS = frozenset(
    {"x-amz-signature", "x-amz-security-token", "signature", "awsaccesskeyid-signature", "x-amz-credential-secret"}
)
# Detail keys whose values are secret, matched on the lowercased key with '-' and '_' removed.
_SECRET_WORDS = ("secret", "password", "passphrase", "signature", "authorization", "token", "privatekey")
_SIGNATURE_IN_TEXT = re.compile(r"(?i)(signature\s*[=:]\s*)[0-9a-z+/=]+")


_SECRET_WORD = re.compile("|".join(_SECRET_WORDS))


def is_secret_name(name: str) -> bool:
    return _SECRET_WORD.search(name.lower().replace("-", "").replace("_", "")) is not None


@functools.lru_cache(maxsize=1024)
def _query_name(raw_name: str) -> tuple[str, bool]:
    """A raw query parameter name: decoded, and whether its value is secret. Cached: every
    request carries the same few names (a presigned URL's ``X-Amz-*``), and the audit writer
    redacts every request's query; the bound keeps made-up names from growing it."""
    name = unquote_plus(raw_name) if "%" in raw_name or "+" in raw_name else raw_name
    return name, name.lower() in SECRET_PARAMS or is_secret_name(name)


def redact_text(text: str) -> str:
    """Blank any ``Signature=...`` run inside free text (an Authorization header value, a URL)."""
    return _SIGNATURE_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


def redact_query(query: str) -> str:
    """A request's query string with secret parameter values replaced by ``REDACTED``; the
    parameter names stay (that a URL was presigned is worth knowing)."""
    if not query:
        return ""
    out = []
    # Piece by piece on the raw string (every request pays this, so no full parse and re-quote):
    # a name is decoded only to be recognised (a percent-encoded "X-Amz-Signatur%65" is still a
    # signature), and a kept value stays as the client encoded it.
    for piece in query.lstrip("?").split("&"):
        raw_name, eq, raw_value = piece.partition("=")
        name, secret = _query_name(raw_name)
        if secret:
            out.append(f"{quote(name, safe='-_.~')}={REDACTED}")
        elif "ignature" in (text := unquote_plus(raw_value) if "%" in raw_value else raw_value).lower():
            out.append(f"{quote(name, safe='-_.~')}={quote(redact_text(text), safe='-_.~/')}")
        else:
            out.append(piece if eq or raw_value else raw_name + "=")
    return "&".join(out)


def redact_detail(detail: Mapping[str, object] | None) -> dict[str, str]:
    """String values (others are converted), secret ones replaced, signatures blanked."""
    out: dict[str, str] = {}
    for name, value in (detail or {}).items():
        out[str(name)] = REDACTED if is_secret_name(str(name)) else redact_text(str(value))
    return out
