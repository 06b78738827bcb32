"""S3Error: the catalogue, the error document, and the one table from the project's exception tree."""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from datawarehouse import errors as dwh
from datawarehouse.api.s3 import errors
from datawarehouse.api.s3.errors import CATALOGUE, S3Error, s3_error_from

WHEN = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_renders_an_error_document(code: errors.S3Code) -> None:
    error = S3Error(code)
    status, message = CATALOGUE[code]
    assert (error.http_status, error.message) == (status, message)
    body = error.to_xml("req-1", host_id="host-1")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(body)
    assert root.tag == "Error"  # no namespace, as S3 sends it
    assert root.findtext("Code") == code
    assert root.findtext("Message") == message
    assert root.findtext("RequestId") == "req-1"
    assert root.findtext("HostId") == "host-1"
    assert root.find("Resource") is None


def test_resource_extra_and_headers() -> None:
    error = errors.method_not_allowed("PATCH", ["GET", "PUT"]).with_resource("/bucket/key")
    root = ET.fromstring(error.to_xml("r"))
    assert root.findtext("Resource") == "/bucket/key"
    assert root.findtext("Method") == "PATCH"
    assert error.headers == (("allow", "GET, PUT"),)
    assert error.http_status == 405
    assert "MethodNotAllowed" in repr(error) and "MethodNotAllowed" in str(error)


def test_unrenderable_text_is_made_safe() -> None:
    error = errors.invalid_argument("bad \x00 value \udcff", name="x-amz-meta-\x01")
    root = ET.fromstring(error.to_xml("r"))
    assert root.findtext("Message") == "bad \ufffd value \ufffd"


@pytest.mark.parametrize(
    "make, code, status",
    [
        (lambda: errors.signature_does_not_match(), "SignatureDoesNotMatch", 403),
        (lambda: errors.invalid_access_key_id("AKID"), "InvalidAccessKeyId", 403),
        (lambda: errors.access_denied(), "AccessDenied", 403),
        (lambda: errors.headers_not_signed(["x-amz-acl"]), "AccessDenied", 403),
        (lambda: errors.authorization_header_malformed("x", region="eu-west-1"), "AuthorizationHeaderMalformed", 400),
        (lambda: errors.authorization_query_parameters_error("x"), "AuthorizationQueryParametersError", 400),
        (lambda: errors.request_time_too_skewed("20260314T000000Z", WHEN, 900000), "RequestTimeTooSkewed", 403),
        (lambda: errors.request_expired(WHEN, WHEN), "AccessDenied", 403),
        (lambda: errors.request_not_yet_valid(WHEN), "AccessDenied", 403),
        (lambda: errors.expired_token(), "ExpiredToken", 400),
        (lambda: errors.malformed_xml(), "MalformedXML", 400),
        (lambda: errors.invalid_digest(), "InvalidDigest", 400),
        (lambda: errors.bad_digest(), "BadDigest", 400),
        (lambda: errors.content_sha256_mismatch("a" * 64, "b" * 64), "XAmzContentSHA256Mismatch", 400),
        (lambda: errors.entity_too_large(5, 6), "EntityTooLarge", 400),
        (lambda: errors.entity_too_small(5), "EntityTooSmall", 400),
        (lambda: errors.invalid_part(), "InvalidPart", 400),
        (lambda: errors.invalid_part_order(), "InvalidPartOrder", 400),
        (lambda: errors.invalid_bucket_name("A_B"), "InvalidBucketName", 400),
        (lambda: errors.precondition_failed("If-Match"), "PreconditionFailed", 412),
        (lambda: errors.not_implemented(), "NotImplemented", 501),
        (lambda: errors.method_not_allowed("POST"), "MethodNotAllowed", 405),
        (lambda: errors.incomplete_body(), "IncompleteBody", 400),
        (lambda: errors.invalid_request("x"), "InvalidRequest", 400),
        (lambda: errors.invalid_argument("x", name="n", value="v"), "InvalidArgument", 400),
        (lambda: errors.missing_content_length(), "MissingContentLength", 411),
        (lambda: errors.key_too_long(1024), "KeyTooLongError", 400),
        (lambda: errors.metadata_too_large(2048), "MetadataTooLarge", 400),
        (lambda: errors.slow_down(), "SlowDown", 503),
        (lambda: errors.internal_error(), "InternalError", 500),
        (lambda: errors.s3_error("NoSuchTagSet", Extra="1"), "NoSuchTagSet", 404),
    ],
)
def test_constructors(make: Callable[[], S3Error], code: str, status: int) -> None:
    error = make()
    assert (error.code, error.http_status) == (code, status)
    ET.fromstring(error.to_xml("r"))


