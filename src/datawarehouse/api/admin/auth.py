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
from typing import Literal

from datawarehouse.api.admin.errors import AdminError, access_denied, bad_request
from datawarehouse.api.admin.tokens import TokenStore
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.sigv4 import PayloadMode, SignedRequest, verify_request
from datawarehouse.errors import DwhError
from datawarehouse.service.access import Caller
from datawarehouse.service.policy import AuthzRequest, Decision, evaluate

LookupCaller = Callable[[str], Caller | None]


@dataclass(frozen=True)
class AdminCaller:
    """An authenticated admin caller: the S3 ``Caller`` of its access key, and how it got in."""

    caller: Caller
    via: Literal["sigv4", "token"] = "sigv4"
    token_digest: str | None = field(default=None, repr=False)

    @property
    def access_key(self) -> str:
        return self.caller.access_key or ""

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    @property
    def display(self) -> str:
        """For the audit log: the principal's ARN (as S3 records name it)."""
        return self.caller.name


def _lookup(lookup_caller: LookupCaller, access_key: str) -> Caller | None:
    """The caller of a key; a disabled or expired key is refused with the service's reason."""
    try:
        return lookup_caller(access_key)
    except DwhError as exc:
        raise access_denied(str(exc), "InvalidAccessKeyId") from None


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
    lookup_caller: LookupCaller,
    tokens: TokenStore[AdminCaller],
    allow_token: bool,
) -> AdminCaller:
    """The caller of a request, or a 403 (400 for a malformed signature) that says why."""
    authorization = [v for n, v in headers if n == "authorization"]
    if len(authorization) == 1 and authorization[0][:7].lower() == "bearer ":
        if not allow_token:
            raise access_denied("this operation needs a SigV4-signed request, not a token")
        return _from_token(authorization[0][7:].strip(), now, lookup_caller, tokens)

    def secret(access_key: str) -> str | None:
        found = _lookup(lookup_caller, access_key)
        return found.secret if found is not None else None

    try:
        auth = verify_request(SignedRequest(method, raw_path, query, headers), now=now, lookup_secret=secret)
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
    caller = _lookup(lookup_caller, auth.access_key_id)
    if caller is None:  # the key went away between the two look-ups
        raise access_denied("the access key is not valid", "InvalidAccessKeyId")
    return AdminCaller(caller)


def _from_token(token: str, now: datetime, lookup_caller: LookupCaller, tokens: TokenStore[AdminCaller]) -> AdminCaller:
    found = tokens.resolve(token, now) if 0 < len(token) <= 256 else None
    if found is not None and found.state == "expired":
        raise access_denied("the token has expired; request a new one", "ExpiredToken")
    if found is None or found.caller is None:
        raise access_denied("the token is not valid (unknown or revoked)", "InvalidToken")
    caller, digest = found.caller, found.digest
    # The key the token was issued to must still be valid (disabled or deleted keys lose their
    # tokens at once).
    try:
        current = lookup_caller(caller.access_key)
    except DwhError:
        current = None
    if current is None:
        tokens.revoke(digest)
        raise access_denied("the token's access key is no longer valid", "InvalidToken")
    return AdminCaller(current, "token", digest)


def authorize(admin: AdminCaller, action: str, now: datetime) -> Decision:
    caller = admin.caller
    return evaluate(
        AuthzRequest(caller.principal, action, "*", now=now),
        caller.identity_policies,
        None,
        caller.session_policy,
    )
