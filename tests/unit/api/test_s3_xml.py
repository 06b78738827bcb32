"""Parsing untrusted XML bodies: hostile documents, S3's limits, and botocore-serialised requests."""

from __future__ import annotations

from typing import Any

import botocore.serialize
import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3 import xml as s3xml
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.xml import (
    parse_complete_multipart_upload,
    parse_cors_configuration,
    parse_create_bucket_configuration,
    parse_delete,
    parse_document,
    parse_tagging,
)
from datawarehouse.api.s3.xmlmodel import Checksums, CompletedPart, CorsRule, ObjectIdentifier, Tag

NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@pytest.fixture(scope="module")
def sdk_body() -> Any:
    """Request bodies exactly as botocore's rest-xml serializer writes them."""
    model = botocore.session.get_session().get_service_model("s3")
    serializer = botocore.serialize.create_serializer("rest-xml")

    def body(operation: str, params: dict[str, Any]) -> bytes:
        request = serializer.serialize_to_request({"Bucket": "bucket", **params}, model.operation_model(operation))
        return bytes(request["body"])

    return body


def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(S3Error) as caught:
        call(*args, **kwargs)
    return caught.value.code


# --- hostile documents ------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Delete><Object><Key>&lol9;</Key></Object></Delete>"""

HOSTILE = [
    BILLION_LAUGHS,
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Delete><Object><Key>&x;</Key></Object></Delete>",
    b'<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1/evil.dtd"> %p;]>'
    b"<Delete><Object><Key>k</Key></Object></Delete>",
    b'<!DOCTYPE Delete SYSTEM "http://127.0.0.1/x.dtd"><Delete><Object><Key>k</Key></Object></Delete>',
    b"<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
    b'<!DOCTYPE d [<!ENTITY e "plain">]><Delete><Object><Key>&e;</Key></Object></Delete>',
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_documents_are_refused_unexpanded(body: bytes) -> None:
    with pytest.raises(S3Error) as caught:
        parse_delete(body)
    error = caught.value
    assert error.code == "MalformedXML"
    assert "root:" not in error.message and "lollol" not in error.message


def test_xinclude_is_not_processed() -> None:
    body = (
        b'<Delete xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<Object><Key>k<xi:include href="/etc/passwd"/></Key></Object></Delete>'
    )
    assert parse_delete(body).objects == (ObjectIdentifier("k"),)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"not xml at all",
        b"<Delete>",
        b"<Delete><Object><Key>k</Key></Object>",
        b"<Wrong><Object><Key>k</Key></Object></Wrong>",
        b"\xff\xfe<\x00D\x00",
        b'<?xml version="1.0" encoding="klingon"?><Delete/>',
        b"<Delete><Object><Key>k</Key></Object></Delete><Delete/>",
        b"<a:Delete><Object><Key>k</Key></Object></a:Delete>",
    ],
)
def test_non_xml_and_wrong_roots(body: bytes) -> None:
    assert code_of(parse_delete, body) == "MalformedXML"


def test_oversized_body_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed an oversized body")

    monkeypatch.setattr(s3xml.safe_et, "fromstring", explode)
    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 40000 + b"</Delete>"
    assert len(body) > s3xml.DEFAULT_BODY_LIMIT
    assert code_of(parse_delete, body) == "MalformedXML"
    assert code_of(parse_document, b"<a/>" * 10, "a", limit=8) == "MalformedXML"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: f"<Delete>{t}</Delete>".encode()))
def test_arbitrary_bodies_only_raise_s3_errors(body: bytes) -> None:
    for parse in (
        parse_delete,
        parse_tagging,
        parse_cors_configuration,
        parse_complete_multipart_upload,
        parse_create_bucket_configuration,
    ):
        try:
            parse(body)
        except S3Error:
            pass


# --- CreateBucketConfiguration ---------------------------------------------------------------------


