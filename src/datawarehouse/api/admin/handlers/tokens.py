"""``POST /tokens`` (SigV4 only) issues a bearer token; ``DELETE /tokens/current`` revokes the
token the request presents."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from datawarehouse.api.admin import tokens
from datawarehouse.api.admin.call import Call
from datawarehouse.api.admin.errors import bad_request
from datawarehouse.api.admin.registry import operation
from datawarehouse.api.admin.schema import DATE_TIME, integer, obj, string

MIN_SECONDS = int(tokens.MIN_TTL.total_seconds())
MAX_SECONDS = int(tokens.MAX_TTL.total_seconds())

TOKEN_REQUEST = obj(
    {"ttl_seconds": integer(MIN_SECONDS, MAX_SECONDS, description="lifetime (default 900, at most 12 h)")}
)
TOKEN = obj(
    {"token": string(128), "token_type": {"type": "string", "enum": ["Bearer"]}, "expires_at": DATE_TIME},
    ("token", "token_type", "expires_at"),
    closed=False,
)


@operation(
    "CreateToken",
    "POST",
    "/tokens",
    "Issue a short-lived bearer token for the signing credentials",
    tag="tokens",
    scope="caller",
    request=TOKEN_REQUEST,
    response=TOKEN,
    status=201,
    auth="sigv4",
    description="Present it as `Authorization: Bearer <token>`; it acts with the rights of the key that "
    "signed this request, and stops working when it expires, is revoked, or the key is disabled.",
)
async def create_token(call: Call) -> dict[str, Any]:
    assert call.caller is not None
    ttl = timedelta(seconds=call.body.get("ttl_seconds", int(tokens.DEFAULT_TTL.total_seconds())))
    token, digest, expires_at = call.state.tokens.issue(call.caller, call.state.clock.now(), ttl)
    call.detail.update({"token_sha256_prefix": digest[:12], "expires_at": expires_at.isoformat()})
    return {"token": token, "token_type": "Bearer", "expires_at": expires_at}


@operation(
    "RevokeToken",
    "DELETE",
    "/tokens/current",
    "Revoke the bearer token this request presents",
    tag="tokens",
    scope="caller",
    response=None,
)
async def revoke_token(call: Call) -> None:
    assert call.caller is not None
    if call.caller.token_digest is None:
        raise bad_request("this request presents no bearer token to revoke")
    call.detail["token_sha256_prefix"] = call.caller.token_digest[:12]
    call.state.tokens.revoke(call.caller.token_digest)
