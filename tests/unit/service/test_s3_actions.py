"""S3 operation -> IAM (action, resource) pairs, for every operation the router knows."""

from __future__ import annotations

import pytest

from datawarehouse.api.s3.router import OPERATIONS
from datawarehouse.errors import InvalidInput
from datawarehouse.service.policy_parse import KNOWN_S3_ACTIONS
from datawarehouse.service.s3_actions import (
    ALL_BUCKETS_ARN,
    KNOWN_OPERATIONS,
    actions_for,
    request_condition_keys,
)

B = "arn:aws:s3:::b"
OBJ = "arn:aws:s3:::b/k"
EXTRA_OPERATIONS = {
    "PutBucketPolicy",
    "GetBucketPolicy",
    "DeleteBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketAcl",
    "PutBucketAcl",
    "GetObjectAcl",
    "PutObjectAcl",
}

# operation -> expected pairs for (bucket "b", key "k", no version, no bypass)
PLAIN: dict[str, list[tuple[str, str]]] = {
    "ListBuckets": [("s3:ListAllMyBuckets", ALL_BUCKETS_ARN)],
    "CreateBucket": [("s3:CreateBucket", B)],
    "HeadBucket": [("s3:ListBucket", B)],
    "DeleteBucket": [("s3:DeleteBucket", B)],
    "GetBucketLocation": [("s3:GetBucketLocation", B)],
    "ListObjects": [("s3:ListBucket", B)],
    "ListObjectsV2": [("s3:ListBucket", B)],
    "ListObjectVersions": [("s3:ListBucketVersions", B)],
    "ListMultipartUploads": [("s3:ListBucketMultipartUploads", B)],
    "PutBucketVersioning": [("s3:PutBucketVersioning", B)],
    "GetBucketVersioning": [("s3:GetBucketVersioning", B)],
    "PutBucketLifecycleConfiguration": [("s3:PutLifecycleConfiguration", B)],
    "GetBucketLifecycleConfiguration": [("s3:GetLifecycleConfiguration", B)],
    "DeleteBucketLifecycle": [("s3:PutLifecycleConfiguration", B)],
    "PutObject": [("s3:PutObject", OBJ)],
    "GetObject": [("s3:GetObject", OBJ)],
    "HeadObject": [("s3:GetObject", OBJ)],
    "DeleteObject": [("s3:DeleteObject", OBJ)],
    "DeleteObjects": [("s3:DeleteObject", OBJ)],
    "CopyObject": [("s3:PutObject", OBJ), ("s3:GetObject", "arn:aws:s3:::src/sk")],
    "CreateMultipartUpload": [("s3:PutObject", OBJ)],
    "UploadPart": [("s3:PutObject", OBJ)],
    "UploadPartCopy": [("s3:PutObject", OBJ), ("s3:GetObject", "arn:aws:s3:::src/sk")],
    "CompleteMultipartUpload": [("s3:PutObject", OBJ)],
    "AbortMultipartUpload": [("s3:AbortMultipartUpload", OBJ)],
    "ListParts": [("s3:ListMultipartUploadParts", OBJ)],
    "GetObjectTagging": [("s3:GetObjectTagging", OBJ)],
    "PutObjectTagging": [("s3:PutObjectTagging", OBJ)],
    "DeleteObjectTagging": [("s3:DeleteObjectTagging", OBJ)],
    "GetBucketTagging": [("s3:GetBucketTagging", B)],
    "PutBucketTagging": [("s3:PutBucketTagging", B)],
    "DeleteBucketTagging": [("s3:PutBucketTagging", B)],
    "GetBucketCors": [("s3:GetBucketCORS", B)],
    "PutBucketCors": [("s3:PutBucketCORS", B)],
    "DeleteBucketCors": [("s3:PutBucketCORS", B)],
    "CorsPreflight": [],
    "PostObject": [("s3:PutObject", OBJ)],
    "PutObjectLockConfiguration": [("s3:PutBucketObjectLockConfiguration", B)],
    "GetObjectLockConfiguration": [("s3:GetBucketObjectLockConfiguration", B)],
    "PutObjectRetention": [("s3:PutObjectRetention", OBJ)],
    "GetObjectRetention": [("s3:GetObjectRetention", OBJ)],
    "PutObjectLegalHold": [("s3:PutObjectLegalHold", OBJ)],
    "GetObjectLegalHold": [("s3:GetObjectLegalHold", OBJ)],
    "PutBucketPolicy": [("s3:PutBucketPolicy", B)],
    "GetBucketPolicy": [("s3:GetBucketPolicy", B)],
    "DeleteBucketPolicy": [("s3:DeleteBucketPolicy", B)],
    "GetBucketPolicyStatus": [("s3:GetBucketPolicyStatus", B)],
    "GetBucketAcl": [("s3:GetBucketAcl", B)],
    "PutBucketAcl": [("s3:PutBucketAcl", B)],
    "GetObjectAcl": [("s3:GetObjectAcl", OBJ)],
    "PutObjectAcl": [("s3:PutObjectAcl", OBJ)],
    "GetBucketEncryption": [("s3:GetEncryptionConfiguration", B)],
    "PutBucketEncryption": [("s3:PutEncryptionConfiguration", B)],
    "DeleteBucketEncryption": [("s3:PutEncryptionConfiguration", B)],
    "GetObjectAttributes": [("s3:GetObjectAttributes", OBJ), ("s3:GetObject", OBJ)],
    "GetBucketAccelerateConfiguration": [("s3:GetAccelerateConfiguration", B)],
    "GetBucketRequestPayment": [("s3:GetBucketRequestPayment", B)],
    "GetBucketLogging": [("s3:GetBucketLogging", B)],
    "GetBucketNotificationConfiguration": [("s3:GetBucketNotification", B)],
    "GetBucketWebsite": [("s3:GetBucketWebsite", B)],
    "GetBucketReplication": [("s3:GetReplicationConfiguration", B)],
    "PutBucketAccelerateConfiguration": [("s3:PutAccelerateConfiguration", B)],
    "PutBucketRequestPayment": [("s3:PutBucketRequestPayment", B)],
    "PutBucketLogging": [("s3:PutBucketLogging", B)],
    "PutBucketNotificationConfiguration": [("s3:PutBucketNotification", B)],
    "DeleteBucketWebsite": [("s3:DeleteBucketWebsite", B)],
    "DeleteBucketReplication": [("s3:PutReplicationConfiguration", B)],
    "GetPublicAccessBlock": [("s3:GetBucketPublicAccessBlock", B)],
    "PutPublicAccessBlock": [("s3:PutBucketPublicAccessBlock", B)],
    "DeletePublicAccessBlock": [("s3:PutBucketPublicAccessBlock", B)],
    "GetBucketOwnershipControls": [("s3:GetBucketOwnershipControls", B)],
    "PutBucketOwnershipControls": [("s3:PutBucketOwnershipControls", B)],
    "DeleteBucketOwnershipControls": [("s3:PutBucketOwnershipControls", B)],
}


