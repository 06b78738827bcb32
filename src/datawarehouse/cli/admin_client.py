"""``AdminClient``: a small SigV4-signing JSON client of the admin API (stdlib HTTP only).

It signs as AWS SDKs do for S3 (service ``s3``; the body's SHA-256 in ``x-amz-content-sha256``),
with the same pure signing functions the server verifies with, or presents a bearer token. Errors
come back as ``RemoteError`` with the server's status, code and message (never a secret: the
request's credentials are not in any message or repr).
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from datawarehouse.api.s3.canonical import canonical_query, canonical_request, header_map, string_to_sign, uri_encode
from datawarehouse.api.s3.signing import ALGORITHM, derive_signing_key, sign
from datawarehouse.errors import InvalidInput, RemoteError

PREFIX = "/admin/v1"
SERVICE = "s3"


def segment(value: str) -> str:
    """One path segment, percent-encoded (a name can never add a segment)."""
    return quote(value, safe="")


class AdminClient:
    def __init__(
        self,
        endpoint: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        token: str | None = None,
        region: str = "us-east-1",
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"--endpoint: expected http://HOST:PORT or https://HOST:PORT, got {endpoint!r}")
        if token is None and not (access_key and secret_key):
            raise InvalidInput(
                "admin credentials: give --access-key and --secret-key, set DWH_ACCESS_KEY and DWH_SECRET_KEY "
                "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or use a profile"
            )
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.endpoint = endpoint
        self.access_key = access_key
        self._secret_key = secret_key
        self._token = token
        self.region = region
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AdminClient({self.endpoint!r}, access_key={self.access_key!r})"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    def sign_headers(
        self, method: str, path: str, query: list[tuple[str, str]], body: bytes, now: datetime | None = None
    ) -> dict[str, str]:
        """The headers of a SigV4-signed request (or of a bearer-token one)."""
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self.host_header, "x-amz-content-sha256": payload}
        if body:
            headers["content-type"] = "application/json"
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
            return headers
        assert self.access_key is not None and self._secret_key is not None
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        headers["x-amz-date"] = stamp
        scope = f"{stamp[:8]}/{self.region}/{SERVICE}/aws4_request"
        signed = sorted(headers)
        canonical = canonical_request(method, path, query, header_map(headers.items()), signed, payload)
        key = derive_signing_key(self._secret_key, stamp[:8], self.region, SERVICE)
        signature = sign(key, string_to_sign(stamp, scope, canonical))
        headers["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
        )
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        body: Any = None,
    ) -> Any:
        """``path`` below /admin/v1 (segments already encoded with ``segment``); returns the
        decoded JSON answer (``None`` for 204)."""
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        data = b"" if body is None else json.dumps(body).encode()
        full = PREFIX + path
        headers = self.sign_headers(method, full, pairs, data)
        target = full + ("?" + canonical_query(pairs) if pairs else "")
        conn_cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=data or None, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"cannot reach the admin API at {self.endpoint}: {exc}") from None
        finally:
            conn.close()
        return decode(resp.status, raw)


def decode(status: int, raw: bytes) -> Any:
    if status == 204 or not raw:
        if status >= 400:
            raise RemoteError(f"the server answered HTTP {status}", status=status)
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise RemoteError(f"the server answered HTTP {status} with a body that is not JSON", status=status) from None
    if status >= 400:
        err = doc.get("error", {}) if isinstance(doc, dict) else {}
        code = str(err.get("code", "Error"))
        raise RemoteError(f"{code}: {err.get('message', 'request failed')} (HTTP {status})", status=status, code=code)
    return doc


__all__ = ["AdminClient", "segment", "uri_encode"]
