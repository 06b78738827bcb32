"""SigV4 verification against botocore as the reference signer, plus AWS's published examples."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3.canonical import canonical_query, canonical_uris, parse_query, uri_encode
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.signing import SigningKeyCache, derive_signing_key, hmac_sha256
from datawarehouse.api.s3.sigv4 import (
    AuthResult,
    PayloadMode,
    SignedRequest,
    parse_authorization_header,
    verify_request,
)

# The conftest's BotoSigner signs at this instant with these credentials (fixtures, not imports:
# conftest modules are not importable by name).
ACCESS_KEY = "AKIDEXAMPLE0000001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SIGNED_AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
NOW = SIGNED_AT + timedelta(seconds=30)

if TYPE_CHECKING:
    from conftest import BotoSigner


def lookup_secret(access_key_id: str) -> str | None:
    return SECRET_KEY if access_key_id == ACCESS_KEY else None


def verify(request: SignedRequest, *, now: datetime = NOW, region: str | None = None) -> AuthResult:
    result = verify_request(request, now=now, lookup_secret=lookup_secret, region=region)
    assert result is not None
    return result


def refused(request: SignedRequest, code: str, *, now: datetime = NOW, region: str | None = None) -> S3Error:
    with pytest.raises(S3Error) as caught:
        verify_request(request, now=now, lookup_secret=lookup_secret, region=region)
    assert caught.value.code == code, (caught.value.code, caught.value.message)
    return caught.value


def test_fixture_matches_constants(signer: BotoSigner) -> None:
    assert (signer.access_key, signer.secret_key, signer.signed_at) == (ACCESS_KEY, SECRET_KEY, SIGNED_AT)


def object_url(key: str, *, host: str = "http://localhost:9000", bucket: str | None = "bucket") -> str:
    path = percent_encode(key, safe="/~")
    return f"{host}/{bucket}/{path}" if bucket else f"{host}/{path}"


def with_query(url: str, params: dict[str, str | list[str]]) -> str:
    return f"{url}?{percent_encode_sequence(params)}" if params else url


def replace_header(request: SignedRequest, name: str, value: str) -> SignedRequest:
    headers = [(n, value if n == name else v) for n, v in request.headers]
    return dataclasses.replace(request, headers=headers)


def replace_query(request: SignedRequest, name: str, value: str) -> SignedRequest:
    query = [(n, value if n == name else v) for n, v in request.query]
    return dataclasses.replace(request, query=query)


def header(request: SignedRequest, name: str) -> str:
    return next(v for n, v in request.headers if n == name)


def query_param(request: SignedRequest, name: str) -> str:
    return next(v for n, v in request.query if n == name)


def flip_hex(signature: str) -> str:
    return ("1" if signature[0] == "0" else "0") + signature[1:]


KEYS = [
    "simple.txt",
    "with space.txt",
    "unicodé/ключ/日本語.txt",
    "plus+sign+key",
    "tilde~key",
    "equals=sign&ampersand",
    "a/b//c/../d/./e",
    "!*'()[]$@,;:#?",
    "%41 literal percent",
    "emoji 😀 key",
    "trailing/",
]

QUERIES: list[dict[str, str | list[str]]] = [
    {},
    {"uploads": ""},
    {"prefix": "a b+c", "delimiter": "/", "max-keys": "10"},
    {"list-type": "2", "start-after": "ü", "encoding-type": "url"},
    {"versionId": "", "tagging": ""},
    {"a": ["2", "1", ""], "B": "x", "_": "~"},
    {"partNumber": "3", "uploadId": "abc/def+ghi=="},
]


# --- botocore header signing -----------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_signed_requests_verify(
    signer: BotoSigner, key: str, query: dict[str, str | list[str]]
) -> None:
    request = signer.sign_header("PUT", with_query(object_url(key), query), body=b"payload")
    result = verify(request)
    assert result.access_key_id == ACCESS_KEY
    assert result.region == "us-east-1"
    assert result.payload_mode is PayloadMode.SHA256
    assert result.payload_sha256 == header(request, "x-amz-content-sha256")
    assert not result.presigned and result.expires_at is None


@pytest.mark.parametrize("key", KEYS)
def test_virtual_host_style_verifies(signer: BotoSigner, key: str) -> None:
    url = object_url(key, host="https://bucket.s3.example.com", bucket=None)
    request = signer.sign_header("GET", url)
    assert header(request, "host") == "bucket.s3.example.com"
    verify(request)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-meta-note": "  spaced    value \t here  "},
        {"Content-Type": "text/plain; charset=utf-8", "x-amz-storage-class": "STANDARD"},
        {"Range": "bytes=0-9"},
        {"x-amz-meta-empty": ""},
        {"x-amz-meta-latin": "caf\xe9"},
        {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    ],
)
def test_signed_headers_are_canonicalised_like_botocore(signer: BotoSigner, headers: dict[str, str]) -> None:
    request = signer.sign_header("PUT", object_url("k"), headers=headers, body=b"x")
    result = verify(request)
    assert {name.lower() for name in headers} <= set(result.signed_headers)


@pytest.mark.parametrize(
    "value",
    ["\xa0leading no-break space", "inner\xa0\xa0no-break", "trailing \x85", "sep\x1carator", "mixed \xa0 \t runs\xa0"],
)
def test_botocore_trimming_of_other_white_space_verifies(signer: BotoSigner, value: str) -> None:
    """botocore trims and collapses every character ``str.split`` splits on; other SDKs only ASCII
    spaces and tabs. A value holding such a character verifies (found by the S3 fuzz test: a
    boto3 PUT whose metadata held a no-break space was refused), and is still covered by the
    signature: changing it is refused."""
    request = signer.sign_header("PUT", object_url("k"), headers={"x-amz-meta-t": value}, body=b"x")
    verify(request)
    refused(
        replace_header(request, "x-amz-meta-t", value.replace("\xa0", "X").replace("\x85", "X").replace("\x1c", "X")),
        "SignatureDoesNotMatch",
    )
    refused(replace_header(request, "x-amz-meta-t", value + "z"), "SignatureDoesNotMatch")


def test_repeated_headers_are_joined_with_commas(signer: BotoSigner) -> None:
    request = signer.sign_header(
        "PUT", object_url("k"), repeated=[("x-amz-meta-multi", "one"), ("x-amz-meta-multi", " two  words ")]
    )
    assert [v for n, v in request.headers if n == "x-amz-meta-multi"] == ["one", " two  words "]
    verify(request)
    reordered = [(n, v) for n, v in request.headers if n != "x-amz-meta-multi"] + [
        ("x-amz-meta-multi", " two  words "),
        ("x-amz-meta-multi", "one"),
    ]
    refused(dataclasses.replace(request, headers=reordered), "SignatureDoesNotMatch")


def test_date_header_instead_of_x_amz_date(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"), headers={"Date": "placeholder"})
    assert not any(n == "x-amz-date" for n, _ in request.headers)
    result = verify(request)
    assert result.request_at == SIGNED_AT


@pytest.mark.parametrize(
    "payload, mode",
    [
        ("UNSIGNED-PAYLOAD", PayloadMode.UNSIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
    ],
)
def test_payload_modes(signer: BotoSigner, payload: str, mode: PayloadMode) -> None:
    result = verify(signer.sign_header("PUT", object_url("k"), payload=payload))
    assert result.payload_mode is mode
    assert result.payload_sha256 is None
    assert result.signing.timestamp == "20260314T150926Z"
    assert result.signing.scope == "20260314/us-east-1/s3/aws4_request"
    assert result.signing.signing_key == derive_signing_key(SECRET_KEY, "20260314", "us-east-1", "s3")


def test_botocore_params_route_uses_form_encoding(signer: BotoSigner) -> None:
    # AWSRequest(params=...) form-encodes the wire query (space as '+') but signs the values.
    signed = signer.sign_params("GET", object_url("k"), {"prefix": "a b+c", "x": ""})
    assert ("prefix", "a b+c") in signed.query
    verify(signed)


def test_non_canonical_path_encoding_signed_as_sent(signer: BotoSigner) -> None:
    # A client that sends (and signs) a lower-case or needless escape still verifies.
    for path in ("/bucket/a%7eb", "/bucket/a%2fb", "/bucket/%e2%82%ac"):
        verify(signer.sign_header("GET", f"http://localhost:9000{path}"))


# --- presigned -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
@pytest.mark.parametrize("key", KEYS[:6])
def test_botocore_presigned_urls_verify(signer: BotoSigner, method: str, key: str) -> None:
    request = signer.presign(method, with_query(object_url(key), {"versionId": "v 1"}), expires=600)
    result = verify(request)
    assert result.presigned
    assert result.payload_mode is PayloadMode.UNSIGNED
    assert result.expires_at == SIGNED_AT + timedelta(seconds=600)


def test_presigned_expiry(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"), expires=60)
    verify(request, now=SIGNED_AT + timedelta(seconds=60))
    error = refused(request, "AccessDenied", now=SIGNED_AT + timedelta(seconds=61))
    assert error.message == "Request has expired"
    assert error.http_status == 403


def test_presigned_from_the_future_is_refused(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"))
    refused(request, "AccessDenied", now=SIGNED_AT - timedelta(minutes=16))
    verify(request, now=SIGNED_AT - timedelta(minutes=14))


@pytest.mark.parametrize("expires", ["0", "604801", "-1", "abc", "", "1e3"])
def test_presigned_expires_bounds(signer: BotoSigner, expires: str) -> None:
    request = replace_query(signer.presign("GET", object_url("k")), "X-Amz-Expires", expires)
    refused(request, "AuthorizationQueryParametersError")


def test_presigned_max_expiry_accepted(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"), expires=604800)
    verify(request, now=SIGNED_AT + timedelta(days=6))


@pytest.mark.parametrize(
    "param", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"]
)
def test_presigned_missing_parameter(signer: BotoSigner, param: str) -> None:
    request = signer.presign("GET", object_url("k"))
    stripped = dataclasses.replace(request, query=[(n, v) for n, v in request.query if n != param])
    refused(stripped, "AuthorizationQueryParametersError")


def test_presigned_repeated_parameter(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"))
    doubled = dataclasses.replace(request, query=[*request.query, ("X-Amz-Date", query_param(request, "X-Amz-Date"))])
    refused(doubled, "AuthorizationQueryParametersError")


def test_presigned_bad_algorithm_and_date(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"))
    refused(replace_query(request, "X-Amz-Algorithm", "AWS4-HMAC-SHA512"), "AuthorizationQueryParametersError")
    refused(replace_query(request, "X-Amz-Date", "2026-03-14T15:09:26Z"), "AuthorizationQueryParametersError")
    refused(replace_query(request, "X-Amz-Date", "20260315T150926Z"), "AuthorizationQueryParametersError")


def test_presigned_with_signed_extra_header(signer: BotoSigner) -> None:
    request = signer.presign("PUT", object_url("k"), headers={"x-amz-acl": "private", "Content-Type": "a/b"})
    assert "x-amz-acl" in verify(request).signed_headers
    refused(replace_header(request, "content-type", "c/d"), "SignatureDoesNotMatch")


# --- tampering -------------------------------------------------------------------------------------


def test_tampered_header_signed_request_fails(signer: BotoSigner) -> None:
    request = signer.sign_header(
        "PUT", with_query(object_url("dir/key.txt"), {"partNumber": "1"}), headers={"x-amz-meta-a": "b"}, body=b"z"
    )
    verify(request)
    signature = header(request, "authorization").rsplit("=", 1)[1]
    tampered = [
        dataclasses.replace(request, method="POST"),
        dataclasses.replace(request, raw_path=request.raw_path + "x"),
        dataclasses.replace(request, raw_path=request.raw_path.upper()),
        replace_query(request, "partNumber", "2"),
        dataclasses.replace(request, query=[*request.query, ("acl", "")]),
        replace_header(request, "x-amz-meta-a", "c"),
        replace_header(request, "host", "evil.example.com"),
        replace_header(request, "x-amz-date", "20260314T150927Z"),
        replace_header(request, "x-amz-content-sha256", "0" * 64),
        replace_header(
            request, "authorization", header(request, "authorization").replace(signature, flip_hex(signature))
        ),
    ]
    for candidate in tampered:
        error = refused(candidate, "SignatureDoesNotMatch")
        for text in (str(error), repr(error), error.to_xml("req").decode()):
            assert signature not in text
            assert SECRET_KEY not in text


def test_tampered_presigned_request_fails(signer: BotoSigner) -> None:
    request = signer.presign("GET", with_query(object_url("k"), {"response-content-type": "a/b"}))
    verify(request)
    signature = query_param(request, "X-Amz-Signature")
    for candidate in [
        dataclasses.replace(request, method="PUT"),
        dataclasses.replace(request, raw_path="/bucket/other"),
        replace_query(request, "response-content-type", "text/html"),
        replace_query(request, "X-Amz-Expires", "7200"),
        replace_query(request, "X-Amz-Signature", flip_hex(signature)),
        replace_query(request, "X-Amz-Signature", signature.upper()[:-1]),
        replace_header(request, "host", "other:9000"),
    ]:
        refused(candidate, "SignatureDoesNotMatch")


def test_uppercase_signature_is_accepted(signer: BotoSigner) -> None:
    request = signer.presign("GET", object_url("k"))
    verify(replace_query(request, "X-Amz-Signature", query_param(request, "X-Amz-Signature").upper()))


def test_wrong_secret_fails(signer: BotoSigner) -> None:
    other = signer.but(secret_key="not-the-secret")
    refused(other.sign_header("GET", object_url("k")), "SignatureDoesNotMatch")
    refused(other.presign("GET", object_url("k")), "SignatureDoesNotMatch")


# --- identity, time, headers -----------------------------------------------------------------------


def test_unknown_access_key(signer: BotoSigner) -> None:
    stranger = signer.but(access_key="AKIDUNKNOWN")
    error = refused(stranger.sign_header("GET", object_url("k")), "InvalidAccessKeyId")
    assert error.http_status == 403
    assert error.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"
    refused(stranger.presign("GET", object_url("k")), "InvalidAccessKeyId")


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1), timedelta(days=3)]
)
def test_clock_skew_refused(signer: BotoSigner, offset: timedelta) -> None:
    request = signer.sign_header("GET", object_url("k"))
    error = refused(request, "RequestTimeTooSkewed", now=SIGNED_AT + offset)
    assert error.http_status == 403
    assert error.extra["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("offset", [timedelta(minutes=14), -timedelta(minutes=14), timedelta(0)])
def test_clock_skew_within_limit(signer: BotoSigner, offset: timedelta) -> None:
    verify(signer.sign_header("GET", object_url("k")), now=SIGNED_AT + offset)


def test_naive_now_is_utc(signer: BotoSigner) -> None:
    verify(signer.sign_header("GET", object_url("k")), now=NOW.replace(tzinfo=None))


def test_unsigned_amz_header_refused(signer: BotoSigner) -> None:
    request = signer.sign_header("PUT", object_url("k"))
    extra = dataclasses.replace(request, headers=[*request.headers, ("x-amz-acl", "public-read")])
    error = refused(extra, "AccessDenied")
    assert error.extra["HeadersNotSigned"] == "x-amz-acl"
    presigned = signer.presign("PUT", object_url("k"))
    refused(dataclasses.replace(presigned, headers=[*presigned.headers, ("x-amz-meta-x", "1")]), "AccessDenied")


def test_unsigned_ordinary_header_is_fine(signer: BotoSigner) -> None:
    request = signer.sign_header("PUT", object_url("k"))
    verify(dataclasses.replace(request, headers=[*request.headers, ("user-agent", "x"), ("expect", "100-continue")]))


def test_region_enforced_when_configured(signer: BotoSigner) -> None:
    request = signer.but(region="eu-west-1").sign_header("GET", object_url("k"))
    assert verify(request).region == "eu-west-1"
    assert verify(request, region="eu-west-1").region == "eu-west-1"
    error = refused(request, "AuthorizationHeaderMalformed", region="us-east-1")
    assert error.extra["Region"] == "us-east-1"
    presigned = signer.but(region="eu-west-1").presign("GET", object_url("k"))
    refused(presigned, "AuthorizationQueryParametersError", region="us-east-1")


def test_missing_content_sha256_header(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"))
    stripped = dataclasses.replace(request, headers=[(n, v) for n, v in request.headers if n != "x-amz-content-sha256"])
    refused(stripped, "InvalidRequest")


@pytest.mark.parametrize("value", ["abc", "STREAMING-AWS4-HMAC-SHA256-EVENTS", "SHA256", "g" * 64, ""])
def test_bad_content_sha256_value(signer: BotoSigner, value: str) -> None:
    request = replace_header(signer.sign_header("GET", object_url("k")), "x-amz-content-sha256", value)
    refused(request, "InvalidArgument")


def test_missing_or_bad_date(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"))
    no_date = dataclasses.replace(request, headers=[(n, v) for n, v in request.headers if n != "x-amz-date"])
    refused(no_date, "AccessDenied")
    refused(replace_header(request, "x-amz-date", "20261301T000000Z"), "AccessDenied")
    refused(replace_header(request, "x-amz-date", "yesterday"), "AccessDenied")


def test_credential_date_must_match_request_date(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"))
    refused(
        replace_header(request, "x-amz-date", "20260315T000000Z"),
        "AuthorizationHeaderMalformed",
        now=SIGNED_AT + timedelta(hours=9),
    )


def test_anonymous_request_returns_none() -> None:
    request = SignedRequest("GET", "/bucket/key", [("x", "y")], [("host", "localhost")])
    assert verify_request(request, now=NOW, lookup_secret=lookup_secret) is None


def test_two_auth_mechanisms_refused(signer: BotoSigner) -> None:
    presigned = signer.presign("GET", object_url("k"))
    header_signed = signer.sign_header("GET", object_url("k"))
    both = dataclasses.replace(
        presigned, headers=[*presigned.headers, ("authorization", header(header_signed, "authorization"))]
    )
    refused(both, "InvalidArgument")


def test_sigv2_refused() -> None:
    headers = [("host", "localhost"), ("authorization", "AWS AKIDEXAMPLE:c2lnbmF0dXJl"), ("date", "x")]
    refused(SignedRequest("GET", "/b/k", [], headers), "InvalidRequest")
    query = [("AWSAccessKeyId", "AKID"), ("Signature", "abc"), ("Expires", "1")]
    refused(SignedRequest("GET", "/b/k", query, [("host", "localhost")]), "InvalidRequest")


# --- Authorization header parsing ------------------------------------------------------------------

GOOD_CREDENTIAL = f"Credential={ACCESS_KEY}/20260314/us-east-1/s3/aws4_request"
GOOD_SIG = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;x-amz-date, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL},SignedHeaders=host;x-amz-date,{GOOD_SIG}",
        f"  AWS4-HMAC-SHA256   {GOOD_CREDENTIAL} ,  SignedHeaders=host;x-amz-date ,{GOOD_SIG}  ",
        f"AWS4-HMAC-SHA256 {GOOD_SIG}, {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date;HOST",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL} SignedHeaders=host;x-amz-date {GOOD_SIG}",
    ],
)
def test_authorization_header_variants_parse(value: str) -> None:
    credential, signed, signature = parse_authorization_header(value)
    assert credential.access_key_id == ACCESS_KEY
    assert credential.scope == "20260314/us-east-1/s3/aws4_request"
    assert signed == ("host", "x-amz-date")
    assert signature == "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        "",
        "AWS4-HMAC-SHA256",
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=x",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIG}, Extra=1",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;;date, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260314/us-east-1/s3, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/2026031/us-east-1/s3/aws4_request, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260314/us-east-1/ec2/aws4_request, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260314/us-east-1/s3/aws5_request, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential=/20260314/us-east-1/s3/aws4_request, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}//us-east-1/s3/aws4_request, SignedHeaders=host, {GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential {ACCESS_KEY}, SignedHeaders=host, {GOOD_SIG}",
    ],
)
def test_malformed_authorization_headers(value: str) -> None:
    request = SignedRequest(
        "GET",
        "/b/k",
        [],
        [
            ("host", "h"),
            ("authorization", value),
            ("x-amz-date", "20260314T150926Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ],
    )
    refused(request, "AuthorizationHeaderMalformed")


def test_two_authorization_headers_refused(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"))
    doubled = dataclasses.replace(
        request, headers=[*request.headers, ("authorization", header(request, "authorization"))]
    )
    refused(doubled, "AuthorizationHeaderMalformed")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), prefix=st.sampled_from(["", "AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256 Credential="]))
def test_arbitrary_authorization_text_only_raises_s3_errors(signer: BotoSigner, text: str, prefix: str) -> None:
    request = SignedRequest(
        "GET",
        "/b/k",
        [],
        [
            ("host", "h"),
            ("authorization", prefix + text),
            ("x-amz-date", "20260314T150926Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ],
    )
    try:
        verify_request(request, now=NOW, lookup_secret=lambda _: SECRET_KEY)
    except S3Error:
        pass
    else:
        pytest.fail("junk authenticated")


@settings(max_examples=200, deadline=None)
@given(
    query=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=8),
    path=st.text(max_size=40),
    headers=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=8),
)
def test_arbitrary_requests_only_raise_s3_errors(
    query: list[tuple[str, str]], path: str, headers: list[tuple[str, str]]
) -> None:
    request = SignedRequest("GET", path, query, [(n.lower(), v) for n, v in headers])
    try:
        verify_request(request, now=NOW, lookup_secret=lambda _: SECRET_KEY)
    except S3Error:
        pass


# --- property: whatever botocore signs, we verify ---------------------------------------------------

_key_text = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
_param_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=16)
_header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f\x85\xa0"), max_size=30
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=_key_text,
    # A parameter named like SigV4's own (X-Amz-Expires...) would collide with the presigned ones.
    params=st.dictionaries(
        _param_text.filter(lambda name: bool(name) and not name.lower().startswith("x-amz-")), _param_text, max_size=5
    ),
    meta=_header_value,
    presign=st.booleans(),
)
def test_any_botocore_signed_request_verifies(
    signer: BotoSigner, key: str, params: dict[str, str], meta: str, presign: bool
) -> None:
    url = with_query(object_url(key), dict(params))
    if presign:
        request = signer.presign("GET", url, headers={"x-amz-meta-m": meta})
    else:
        request = signer.sign_header("PUT", url, headers={"x-amz-meta-m": meta}, body=b"b")
    verify(request)


# --- AWS's published examples ----------------------------------------------------------------------

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, 0, 1, tzinfo=UTC)


def doc_lookup(access_key_id: str) -> str | None:
    return DOC_SECRET if access_key_id == "AKIAIOSFODNN7EXAMPLE" else None


def test_aws_example_get_object_with_range() -> None:
    request = SignedRequest(
        "GET",
        "/test.txt",
        [],
        [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("x-amz-date", "20130524T000000Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ],
    )
    result = verify_request(request, now=DOC_NOW, lookup_secret=doc_lookup, region="us-east-1")
    assert result is not None and result.payload_mode is PayloadMode.SHA256


def test_aws_example_presigned_get() -> None:
    query = parse_query(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    request = SignedRequest("GET", "/test.txt", query, [("host", "examplebucket.s3.amazonaws.com")])
    result = verify_request(request, now=DOC_NOW, lookup_secret=doc_lookup)
    assert result is not None and result.presigned
    with pytest.raises(S3Error, match="expired"):
        verify_request(request, now=DOC_NOW + timedelta(days=1), lookup_secret=doc_lookup)


def test_aws_example_streaming_seed_signature() -> None:
    request = SignedRequest(
        "PUT",
        "/examplebucket/chunkObject.txt",
        [],
        [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-decoded-content-length;x-amz-storage-class,"
                "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ],
    )
    result = verify_request(request, now=DOC_NOW, lookup_secret=doc_lookup)
    assert result is not None
    assert result.payload_mode is PayloadMode.STREAMING_SIGNED
    assert result.signing.seed_signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


# --- building blocks -------------------------------------------------------------------------------


def test_parse_query_and_canonical_query() -> None:
    pairs = parse_query("b=2&a=&uploads&a=1&x=%2B%20+&%C3%BC=%FF")
    assert pairs == [("b", "2"), ("a", ""), ("uploads", ""), ("a", "1"), ("x", "+  "), ("ü", "\udcff")]
    assert canonical_query(pairs) == "%C3%BC=%FF&a=&a=1&b=2&uploads=&x=%2B%20%20"


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(max_codepoint=0x17F, exclude_categories=["Cs"]), max_size=40))
def test_uri_encode_agrees_with_botocore(text: str) -> None:
    """UriEncode (ASCII by ``str.translate``, the rest by ``quote``) is what an SDK signs."""
    assert uri_encode(text) == percent_encode(text, safe="-_.~")
    assert all(uri_encode(chr(c)) == percent_encode(chr(c), safe="-_.~") for c in range(128))


def test_canonical_uris() -> None:
    assert canonical_uris("") == ["/"]
    assert canonical_uris("/b/a%20b~c") == ["/b/a%20b~c"]
    assert canonical_uris("/b/a%7eb") == ["/b/a~b", "/b/a%7eb"]
    assert canonical_uris("/b/a b") == ["/b/a%20b", "/b/a b"]
    assert canonical_uris("/b/a%2Fb") == ["/b/a/b", "/b/a%2Fb"]
    assert canonical_uris("/b//c/../d") == ["/b//c/../d"]


def test_signing_key_matches_aws_reference_chain() -> None:
    key = derive_signing_key(DOC_SECRET, "20130524", "us-east-1", "s3")
    manual = hmac_sha256(
        hmac_sha256(hmac_sha256(hmac_sha256(b"AWS4" + DOC_SECRET.encode(), "20130524"), "us-east-1"), "s3"),
        "aws4_request",
    )
    assert key == manual


def test_signing_key_cache_is_lru_and_keeps_no_secret() -> None:
    cache = SigningKeyCache(maxsize=2)
    first = cache.signing_key(SECRET_KEY, "20260314", "us-east-1", "s3")
    assert cache.signing_key(SECRET_KEY, "20260314", "us-east-1", "s3") is first
    cache.signing_key(SECRET_KEY, "20260315", "us-east-1", "s3")
    cache.signing_key(SECRET_KEY, "20260314", "us-east-1", "s3")  # refresh: 0315 is now the oldest
    cache.signing_key(SECRET_KEY, "20260316", "us-east-1", "s3")
    assert len(cache) == 2
    assert SECRET_KEY not in repr(cache)
    assert all(SECRET_KEY.encode() not in entry[0] for entry in cache._entries)
    cache.clear()
    assert len(cache) == 0


def test_verify_uses_injected_cache(signer: BotoSigner) -> None:
    cache = SigningKeyCache()
    verify_request(signer.sign_header("GET", object_url("k")), now=NOW, lookup_secret=lookup_secret, key_cache=cache)
    assert len(cache) == 1


def test_auth_result_repr_hides_key_and_seed(signer: BotoSigner) -> None:
    result = verify(signer.sign_header("PUT", object_url("k"), payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD"))
    text = repr(result)
    assert result.signing.seed_signature not in text
    assert result.signing.signing_key.hex() not in text
    assert repr(result.signing.signing_key) not in text


def test_session_token_is_reported_not_validated(signer: BotoSigner) -> None:
    request = signer.sign_header("GET", object_url("k"), headers={"X-Amz-Security-Token": "SESSIONTOKEN123"})
    result = verify(request)
    assert result.session_token == "SESSIONTOKEN123"
    assert "SESSIONTOKEN123" not in repr(result)
    assert verify(signer.sign_header("GET", object_url("k"))).session_token is None
    presigned = signer.presign("GET", with_query(object_url("k"), {"X-Amz-Security-Token": "qtok"}))
    assert verify(presigned).session_token == "qtok"
    # In any case: a token the service refuses must not slip past as an ordinary parameter.
    lower = signer.presign("GET", with_query(object_url("k"), {"x-amz-security-token": "ltok"}))
    assert verify(lower).session_token == "ltok"
