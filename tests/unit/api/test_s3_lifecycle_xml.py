"""LifecycleConfiguration documents: what S3 accepts, what it refuses, and the round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.lifecycle_xml import parse_lifecycle_configuration, render_lifecycle_configuration
from datawarehouse.service.lifecycle import LifecycleFilter, LifecycleRule

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*rules: str) -> bytes:
    return f"<LifecycleConfiguration {NS}>{''.join(rules)}</LifecycleConfiguration>".encode()


def rule(body: str, status: str = "Enabled", rid: str = "r1") -> str:
    return f"<Rule><ID>{rid}</ID><Status>{status}</Status>{body}</Rule>"


def code_of(body: bytes) -> str:
    with pytest.raises(S3Error) as info:
        parse_lifecycle_configuration(body)
    return info.value.code


def test_every_supported_action_and_filter() -> None:
    body = doc(
        rule("<Filter><Prefix>logs/</Prefix></Filter><Expiration><Days>30</Days></Expiration>"),
        rule(
            "<Filter><And><Prefix>a/</Prefix><Tag><Key>t</Key><Value>v</Value></Tag>"
            "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>99</ObjectSizeLessThan></And></Filter>"
            "<Expiration><Date>2027-01-01T00:00:00.000Z</Date></Expiration>",
            rid="r2",
        ),
        rule(
            "<Filter/><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
            "<NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays>"
            "<NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>",
            status="Disabled",
            rid="r3",
        ),
        rule(
            "<Prefix>tmp/</Prefix><AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
            "</AbortIncompleteMultipartUpload>",
            rid="r4",
        ),
    )
    rules = parse_lifecycle_configuration(body)
    assert rules == (
        LifecycleRule("r1", True, LifecycleFilter("logs/"), expiration_days=30),
        LifecycleRule(
            "r2", True, LifecycleFilter("a/", (("t", "v"),), 10, 99), expiration_date=datetime(2027, 1, 1, tzinfo=UTC)
        ),
        LifecycleRule("r3", False, expired_object_delete_marker=True, noncurrent_days=7, newer_noncurrent_versions=3),
        LifecycleRule("r4", True, LifecycleFilter("tmp/"), abort_multipart_days=2),
    )
    assert parse_lifecycle_configuration(render_lifecycle_configuration(rules)) == rules


def test_plain_date_without_time_is_midnight() -> None:
    (r,) = parse_lifecycle_configuration(doc(rule("<Filter/><Expiration><Date>2027-02-03</Date></Expiration>")))
    assert r.expiration_date == datetime(2027, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<LifecycleConfiguration/>", "MalformedXML"),  # no rule
        (b"not xml", "MalformedXML"),
        (doc(rule("<Filter/>")), "MalformedXML"),  # no action
        (doc(rule("<Filter/><Expiration><Days>1</Days>", status="On")), "MalformedXML"),
        (doc(rule("<Filter/><Expiration><Days>0</Days></Expiration>")), "InvalidArgument"),
        (doc(rule("<Filter/><Expiration><Days>x</Days></Expiration>")), "InvalidArgument"),
        (doc(rule("<Filter/><Expiration><Days>1</Days><Date>2027-01-01</Date></Expiration>")), "MalformedXML"),
        (doc(rule("<Filter/><Expiration><Date>2027-01-01T10:00:00Z</Date></Expiration>")), "InvalidArgument"),
        (doc(rule("<Filter/><Expiration><Date>yesterday</Date></Expiration>")), "InvalidArgument"),
        (
            doc(rule("<Filter/><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>")),
            "NotImplemented",
        ),
        (
            doc(rule("<Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter><Expiration><Days>1</Days></Expiration>")),
            "MalformedXML",
        ),
        (
            doc(
                rule(
                    "<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
                    "<Expiration><Days>1</Days></Expiration>"
                )
            ),
            "MalformedXML",
        ),  # two conditions, no And
        (
            doc(
                rule(
                    "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
                    "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
                )
            ),
            "InvalidArgument",
        ),
        (
            doc(
                rule(
                    "<Filter><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></Filter>"
                    "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
                    "</AbortIncompleteMultipartUpload>"
                )
            ),
            "InvalidArgument",
        ),
        (
            doc(
                rule(
                    "<Filter><And><ObjectSizeGreaterThan>50</ObjectSizeGreaterThan>"
                    "<ObjectSizeLessThan>50</ObjectSizeLessThan></And></Filter><Expiration><Days>1</Days></Expiration>"
                )
            ),
            "InvalidArgument",
        ),
        (
            doc(
                rule("<Filter/><Expiration><Days>1</Days></Expiration>"),
                rule("<Filter/><Expiration><Days>2</Days></Expiration>"),
            ),
            "InvalidArgument",
        ),  # duplicate IDs
        (doc(rule("<Filter/><Expiration><Days>1</Days></Expiration>", rid="x" * 256)), "InvalidArgument"),
        (
            doc(
                rule(
                    "<Filter/><NoncurrentVersionExpiration><NewerNoncurrentVersions>1</NewerNoncurrentVersions>"
                    "</NoncurrentVersionExpiration>"
                )
            ),
            "MalformedXML",
        ),
    ],
)
def test_refused(body: bytes, code: str) -> None:
    assert code_of(body) == code


def test_hostile_documents_are_refused_unexpanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<LifecycleConfiguration><Rule><ID>&b;</ID></Rule></LifecycleConfiguration>"
    )
    assert code_of(bomb) == "MalformedXML"
    assert code_of(b"<LifecycleConfiguration>" + b"<Rule/>" * 300_000 + b"</LifecycleConfiguration>") == "MalformedXML"
