"""Routing: an S3 request's method, path, query and Host become one ``Endpoint`` value.

A pure function with table tests. Path-style (``/bucket/key``) always works; virtual-hosted style
(``bucket.<domain>``) works when the server was given ``--domain``. Subresources that select a
different operation (``?uploads``, ``?tagging``, ...) are matched here, so handlers never parse
query strings to decide what they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from datawarehouse.api.s3.errors import S3Error, method_not_allowed, not_implemented

# Subresources of a bucket or object that we do not support yet: answered NotImplemented (but see
# ``UNCONFIGURED_BUCKET_READS``).
_UNSUPPORTED_BUCKET = (
    "accelerate",
    "analytics",
    "intelligent-tiering",
    "inventory",
    "logging",
    "metrics",
    "notification",
    "replication",
    "requestPayment",
    "session",
    "website",
)
# Bucket features this server does not have: a GET reads them as never configured, and a PUT or
# DELETE that restates that is accepted (handlers/unconfigured.py); the rest stays NotImplemented.
UNCONFIGURED_BUCKET_READS = (
    ("accelerate", "GetBucketAccelerateConfiguration"),
    ("requestPayment", "GetBucketRequestPayment"),
    ("logging", "GetBucketLogging"),
    ("notification", "GetBucketNotificationConfiguration"),
    ("website", "GetBucketWebsite"),
    ("replication", "GetBucketReplication"),
)
UNCONFIGURED_BUCKET_WRITES = (
    ("PUT", "accelerate", "PutBucketAccelerateConfiguration"),
    ("PUT", "requestPayment", "PutBucketRequestPayment"),
    ("PUT", "logging", "PutBucketLogging"),
    ("PUT", "notification", "PutBucketNotificationConfiguration"),
    ("DELETE", "website", "DeleteBucketWebsite"),
    ("DELETE", "replication", "DeleteBucketReplication"),
)
# renameObject matters most: a PUT carrying it must never fall through to PutObject.
_UNSUPPORTED_OBJECT = ("renameObject", "restore", "select", "torrent")


# Every operation ``route`` can name (docs/s3-compatibility.md is checked against this list).
OPERATIONS = (
    "ListBuckets",
    "CreateBucket",
    "HeadBucket",
    "DeleteBucket",
    "GetBucketLocation",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListMultipartUploads",
    "PutBucketVersioning",
    "GetBucketVersioning",
    "PutBucketLifecycleConfiguration",
    "GetBucketLifecycleConfiguration",
    "DeleteBucketLifecycle",
    "PutObject",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetBucketTagging",
    "PutBucketTagging",
    "DeleteBucketTagging",
    "GetBucketCors",
    "PutBucketCors",
    "DeleteBucketCors",
    "CorsPreflight",
    "PostObject",
    "PutObjectLockConfiguration",
    "GetObjectLockConfiguration",
    "PutObjectRetention",
    "GetObjectRetention",
    "PutObjectLegalHold",
    "GetObjectLegalHold",
    "PutBucketPolicy",
    "GetBucketPolicy",
    "DeleteBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketAcl",
    "PutBucketAcl",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetBucketEncryption",
    "PutBucketEncryption",
    "DeleteBucketEncryption",
    "GetObjectAttributes",
    "GetBucketAccelerateConfiguration",
    "GetBucketRequestPayment",
    "GetBucketLogging",
    "GetBucketNotificationConfiguration",
    "GetBucketWebsite",
    "GetBucketReplication",
    "PutBucketAccelerateConfiguration",
    "PutBucketRequestPayment",
    "PutBucketLogging",
    "PutBucketNotificationConfiguration",
    "DeleteBucketWebsite",
    "DeleteBucketReplication",
    "GetPublicAccessBlock",
    "PutPublicAccessBlock",
    "DeletePublicAccessBlock",
    "GetBucketOwnershipControls",
    "PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls",
)


@dataclass(frozen=True)
class Endpoint:
    operation: str
    bucket: str | None = None
    key: str | None = None


def virtual_host_bucket(host: str | None, domain: str | None) -> str | None:
    """The bucket a Host header names in virtual-hosted style (``bucket.<domain>``), else None."""
    if not domain or not host or host.startswith("["):
        return None
    host_name = host.rsplit(":", 1)[0].lower()
    return host_name[: -len(domain) - 1] if host_name.endswith("." + domain.lower()) else None


def split_path(raw_path: str, host: str | None, domain: str | None) -> tuple[str | None, str | None]:
    """(bucket, key) from the request path, honouring virtual-hosted style for ``domain``."""
    path = unquote(raw_path.split("?", 1)[0])
    bucket = virtual_host_bucket(host, domain)
    if bucket is not None:
        key = path[1:] if path.startswith("/") else path
        return bucket, key or None
    trimmed = path[1:] if path.startswith("/") else path
    if not trimmed:
        return None, None
    bucket, _, key = trimmed.partition("/")
    return bucket, key or None


def route(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: dict[str, str],
    domain: str | None = None,
) -> Endpoint:
    """The operation a request asks for; raises ``S3Error`` (NotImplemented, MethodNotAllowed)."""
    bucket, key = split_path(raw_path, headers.get("host"), domain)
    if method == "OPTIONS":
        return Endpoint("CorsPreflight", bucket, key)
    if bucket is None:
        if method in ("GET", "HEAD"):
            return Endpoint("ListBuckets")
        raise method_not_allowed(method, ("GET",))
    names = frozenset(k for k, _ in query)  # the subresources asked for (one set: routing tests many)
    if key is None:
        return Endpoint(_bucket_operation(method, query, names, headers), bucket)
    return Endpoint(_object_operation(method, names, headers), bucket, key)


def _unsupported(present: frozenset[str], names: Sequence[str]) -> S3Error | None:
    for name in names:
        if name in present:
            return not_implemented(f"the ?{name} subresource is not supported by this server")
    return None


def _bucket_operation(
    method: str, query: Sequence[tuple[str, str]], names: frozenset[str], headers: dict[str, str]
) -> str:
    sub = {
        "GET": [
            ("location", "GetBucketLocation"),
            ("uploads", "ListMultipartUploads"),
            ("cors", "GetBucketCors"),
            ("tagging", "GetBucketTagging"),
            ("versions", "ListObjectVersions"),
            ("versioning", "GetBucketVersioning"),
            ("lifecycle", "GetBucketLifecycleConfiguration"),
            ("object-lock", "GetObjectLockConfiguration"),
            ("policyStatus", "GetBucketPolicyStatus"),
            ("policy", "GetBucketPolicy"),
            ("acl", "GetBucketAcl"),
            ("encryption", "GetBucketEncryption"),
            ("publicAccessBlock", "GetPublicAccessBlock"),
            ("ownershipControls", "GetBucketOwnershipControls"),
            *UNCONFIGURED_BUCKET_READS,
        ],
        "PUT": [
            ("cors", "PutBucketCors"),
            ("tagging", "PutBucketTagging"),
            ("versioning", "PutBucketVersioning"),
            ("lifecycle", "PutBucketLifecycleConfiguration"),
            ("object-lock", "PutObjectLockConfiguration"),
            ("policy", "PutBucketPolicy"),
            ("acl", "PutBucketAcl"),
            ("encryption", "PutBucketEncryption"),
            ("publicAccessBlock", "PutPublicAccessBlock"),
            ("ownershipControls", "PutBucketOwnershipControls"),
            *[(name, op) for method, name, op in UNCONFIGURED_BUCKET_WRITES if method == "PUT"],
        ],
        "DELETE": [
            ("cors", "DeleteBucketCors"),
            ("tagging", "DeleteBucketTagging"),
            ("lifecycle", "DeleteBucketLifecycle"),
            ("policy", "DeleteBucketPolicy"),
            ("encryption", "DeleteBucketEncryption"),
            ("publicAccessBlock", "DeletePublicAccessBlock"),
            ("ownershipControls", "DeleteBucketOwnershipControls"),
            *[(name, op) for method, name, op in UNCONFIGURED_BUCKET_WRITES if method == "DELETE"],
        ],
        "POST": [("delete", "DeleteObjects")],
    }
    for name, operation in sub.get(method, []):
        if name in names:
            return operation
    if "object-lock" in names:  # never a DeleteBucket
        raise method_not_allowed(method, ("GET", "PUT"))
    err = _unsupported(names, _UNSUPPORTED_BUCKET)
    if err is not None:
        raise err
    if method == "GET":
        return "ListObjectsV2" if ("list-type", "2") in query else "ListObjects"
    plain = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
    if method in plain:
        return plain[method]
    if method == "POST":
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return "PostObject"
        raise not_implemented("POST on a bucket needs ?delete or a multipart/form-data upload")
    raise method_not_allowed(method, ("GET", "HEAD", "PUT", "DELETE", "POST"))


# Object subresources of GET and PUT (a PUT carrying one is never a PutObject or CopyObject).
_OBJECT_SUB = {
    "GET": (
        ("retention", "GetObjectRetention"),
        ("legal-hold", "GetObjectLegalHold"),
        ("acl", "GetObjectAcl"),
        ("attributes", "GetObjectAttributes"),
    ),
    "PUT": (("retention", "PutObjectRetention"), ("legal-hold", "PutObjectLegalHold"), ("acl", "PutObjectAcl")),
}


def _object_operation(method: str, names: frozenset[str], headers: dict[str, str]) -> str:
    upload = "uploadId" in names
    if not upload:
        for name, operation in _OBJECT_SUB.get(method, ()):
            if name in names:
                return operation
        if any(name in names for name, _ in _OBJECT_SUB["GET"]):  # never a DeleteObject
            raise method_not_allowed(method, ("GET", "PUT"))
    if method == "PUT":
        if upload:  # the handler refuses a missing or bad partNumber (never a PutObject)
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if "tagging" in names:
            return "PutObjectTagging"
    elif method == "GET":
        if upload:
            return "ListParts"
        if "tagging" in names:
            return "GetObjectTagging"
    elif method == "DELETE":
        if upload:
            return "AbortMultipartUpload"
        if "tagging" in names:
            return "DeleteObjectTagging"
    elif method == "POST":
        if "uploads" in names:
            return "CreateMultipartUpload"
        if upload:
            return "CompleteMultipartUpload"
        err = _unsupported(names, _UNSUPPORTED_OBJECT)
        raise err if err is not None else not_implemented("POST on an object needs ?uploads or ?uploadId")
    err = _unsupported(names, _UNSUPPORTED_OBJECT)
    if err is not None:
        raise err
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    plain = {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    if method in plain:
        return plain[method]
    raise method_not_allowed(method, ("GET", "HEAD", "PUT", "DELETE", "POST"))
