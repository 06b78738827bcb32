"""Verify AWS Signature Version 2 on S3 requests, server side, as pure functions.

Old SDKs, s3cmd with ``--signature-v2``, boto3 with ``signature_version="s3"`` and many
appliances still sign this way, and MinIO and SeaweedFS accept it; ``server.signature_v2 =
false`` refuses it. The signature is base64(HMAC-SHA1(secret, string to sign)) over::

    VERB \\n Content-MD5 \\n Content-Type \\n Date (presigned: Expires) \\n
    x-amz-* headers, one ``name:value`` line each \\n ... resource

The resource is the raw path (with ``/bucket`` in front when the bucket is in the Host name)
followed by the sub-resources and ``response-*`` overrides among the query parameters, sorted.
Clients disagree on which newer sub-resources belong there (botocore leaves out ``encryption``,
``retention``, ``legal-hold`` and later ones; minio-go puts several of them in), so when a
request names one, both readings are tried. Likewise a request carrying both ``Date`` and
``x-amz-date`` is checked with the Date line filled (botocore, MinIO) and empty (AWS's rule).

The body is not signed: it is checked against x-amz-content-sha256 or Content-MD5 when the
client sends them, and aws-chunked bodies are accepted only unsigned (their signed form chains
SigV4 signatures). Comparison is constant-time; no secret or signature reaches an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from datawarehouse.api.s3 import errors
from datawarehouse.api.s3.canonical import header_map
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.sigv4 import (
    MAX_ACCESS_KEY_ID_CHARS,
    MAX_CLOCK_SKEW,
    MAX_PRESIGNED_EXPIRES,
    AuthResult,
    PayloadMode,
    SecretLookup,
    SignedRequest,
    check_skew,
    mixed_mechanisms,
    parse_amz_date,
    parse_http_date,
    payload_mode,
    session_token,
    single_header,
)

VERSION: Final = "AWS"  # the value of s3:signatureversion for these requests
_V4_QUERY_AUTH: Final = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
# Query parameters that sign a request (either version): never beside an Authorization header.
_QUERY_AUTH: Final = _V4_QUERY_AUTH | {"AWSAccessKeyId", "Signature"}

# In every client's resource string: S3's documented list and botocore's.
_SUBRESOURCES: Final = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)
# Sub-resources newer than botocore's list, which some clients sign and others do not.
_NEWER_SUBRESOURCES: Final = frozenset(
    {
        "attributes",
        "encryption",
        "intelligent-tiering",
        "legal-hold",
        "ownershipControls",
        "policyStatus",
        "publicAccessBlock",
        "retention",
    }
)
_SIGNATURE_CHARS: Final = 28  # base64 of a 20-byte HMAC-SHA1
# What the string to sign covers besides x-amz-*, for AuthResult.signed_headers.
_STANDARD_HEADERS: Final = ("content-md5", "content-type", "date")


def is_v2(request: SignedRequest) -> bool:
    """The request is signed with version 2: ``Authorization: AWS ...`` or its query form.

    Cheap, for every request: one pass over the header pairs, and the query only without one."""
    for name, value in request.headers:
        if name == "authorization":
            return value.lstrip().startswith("AWS ")
    names = {name for name, _ in request.query}
    return "AWSAccessKeyId" in names and "Signature" in names and not names & _V4_QUERY_AUTH


def sign_v2(secret: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA1(secret, string_to_sign)), what the client sends as its signature."""
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def signatures_equal_v2(expected: str, provided: str) -> bool:
    """Constant-time; a space stands for a ``+`` a client left unencoded in the query."""
    candidate = provided.strip().replace(" ", "+")
    if len(candidate) != _SIGNATURE_CHARS or not candidate.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii"))


def amz_header_lines(headers: dict[str, list[str]]) -> str:
    """``name:value\\n`` for each x-amz-* header, names sorted, repeated values comma-joined."""
    names = sorted(name for name in headers if name.startswith("x-amz-"))
    return "".join(f"{name}:{','.join(value.strip() for value in headers[name])}\n" for name in names)


def resources(raw_path: str, query: Sequence[tuple[str, str]], virtual_bucket: str | None) -> list[str]:
    """The canonicalized resource as each kind of client writes it, most common first.

    A request naming only a bucket is signed as ``/bucket/`` by botocore and as ``/bucket`` by
    others, whichever way it was addressed; the newer sub-resources are signed by some clients
    only (module docstring)."""
    path = raw_path.split("?", 1)[0]
    if virtual_bucket is not None:
        path = f"/{virtual_bucket}{path}"
    paths = [path]
    if path.count("/") == 1 and len(path) > 1:
        paths.append(path + "/")
    elif path.count("/") == 2 and path.endswith("/") and len(path) > 2:
        paths.append(path[:-1])
    forms = [_SUBRESOURCES | _NEWER_SUBRESOURCES]
    if any(name in _NEWER_SUBRESOURCES for name, _ in query):
        forms.append(_SUBRESOURCES)
    out: list[str] = []
    for names in forms:
        chosen = sorted((pair for pair in query if pair[0] in names), key=lambda pair: pair[0])
        suffix = "?" + "&".join(f"{name}={value}" if value else name for name, value in chosen) if chosen else ""
        out.extend(p + suffix for p in paths)
    return out