def test_every_router_operation_has_a_mapping() -> None:
    missing = set(OPERATIONS) - KNOWN_OPERATIONS
    assert not missing, f"router operations without an IAM mapping: {sorted(missing)}"
    assert set(OPERATIONS) | EXTRA_OPERATIONS == KNOWN_OPERATIONS == set(PLAIN)


@pytest.mark.parametrize("operation", sorted(PLAIN))
def test_plain_mapping(operation: str) -> None:
    assert actions_for(operation, "b", "k", copy_source=("src", "sk", None)) == PLAIN[operation]


@pytest.mark.parametrize("operation", sorted(PLAIN))
def test_every_action_is_a_known_s3_action(operation: str) -> None:
    for action, _ in actions_for(operation, "b", "k", version_id="v", copy_source=("s", "k", "v")):
        assert action.removeprefix("s3:").lower() in KNOWN_S3_ACTIONS


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("GetObject", "s3:GetObjectVersion"),
        ("HeadObject", "s3:GetObjectVersion"),
        ("DeleteObject", "s3:DeleteObjectVersion"),
        ("DeleteObjects", "s3:DeleteObjectVersion"),
        ("GetObjectTagging", "s3:GetObjectVersionTagging"),
        ("PutObjectTagging", "s3:PutObjectVersionTagging"),
        ("DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
        ("GetObjectAcl", "s3:GetObjectVersionAcl"),
        ("PutObjectAcl", "s3:PutObjectVersionAcl"),
        ("PutObjectRetention", "s3:PutObjectRetention"),  # no version variant in IAM
        ("GetObjectLegalHold", "s3:GetObjectLegalHold"),
    ],
)
def test_version_id_selects_the_version_action(operation: str, action: str) -> None:
    assert actions_for(operation, "b", "k", version_id="3HL4kqtJ")[0] == (action, OBJ)


