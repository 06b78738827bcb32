"""The router: method + path + query + Host → operation, path-style and virtual-hosted."""

from __future__ import annotations

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.router import (
    _UNSUPPORTED_BUCKET,
    _UNSUPPORTED_OBJECT,
    OPERATIONS,
    UNCONFIGURED_BUCKET_READS,
    UNCONFIGURED_BUCKET_WRITES,
    Endpoint,
    route,
)

DOMAIN = "s3.example.lan"
FORM = {"content-type": "multipart/form-data; boundary=x"}
COPY = {"x-amz-copy-source": "a/b"}


def r(
    method: str, path: str, query: str = "", headers: dict[str, str] | None = None, domain: str | None = None
) -> Endpoint:
    pairs = [(k, v) for k, _, v in (p.partition("=") for p in query.split("&") if p)]
    return route(method, path, pairs, {"host": "127.0.0.1:9000", **(headers or {})}, domain)


def virtual(method: str, path: str, query: str = "", headers: dict[str, str] | None = None) -> Endpoint:
    """The same request virtual-hosted: ``/b/rest`` becomes Host ``b.<domain>`` and path ``/rest``."""
    bucket, _, rest = path[1:].partition("/")
    host = f"{bucket}.{DOMAIN}:9000" if bucket else f"{DOMAIN}:9000"
    return r(method, "/" + rest, query, {**(headers or {}), "host": host}, DOMAIN)


# (method, path, query, headers, operation): every operation the router can name.
TABLE: list[tuple[str, str, str, dict[str, str], str]] = [
    ("GET", "/", "", {}, "ListBuckets"),
    ("HEAD", "/", "", {}, "ListBuckets"),
    ("PUT", "/b", "", {}, "CreateBucket"),
    ("HEAD", "/b", "", {}, "HeadBucket"),
    ("DELETE", "/b", "", {}, "DeleteBucket"),
    ("GET", "/b", "location", {}, "GetBucketLocation"),
    ("GET", "/b", "", {}, "ListObjects"),
    ("GET", "/b", "prefix=a&delimiter=/&marker=m", {}, "ListObjects"),
    ("GET", "/b", "list-type=2", {}, "ListObjectsV2"),
    ("GET", "/b", "list-type=2&continuation-token=x&start-after=y", {}, "ListObjectsV2"),
    ("GET", "/b", "versions", {}, "ListObjectVersions"),
    ("GET", "/b", "versions&key-marker=k&version-id-marker=null", {}, "ListObjectVersions"),
    ("GET", "/b", "uploads", {}, "ListMultipartUploads"),
    ("POST", "/b", "delete", {}, "DeleteObjects"),
    ("POST", "/b", "delete", FORM, "DeleteObjects"),
    ("POST", "/b", "", FORM, "PostObject"),
    ("POST", "/b/", "", FORM, "PostObject"),
    ("GET", "/b", "tagging", {}, "GetBucketTagging"),
    ("PUT", "/b", "tagging", {}, "PutBucketTagging"),
    ("DELETE", "/b", "tagging", {}, "DeleteBucketTagging"),
    ("GET", "/b", "cors", {}, "GetBucketCors"),
    ("PUT", "/b", "cors", {}, "PutBucketCors"),
    ("DELETE", "/b", "cors", {}, "DeleteBucketCors"),
    ("GET", "/b", "versioning", {}, "GetBucketVersioning"),
    ("PUT", "/b", "versioning", {}, "PutBucketVersioning"),
    ("GET", "/b", "lifecycle", {}, "GetBucketLifecycleConfiguration"),
    ("PUT", "/b", "lifecycle", {}, "PutBucketLifecycleConfiguration"),
    ("DELETE", "/b", "lifecycle", {}, "DeleteBucketLifecycle"),
    ("OPTIONS", "/b", "", {}, "CorsPreflight"),
    ("OPTIONS", "/b/k", "", {}, "CorsPreflight"),
    ("PUT", "/b/k", "", {}, "PutObject"),
    ("PUT", "/b/k", "", COPY, "CopyObject"),
    ("GET", "/b/k", "", {}, "GetObject"),
    ("GET", "/b/k", "versionId=null&partNumber=1", {}, "GetObject"),
    ("HEAD", "/b/k", "", {}, "HeadObject"),
    ("DELETE", "/b/k", "", {}, "DeleteObject"),
    ("POST", "/b/k", "uploads", {}, "CreateMultipartUpload"),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", {}, "UploadPart"),
    ("PUT", "/b/k", "uploadId=u", {}, "UploadPart"),  # the handler refuses the missing partNumber
    ("PUT", "/b/k", "partNumber=1&uploadId=u", COPY, "UploadPartCopy"),
    ("POST", "/b/k", "uploadId=u", {}, "CompleteMultipartUpload"),
    ("DELETE", "/b/k", "uploadId=u", {}, "AbortMultipartUpload"),
    ("GET", "/b/k", "uploadId=u", {}, "ListParts"),
    ("GET", "/b/k", "tagging", {}, "GetObjectTagging"),
    ("PUT", "/b/k", "tagging", {}, "PutObjectTagging"),
    ("PUT", "/b/k", "tagging", COPY, "PutObjectTagging"),
    ("DELETE", "/b/k", "tagging", {}, "DeleteObjectTagging"),
    ("GET", "/b/k", "retention", {}, "GetObjectRetention"),
    ("PUT", "/b/k", "retention&versionId=x", {}, "PutObjectRetention"),
    ("GET", "/b/k", "legal-hold", {}, "GetObjectLegalHold"),
    ("PUT", "/b/k", "legal-hold", {}, "PutObjectLegalHold"),
    ("GET", "/b", "object-lock", {}, "GetObjectLockConfiguration"),
    ("PUT", "/b", "object-lock", {}, "PutObjectLockConfiguration"),
    ("PUT", "/b", "policy", {}, "PutBucketPolicy"),
    ("GET", "/b", "policy", {}, "GetBucketPolicy"),
    ("DELETE", "/b", "policy", {}, "DeleteBucketPolicy"),
    ("GET", "/b", "policyStatus", {}, "GetBucketPolicyStatus"),
    ("GET", "/b", "acl", {}, "GetBucketAcl"),
    ("PUT", "/b", "acl", {}, "PutBucketAcl"),
    ("GET", "/b/k", "acl", {}, "GetObjectAcl"),
    ("PUT", "/b/k", "acl", {}, "PutObjectAcl"),
    ("PUT", "/b/k", "acl", COPY, "PutObjectAcl"),
    ("GET", "/b", "encryption", {}, "GetBucketEncryption"),
    ("PUT", "/b", "encryption", {}, "PutBucketEncryption"),
    ("DELETE", "/b", "encryption", {}, "DeleteBucketEncryption"),
    ("GET", "/b", "publicAccessBlock", {}, "GetPublicAccessBlock"),
    ("PUT", "/b", "publicAccessBlock", {}, "PutPublicAccessBlock"),
    ("DELETE", "/b", "publicAccessBlock", {}, "DeletePublicAccessBlock"),
    ("GET", "/b", "ownershipControls", {}, "GetBucketOwnershipControls"),
    ("PUT", "/b", "ownershipControls", {}, "PutBucketOwnershipControls"),
    ("DELETE", "/b", "ownershipControls", {}, "DeleteBucketOwnershipControls"),
    ("GET", "/b/k", "attributes", {}, "GetObjectAttributes"),
    *[("GET", "/b", name, {}, operation) for name, operation in UNCONFIGURED_BUCKET_READS],
    *[(method, "/b", name, {}, operation) for method, name, operation in UNCONFIGURED_BUCKET_WRITES],
    ("GET", "/b/k", "attributes&versionId=v", {}, "GetObjectAttributes"),
    ("GET", "/t1:b/k", "", {}, "GetObject"),
]