def test_request_expired_reads_like_s3() -> None:
    error = errors.request_expired(WHEN, WHEN)
    assert error.message == "Request has expired"
    assert error.extra == {"Expires": "2026-03-14T15:09:26Z", "ServerTime": "2026-03-14T15:09:26Z"}


# --- the table from the project's exception tree ----------------------------------------------------


@pytest.mark.parametrize(
    "exc, code, status",
    [
        (dwh.NoSuchBucket("b"), "NoSuchBucket", 404),
        (dwh.NoSuchKey("k"), "NoSuchKey", 404),
        (dwh.NoSuchUpload("u"), "NoSuchUpload", 404),
        (dwh.BucketAlreadyExists("b"), "BucketAlreadyOwnedByYou", 409),
        (dwh.BucketNotEmpty("b"), "BucketNotEmpty", 409),
        (dwh.InvalidRange("r"), "InvalidRange", 416),
        (dwh.InvalidInput("x"), "InvalidArgument", 400),
        (dwh.InvalidBucketName("Bad_Name"), "InvalidBucketName", 400),
        (dwh.InvalidKey("k"), "InvalidArgument", 400),
        (dwh.EntityTooLarge("5 TiB max"), "EntityTooLarge", 400),
        (dwh.InvalidStorageClass("ec"), "InvalidStorageClass", 400),
        (dwh.UnsafePath("/srv/data/../x"), "InvalidArgument", 400),
        (dwh.ConfigError("erasure.parity: must be >= 1"), "InternalError", 500),
        (dwh.IntegrityError("chunk"), "InternalError", 500),
        (dwh.CorruptFrame("frame"), "InternalError", 500),
        (dwh.AuthenticationFailed("tag"), "InternalError", 500),
        (dwh.DataUnavailable("3 of 6"), "ServiceUnavailable", 503),
        (dwh.StorageError("/disk1: EIO"), "InternalError", 500),
        (dwh.BlobNotFound("blob"), "InternalError", 500),
        (dwh.WrongKey("k"), "InternalError", 500),
        (dwh.DataDirLocked("d"), "InternalError", 500),
        (dwh.MetadataError("m"), "InternalError", 500),
        (dwh.ConcurrentModification("c"), "ServiceUnavailable", 503),
        (dwh.NoSuchDisk("d"), "NotFound", 404),
        (dwh.DiskAlreadyPresent("d"), "OperationAborted", 409),
    ],
)
def test_project_errors_map_through_one_table(exc: dwh.DwhError, code: str, status: int) -> None:
    error = s3_error_from(exc, resource="/b/k")
    assert (error.code, error.http_status, error.resource) == (code, status, "/b/k")
    if status >= 500 or isinstance(exc, dwh.UnsafePath):
        assert error.message == CATALOGUE[error.code][1]  # internals never reach the client


def test_client_errors_keep_the_project_message() -> None:
    assert s3_error_from(dwh.InvalidInput("max-keys must be >= 0")).message == "max-keys must be >= 0"
    assert s3_error_from(dwh.InvalidInput("")).message == CATALOGUE["InvalidArgument"][1]


def test_every_project_error_class_maps() -> None:
    classes = [c for _, c in inspect.getmembers(dwh, inspect.isclass) if issubclass(c, dwh.DwhError)]
    assert len(classes) > 20
    for cls in classes:
        error = s3_error_from(cls("detail"))
        assert error.code in CATALOGUE
        assert 400 <= error.http_status < 600


def test_foreign_and_s3_errors() -> None:
    bug = s3_error_from(KeyError("secret-looking internals"))
    assert bug.code == "InternalError" and "secret" not in bug.message
    original = errors.slow_down()
    assert s3_error_from(original) is original
    assert s3_error_from(original, resource="/b").resource == "/b"