def string_to_sign(method: str, headers: dict[str, list[str]], date: str, resource_text: str) -> str:
    md5, content_type = ((headers.get(name) or [""])[0].strip() for name in ("content-md5", "content-type"))
    return f"{method}\n{md5}\n{content_type}\n{date}\n{amz_header_lines(headers)}{resource_text}"


def _parse_header(value: str) -> tuple[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    access_key_id, colon, signature = rest.strip().partition(":")  # key ids hold no colon
    if scheme != VERSION or not colon or not access_key_id or not signature:
        raise errors.invalid_argument(
            "AWS authorization header is invalid. Expected AwsAccessKeyId:signature", name="Authorization"
        )
    return access_key_id, signature


def _request_time(headers: dict[str, list[str]]) -> datetime:
    """The signed moment: x-amz-date (RFC 1123, or ISO 8601 basic) if present, else Date."""
    value = single_header(headers, "x-amz-date") or single_header(headers, "date")
    moment = None if value is None else parse_amz_date(value.strip()) or parse_http_date(value)
    if moment is None:
        raise errors.access_denied("AWS authentication requires a valid Date or x-amz-date header")
    return moment


def _expires(query: Sequence[tuple[str, str]], now: datetime) -> tuple[str, datetime]:
    value = _one(query, "Expires")
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise _missing_parameters()
    expires_at = datetime.fromtimestamp(int(value), UTC)
    if now > expires_at:
        raise errors.request_expired(expires_at, now)
    if expires_at - now > timedelta(seconds=MAX_PRESIGNED_EXPIRES) + MAX_CLOCK_SKEW:
        raise errors.authorization_query_parameters_error(
            "Expires must be less than a week (in seconds) that is 604800 from now"
        )
    return value, expires_at


def _missing_parameters() -> S3Error:
    return errors.authorization_query_parameters_error(
        "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
    )


def _one(query: Sequence[tuple[str, str]], name: str) -> str:
    values = [value for key, value in query if key == name]
    if len(values) != 1 or not values[0]:
        raise _missing_parameters()
    return values[0]


def _payload(headers: dict[str, list[str]]) -> tuple[PayloadMode, str | None]:
    value = single_header(headers, "x-amz-content-sha256")
    if value is None:
        return PayloadMode.UNSIGNED, None
    mode, sha256 = payload_mode(value.strip(), presigned=False)
    if mode in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER):
        raise errors.invalid_request(f"{mode.value} bodies need AWS Signature Version 4.")
    return mode, sha256


def verify_v2(
    request: SignedRequest,
    *,
    now: datetime,
    lookup_secret: SecretLookup,
    virtual_bucket: str | None = None,
) -> AuthResult:
    """Verify a version 2 request (``is_v2`` said so); raise ``S3Error`` when it does not hold.

    ``virtual_bucket``: the bucket the Host header names (virtual-hosted style), which the
    resource string starts with."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    headers = header_map(request.headers)
    query = request.query
    presigned = "authorization" not in headers
    if not presigned and {name for name, _ in query} & _QUERY_AUTH:
        raise mixed_mechanisms()
    expires_at: datetime | None = None
    if presigned:
        access_key_id, signature = _one(query, "AWSAccessKeyId"), _one(query, "Signature")
        expires, expires_at = _expires(query, now)
        dates = [expires]
        request_at = now
    else:
        values = headers["authorization"]
        if len(values) != 1:
            raise errors.authorization_header_malformed("only one Authorization header is allowed.")
        access_key_id, signature = _parse_header(values[0])
        request_at = _request_time(headers)
        check_skew(request_at.strftime("%Y%m%dT%H%M%SZ"), request_at, now)
        date = (single_header(headers, "date") or "").strip()
        dates = [date, ""] if date and "x-amz-date" in headers else [date]
    if len(access_key_id) > MAX_ACCESS_KEY_ID_CHARS:
        raise errors.invalid_access_key_id(access_key_id)
    mode, sha256 = _payload(headers)
    secret = lookup_secret(access_key_id)
    if secret is None:
        raise errors.invalid_access_key_id(access_key_id)
    for date, where in itertools.product(dates, resources(request.raw_path, query, virtual_bucket)):
        if signatures_equal_v2(sign_v2(secret, string_to_sign(request.method, headers, date, where)), signature):
            return AuthResult(
                access_key_id=access_key_id,
                region="",
                payload_mode=mode,
                payload_sha256=sha256,
                presigned=presigned,
                signed_headers=tuple(sorted({*_STANDARD_HEADERS, *(n for n in headers if n.startswith("x-amz-"))})),
                request_at=request_at,
                expires_at=expires_at,
                signing=None,
                session_token=session_token(request, headers),
                version=VERSION,
            )
    raise errors.signature_does_not_match()