def test_the_table_names_every_operation() -> None:
    assert {row[4] for row in TABLE} == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "query", "headers", "operation"), TABLE)
def test_path_style(method: str, path: str, query: str, headers: dict[str, str], operation: str) -> None:
    ep = r(method, path, query, headers)
    assert ep.operation == operation
    bucket, _, key = path[1:].partition("/")
    assert (ep.bucket, ep.key) == (bucket or None, key or None)


@pytest.mark.parametrize(("method", "path", "query", "headers", "operation"), TABLE)
def test_virtual_hosted_style(method: str, path: str, query: str, headers: dict[str, str], operation: str) -> None:
    ep = virtual(method, path, query, headers)
    assert ep.operation == operation
    bucket, _, key = path[1:].partition("/")
    assert (ep.bucket, ep.key) == (bucket or None, key or None)


def test_keys_keep_their_slashes_and_escapes() -> None:
    ep = r("GET", "/b/a/b%20c/%E2%82%AC+plus")
    assert (ep.bucket, ep.key) == ("b", "a/b c/€+plus")
    assert r("GET", "/b//double//slash/").key == "/double//slash/"
    assert r("GET", "/b/%3Fq%26x%3Dy").key == "?q&x=y"
    assert r("GET", "/b/k%2Fwith%2Fencoded").key == "k/with/encoded"


