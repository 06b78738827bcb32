"""Verify AWS Signature Version 4 on S3 requests, server side, as pure functions.

The caller (the ASGI app) builds a ``SignedRequest`` from what it received: the method; the raw,
still percent-encoded path (ASGI ``raw_path`` decoded as UTF-8 with ``surrogateescape``); the
query as decoded pairs in order (``canonical.parse_query`` decodes it as this module expects); the
headers with lower-cased names, values decoded as latin-1 (what HTTP/1.1 carries and what
botocore signs), repeated names as repeated pairs. ``verify_request`` returns ``None`` for an
anonymous request, an ``AuthResult`` for a valid signed one, and raises ``S3Error`` otherwise.
Secrets come from an injected lookup; nothing secret reaches an error or a repr.

The canonical request is S3's (``canonical``); its payload line is the x-amz-content-sha256
value, or UNSIGNED-PAYLOAD for presigned URLs. Checks run in S3's order: shape, time (15 minutes
of skew; presigned expiry), signed headers, access key, signature (constant-time).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

from datawarehouse.api.s3 import errors
from datawarehouse.api.s3.canonical import (
    canonical_request,
    canonical_uris,
    has_other_spaces,
    header_map,
    string_to_sign,
)
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.signing import (
    ALGORITHM,
    DEFAULT_KEY_CACHE,
    TERMINATOR,
    SigningContext,
    SigningKeyCache,
    sign,
    signatures_equal,
)

SERVICE: Final = "s3"
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
MAX_PRESIGNED_EXPIRES: Final = 604_800  # seven days, in seconds
MAX_ACCESS_KEY_ID_CHARS: Final = 128

_AMZ_DATE = re.compile("[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE = re.compile("[0-9]{8}")
_HEX_SHA256 = re.compile("[0-9a-fA-F]{64}")
_AUTH_SEPARATORS = re.compile(r"[,\s]+")

SecretLookup = Callable[[str], str | None]


class PayloadMode(StrEnum):
    """How the body is protected, from x-amz-content-sha256 (presigned: always UNSIGNED)."""

    SHA256 = "SHA256"  # a hex digest the whole body must hash to
    UNSIGNED = "UNSIGNED-PAYLOAD"
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def is_streaming(self) -> bool:
        """The body is aws-chunked and must go through ``chunked.ChunkedDecoder``."""
        return self.value.startswith("STREAMING-")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a received request that SigV4 covers (see the module docstring)."""

    method: str
    raw_path: str
    query: Sequence[tuple[str, str]] = ()
    headers: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class Credential:
    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True, slots=True, eq=False)
class AuthResult:
    """A verified request: who signed it, and how its body must be checked.

    ``payload_sha256`` is the lower-case hex digest the body must match (``PayloadMode.SHA256``),
    else ``None``. ``signing`` carries what aws-chunked verification needs (key hidden from repr).
    ``session_token`` is the x-amz-security-token the request carried (signed, since every
    x-amz-* header must be): temporary credentials are not validated here, so a service that
    does not issue them should refuse requests where it is set. ``version`` is the signature
    scheme (``s3:signatureversion``): ``AWS4-HMAC-SHA256``, or ``AWS`` (``sigv2``), which has no
    region and no ``signing`` context.
    """

    access_key_id: str
    region: str
    payload_mode: PayloadMode
    payload_sha256: str | None
    presigned: bool
    signed_headers: tuple[str, ...]
    request_at: datetime
    expires_at: datetime | None
    signing: SigningContext | None
    session_token: str | None = field(default=None, repr=False)
    version: str = ALGORITHM


