"""The router: method + path + query + Host → operation, path-style and virtual-hosted."""

from __future__ import annotations

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.router import OPERATIONS, Endpoint, route


def r(
    method: str, path: str, query: str = "", headers: dict[str, str] | None = None, domain: str | None = None
) -> Endpoint:
    pairs = [(k, v) for k, _, v in (p.partition("=") for p in query.split("&") if p)]
    return route(method, path, pairs, {"host": "127.0.0.1:9000", **(headers or {})}, domain)


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "operation"),
    [
        ("GET", "/", "", {}, "ListBuckets"),
        ("PUT", "/b", "", {}, "CreateBucket"),
        ("HEAD", "/b", "", {}, "HeadBucket"),
        ("DELETE", "/b", "", {}, "DeleteBucket"),
        ("GET", "/b", "location", {}, "GetBucketLocation"),
        ("GET", "/b", "", {}, "ListObjects"),
        ("GET", "/b", "list-type=2", {}, "ListObjectsV2"),
        ("GET", "/b", "versions", {}, "ListObjectVersions"),
        ("GET", "/b", "uploads", {}, "ListMultipartUploads"),
        ("POST", "/b", "delete", {}, "DeleteObjects"),
        ("POST", "/b", "", {"content-type": "multipart/form-data; boundary=x"}, "PostObject"),
        ("PUT", "/b/k", "", {}, "PutObject"),
        ("PUT", "/b/k", "", {"x-amz-copy-source": "a/b"}, "CopyObject"),
        ("GET", "/b/k", "", {}, "GetObject"),
        ("HEAD", "/b/k", "", {}, "HeadObject"),
        ("DELETE", "/b/k", "", {}, "DeleteObject"),
        ("POST", "/b/k", "uploads", {}, "CreateMultipartUpload"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", {"x-amz-copy-source": "a/b"}, "UploadPartCopy"),
        ("POST", "/b/k", "uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k", "uploadId=u", {}, "AbortMultipartUpload"),
        ("GET", "/b/k", "uploadId=u", {}, "ListParts"),
        ("GET", "/b/k", "tagging", {}, "GetObjectTagging"),
        ("PUT", "/b", "cors", {}, "PutBucketCors"),
        ("OPTIONS", "/b/k", "", {}, "CorsPreflight"),
    ],
)
def test_path_style(method: str, path: str, query: str, headers: dict[str, str], operation: str) -> None:
    ep = r(method, path, query, headers)
    assert ep.operation == operation and operation in OPERATIONS


def test_keys_keep_their_slashes_and_escapes() -> None:
    ep = r("GET", "/b/a/b%20c/%E2%82%AC+plus")
    assert (ep.bucket, ep.key) == ("b", "a/b c/€+plus")


def test_virtual_hosted_style() -> None:
    ep = r("GET", "/dir/file.txt", headers={"host": "photos.s3.example.lan:9000"}, domain="s3.example.lan")
    assert (ep.operation, ep.bucket, ep.key) == ("GetObject", "photos", "dir/file.txt")
    ep = r("GET", "/", headers={"host": "photos.s3.example.lan"}, domain="s3.example.lan")
    assert (ep.operation, ep.bucket) == ("ListObjects", "photos")
    # Without --domain, or for another host, the path decides.
    assert r("GET", "/x/y", headers={"host": "photos.other.lan"}, domain="s3.example.lan").bucket == "x"
    assert r("GET", "/x/y", headers={"host": "photos.s3.example.lan"}).bucket == "x"


@pytest.mark.parametrize(
    ("method", "path", "query", "code"),
    [
        ("GET", "/b", "acl", "NotImplemented"),
        ("PUT", "/b", "policy", "NotImplemented"),
        ("GET", "/b/k", "retention", "NotImplemented"),
        ("PATCH", "/b/k", "", "MethodNotAllowed"),
        ("PUT", "/", "", "MethodNotAllowed"),
        ("POST", "/b", "", "NotImplemented"),
    ],
)
def test_refusals(method: str, path: str, query: str, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        r(method, path, query)
    assert exc.value.code == code