def test_create_bucket_configuration(sdk_body: Any) -> None:
    body = sdk_body("CreateBucket", {"CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})
    assert parse_create_bucket_configuration(body) == "eu-west-1"
    assert parse_create_bucket_configuration(b"") is None
    assert parse_create_bucket_configuration(b"<CreateBucketConfiguration/>") is None
    plain = (
        b"<CreateBucketConfiguration><LocationConstraint> us-west-2 </LocationConstraint></CreateBucketConfiguration>"
    )
    assert parse_create_bucket_configuration(plain) == "us-west-2"
    empty = f"<CreateBucketConfiguration{NS}><LocationConstraint/></CreateBucketConfiguration>".encode()
    assert parse_create_bucket_configuration(empty) is None


# --- Delete ------------------------------------------------------------------------------------------


def test_delete_from_botocore(sdk_body: Any) -> None:
    objects = [{"Key": " spaced key "}, {"Key": "a&b<c>", "VersionId": "v1"}, {"Key": "ünï/cödé"}]
    body = sdk_body("DeleteObjects", {"Delete": {"Objects": objects, "Quiet": True}})
    request = parse_delete(body)
    assert request.quiet is True
    assert request.objects == (
        ObjectIdentifier(" spaced key "),
        ObjectIdentifier("a&b<c>", "v1"),
        ObjectIdentifier("ünï/cödé"),
    )


@pytest.mark.parametrize("quiet, expected", [("true", True), ("FALSE", False), (" True ", True)])
def test_delete_quiet(quiet: str, expected: bool) -> None:
    body = f"<Delete><Quiet>{quiet}</Quiet><Object><Key>k</Key></Object></Delete>".encode()
    assert parse_delete(body).quiet is expected


def test_delete_limits() -> None:
    def body(count: int) -> bytes:
        return (f"<Delete{NS}>" + "<Object><Key>k</Key></Object>" * count + "</Delete>").encode()

    assert len(parse_delete(body(1000)).objects) == 1000
    assert code_of(parse_delete, body(1001)) == "MalformedXML"
    assert code_of(parse_delete, body(0)) == "MalformedXML"


@pytest.mark.parametrize(
    "inner",
    [
        "<Object></Object>",
        "<Object><Key></Key></Object>",
        "<Object><Key>a</Key><Key>b</Key></Object>",
        "<Object><Key>k</Key></Object><Quiet>maybe</Quiet>",
        "<Object><Key>k</Key></Object><Quiet>true</Quiet><Quiet>true</Quiet>",
    ],
)
def test_delete_malformed(inner: str) -> None:
    assert code_of(parse_delete, f"<Delete>{inner}</Delete>".encode()) == "MalformedXML"


# --- CompleteMultipartUpload -------------------------------------------------------------------------


def test_complete_multipart_upload_from_botocore(sdk_body: Any) -> None:
    parts = [
        {"PartNumber": 1, "ETag": '"etag-1"', "ChecksumCRC32": "AAAAAA=="},
        {"PartNumber": 2, "ETag": "etag-2", "ChecksumSHA256": "x" * 44},
        {"PartNumber": 10000, "ETag": '"e"', "ChecksumCRC64NVME": "AAAAAAAAAAA="},
    ]
    body = sdk_body("CompleteMultipartUpload", {"Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}})
    assert parse_complete_multipart_upload(body) == (
        CompletedPart(1, "etag-1", Checksums(crc32="AAAAAA==")),
        CompletedPart(2, "etag-2", Checksums(sha256="x" * 44)),
        CompletedPart(10000, "e", Checksums(crc64nvme="AAAAAAAAAAA=")),
    )


def test_complete_multipart_upload_entity_quotes() -> None:
    body = (
        b"<CompleteMultipartUpload><Part><ETag>&quot;abc&quot;</ETag>"
        b"<PartNumber> 7 </PartNumber></Part></CompleteMultipartUpload>"
    )
    assert parse_complete_multipart_upload(body) == (CompletedPart(7, "abc"),)


def part(number: str, etag: str = "e") -> str:
    return f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"


@pytest.mark.parametrize(
    "parts, code",
    [
        (part("2") + part("1"), "InvalidPartOrder"),
        (part("1") + part("1"), "InvalidPartOrder"),
        (part("0"), "InvalidArgument"),
        (part("10001"), "InvalidArgument"),
        (part("-1"), "InvalidArgument"),
        (part("one"), "InvalidArgument"),
        (part("1.5"), "InvalidArgument"),
        (part("99999999999999999999"), "InvalidArgument"),
        ("", "MalformedXML"),
        ("<Part><PartNumber>1</PartNumber></Part>", "MalformedXML"),
        ("<Part><ETag>e</ETag></Part>", "MalformedXML"),
    ],
)
def test_complete_multipart_upload_errors(parts: str, code: str) -> None:
    body = f"<CompleteMultipartUpload{NS}>{parts}</CompleteMultipartUpload>".encode()
    assert code_of(parse_complete_multipart_upload, body) == code


# --- Tagging -----------------------------------------------------------------------------------------


def tagging(*pairs: tuple[str, str]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging{NS}><TagSet>{tags}</TagSet></Tagging>".encode()


def test_tagging_from_botocore(sdk_body: Any) -> None:
    tags = [
        {"Key": "project", "Value": "data warehouse"},
        {"Key": "Ünïcode key", "Value": ""},
        {"Key": "a+-=._:/@", "Value": "b"},
    ]
    body = sdk_body("PutObjectTagging", {"Key": "k", "Tagging": {"TagSet": tags}})
    assert parse_tagging(body) == (
        Tag("project", "data warehouse"),
        Tag("Ünïcode key", ""),
        Tag("a+-=._:/@", "b"),
    )


def test_tagging_limits() -> None:
    assert len(parse_tagging(tagging(*[(f"k{i}", "v") for i in range(10)]))) == 10
    assert code_of(parse_tagging, tagging(*[(f"k{i}", "v") for i in range(11)])) == "InvalidTag"
    assert len(parse_tagging(tagging(*[(f"k{i}", "v") for i in range(50)]), max_tags=50)) == 50
    assert parse_tagging(tagging()) == ()
    assert parse_tagging(tagging(("k" * 128, "v" * 256)))[0] == Tag("k" * 128, "v" * 256)


@pytest.mark.parametrize(
    "pairs",
    [
        [("k" * 129, "v")],
        [("k", "v" * 257)],
        [("", "v")],
        [("dup", "1"), ("dup", "2")],
        [("aws:reserved", "v")],
        [("bad*char", "v")],
        [("k", "bad#value")],
    ],
)
def test_invalid_tags(pairs: list[tuple[str, str]]) -> None:
    assert code_of(parse_tagging, tagging(*pairs)) == "InvalidTag"


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging/>",
        b"<Tagging><TagSet/><TagSet/></Tagging>",
        b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
    ],
)
def test_tagging_malformed(body: bytes) -> None:
    assert code_of(parse_tagging, body) == "MalformedXML"


# --- CORS --------------------------------------------------------------------------------------------


def test_cors_from_botocore(sdk_body: Any) -> None:
    rules = [
        {
            "ID": "rule-1",
            "AllowedHeaders": ["*"],
            "AllowedMethods": ["GET", "PUT"],
            "AllowedOrigins": ["https://*.example.com", "http://localhost:3000"],
            "ExposeHeaders": ["ETag", "x-amz-request-id"],
            "MaxAgeSeconds": 3000,
        },
        {"AllowedMethods": ["HEAD"], "AllowedOrigins": ["*"]},
    ]
    body = sdk_body("PutBucketCors", {"CORSConfiguration": {"CORSRules": rules}})
    assert parse_cors_configuration(body) == (
        CorsRule(
            allowed_methods=("GET", "PUT"),
            allowed_origins=("https://*.example.com", "http://localhost:3000"),
            allowed_headers=("*",),
            expose_headers=("ETag", "x-amz-request-id"),
            max_age_seconds=3000,
            id="rule-1",
        ),
        CorsRule(allowed_methods=("HEAD",), allowed_origins=("*",)),
    )


def cors(*rules: str) -> bytes:
    return (
        f"<CORSConfiguration{NS}>" + "".join(f"<CORSRule>{r}</CORSRule>" for r in rules) + "</CORSConfiguration>"
    ).encode()


GOOD_RULE = "<AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"


@pytest.mark.parametrize(
    "rules, code",
    [
        ([], "MalformedXML"),
        (["<AllowedMethod>GET</AllowedMethod>"], "MalformedXML"),
        (["<AllowedOrigin>*</AllowedOrigin>"], "MalformedXML"),
        ([GOOD_RULE + "<AllowedMethod>PATCH</AllowedMethod>"], "InvalidRequest"),
        (["<AllowedMethod>get</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"], "InvalidRequest"),
        (["<AllowedMethod>GET</AllowedMethod><AllowedOrigin>http://*.*.com</AllowedOrigin>"], "InvalidRequest"),
        ([GOOD_RULE + "<AllowedHeader>x-*-*</AllowedHeader>"], "InvalidRequest"),
        ([GOOD_RULE + "<MaxAgeSeconds>soon</MaxAgeSeconds>"], "MalformedXML"),
        ([GOOD_RULE + "<MaxAgeSeconds>-1</MaxAgeSeconds>"], "MalformedXML"),
        ([GOOD_RULE + "<ID>" + "i" * 256 + "</ID>"], "MalformedXML"),
        ([GOOD_RULE] * 101, "MalformedXML"),
        # Sent back in Access-Control-Expose-Headers, where a line break cannot go.
        ([GOOD_RULE + "<ExposeHeader>x-a\nx-b</ExposeHeader>"], "InvalidRequest"),
        ([GOOD_RULE + "<ExposeHeader>x-a&#13;x-b</ExposeHeader>"], "InvalidRequest"),
    ],
)
def test_cors_errors(rules: list[str], code: str) -> None:
    assert code_of(parse_cors_configuration, cors(*rules)) == code


def test_cors_hundred_rules_accepted() -> None:
    assert len(parse_cors_configuration(cors(*[GOOD_RULE] * 100))) == 100