@dataclass(frozen=True, slots=True, eq=False)
class _Presented:
    """What the client claims, parsed and shape-checked but not yet verified."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str
    request_at: datetime
    payload_hash: str
    presigned: bool
    expires_at: datetime | None
    query: tuple[tuple[str, str], ...]  # what the canonical query covers

    def __repr__(self) -> str:  # the provided signature stays out of logs
        return f"_Presented(credential={self.credential!r}, presigned={self.presigned})"


# --- parsing what the client presents --------------------------------------------------------------


def _parse_credential(value: str, fail: Callable[[str], S3Error], region: str | None) -> Credential:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not all(parts) or not _SCOPE_DATE.fullmatch(parts[1]):
        raise fail('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    access_key_id, date, credential_region, service, terminator = parts
    if len(access_key_id) > MAX_ACCESS_KEY_ID_CHARS:
        raise errors.invalid_access_key_id(access_key_id)
    if service != SERVICE:
        raise fail(f'incorrect service "{service[:32]}". This endpoint belongs to "{SERVICE}".')
    if terminator != TERMINATOR:
        raise fail(f'incorrect terminal "{terminator[:32]}". This endpoint uses "{TERMINATOR}".')
    if region is not None and credential_region != region:
        error = fail(f"the region '{credential_region[:32]}' is wrong; expecting '{region}'")
        error.extra["Region"] = region
        raise error
    return Credential(access_key_id, date, credential_region, service)


def _parse_signed_headers(value: str, fail: Callable[[str], S3Error]) -> tuple[str, ...]:
    names = [name.strip().lower() for name in value.split(";")]
    if not all(names):
        raise fail("the SignedHeaders list is mal-formed.")
    return tuple(sorted(set(names)))


_THREE_COMPONENTS: Final = (
    "the authorization header requires three components: Credential, SignedHeaders, and Signature."
)


def parse_authorization_header(value: str, *, region: str | None = None) -> tuple[Credential, tuple[str, ...], str]:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` -> its three parts.

    Separators may be commas, spaces or both, in any amount, components in any order — as AWS
    tolerates. Anything else raises AuthorizationHeaderMalformed (or InvalidRequest for another,
    unsupported, signature scheme).
    """
    fail = errors.authorization_header_malformed
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm in ("AWS", "AWS4-ECDSA-P256-SHA256"):
            raise errors.invalid_request(
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
            )
        raise fail(f'the authorization mechanism is not supported; expecting "{ALGORITHM}".')
    components: dict[str, str] = {}
    for item in _AUTH_SEPARATORS.split(rest.strip()):
        name, sep, component = item.partition("=")
        if not item:
            continue
        if not sep or name not in ("Credential", "SignedHeaders", "Signature") or name in components:
            raise fail(_THREE_COMPONENTS)
        components[name] = component
    if len(components) != 3:
        raise fail(_THREE_COMPONENTS)
    credential = _parse_credential(components["Credential"], fail, region)
    signed = _parse_signed_headers(components["SignedHeaders"], fail)
    return credential, signed, components["Signature"]


def single_header(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise errors.invalid_request(f"The {name} header may be given only once.")
    return values[0]


def parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:  # yyyyMMddTHHmmssZ, shape checked above (strptime costs ten times more)
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _request_time(headers: dict[str, list[str]]) -> tuple[str, datetime]:
    """The signed timestamp: X-Amz-Date if present, else the Date header (RFC 1123)."""
    invalid = errors.access_denied("AWS authentication requires a valid Date or x-amz-date header")
    amz_date = single_header(headers, "x-amz-date")
    if amz_date is not None:
        moment = parse_amz_date(amz_date.strip())
        if moment is None:
            raise invalid
        return amz_date.strip(), moment
    date = single_header(headers, "date")
    moment = parse_http_date(date) if date is not None else None
    if moment is None:
        raise invalid
    return moment.strftime("%Y%m%dT%H%M%SZ"), moment


def parse_http_date(value: str) -> datetime | None:
    """An RFC 1123 date (the Date header) in UTC, or None when it is not one."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_skew(timestamp: str, request_at: datetime, now: datetime) -> None:
    """RequestTimeTooSkewed unless the signed moment is within MAX_CLOCK_SKEW of the server's."""
    if abs(now - request_at) > MAX_CLOCK_SKEW:
        raise errors.request_time_too_skewed(timestamp, now, int(MAX_CLOCK_SKEW.total_seconds() * 1000))


_LITERAL_MODES: Final = {mode.value: mode for mode in PayloadMode if mode is not PayloadMode.SHA256}


def payload_mode(value: str, *, presigned: bool) -> tuple[PayloadMode, str | None]:
    if _HEX_SHA256.fullmatch(value):
        return PayloadMode.SHA256, value.lower()
    mode = _LITERAL_MODES.get(value)
    if mode is None or (presigned and mode is not PayloadMode.UNSIGNED):
        raise errors.invalid_argument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
            "or a valid sha256 value.",
            name="x-amz-content-sha256",
            value=value,
        )
    return mode, None