def test_object_attributes_of_a_version_need_both_version_actions() -> None:
    assert actions_for("GetObjectAttributes", "b", "k", version_id="3HL4kqtJ") == [
        ("s3:GetObjectVersionAttributes", OBJ),
        ("s3:GetObjectVersion", OBJ),
    ]


def test_copy_of_a_source_version_needs_get_object_version() -> None:
    assert actions_for("CopyObject", "b", "k", copy_source=("src", "a/b", "v1")) == [
        ("s3:PutObject", OBJ),
        ("s3:GetObjectVersion", "arn:aws:s3:::src/a/b"),
    ]
    with pytest.raises(InvalidInput, match="copy source"):
        actions_for("UploadPartCopy", "b", "k")


@pytest.mark.parametrize("operation", ["DeleteObject", "DeleteObjects", "PutObjectRetention"])
def test_bypass_header_adds_bypass_governance(operation: str) -> None:
    needs = actions_for(operation, "b", "k", has_bypass_header=True)
    assert needs[-1] == ("s3:BypassGovernanceRetention", OBJ)


def test_bypass_header_is_ignored_where_it_means_nothing() -> None:
    assert actions_for("GetObject", "b", "k", has_bypass_header=True) == [("s3:GetObject", OBJ)]


def test_writes_with_tags_retention_or_legal_hold() -> None:
    needs = actions_for("PutObject", "b", "k", sets_tagging=True, sets_retention=True, sets_legal_hold=True)
    assert needs == [
        ("s3:PutObject", OBJ),
        ("s3:PutObjectTagging", OBJ),
        ("s3:PutObjectRetention", OBJ),
        ("s3:PutObjectLegalHold", OBJ),
    ]
    assert actions_for("UploadPart", "b", "k", sets_tagging=True) == [("s3:PutObject", OBJ)]
    assert actions_for("CreateBucket", "b", None, enables_object_lock=True) == [
        ("s3:CreateBucket", B),
        ("s3:PutBucketObjectLockConfiguration", B),
        ("s3:PutBucketVersioning", B),
    ]
    assert actions_for("CreateBucket", "b", None, sets_ownership=True) == [
        ("s3:CreateBucket", B),
        ("s3:PutBucketOwnershipControls", B),
    ]


def test_bad_calls() -> None:
    with pytest.raises(InvalidInput, match="no IAM mapping"):
        actions_for("SelectObjectContent", "b", "k")
    with pytest.raises(InvalidInput, match="needs a bucket"):
        actions_for("GetBucketTagging", None, None)
    with pytest.raises(InvalidInput, match="needs an object key"):
        actions_for("GetObject", "b", None)


def test_keys_with_special_characters_are_kept_verbatim() -> None:
    assert actions_for("GetObject", "b", "a b/ü*?") == [("s3:GetObject", "arn:aws:s3:::b/a b/ü*?")]


def test_request_condition_keys() -> None:
    keys = request_condition_keys(
        "ListObjectsV2",
        {"prefix": "home/alice/", "delimiter": "/", "max-keys": "100", "list-type": "2"},
        {"x-amz-acl": "private"},
    )
    assert keys == {"s3:prefix": "home/alice/", "s3:delimiter": "/", "s3:max-keys": "100", "s3:x-amz-acl": "private"}
    put = request_condition_keys(
        "PutObject",
        {"prefix": "ignored"},
        {
            "x-amz-tagging": "team=blue&empty=",
            "x-amz-object-lock-mode": "GOVERNANCE",
            "if-none-match": "*",
            "x-amz-server-side-encryption": "AES256",
        },
    )
    assert put == {
        "s3:RequestObjectTag/team": "blue",
        "s3:RequestObjectTag/empty": "",
        "s3:object-lock-mode": "GOVERNANCE",
        "s3:if-none-match": "*",
        "s3:x-amz-server-side-encryption": "AES256",
    }
    assert request_condition_keys("GetObject", {"versionId": "v1"}, {}) == {"s3:VersionId": "v1"}
