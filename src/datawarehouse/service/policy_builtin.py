"""Built-in identity policies: named, documented JSON documents parsed by the same parser as
any user's policy (so they cannot drift from what the evaluator understands).

Identity policies never reach another tenant's buckets on their own (see ``policy.evaluate``), so
``arn:aws:s3:::*`` below means "every bucket of the caller's tenant" in practice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from datawarehouse.errors import InvalidInput
from datawarehouse.service.policy_parse import Policy, parse_policy

READWRITE: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            # Everything S3 on the tenant's buckets, bucket configuration included.
            {"Sid": "AllS3", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*"},
        ],
    },
    indent=2,
)

READONLY: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            # Get* and List* read objects, versions, tags, retention and bucket settings but change
            # nothing (the same shape as AWS's AmazonS3ReadOnlyAccess).
            {"Sid": "ReadS3", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "arn:aws:s3:::*"},
        ],
    },
    indent=2,
)

WRITEONLY: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                # What backup tools (restic, rclone, dwh backup) need to add data: PutObject is
                # also the IAM action of CreateMultipartUpload, UploadPart and
                # CompleteMultipartUpload; aborting and listing uploads lets a tool clean up after
                # itself. Listing names (ListBucket, HeadBucket) lets tools see what is already
                # stored; reading is limited to the key's own objects (NeverReadOthers), which a
                # tool such as restic needs for its repository config, keys and index.
                "Sid": "AddObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:DeleteObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                    "s3:ListBucketMultipartUploads",
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                ],
                "Resource": "arn:aws:s3:::*",
            },
            {
                # A stolen backup key must not leak anyone else's data: no bodies, versions, tags
                # or ACLs of objects another principal wrote (dwh:ObjectOwner is the writer's ARN,
                # "" when unknown, absent only when there is no such object: a 404, not a leak).
                # Explicit (not just "not allowed") so that it still binds when this policy
                # narrows a service account whose parent may read everything.
                "Sid": "NeverReadOthers",
                "Effect": "Deny",
                "Action": "s3:GetObject*",
                "Resource": "arn:aws:s3:::*",
                "Condition": {
                    "Null": {"dwh:ObjectOwner": "false"},
                    "StringNotEquals": {"dwh:ObjectOwner": "${aws:PrincipalArn}"},
                },
            },
            {
                # ... and must not destroy them: no deletes, but of its own lock files. Backup
                # tools lock their repository while they work (restic: ``locks/<id>``) and must
                # remove the lock afterwards (rest-server's append-only mode makes the same
                # exception); a lock holds no backup data, and another principal's lock stays.
                "Sid": "NeverDelete",
                "Effect": "Deny",
                "Action": ["s3:DeleteObject*", "s3:DeleteBucket"],
                "NotResource": "arn:aws:s3:::*/locks/*",
            },
            {
                "Sid": "NeverDeleteOthersLocks",
                "Effect": "Deny",
                "Action": "s3:DeleteObject*",
                "Resource": "arn:aws:s3:::*/locks/*",
                "Condition": {"StringNotEqualsIfExists": {"dwh:ObjectOwner": "${aws:PrincipalArn}"}},
            },
            {
                # and never a permanent deletion (of a version), not even of a lock
                "Sid": "NeverDeleteVersions",
                "Effect": "Deny",
                "Action": "s3:DeleteObjectVersion",
                "Resource": "arn:aws:s3:::*",
            },
            {
                # No overwrite: replacing an existing key is a delete in disguise on an
                # unversioned bucket. The server supplies dwh:ObjectExists for object writes;
                # IfExists makes a write without that fact refused (fail closed).
                "Sid": "NeverOverwrite",
                "Effect": "Deny",
                "Action": "s3:PutObject*",
                "Resource": "arn:aws:s3:::*",
                "Condition": {"BoolIfExists": {"dwh:ObjectExists": "true"}},
            },
            {
                # No way around the two rules above: a bucket policy, ACL, lifecycle rule or
                # versioning change could expose or expire data; retention, legal-hold and
                # governance bypass could shorten the protection of what is stored.
                "Sid": "NeverReconfigure",
                "Effect": "Deny",
                "Action": [
                    "s3:PutBucketPolicy",
                    "s3:DeleteBucketPolicy",
                    "s3:PutBucketAcl",
                    "s3:PutLifecycleConfiguration",
                    "s3:PutBucketVersioning",
                    "s3:PutBucketObjectLockConfiguration",
                    "s3:PutObjectRetention",
                    "s3:PutObjectLegalHold",
                    "s3:BypassGovernanceRetention",
                ],
                "Resource": "arn:aws:s3:::*",
            },
        ],
    },
    indent=2,
)

CONSOLE_ADMIN: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            # The tenant administrator: every S3 action and every admin API action (users, keys,
            # policies, quotas of the tenant). Admin checks use resource "*".
            {"Sid": "Everything", "Effect": "Allow", "Action": ["s3:*", "dwh-admin:*"], "Resource": "*"},
        ],
    },
    indent=2,
)

BUILTIN_POLICIES: Final[Mapping[str, Policy]] = MappingProxyType(
    {
        "readwrite": parse_policy(READWRITE, "identity", name="readwrite"),
        "readonly": parse_policy(READONLY, "identity", name="readonly"),
        "writeonly": parse_policy(WRITEONLY, "identity", name="writeonly"),
        "consoleAdmin": parse_policy(CONSOLE_ADMIN, "identity", name="consoleAdmin"),
        "admin": parse_policy(CONSOLE_ADMIN, "identity", name="admin"),  # alias of consoleAdmin
    }
)


def builtin_policy(name: str) -> Policy:
    try:
        return BUILTIN_POLICIES[name]
    except KeyError:
        raise InvalidInput(f"no built-in policy {name!r} (known: {', '.join(sorted(BUILTIN_POLICIES))})") from None
