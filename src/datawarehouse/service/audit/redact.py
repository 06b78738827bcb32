"""What must never reach the audit log: signatures, credentials' secret parts, tokens.

The log is kept for a year under a lock nobody can lift, exported and forwarded to other
systems: a secret written once could never be removed. So records are redacted before they are
made, by name (query parameters and detail keys that carry secrets) and by shape (a SigV4
``Authorization`` value that slipped into a free-text field).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

REDACTED = "REDACTED"
# Query parameters of presigned URLs and POST policies whose values are secret. The credential
# scope (X-Amz-Credential: key id/date/region/service) is not secret and is kept.
SECRET_PARAMS = frozenset(
    {"x-amz-signature", "x-amz-security-token", "signature", "awsaccesskeyid-signature", "x-amz-credential-secret"}
)
# Detail keys whose values are secret, matched on the lowercased key with '-' and '_' removed.
_SECRET_WORDS = ("secret", "password", "passphrase", "signature", "authorization", "token", "privatekey")
_SIGNATURE_IN_TEXT = re.compile(r"(?i)(signature\s*[=:]\s*)[0-9a-z+/=]+")


def is_secret_name(name: str) -> bool:
    flat = name.lower().replace("-", "").replace("_", "")
    return any(word in flat for word in _SECRET_WORDS)


def redact_text(text: str) -> str:
    """Blank any ``Signature=...`` run inside free text (an Authorization header value, a URL)."""
    return _SIGNATURE_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


def redact_query(query: str) -> str:
    """A request's query string with secret parameter values replaced by ``REDACTED``; the
    parameter names stay (that a URL was presigned is worth knowing)."""
    if not query:
        return ""
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    out = []
    for name, value in pairs:
        value = REDACTED if name.lower() in SECRET_PARAMS or is_secret_name(name) else redact_text(value)
        out.append(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~/')}")
    return "&".join(out)


def redact_detail(detail: Mapping[str, object] | None) -> dict[str, str]:
    """String values (others are converted), secret ones replaced, signatures blanked."""
    out: dict[str, str] = {}
    for name, value in (detail or {}).items():
        out[str(name)] = REDACTED if is_secret_name(str(name)) else redact_text(str(value))
    return out
