"""Rendering S3 response documents, checked with xml.etree and with botocore's own response parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote_plus

import botocore.handlers
import botocore.parsers
import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3.xml import parse_cors_configuration, parse_tagging
from datawarehouse.api.s3.xmlmodel import (
    S3_NAMESPACE,
    BucketSummary,
    Checksums,
    CompleteMultipartUploadResult,
    CopyResult,
    CorsRule,
    DeletedObject,
    DeleteError,
    DeleteResult,
    InitiateMultipartUploadResult,
    ListAllMyBucketsResult,
    ListBucketResult,
    ListBucketResultV2,
    ListMultipartUploadsResult,
    ListPartsResult,
    ObjectSummary,
    Owner,
    PartSummary,
    Tag,
    UploadSummary,
)
from datawarehouse.api.s3.xmlrender import (
    render_complete_multipart_upload,
    render_copy_object_result,
    render_copy_part_result,
    render_cors_configuration,
    render_delete_result,
    render_initiate_multipart_upload,
    render_list_all_my_buckets,
    render_list_multipart_uploads,
    render_list_objects_v1,
    render_list_objects_v2,
    render_list_parts,
    render_location_constraint,
    render_tagging,
    timestamp,
    to_document,
    url_encode,
)

WHEN = datetime(2026, 3, 14, 15, 9, 26, 123456, tzinfo=UTC)
OWNER = Owner("owner-id", "owner")
N = f"{{{S3_NAMESPACE}}}"


@pytest.fixture(scope="module")
def sdk_parse() -> Any:
    """Parse a rendered body the way boto3 parses S3's answer to ``operation``."""
    model = botocore.session.get_session().get_service_model("s3")
    parser = botocore.parsers.create_parser("rest-xml")

    def parse(operation: str, body: bytes) -> dict[str, Any]:
        shape = model.operation_model(operation).output_shape
        parsed: dict[str, Any] = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
        parsed.pop("ResponseMetadata", None)
        return parsed

    return parse


def document(body: bytes) -> ET.Element:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(body)


def test_timestamp_format() -> None:
    assert timestamp(WHEN) == "2026-03-14T15:09:26.123Z"
    assert timestamp(WHEN.astimezone(timezone(timedelta(hours=2)))) == "2026-03-14T15:09:26.123Z"


def test_list_all_my_buckets(sdk_parse: Any) -> None:
    result = ListAllMyBucketsResult(OWNER, (BucketSummary("alpha", WHEN), BucketSummary("beta", WHEN, "eu-west-1")))
    body = render_list_all_my_buckets(result)
    root = document(body)
    assert root.tag == f"{N}ListAllMyBucketsResult"
    parsed = sdk_parse("ListBuckets", body)
    assert [b["Name"] for b in parsed["Buckets"]] == ["alpha", "beta"]
    assert parsed["Buckets"][0]["CreationDate"] == WHEN.replace(microsecond=123000)
    assert parsed["Owner"] == {"ID": "owner-id", "DisplayName": "owner"}


def objects() -> tuple[ObjectSummary, ...]:
    return (
        ObjectSummary("a b+c.txt", WHEN, "etag1", 10, owner=OWNER, checksum_algorithms=("CRC32",)),
        ObjectSummary("ünï/☃", WHEN, '"etag2-3"', 0, storage_class="STANDARD_IA", checksum_type="FULL_OBJECT"),
    )


def test_list_objects_v2(sdk_parse: Any) -> None:
    result = ListBucketResultV2(
        bucket="bucket",
        prefix="",
        max_keys=1000,
        is_truncated=True,
        contents=objects(),
        common_prefixes=("dir/", "other dir/"),
        delimiter="/",
        continuation_token="tok",
        next_continuation_token="next+tok/==",
        start_after="a",
    )
    parsed = sdk_parse("ListObjectsV2", render_list_objects_v2(result))
    assert parsed["KeyCount"] == 4
    assert parsed["IsTruncated"] is True
    assert parsed["NextContinuationToken"] == "next+tok/=="
    assert [o["Key"] for o in parsed["Contents"]] == ["a b+c.txt", "ünï/☃"]
    assert [o["ETag"] for o in parsed["Contents"]] == ['"etag1"', '"etag2-3"']
    assert parsed["Contents"][0]["ChecksumAlgorithm"] == ["CRC32"]
    assert parsed["Contents"][0]["Owner"]["ID"] == "owner-id"
    assert parsed["Contents"][1]["StorageClass"] == "STANDARD_IA"
    assert parsed["Contents"][1]["Size"] == 0
    assert [p["Prefix"] for p in parsed["CommonPrefixes"]] == ["dir/", "other dir/"]


