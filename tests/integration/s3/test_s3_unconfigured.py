"""Bucket features this server does not have, read with boto3 the way tools read them (Terraform's
bucket refresh, bucket browsers): each answers as S3 does for a bucket that never configured it,
writing one answers NotImplemented, and a missing bucket is NoSuchBucket."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3http import code


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def fields(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "ResponseMetadata"}


@pytest.mark.s3op(
    "GetBucketAccelerateConfiguration",
    "GetBucketRequestPayment",
    "GetBucketLogging",
    "GetBucketNotificationConfiguration",
    note="read as never configured (nothing accelerated, the owner pays, no logging, no notifications); "
    "setting them: NotImplemented",
)
def test_features_read_as_never_configured(s3: Any, bucket: str) -> None:
    assert fields(s3.get_bucket_accelerate_configuration(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_request_payment(Bucket=bucket)) == {"Payer": "BucketOwner"}
    assert fields(s3.get_bucket_logging(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_notification_configuration(Bucket=bucket)) == {}


@pytest.mark.s3op(
    "GetBucketWebsite",
    "GetBucketReplication",
    note="404 with S3's not-configured code (NoSuchWebsiteConfiguration, ReplicationConfigurationNotFoundError); "
    "setting them: NotImplemented",
)
def test_features_answer_not_configured(s3: Any, bucket: str) -> None:
    for call, expected in (
        (s3.get_bucket_website, "NoSuchWebsiteConfiguration"),
        (s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
    ):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket)
        assert (code(exc), status(exc)) == (expected, 404)


def test_missing_bucket_and_writes(s3: Any, bucket: str) -> None:
    for call in (s3.get_bucket_accelerate_configuration, s3.get_bucket_website, s3.get_bucket_replication):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket + "-missing")
        assert code(exc) == "NoSuchBucket"
    writes = (
        lambda: s3.put_bucket_accelerate_configuration(Bucket=bucket, AccelerateConfiguration={"Status": "Enabled"}),
        lambda: s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"}),
        lambda: s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "i.html"}}),
        lambda: s3.delete_bucket_replication(Bucket=bucket),
        lambda: s3.delete_bucket_website(Bucket=bucket),
    )
    for write in writes:
        with pytest.raises(ClientError) as exc:
            write()
        assert (code(exc), status(exc)) == ("NotImplemented", 501)
    # Nothing was set by a refused write.
    assert fields(s3.get_bucket_accelerate_configuration(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_request_payment(Bucket=bucket)) == {"Payer": "BucketOwner"}