def test_virtual_hosted_details() -> None:
    ep = r("GET", "/dir/file.txt", headers={"host": "photos.s3.example.lan:9000"}, domain=DOMAIN)
    assert (ep.operation, ep.bucket, ep.key) == ("GetObject", "photos", "dir/file.txt")
    ep = r("GET", "/", headers={"host": "photos.s3.example.lan"}, domain=DOMAIN)
    assert (ep.operation, ep.bucket) == ("ListObjects", "photos")
    ep = r("GET", "/k", headers={"host": "Dotted.Name.S3.Example.Lan"}, domain=DOMAIN)
    assert (ep.bucket, ep.key) == ("dotted.name", "k")
    # The bare domain is path-style; so is any other host, and every host without --domain.
    assert r("GET", "/x/y", headers={"host": f"{DOMAIN}:9000"}, domain=DOMAIN).bucket == "x"
    assert r("GET", "/x/y", headers={"host": "photos.other.lan"}, domain=DOMAIN).bucket == "x"
    assert r("GET", "/x/y", headers={"host": "photos.s3.example.lan"}).bucket == "x"
    assert r("GET", "/x/y", headers={"host": "[::1]:9000"}, domain=DOMAIN).bucket == "x"
    assert r("GET", "/x/y", headers={"host": "evils3.example.lan"}, domain=DOMAIN).bucket == "x"


@pytest.mark.parametrize("name", _UNSUPPORTED_BUCKET)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unsupported_bucket_subresources(method: str, name: str) -> None:
    if method == "GET" and name in dict(UNCONFIGURED_BUCKET_READS):
        assert r(method, "/b", name).operation == dict(UNCONFIGURED_BUCKET_READS)[name]
        return
    writes = {(m, n): op for m, n, op in UNCONFIGURED_BUCKET_WRITES}
    if (method, name) in writes:
        assert r(method, "/b", name).operation == writes[method, name]
        return
    for call in (r, virtual):
        with pytest.raises(S3Error) as exc:
            call(method, "/b", name)
        assert exc.value.code == "NotImplemented" and exc.value.http_status == 501


@pytest.mark.parametrize("name", _UNSUPPORTED_OBJECT)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
def test_unsupported_object_subresources(method: str, name: str) -> None:
    for call in (r, virtual):
        with pytest.raises(S3Error) as exc:
            call(method, "/b/k", f"{name}&x=1")
        assert exc.value.code == "NotImplemented"


def test_unsupported_subresources_never_fall_through_to_writes() -> None:
    """A PUT with a subresource we do not serve must not become PutObject/CreateBucket."""
    for query in ("renameObject", "attributes"):
        with pytest.raises(S3Error):
            r("PUT", "/b/k", query, COPY)
    for method in ("PUT", "DELETE", "HEAD"):
        with pytest.raises(S3Error) as exc:
            r(method, "/b/k", "attributes")
        assert exc.value.code == "MethodNotAllowed"
    for query in ("website", "replication"):
        with pytest.raises(S3Error):
            r("PUT", "/b", query)
    assert r("PUT", "/b", "publicAccessBlock").operation == "PutPublicAccessBlock"
    assert r("PUT", "/b", "ownershipControls").operation == "PutBucketOwnershipControls"
    assert r("PUT", "/b/k", "acl", COPY).operation == "PutObjectAcl"
    assert r("PUT", "/b", "policy").operation == "PutBucketPolicy"
    assert r("PUT", "/b/k", "retention", COPY).operation == "PutObjectRetention"
    assert r("PUT", "/b/k", "legal-hold", COPY).operation == "PutObjectLegalHold"
    assert r("PUT", "/b", "object-lock").operation == "PutObjectLockConfiguration"
    for method in ("DELETE", "POST", "HEAD"):
        for path, query in (("/b/k", "retention"), ("/b/k", "legal-hold"), ("/b", "object-lock")):
            with pytest.raises(S3Error) as exc:
                r(method, path, query)
            assert exc.value.code == "MethodNotAllowed"


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "code"),
    [
        ("PATCH", "/b/k", "", {}, "MethodNotAllowed"),
        ("PATCH", "/b", "", {}, "MethodNotAllowed"),
        ("TRACE", "/b/k", "", {}, "MethodNotAllowed"),
        ("PROPFIND", "/b", "", {}, "MethodNotAllowed"),
        ("CONNECT", "/b/k", "", {}, "MethodNotAllowed"),
        ("PUT", "/", "", {}, "MethodNotAllowed"),
        ("POST", "/", "", FORM, "MethodNotAllowed"),
        ("DELETE", "/", "", {}, "MethodNotAllowed"),
        ("POST", "/b", "", {}, "NotImplemented"),
        ("POST", "/b", "", {"content-type": "application/x-www-form-urlencoded"}, "NotImplemented"),
        ("POST", "/b/k", "", {}, "NotImplemented"),
        ("POST", "/b/k", "", FORM, "NotImplemented"),
    ],
)
def test_refusals(method: str, path: str, query: str, headers: dict[str, str], code: str) -> None:
    with pytest.raises(S3Error) as exc:
        r(method, path, query, headers)
    assert exc.value.code == code
    if code == "MethodNotAllowed":
        assert exc.value.http_status == 405