def test_list_objects_v2_url_encoding_as_boto3_decodes(sdk_parse: Any) -> None:
    odd = "odd key+with/\x01control&<xml>%25"
    result = ListBucketResultV2(
        bucket="bucket",
        prefix="pre fix/",
        max_keys=2,
        is_truncated=False,
        contents=(ObjectSummary(odd, WHEN, "e", 1),),
        common_prefixes=("pre fix/sub dir/",),
        delimiter=" ",
        start_after="start+after",
        encoding_type="url",
    )
    body = render_list_objects_v2(result)
    assert b"\x01" not in body
    root = document(body)
    assert root.find(f"{N}Contents/{N}Key").text == "odd+key%2Bwith/%01control%26%3Cxml%3E%2525"  # type: ignore[union-attr]
    parsed = sdk_parse("ListObjectsV2", body)
    botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    assert parsed["Contents"][0]["Key"] == odd
    assert parsed["Prefix"] == "pre fix/"
    assert parsed["Delimiter"] == " "
    assert parsed["StartAfter"] == "start+after"
    assert parsed["CommonPrefixes"][0]["Prefix"] == "pre fix/sub dir/"


def test_list_objects_v1(sdk_parse: Any) -> None:
    result = ListBucketResult(
        bucket="bucket",
        prefix="p",
        max_keys=2,
        is_truncated=True,
        contents=objects(),
        marker="m a",
        next_marker="ünï/☃",
        delimiter="/",
        encoding_type="url",
    )
    parsed = sdk_parse("ListObjects", render_list_objects_v1(result))
    botocore.handlers.decode_list_object(parsed, {"encoding_type_auto_set": True})
    assert parsed["Marker"] == "m a"
    assert parsed["NextMarker"] == "ünï/☃"
    assert [o["Key"] for o in parsed["Contents"]] == ["a b+c.txt", "ünï/☃"]
    assert parsed["IsTruncated"] is True and parsed["MaxKeys"] == 2


def test_without_encoding_invalid_xml_characters_are_replaced() -> None:
    result = ListBucketResultV2("b", "", 10, False, contents=(ObjectSummary("bad\x00\x1fkey\udcff", WHEN, "e", 1),))
    root = document(render_list_objects_v2(result))
    assert root.find(f"{N}Contents/{N}Key").text == "bad\ufffd\ufffdkey\ufffd"  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(key=st.text(min_size=1, max_size=40), prefix=st.text(max_size=10))
def test_without_encoding_any_key_parses_back_with_only_non_xml_characters_replaced(key: str, prefix: str) -> None:
    """In the entries written as text and in the elements written from the tree: markup
    characters escaped, a carriage return kept (``&#13;``), nothing but what XML 1.0 cannot
    carry replaced."""
    result = ListBucketResultV2(
        "b", prefix, 10, False, contents=(ObjectSummary(key, WHEN, "e", 1),), common_prefixes=(key,)
    )
    root = document(render_list_objects_v2(result))

    def xml_safe(text: str) -> str:
        return "".join(
            c if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c > "\uffff" else "\ufffd"
            for c in text
        )

    assert root.find(f"{N}Contents/{N}Key").text == xml_safe(key)  # type: ignore[union-attr]
    assert root.find(f"{N}CommonPrefixes/{N}Prefix").text == xml_safe(key)  # type: ignore[union-attr]
    assert (root.find(f"{N}Prefix").text or "") == xml_safe(prefix)  # type: ignore[union-attr]


def test_a_carriage_return_in_a_key_survives_parsing(sdk_parse: Any) -> None:
    result = ListBucketResultV2("b", "", 10, False, contents=(ObjectSummary("a\r\nb\rc", WHEN, "e", 1),))
    body = render_list_objects_v2(result)
    assert b"a&#13;\nb&#13;c" in body
    assert sdk_parse("ListObjectsV2", body)["Contents"][0]["Key"] == "a\r\nb\rc"


def test_elements_before_the_entries_and_attributes_escaped() -> None:
    root = ET.Element("R", {"note": 'a"b&<c>\n'})
    ET.SubElement(root, "First").text = "1 & 2"
    body = to_document(root, "<E>x</E>", "<F/>")
    assert body.endswith(b'<R note="a&quot;b&amp;&lt;c&gt;&#10;"><First>1 &amp; 2</First><E>x</E><F/></R>')
    parsed = ET.fromstring(body)
    assert parsed.get("note") == 'a"b&<c>\n' and [c.tag for c in parsed] == ["First", "E", "F"]


@settings(max_examples=100, deadline=None)
@given(key=st.text(min_size=1, max_size=40))
def test_url_encoding_round_trips_any_key(key: str) -> None:
    result = ListBucketResultV2("b", "", 10, False, contents=(ObjectSummary(key, WHEN, "e", 1),), encoding_type="url")
    text = document(render_list_objects_v2(result)).find(f"{N}Contents/{N}Key").text  # type: ignore[union-attr]
    assert text is not None
    assert unquote_plus(text, errors="surrogateescape") == key
    assert url_encode(key) == text


def test_initiate_and_complete_multipart(sdk_parse: Any) -> None:
    parsed = sdk_parse(
        "CreateMultipartUpload", render_initiate_multipart_upload(InitiateMultipartUploadResult("b", "k y", "up-1"))
    )
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("b", "k y", "up-1")
    complete = CompleteMultipartUploadResult(
        "http://localhost/b/k", "b", "k", "abc-2", Checksums(crc32c="AAAAAA==", checksum_type="COMPOSITE")
    )
    parsed = sdk_parse("CompleteMultipartUpload", render_complete_multipart_upload(complete))
    assert parsed["ETag"] == '"abc-2"'
    assert parsed["ChecksumCRC32C"] == "AAAAAA=="
    assert parsed["ChecksumType"] == "COMPOSITE"
    assert parsed["Location"] == "http://localhost/b/k"


