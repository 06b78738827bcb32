"""Bucket features this server does not have, read with boto3 the way tools read them (Terraform's
bucket refresh, bucket browsers): each answers as S3 does for a bucket that never configured it; a
write that restates that is accepted and changes nothing, one that would turn a feature on answers
NotImplemented, and a missing bucket is NoSuchBucket."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3http import assert_s3_error, code, signed
from s3server import DwhServer


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
        lambda: s3.put_bucket_logging(
            Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": bucket, "TargetPrefix": "log/"}}
        ),
        lambda: s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}]
            },
        ),
    )
    for write in writes:
        with pytest.raises(ClientError) as exc:
            write()
        assert (code(exc), status(exc)) == ("NotImplemented", 501)
    # Nothing was set by a refused write.
    assert fields(s3.get_bucket_accelerate_configuration(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_request_payment(Bucket=bucket)) == {"Payer": "BucketOwner"}


@pytest.mark.s3op(
    "PutBucketAccelerateConfiguration",
    "PutBucketRequestPayment",
    "PutBucketLogging",
    "PutBucketNotificationConfiguration",
    "DeleteBucketWebsite",
    "DeleteBucketReplication",
    status="partial",
    note="only what restates the never-configured state (acceleration Suspended, Payer BucketOwner, logging and "
    "notifications off, deleting the absent website or replication); turning a feature on: NotImplemented",
)
def test_writes_that_restate_the_unconfigured_state(s3: Any, bucket: str) -> None:
    s3.put_bucket_accelerate_configuration(Bucket=bucket, AccelerateConfiguration={"Status": "Suspended"})
    s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "BucketOwner"})
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    for delete in (s3.delete_bucket_website, s3.delete_bucket_replication):
        assert delete(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert fields(s3.get_bucket_accelerate_configuration(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_request_payment(Bucket=bucket)) == {"Payer": "BucketOwner"}
    assert fields(s3.get_bucket_logging(Bucket=bucket)) == {}
    assert fields(s3.get_bucket_notification_configuration(Bucket=bucket)) == {}
    missing = bucket + "-missing"
    for call in (
        lambda: s3.put_bucket_request_payment(Bucket=missing, RequestPaymentConfiguration={"Payer": "BucketOwner"}),
        lambda: s3.put_bucket_logging(Bucket=missing, BucketLoggingStatus={}),
        lambda: s3.delete_bucket_website(Bucket=missing),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "NoSuchBucket"


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("accelerate", b"<AccelerateConfiguration><Status>Sometimes</Status></AccelerateConfiguration>"),
        ("accelerate", b"<AccelerateConfiguration/>"),
        ("requestPayment", b"<RequestPaymentConfiguration><Payer>Nobody</Payer></RequestPaymentConfiguration>"),
        ("requestPayment", b"<Payment/>"),
        ("logging", b"<BucketLoggingStatus>"),
        ("notification", b""),
    ],
)
def test_malformed_restating_writes(dwh_server: DwhServer, bucket: str, query: str, body: bytes) -> None:
    assert_s3_error(signed(dwh_server, "PUT", f"/{bucket}?{query}", body=body), 400, "MalformedXML")
