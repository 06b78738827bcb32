"""SigV2 verification against AWS's published examples and botocore's HmacV1 signers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import given
from hypothesis import strategies as st

from datawarehouse.api.s3 import authn, sigv2
from datawarehouse.api.s3.canonical import parse_query
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.sigv4 import AuthResult, PayloadMode, SignedRequest

ACCESS_KEY = "AKIDEXAMPLE0000002"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SIGNED_AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
NOW = SIGNED_AT + timedelta(seconds=30)
HOST = "localhost:9000"


def lookup(access_key_id: str) -> str | None:
    return SECRET_KEY if access_key_id == ACCESS_KEY else None


def to_request(request: AWSRequest) -> SignedRequest:
    parts = urlsplit(request.url)
    headers = [(name.lower(), value) for name, value in request.headers.items()]
    if not any(name == "host" for name, _ in headers):
        headers.append(("host", parts.netloc))
    return SignedRequest(request.method, parts.path, parse_query(parts.query), headers)


@pytest.fixture(autouse=True)
def botocore_clock() -> Iterator[None]:
    """botocore's V2 signers read the clock: the Date header, and Expires = now + expires."""
    with (
        mock.patch.object(HmacV1Auth, "_get_date", lambda self: format_datetime(SIGNED_AT, usegmt=True)),
        mock.patch("botocore.auth.time.time", return_value=SIGNED_AT.timestamp()),
    ):
        yield


def header_signed(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    auth_path: str | None = None,
    secret: str = SECRET_KEY,
) -> SignedRequest:
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", headers=dict(headers or {}))
    request.auth_path = auth_path
    HmacV1Auth(Credentials(ACCESS_KEY, secret)).add_auth(request)
    return to_request(request)


def presigned(method: str, path: str, *, expires: int = 3600, headers: dict[str, str] | None = None) -> SignedRequest:
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", headers=dict(headers or {}))
    HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), expires=expires).add_auth(request)
    signed = to_request(request)
    # The query form carries the signature and Expires; the headers stay what the client sends.
    sent = {"host", *(name.lower() for name in headers or {})}
    return dataclasses.replace(signed, headers=[(n, v) for n, v in signed.headers if n in sent])


def hand_signed(
    string_to_sign: str,
    *,
    path: str = "/bucket/key",
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> SignedRequest:
    """A request carrying the signature of ``string_to_sign`` (its method is the first line)."""
    authorization = ("authorization", f"AWS {ACCESS_KEY}:{sigv2.sign_v2(SECRET_KEY, string_to_sign)}")
    method = string_to_sign.split("\n", 1)[0]
    return SignedRequest(method, path, query or [], [("host", HOST), *(headers or []), authorization])


def verify(request: SignedRequest, *, now: datetime = NOW, virtual_bucket: str | None = None) -> AuthResult:
    return sigv2.verify_v2(request, now=now, lookup_secret=lookup, virtual_bucket=virtual_bucket)


def refused(request: SignedRequest, code: str, *, now: datetime = NOW) -> S3Error:
    with pytest.raises(S3Error) as caught:
        authn.verify(request, now=now, lookup_secret=lookup, signature_v2=True)
    assert caught.value.code == code, (caught.value.code, caught.value.message)
    return caught.value


def with_header(request: SignedRequest, name: str, value: str) -> SignedRequest:
    kept = [(n, v) for n, v in request.headers if n != name]
    return dataclasses.replace(request, headers=[*kept, (name, value)])


def with_query(request: SignedRequest, name: str, value: str) -> SignedRequest:
    kept = [(n, v) for n, v in request.query if n != name]
    return dataclasses.replace(request, query=[*kept, (name, value)])


# --- AWS's published examples --------------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("string_to_sign", "signature"),
    [
        ("GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg", "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        (
            "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
            "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
        ),
        ("GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/", "htDYFYduRNen8P9ZfE/s9SuKy0U="),
    ],
)
def test_aws_documented_signatures(string_to_sign: str, signature: str) -> None:
    assert sigv2.sign_v2(AWS_SECRET, string_to_sign) == signature


