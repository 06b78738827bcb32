"""Who is calling, and may they: SigV4 (the S3 verifier, reused) or a bearer token, then the
policy engine's answer for ``dwh-admin:<Name>`` on resource ``"*"``.

Admin requests must sign their body (``x-amz-content-sha256`` is the body's SHA-256, checked
here): the unsigned-payload and streaming modes S3 allows for large uploads have no use for small
JSON documents, and presigned URLs (always unsigned-payload) are thus refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from datawarehouse.api.admin.errors import AdminError, access_denied, bad_request
from datawarehouse.api.admin.tokens import TokenStore
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.sigv4 import PayloadMode, SignedRequest, verify_request
from datawarehouse.ids import DEFAULT_TENANT_NAME
from datawarehouse.service.policy import AuthzRequest, Decision, Policy, Principal, evaluate


@dataclass(frozen=True)
class Caller:
    """An authenticated caller. ``display`` names it in the audit log (``root``, ``tenant/user``)."""

    access_key: str
    principal: Principal
    display: str
    via: Literal["sigv4", "token"] = "sigv4"
    token_digest: str | None = field(default=None, repr=False)
    identity_policies: tuple[Policy, ...] = field(default=(), repr=False)
    session_policy: Policy | None = field(default=None, repr=False)

    @property
    def tenant(self) -> str:
        return self.principal.tenant or DEFAULT_TENANT_NAME


class KeyDirectory(Protocol):
    """Access keys the admin API accepts: the secret to verify a signature, and who the key is."""

    def secret(self, access_key: str) -> str | None: ...

    def caller(self, access_key: str) -> Caller | None: ...


class RootKeys:
    """Only the server's root credentials (no IAM store): the root of the default tenant."""

    def __init__(self, lookup_secret: Callable[[str], str | None]) -> None:
        self._lookup = lookup_secret

    def secret(self, access_key: str) -> str | None:
        return self._lookup(access_key)

    def caller(self, access_key: str) -> Caller | None:
        if self._lookup(access_key) is None:
            return None
        return Caller(access_key, Principal.root(DEFAULT_TENANT_NAME), "root")


def _sigv4_failure(err: S3Error) -> AdminError:
    status = 400 if err.http_status == 400 else 403
    return AdminError(status, err.code, err.message)


def authenticate(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    body: bytes,
    now: datetime,
    keys: KeyDirectory,
    tokens: TokenStore[Caller],
    allow_token: bool,
) -> Caller:
    """The caller of a request, or a 403 (400 for a malformed signature) that says why."""
    authorization = [v for n, v in headers if n == "authorization"]
    if len(authorization) == 1 and authorization[0][:7].lower() == "bearer ":
        if not allow_token:
            raise access_denied("this operation needs a SigV4-signed request, not a token")
        return _from_token(authorization[0][7:].strip(), now, keys, tokens)
    try:
        auth = verify_request(SignedRequest(method, raw_path, query, headers), now=now, lookup_secret=keys.secret)
    except S3Error as err:
        raise _sigv4_failure(err) from None
    if auth is None:
        raise access_denied("sign the request with SigV4 admin credentials or present a bearer token")
    if auth.session_token is not None:
        raise access_denied("this server issues no temporary credentials (x-amz-security-token)")
    if auth.payload_mode is not PayloadMode.SHA256 or auth.payload_sha256 is None:
        raise bad_request(
            "admin requests must sign their body: x-amz-content-sha256 must be its hex SHA-256",
            "InvalidContentSha256",
        )
    actual = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(actual, auth.payload_sha256):
        raise bad_request("the body does not match x-amz-content-sha256", "XAmzContentSHA256Mismatch")
    caller = keys.caller(auth.access_key_id)
    if caller is None:  # the key went away between the two look-ups
        raise access_denied("the access key is not valid", "InvalidAccessKeyId")
    return caller


def _from_token(token: str, now: datetime, keys: KeyDirectory, tokens: TokenStore[Caller]) -> Caller:
    found = tokens.resolve(token, now) if 0 < len(token) <= 256 else None
    if found is not None and found.state == "expired":
        raise access_denied("the token has expired; request a new one", "ExpiredToken")
    if found is None or found.caller is None:
        raise access_denied("the token is not valid (unknown or revoked)", "InvalidToken")
    caller, digest = found.caller, found.digest
    # The key the token was issued to must still be valid (disabled or deleted keys lose their
    # tokens at once).
    current = keys.caller(caller.access_key)
    if current is None:
        tokens.revoke(digest)
        raise access_denied("the token's access key is no longer valid", "InvalidToken")
    return Caller(
        current.access_key,
        current.principal,
        current.display,
        "token",
        digest,
        current.identity_policies,
        current.session_policy,
    )


def authorize(caller: Caller, action: str, now: datetime) -> Decision:
    return evaluate(
        AuthzRequest(caller.principal, action, "*", now=now),
        caller.identity_policies,
        None,
        caller.session_policy,
    )