def test_list_parts(sdk_parse: Any) -> None:
    result = ListPartsResult(
        bucket="b",
        key="k",
        upload_id="u",
        part_number_marker=0,
        next_part_number_marker=2,
        max_parts=2,
        is_truncated=True,
        parts=(
            PartSummary(1, WHEN, "e1", 5 * 1024 * 1024, Checksums(sha256="c2hh")),
            PartSummary(2, WHEN, "e2", 10),
        ),
        initiator=OWNER,
        owner=OWNER,
        checksum_algorithm="SHA256",
    )
    parsed = sdk_parse("ListParts", render_list_parts(result))
    assert [p["PartNumber"] for p in parsed["Parts"]] == [1, 2]
    assert parsed["Parts"][0]["Size"] == 5 * 1024 * 1024
    assert parsed["Parts"][0]["ChecksumSHA256"] == "c2hh"
    assert parsed["NextPartNumberMarker"] == 2
    assert parsed["IsTruncated"] is True
    assert parsed["Initiator"]["ID"] == "owner-id"
    assert parsed["StorageClass"] == "STANDARD"


def test_list_multipart_uploads(sdk_parse: Any) -> None:
    result = ListMultipartUploadsResult(
        bucket="b",
        max_uploads=10,
        is_truncated=False,
        uploads=(UploadSummary("k 1", "u1", WHEN, OWNER, OWNER), UploadSummary("k2", "u2", WHEN)),
        common_prefixes=("d/",),
        prefix="",
        delimiter="/",
        key_marker="",
    )
    parsed = sdk_parse("ListMultipartUploads", render_list_multipart_uploads(result))
    assert [(u["Key"], u["UploadId"]) for u in parsed["Uploads"]] == [("k 1", "u1"), ("k2", "u2")]
    assert parsed["Uploads"][0]["Initiated"] == WHEN.replace(microsecond=123000)
    assert parsed["CommonPrefixes"] == [{"Prefix": "d/"}]
    assert parsed["MaxUploads"] == 10


def test_copy_results(sdk_parse: Any) -> None:
    copy = CopyResult(WHEN, "etag", Checksums(crc32="AAAAAA=="))
    assert sdk_parse("CopyObject", render_copy_object_result(copy))["CopyObjectResult"]["ETag"] == '"etag"'
    parsed = sdk_parse("UploadPartCopy", render_copy_part_result(copy))["CopyPartResult"]
    assert parsed["ChecksumCRC32"] == "AAAAAA=="
    assert document(render_copy_part_result(copy)).tag == f"{N}CopyPartResult"


def test_delete_result(sdk_parse: Any) -> None:
    result = DeleteResult(
        deleted=(DeletedObject("k1"), DeletedObject("k2", "v2", True, "dm")),
        errors=(DeleteError("k3", "AccessDenied", "Access Denied", "v3"),),
    )
    parsed = sdk_parse("DeleteObjects", render_delete_result(result))
    assert parsed["Deleted"] == [
        {"Key": "k1"},
        {"Key": "k2", "VersionId": "v2", "DeleteMarker": True, "DeleteMarkerVersionId": "dm"},
    ]
    assert parsed["Errors"] == [{"Key": "k3", "VersionId": "v3", "Code": "AccessDenied", "Message": "Access Denied"}]


def test_location_constraint() -> None:
    assert document(render_location_constraint("eu-west-1")).text == "eu-west-1"
    for empty in (None, ""):
        root = document(render_location_constraint(empty))
        assert root.tag == f"{N}LocationConstraint" and root.text is None


def test_tagging_round_trip(sdk_parse: Any) -> None:
    tags = (Tag("project", "dwh"), Tag("Ünïcode key", ""), Tag("a", "x = y + 1"))
    body = render_tagging(tags)
    assert parse_tagging(body) == tags
    assert sdk_parse("GetObjectTagging", body)["TagSet"] == [
        {"Key": "project", "Value": "dwh"},
        {"Key": "Ünïcode key", "Value": ""},
        {"Key": "a", "Value": "x = y + 1"},
    ]


def test_cors_round_trip(sdk_parse: Any) -> None:
    rules = (
        CorsRule(("GET", "PUT"), ("https://*.example.com",), ("*",), ("ETag",), 600, "r1"),
        CorsRule(("HEAD",), ("*",)),
    )
    body = render_cors_configuration(rules)
    assert parse_cors_configuration(body) == rules
    parsed = sdk_parse("GetBucketCors", body)["CORSRules"]
    assert parsed[0]["AllowedMethods"] == ["GET", "PUT"]
    assert parsed[0]["MaxAgeSeconds"] == 600
    assert parsed[1] == {"AllowedMethods": ["HEAD"], "AllowedOrigins": ["*"]}