def _from_header(request: SignedRequest, headers: dict[str, list[str]], region: str | None) -> _Presented:
    values = headers["authorization"]
    if len(values) != 1:
        raise errors.authorization_header_malformed("only one Authorization header is allowed.")
    credential, signed, signature = parse_authorization_header(values[0], region=region)
    timestamp, request_at = _request_time(headers)
    if timestamp[:8] != credential.date:
        raise errors.authorization_header_malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    payload_hash = single_header(headers, "x-amz-content-sha256")
    if payload_hash is None:
        raise errors.invalid_request("Missing required header for this request: x-amz-content-sha256")
    return _Presented(
        credential=credential,
        signed_headers=signed,
        signature=signature,
        timestamp=timestamp,
        request_at=request_at,
        payload_hash=payload_hash.strip(),
        presigned=False,
        expires_at=None,
        query=tuple(request.query),
    )


_PRESIGN_PARAMS: Final = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


def _from_query(request: SignedRequest, headers: dict[str, list[str]], region: str | None) -> _Presented:
    fail = errors.authorization_query_parameters_error
    found: dict[str, list[str]] = {}
    for name, value in request.query:
        if name in _PRESIGN_PARAMS or name == "X-Amz-Content-Sha256":
            found.setdefault(name, []).append(value)
    counts = [len(found.get(name, [])) for name in _PRESIGN_PARAMS]
    if counts != [1] * len(counts) or len(found.get("X-Amz-Content-Sha256", [])) > 1:
        raise fail(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    param = {name: values[0] for name, values in found.items()}
    if param["X-Amz-Algorithm"] != ALGORITHM:
        raise fail(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    credential = _parse_credential(
        param["X-Amz-Credential"],
        lambda detail: fail(f"Error parsing the X-Amz-Credential parameter; {detail}"),
        region,
    )
    request_at = parse_amz_date(param["X-Amz-Date"])
    if request_at is None:
        raise fail("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if param["X-Amz-Date"][:8] != credential.date:
        raise fail("Invalid credential date. Date is not the same as X-Amz-Date.")
    expires = param["X-Amz-Expires"]
    if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        raise fail("X-Amz-Expires should be a number between 1 and 604800")
    if not 1 <= int(expires) <= MAX_PRESIGNED_EXPIRES:
        raise fail("X-Amz-Expires must be less than a week (in seconds) that is 604800, and positive")
    payload_hash = single_header(headers, "x-amz-content-sha256") or param.get("X-Amz-Content-Sha256")
    payload_hash = payload_hash or PayloadMode.UNSIGNED.value
    return _Presented(
        credential=credential,
        signed_headers=_parse_signed_headers(param["X-Amz-SignedHeaders"], fail),
        signature=param["X-Amz-Signature"],
        timestamp=param["X-Amz-Date"],
        request_at=request_at,
        payload_hash=payload_hash.strip(),
        presigned=True,
        expires_at=request_at + timedelta(seconds=int(expires)),
        query=tuple([(name, value) for name, value in request.query if name != "X-Amz-Signature"]),
    )


# --- checks ----------------------------------------------------------------------------------------


def _check_time(presented: _Presented, now: datetime) -> None:
    if presented.expires_at is None:
        check_skew(presented.timestamp, presented.request_at, now)
        return
    if now > presented.expires_at:
        raise errors.request_expired(presented.expires_at, now)
    if presented.request_at - now > MAX_CLOCK_SKEW:
        raise errors.request_not_yet_valid(now)


def _check_signed_headers(presented: _Presented, headers: dict[str, list[str]]) -> None:
    """host must be signed, and so must every x-amz-* header present (S3 refuses otherwise)."""
    signed = set(presented.signed_headers)
    unsigned = [name for name in sorted(headers) if name.startswith("x-amz-") and name not in signed]
    if "host" not in signed:
        unsigned.insert(0, "host")
    if unsigned:
        raise errors.headers_not_signed(unsigned)


def session_token(request: SignedRequest, headers: dict[str, list[str]]) -> str | None:
    """The x-amz-security-token header, or the query parameter of a presigned URL (any case)."""
    values = headers.get("x-amz-security-token") or [v for n, v in request.query if n.lower() == "x-amz-security-token"]
    return values[0] if values else None


# --- the entry point -------------------------------------------------------------------------------


def mixed_mechanisms() -> S3Error:
    """An Authorization header and a signed query together."""
    return errors.invalid_argument(
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
        "query string parameter or the Authorization header should be specified",
        name="Authorization",
    )


def verify_request(
    request: SignedRequest,
    *,
    now: datetime,
    lookup_secret: SecretLookup,
    region: str | None = None,
    key_cache: SigningKeyCache | None = None,
) -> AuthResult | None:
    """Verify ``request``'s SigV4 signature (Authorization header or presigned query).

    ``region``, when given, must be the credential's region (else the client is told the right
    one); ``None`` accepts any. ``now`` should be aware (a naive value is taken as UTC). Returns
    ``None`` when the request carries no authentication at all: whether anonymous access is
    allowed is the service's decision, not this function's.
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    headers = header_map(request.headers)
    query_names = {name for name, _ in request.query}
    presign = bool(query_names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
    legacy_presign = "AWSAccessKeyId" in query_names and "Signature" in query_names
    if "authorization" in headers and (presign or legacy_presign):
        raise mixed_mechanisms()
    if legacy_presign and not presign:
        raise errors.invalid_request("Query-string authentication version 2 is not supported; use version 4.")
    if "authorization" in headers:
        presented = _from_header(request, headers, region)
    elif presign:
        presented = _from_query(request, headers, region)
    else:
        return None
    mode, payload_sha256 = payload_mode(presented.payload_hash, presigned=presented.presigned)
    _check_time(presented, now)
    _check_signed_headers(presented, headers)
    secret = lookup_secret(presented.credential.access_key_id)
    if secret is None:
        raise errors.invalid_access_key_id(presented.credential.access_key_id)
    credential = presented.credential
    cache = key_cache if key_cache is not None else DEFAULT_KEY_CACHE
    signing_key = cache.signing_key(secret, credential.date, credential.region, credential.service)
    # botocore trims header values differently from the other SDKs where they hold white space
    # beyond ASCII spaces and tabs (canonical.py): only then is its form tried as well.
    space_forms = (False, True) if has_other_spaces(headers, presented.signed_headers) else (False,)
    for uri, unicode_spaces in itertools.product(canonical_uris(request.raw_path), space_forms):
        canonical = canonical_request(
            request.method,
            uri,
            presented.query,
            headers,
            presented.signed_headers,
            presented.payload_hash,
            unicode_spaces=unicode_spaces,
        )
        expected = sign(signing_key, string_to_sign(presented.timestamp, credential.scope, canonical))
        if signatures_equal(expected, presented.signature):
            return AuthResult(
                access_key_id=credential.access_key_id,
                region=credential.region,
                payload_mode=mode,
                payload_sha256=payload_sha256,
                presigned=presented.presigned,
                signed_headers=presented.signed_headers,
                request_at=presented.request_at,
                expires_at=presented.expires_at,
                signing=SigningContext(signing_key, presented.timestamp, credential.scope, expected),
                session_token=session_token(request, headers),
            )
    raise errors.signature_does_not_match()
