"""Which IAM actions, on which resources, an S3 operation needs (pure code).

Follows the AWS reference "Actions, resources, and condition keys for Amazon S3" and each
operation's documented permissions: reads of a named version need the ``...Version`` action,
Copy needs PutObject on the target and GetObject on the source, the ``Delete*`` bucket
sub-resources need the matching ``Put*`` action (DeleteBucketLifecycle -> PutLifecycleConfiguration),
HeadBucket needs ListBucket, GetObjectAttributes needs GetObject too, the multipart steps are
PutObject, and the governance bypass header adds BypassGovernanceRetention. Every pair returned must be allowed.

Operation names are the router's (``api.s3.router.OPERATIONS``) plus the policy and ACL
operations. ``CorsPreflight`` needs nothing (a browser's preflight is unauthenticated; the actual
request is checked). ``DeleteObjects`` is authorized per entry, as S3 does (a denied key gets an
AccessDenied entry in the result, the others proceed): call ``actions_for`` once per key with that
entry's version id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import parse_qsl

from datawarehouse.errors import InvalidInput

Scope = Literal["bucket", "object", "account", "none"]
ALL_BUCKETS_ARN: Final = "arn:aws:s3:::*"  # the resource of ListAllMyBuckets

# operation -> (scope, action, action when a version id is named)
_TABLE: Final[Mapping[str, tuple[Scope, str, str | None]]] = {
    "ListBuckets": ("account", "s3:ListAllMyBuckets", None),
    "CreateBucket": ("bucket", "s3:CreateBucket", None),
    "HeadBucket": ("bucket", "s3:ListBucket", None),
    "DeleteBucket": ("bucket", "s3:DeleteBucket", None),
    "GetBucketLocation": ("bucket", "s3:GetBucketLocation", None),
    "ListObjects": ("bucket", "s3:ListBucket", None),
    "ListObjectsV2": ("bucket", "s3:ListBucket", None),
    "ListObjectVersions": ("bucket", "s3:ListBucketVersions", None),
    "ListMultipartUploads": ("bucket", "s3:ListBucketMultipartUploads", None),
    "PutBucketVersioning": ("bucket", "s3:PutBucketVersioning", None),
    "GetBucketVersioning": ("bucket", "s3:GetBucketVersioning", None),
    "PutBucketLifecycleConfiguration": ("bucket", "s3:PutLifecycleConfiguration", None),
    "GetBucketLifecycleConfiguration": ("bucket", "s3:GetLifecycleConfiguration", None),
    "DeleteBucketLifecycle": ("bucket", "s3:PutLifecycleConfiguration", None),
    "PutObject": ("object", "s3:PutObject", None),
    "GetObject": ("object", "s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("object", "s3:GetObject", "s3:GetObjectVersion"),
    "DeleteObject": ("object", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    "DeleteObjects": ("object", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    "CopyObject": ("object", "s3:PutObject", None),
    "CreateMultipartUpload": ("object", "s3:PutObject", None),
    "UploadPart": ("object", "s3:PutObject", None),
    "UploadPartCopy": ("object", "s3:PutObject", None),
    "CompleteMultipartUpload": ("object", "s3:PutObject", None),
    "AbortMultipartUpload": ("object", "s3:AbortMultipartUpload", None),
    "ListParts": ("object", "s3:ListMultipartUploadParts", None),
    "GetObjectTagging": ("object", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("object", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("object", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "GetBucketTagging": ("bucket", "s3:GetBucketTagging", None),
    "PutBucketTagging": ("bucket", "s3:PutBucketTagging", None),
    "DeleteBucketTagging": ("bucket", "s3:PutBucketTagging", None),
    "GetBucketCors": ("bucket", "s3:GetBucketCORS", None),
    "PutBucketCors": ("bucket", "s3:PutBucketCORS", None),
    "DeleteBucketCors": ("bucket", "s3:PutBucketCORS", None),
    "CorsPreflight": ("none", "", None),
    "PostObject": ("object", "s3:PutObject", None),
    "PutObjectLockConfiguration": ("bucket", "s3:PutBucketObjectLockConfiguration", None),
    "GetObjectLockConfiguration": ("bucket", "s3:GetBucketObjectLockConfiguration", None),
    "PutObjectRetention": ("object", "s3:PutObjectRetention", None),
    "GetObjectRetention": ("object", "s3:GetObjectRetention", None),
    "PutObjectLegalHold": ("object", "s3:PutObjectLegalHold", None),
    "GetObjectLegalHold": ("object", "s3:GetObjectLegalHold", None),
    "PutBucketPolicy": ("bucket", "s3:PutBucketPolicy", None),
    "GetBucketPolicy": ("bucket", "s3:GetBucketPolicy", None),
    "DeleteBucketPolicy": ("bucket", "s3:DeleteBucketPolicy", None),
    "GetBucketPolicyStatus": ("bucket", "s3:GetBucketPolicyStatus", None),
    "GetBucketAcl": ("bucket", "s3:GetBucketAcl", None),
    "PutBucketAcl": ("bucket", "s3:PutBucketAcl", None),
    "GetObjectAcl": ("object", "s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "GetObjectAttributes": ("object", "s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "GetBucketAccelerateConfiguration": ("bucket", "s3:GetAccelerateConfiguration", None),
    "GetBucketRequestPayment": ("bucket", "s3:GetBucketRequestPayment", None),
    "GetBucketLogging": ("bucket", "s3:GetBucketLogging", None),
    "GetBucketNotificationConfiguration": ("bucket", "s3:GetBucketNotification", None),
    "GetBucketWebsite": ("bucket", "s3:GetBucketWebsite", None),
    "GetBucketReplication": ("bucket", "s3:GetReplicationConfiguration", None),
    "PutBucketAccelerateConfiguration": ("bucket", "s3:PutAccelerateConfiguration", None),
    "PutBucketRequestPayment": ("bucket", "s3:PutBucketRequestPayment", None),
    "PutBucketLogging": ("bucket", "s3:PutBucketLogging", None),
    "PutBucketNotificationConfiguration": ("bucket", "s3:PutBucketNotification", None),
    "DeleteBucketWebsite": ("bucket", "s3:DeleteBucketWebsite", None),
    "DeleteBucketReplication": ("bucket", "s3:PutReplicationConfiguration", None),
    "GetPublicAccessBlock": ("bucket", "s3:GetBucketPublicAccessBlock", None),
    "PutPublicAccessBlock": ("bucket", "s3:PutBucketPublicAccessBlock", None),
    "DeletePublicAccessBlock": ("bucket", "s3:PutBucketPublicAccessBlock", None),
    "GetBucketOwnershipControls": ("bucket", "s3:GetBucketOwnershipControls", None),
    "PutBucketOwnershipControls": ("bucket", "s3:PutBucketOwnershipControls", None),
    "DeleteBucketOwnershipControls": ("bucket", "s3:PutBucketOwnershipControls", None),
    "PutObjectAcl": ("object", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetBucketEncryption": ("bucket", "s3:GetEncryptionConfiguration", None),
    "PutBucketEncryption": ("bucket", "s3:PutEncryptionConfiguration", None),
    "DeleteBucketEncryption": ("bucket", "s3:PutEncryptionConfiguration", None),
}

KNOWN_OPERATIONS: Final = frozenset(_TABLE)
_COPIES: Final = frozenset({"CopyObject", "UploadPartCopy"})
_BYPASSABLE: Final = frozenset({"DeleteObject", "DeleteObjects", "PutObjectRetention"})
# Writes that create an object and may carry tags, retention or a legal hold with them.
_CREATING: Final = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "PostObject"})

Need = tuple[str, str]  # (IAM action, resource ARN)


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def actions_for(
    operation: str,
    bucket: str | None,
    key: str | None,
    *,
    version_id: str | None = None,
    has_bypass_header: bool = False,
    copy_source: tuple[str, str, str | None] | None = None,
    sets_tagging: bool = False,
    sets_retention: bool = False,
    sets_legal_hold: bool = False,
    enables_object_lock: bool = False,
    sets_acl: bool = False,
    sets_ownership: bool = False,
) -> list[Need]:
    """The (action, resource ARN) pairs ``operation`` needs; all must be allowed.

    ``copy_source`` is ``(bucket, key, version_id)`` as ``handlers.copy.copy_source`` parses it.
    ``sets_tagging`` / ``sets_retention`` / ``sets_legal_hold``: an object-creating write carries
    ``x-amz-tagging`` / ``x-amz-object-lock-mode`` + retain-until / ``x-amz-object-lock-legal-hold``
    (AWS then also needs PutObjectTagging / PutObjectRetention / PutObjectLegalHold).
    ``enables_object_lock``: CreateBucket with ``x-amz-bucket-object-lock-enabled: true`` (AWS also
    needs PutBucketObjectLockConfiguration and PutBucketVersioning). ``sets_acl``: a CreateBucket
    or an object-creating write carries an ``x-amz-acl`` that grants something (``public-read``;
    AWS then also needs PutBucketAcl / PutObjectAcl; the no-op private ACLs need nothing, so
    tools that always send ``x-amz-acl: private`` work with write-only keys). ``sets_ownership``:
    CreateBucket with ``x-amz-object-ownership`` (AWS also needs PutBucketOwnershipControls).
    Raises ``InvalidInput`` for an unknown operation or a missing bucket/key/copy source.
    """
    row = _TABLE.get(operation)
    if row is None:
        raise InvalidInput(f"no IAM mapping for S3 operation {operation!r}")
    scope, action, version_action = row
    if scope == "none":
        return []
    if scope == "account":
        return [(action, ALL_BUCKETS_ARN)]
    if not bucket:
        raise InvalidInput(f"{operation}: needs a bucket")
    if scope == "bucket":
        needs = [(action, bucket_arn(bucket))]
        if operation == "CreateBucket" and enables_object_lock:
            needs += [
                ("s3:PutBucketObjectLockConfiguration", bucket_arn(bucket)),
                ("s3:PutBucketVersioning", bucket_arn(bucket)),
            ]
        if operation == "CreateBucket" and sets_acl:
            needs.append(("s3:PutBucketAcl", bucket_arn(bucket)))
        if operation == "CreateBucket" and sets_ownership:
            needs.append(("s3:PutBucketOwnershipControls", bucket_arn(bucket)))
        return needs
    if not key:
        raise InvalidInput(f"{operation}: needs an object key")
    target = object_arn(bucket, key)
    needs = [(version_action if version_id is not None and version_action else action, target)]
    if operation == "GetObjectAttributes":  # AWS: the attributes action and the read itself
        needs.append(("s3:GetObjectVersion" if version_id is not None else "s3:GetObject", target))
    if operation in _COPIES:
        if copy_source is None:
            raise InvalidInput(f"{operation}: needs a copy source")
        src_bucket, src_key, src_version = copy_source
        src_action = "s3:GetObjectVersion" if src_version is not None else "s3:GetObject"
        needs.append((src_action, object_arn(src_bucket, src_key)))
    if operation in _CREATING:
        if sets_tagging:
            needs.append(("s3:PutObjectTagging", target))
        if sets_retention:
            needs.append(("s3:PutObjectRetention", target))
        if sets_legal_hold:
            needs.append(("s3:PutObjectLegalHold", target))
        if sets_acl:
            needs.append(("s3:PutObjectAcl", target))
    if has_bypass_header and operation in _BYPASSABLE:
        needs.append(("s3:BypassGovernanceRetention", target))
    return needs


def request_condition_keys(operation: str, query: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, str]:
    """The S3 condition keys a request itself carries (lower-case header names expected):
    ``s3:prefix``/``s3:delimiter``/``s3:max-keys`` of listings, ``s3:VersionId``, the ACL (canned
    and ``s3:x-amz-grant-*``), SSE,
    If-None-Match and object-lock headers, ``s3:RequestObjectTag/<k>`` from ``x-amz-tagging``.
    Keys that need stored state (``dwh:ObjectExists``, ``s3:ExistingObjectTag/<k>``) and
    connection facts (``aws:SourceIp``) are the caller's."""
    keys: dict[str, str] = {}
    if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"):
        for name in ("prefix", "delimiter", "max-keys"):
            if name in query:
                keys[f"s3:{name}"] = query[name]
    if "versionId" in query:
        keys["s3:VersionId"] = query["versionId"]
    for header, key in (
        ("x-amz-acl", "s3:x-amz-acl"),
        ("x-amz-grant-read", "s3:x-amz-grant-read"),
        ("x-amz-grant-write", "s3:x-amz-grant-write"),
        ("x-amz-grant-read-acp", "s3:x-amz-grant-read-acp"),
        ("x-amz-grant-write-acp", "s3:x-amz-grant-write-acp"),
        ("x-amz-grant-full-control", "s3:x-amz-grant-full-control"),
        ("x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"),
        ("if-none-match", "s3:if-none-match"),
        ("x-amz-object-lock-mode", "s3:object-lock-mode"),
        ("x-amz-object-lock-retain-until-date", "s3:object-lock-retain-until-date"),
        ("x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"),
    ):
        if header in headers:
            keys[key] = headers[header]
    if "x-amz-tagging" in headers:  # URL-encoded tag set sent with the write
        for tag, value in parse_qsl(headers["x-amz-tagging"], keep_blank_values=True):
            keys[f"s3:RequestObjectTag/{tag}"] = value
    return keys