def test_aws_example_request_verifies_in_virtual_hosted_style() -> None:
    moment = datetime(2007, 3, 27, 19, 36, 42, tzinfo=UTC)
    request = SignedRequest(
        "GET",
        "/photos/puppy.jpg",
        [],
        [
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("authorization", "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        ],
    )
    result = sigv2.verify_v2(request, now=moment, lookup_secret=lambda _: AWS_SECRET, virtual_bucket="johnsmith")
    assert result.access_key_id == "AKIAIOSFODNN7EXAMPLE" and result.version == "AWS"
    with pytest.raises(S3Error) as caught:  # path style: the resource has no bucket in front
        sigv2.verify_v2(request, now=moment, lookup_secret=lambda _: AWS_SECRET)
    assert caught.value.code == "SignatureDoesNotMatch"


# --- botocore's signers ----------------------------------------------------------------------------

KEYS = ["simple.txt", "with space.txt", "unicodé/ключ.txt", "plus+sign", "equals=&amp", "!*'()$@,;:", "emoji 😀"]
QUERIES = [
    "",
    "?acl",
    "?uploads",
    "?partNumber=3&uploadId=abc%2Fdef%2Bghi%3D%3D",
    "?versionId=3HL4kqtJlcpXroDTDmJ%2Bqv",
    "?response-content-type=text%2Fplain&response-content-disposition=attachment%3B%20filename%3D%22a%20b%22",
    "?tagging",
    "?list-type=2&prefix=a%20b&delimiter=%2F",  # not sub-resources: not in the resource string
    "?retention",  # newer than botocore's list: botocore leaves it out
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_signed_requests_verify(key: str, query: str) -> None:
    request = header_signed("GET", f"/bucket/{percent_encode(key, safe='/~')}{query}")
    result = verify(request)
    assert result.access_key_id == ACCESS_KEY
    assert (result.presigned, result.payload_mode, result.signing, result.version) == (
        False,
        PayloadMode.UNSIGNED,
        None,
        "AWS",
    )
    assert result.request_at == SIGNED_AT
    refused(
        with_header(request, "date", format_datetime(SIGNED_AT + timedelta(seconds=1), usegmt=True)),
        "SignatureDoesNotMatch",
    )


def test_signed_headers_are_covered() -> None:
    request = header_signed(
        "PUT",
        "/bucket/key",
        headers={
            "Content-Type": "text/plain",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-Colour": "  blue ",
            "X-Amz-Acl": "private",
        },
    )
    assert verify(request).access_key_id == ACCESS_KEY
    for name, value in [
        ("content-type", "text/html"),
        ("content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("x-amz-meta-colour", "red"),
        ("x-amz-acl", "public-read"),
        ("x-amz-meta-added", "1"),
    ]:
        refused(with_header(request, name, value), "SignatureDoesNotMatch")
    # Headers outside the string to sign may change (V2 does not sign them).
    assert verify(with_header(request, "user-agent", "other")).access_key_id == ACCESS_KEY


def test_repeated_amz_headers_are_joined_with_commas() -> None:
    request = header_signed("PUT", "/bucket/key", headers={"x-amz-meta-a": "1"})
    two = dataclasses.replace(
        request, headers=[*[(n, v) for n, v in request.headers if n != "x-amz-meta-a"], ("x-amz-meta-a", "1")]
    )
    assert verify(two).access_key_id == ACCESS_KEY
    lines = sigv2.amz_header_lines({"x-amz-b": ["2"], "x-amz-a": [" x ", "y"], "other": ["z"]})
    assert lines == "x-amz-a:x,y\nx-amz-b:2\n"


def test_virtual_hosted_style_resource_starts_with_the_bucket() -> None:
    request = header_signed("GET", "/dir/key%20one", auth_path="/vhost/dir/key%20one")
    request = with_header(request, "host", "vhost.example.lan:9000")
    assert verify(request, virtual_bucket="vhost").access_key_id == ACCESS_KEY
    refused(request, "SignatureDoesNotMatch")  # without it, the resource is wrong
    root = with_header(header_signed("GET", "/?prefix=a", auth_path="/vhost/"), "host", "vhost.example.lan")
    assert verify(root, virtual_bucket="vhost").access_key_id == ACCESS_KEY
    # Through authn.verify, the bucket comes from the Host header and the server's domain.
    for signed in (request, root):
        result = authn.verify(signed, now=NOW, lookup_secret=lookup, signature_v2=True, domain="example.lan")
        assert result is not None and result.version == "AWS"
    refused(request, "SignatureDoesNotMatch")  # no domain: path style


def test_resource_forms() -> None:
    assert sigv2.resources("/b/k", [], None) == ["/b/k"]
    assert sigv2.resources("/b", [], None) == ["/b", "/b/"]
    assert sigv2.resources("/b/", [], None) == ["/b/", "/b"]
    assert sigv2.resources("/", [], "b") == ["/b/", "/b"]
    assert sigv2.resources("/", [], None) == ["/"]
    query = [("uploadId", "u"), ("partNumber", "2"), ("list-type", "2"), ("acl", "")]
    assert sigv2.resources("/b/k", query, None) == ["/b/k?acl&partNumber=2&uploadId=u"]
    assert sigv2.resources("/b/k", [("retention", ""), ("versionId", "v")], None) == [
        "/b/k?retention&versionId=v",
        "/b/k?versionId=v",
    ]


def test_bucket_requests_verify_with_or_without_a_trailing_slash() -> None:
    date = format_datetime(SIGNED_AT, usegmt=True)
    for signed in ("/bucket", "/bucket/"):
        sts = f"GET\n\n\n{date}\n{signed}?acl"
        for sent in ("/bucket", "/bucket/"):
            request = hand_signed(sts, path=sent, query=[("acl", "")], headers=[("date", date)])
            assert verify(request).access_key_id == ACCESS_KEY
        refused(hand_signed(sts, query=[("acl", "")], headers=[("date", date)]), "SignatureDoesNotMatch")


def test_newer_sub_resources_verify_whether_the_client_signed_them_or_not() -> None:
    date = format_datetime(SIGNED_AT, usegmt=True)
    for resource in ("/bucket/key?retention", "/bucket/key"):
        request = hand_signed(f"PUT\n\n\n{date}\n{resource}", query=[("retention", "")], headers=[("date", date)])
        assert verify(request).access_key_id == ACCESS_KEY


def test_date_line_is_empty_or_the_date_when_x_amz_date_is_sent() -> None:
    date = format_datetime(SIGNED_AT, usegmt=True)
    for date_line in (date, ""):
        sts = f"GET\n\n\n{date_line}\nx-amz-date:{date}\n/bucket/key"
        request = hand_signed(sts, headers=[("date", date), ("x-amz-date", date)])
        assert verify(request).request_at == SIGNED_AT


def test_x_amz_date_alone_dates_the_request_and_is_signed() -> None:
    stamp = SIGNED_AT.strftime("%Y%m%dT%H%M%SZ")
    request = hand_signed(f"GET\n\n\n\nx-amz-date:{stamp}\n/bucket/key", headers=[("x-amz-date", stamp)])
    assert verify(request).request_at == SIGNED_AT
    refused(request, "RequestTimeTooSkewed", now=SIGNED_AT + timedelta(minutes=16))


# --- time, keys and shapes ---------------------------------------------------------------------------


def test_clock_skew_is_limited_to_fifteen_minutes() -> None:
    request = header_signed("GET", "/bucket/key")
    assert verify(request, now=SIGNED_AT + timedelta(minutes=14)).access_key_id == ACCESS_KEY
    refused(request, "RequestTimeTooSkewed", now=SIGNED_AT + timedelta(minutes=16))
    refused(request, "RequestTimeTooSkewed", now=SIGNED_AT - timedelta(minutes=16))


def test_missing_or_unreadable_date_is_access_denied() -> None:
    request = header_signed("GET", "/bucket/key")
    refused(dataclasses.replace(request, headers=[(n, v) for n, v in request.headers if n != "date"]), "AccessDenied")
    refused(with_header(request, "date", "yesterday"), "AccessDenied")


def test_unknown_key_wrong_secret_and_malformed_headers() -> None:
    request = header_signed("GET", "/bucket/key")
    header = next(v for n, v in request.headers if n == "authorization")
    refused(with_header(request, "authorization", header.replace(ACCESS_KEY, "AKIDUNKNOWN")), "InvalidAccessKeyId")
    refused(header_signed("GET", "/bucket/key", secret="not the secret"), "SignatureDoesNotMatch")
    for bad in ("AWS ", "AWS nocolon", f"AWS {ACCESS_KEY}:", "AWS :abc"):
        refused(with_header(request, "authorization", bad), "InvalidArgument")
    refused(with_header(request, "authorization", f"AWS {'A' * 200}:{'x' * 28}"), "InvalidAccessKeyId")
    twice = dataclasses.replace(request, headers=[*request.headers, ("authorization", header)])
    refused(twice, "AuthorizationHeaderMalformed")


def test_a_header_and_a_signed_query_together_are_refused() -> None:
    request = header_signed("GET", "/bucket/key")
    refused(with_query(request, "Signature", "abc"), "InvalidArgument")
    refused(with_query(request, "X-Amz-Signature", "abc"), "InvalidArgument")


@given(st.text(max_size=40))
def test_any_provided_signature_other_than_the_right_one_is_refused(provided: str) -> None:
    request = header_signed("GET", "/bucket/key")
    right = next(v for n, v in request.headers if n == "authorization").rpartition(":")[2]
    forged = with_header(request, "authorization", f"AWS {ACCESS_KEY}:{provided}")
    if provided.strip().replace(" ", "+") == right:
        assert verify(forged).access_key_id == ACCESS_KEY
    else:
        refused(forged, "SignatureDoesNotMatch" if provided.strip() else "InvalidArgument")


# --- payloads ------------------------------------------------------------------------------------------


def test_session_tokens_are_reported_for_the_service_to_refuse() -> None:
    with_token = header_signed("GET", "/bucket/key", headers={"x-amz-security-token": "TOKEN"})
    assert verify(with_token).session_token == "TOKEN"
    assert verify(header_signed("GET", "/bucket/key")).session_token is None
    query = presigned("GET", "/bucket/key?x-amz-security-token=QTOKEN")
    assert verify(query).session_token == "QTOKEN"


def test_payload_hash_is_checked_when_given_and_signed_streaming_is_refused() -> None:
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    request = header_signed("PUT", "/bucket/key", headers={"x-amz-content-sha256": digest})
    result = verify(request)
    assert (result.payload_mode, result.payload_sha256) == (PayloadMode.SHA256, digest)
    trailer = header_signed(
        "PUT", "/bucket/key", headers={"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    )
    assert verify(trailer).payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    for mode in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"):
        refused(header_signed("PUT", "/bucket/key", headers={"x-amz-content-sha256": mode}), "InvalidRequest")
    refused(header_signed("PUT", "/bucket/key", headers={"x-amz-content-sha256": "nonsense"}), "InvalidArgument")


# --- query-string (presigned) --------------------------------------------------------------------------


def test_botocore_presigned_urls_verify_until_they_expire() -> None:
    request = presigned("GET", "/bucket/some%20key?response-content-type=text%2Fplain", expires=600)
    result = verify(request)
    assert (result.presigned, result.access_key_id) == (True, ACCESS_KEY)
    assert result.expires_at == SIGNED_AT + timedelta(seconds=600)
    assert verify(request, now=SIGNED_AT + timedelta(seconds=600)).presigned
    error = refused(request, "AccessDenied", now=SIGNED_AT + timedelta(seconds=601))
    assert error.message == "Request has expired"
    refused(with_query(request, "response-content-type", "text/html"), "SignatureDoesNotMatch")
    refused(with_query(request, "Expires", str(int(SIGNED_AT.timestamp()) + 601)), "SignatureDoesNotMatch")


def test_presigned_put_covers_the_content_type_it_was_signed_with() -> None:
    request = presigned("PUT", "/bucket/key", headers={"Content-Type": "text/plain"})
    assert verify(request).presigned
    refused(with_header(request, "content-type", "text/html"), "SignatureDoesNotMatch")


def test_presigned_signature_with_an_unencoded_plus_still_verifies() -> None:
    request = presigned("GET", "/bucket/key")
    signature = next(v for n, v in request.query if n == "Signature")
    assert verify(with_query(request, "Signature", signature.replace("+", " "))).presigned


def test_presigned_parameters_are_checked() -> None:
    request = presigned("GET", "/bucket/key")
    refused(presigned("GET", "/bucket/key", expires=604_800 + 3600), "AuthorizationQueryParametersError")
    for value in ("", "soon", "-5", "1" * 13):
        refused(with_query(request, "Expires", value), "AuthorizationQueryParametersError")
    refused(
        dataclasses.replace(request, query=[(n, v) for n, v in request.query if n != "Expires"]),
        "AuthorizationQueryParametersError",
    )
    refused(with_query(request, "AWSAccessKeyId", "AKIDUNKNOWN"), "InvalidAccessKeyId")
    refused(with_query(request, "Signature", "x" * 28), "SignatureDoesNotMatch")
    doubled = dataclasses.replace(request, query=[*request.query, ("Signature", "abc")])
    refused(doubled, "AuthorizationQueryParametersError")


# --- the switch --------------------------------------------------------------------------------------


def test_turned_off_version_2_is_invalid_request_and_version_4_is_untouched() -> None:
    for request in (header_signed("GET", "/bucket/key"), presigned("GET", "/bucket/key")):
        with pytest.raises(S3Error) as caught:
            authn.verify(request, now=NOW, lookup_secret=lookup, signature_v2=False)
        assert caught.value.code == "InvalidRequest" and "signature_v2" in (caught.value.message or "")
    anonymous = SignedRequest("GET", "/bucket/key", [], [("host", HOST)])
    assert authn.verify(anonymous, now=NOW, lookup_secret=lookup, signature_v2=True) is None


def test_is_v2_tells_the_schemes_apart() -> None:
    assert sigv2.is_v2(SignedRequest("GET", "/", [], [("authorization", "AWS a:b")]))
    assert not sigv2.is_v2(SignedRequest("GET", "/", [], [("authorization", "AWS4-HMAC-SHA256 Credential=x")]))
    assert sigv2.is_v2(SignedRequest("GET", "/", [("AWSAccessKeyId", "a"), ("Signature", "b")], []))
    assert not sigv2.is_v2(SignedRequest("GET", "/", [("AWSAccessKeyId", "a")], []))
    v4_too = [("AWSAccessKeyId", "a"), ("Signature", "b"), ("X-Amz-Signature", "c")]
    assert not sigv2.is_v2(SignedRequest("GET", "/", v4_too, []))
