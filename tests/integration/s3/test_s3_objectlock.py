"""Object lock over S3 against a real ``dwh serve``, with boto3 (and raw requests for the bodies
boto3 will not send): buckets created with object lock, the bucket's lock configuration and
default retention, per-version retention and legal hold, the x-amz-object-lock-* headers on
writes (PUT, copy, multipart) and reads, and the refusals S3 gives: COMPLIANCE refuses even the
root user, GOVERNANCE yields only to the bypass, a legal hold blocks until removed. Retention
dates are a day or more ahead: nothing here waits for one to expire."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3http import assert_s3_error, browser_post, code, signed
from s3server import DWH, DwhServer, unique_bucket
from test_s3_awscli import api, aws

DAY = timedelta(days=1)


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def soon(days: int = 1) -> datetime:
    return (datetime.now(UTC) + days * DAY).replace(microsecond=0)


@pytest.fixture
def locked(s3: Any) -> str:
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def config_xml(rule: str = "") -> bytes:
    enabled = "<ObjectLockEnabled>Enabled</ObjectLockEnabled>"
    return f"<ObjectLockConfiguration>{enabled}{rule}</ObjectLockConfiguration>".encode()


@pytest.mark.s3op(
    "CreateBucket", note="x-amz-bucket-object-lock-enabled: the bucket gets object lock, versioning Enabled"
)
@pytest.mark.s3op(
    "PutObjectLockConfiguration",
    "GetObjectLockConfiguration",
    note="ObjectLockEnabled and a DefaultRetention (GOVERNANCE/COMPLIANCE, Days or Years) applied to new "
    "versions; enabling needs versioning Enabled (409 InvalidBucketState); 404 ObjectLockConfigurationNotFoundError",
)
def test_bucket_lock_configuration(dwh_server: DwhServer, s3: Any, locked: str, bucket: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert code(exc) == "InvalidBucketState"

    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}
    s3.put_object_lock_configuration(
        Bucket=locked, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]["Rule"] == rule
    s3.put_object(Bucket=locked, Key="d", Body=b"default")
    head = s3.head_object(Bucket=locked, Key="d")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert soon(2) - timedelta(minutes=5) < head["ObjectLockRetainUntilDate"] <= soon(2) + timedelta(minutes=5)
    years = {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}
    s3.put_object_lock_configuration(
        Bucket=locked, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": years}
    )
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]["Rule"] == years
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert "Rule" not in s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]

    # bad documents
    both = config_xml(
        "<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years></DefaultRetention></Rule>"
    )
    neither = config_xml("<Rule><DefaultRetention><Mode>GOVERNANCE</Mode></DefaultRetention></Rule>")
    bad_mode = config_xml("<Rule><DefaultRetention><Mode>STRICT</Mode><Days>1</Days></DefaultRetention></Rule>")
    for body in (
        both,
        neither,
        bad_mode,
        b"<ObjectLockConfiguration><ObjectLockEnabled>",
        b"<ObjectLockConfiguration/>",
    ):
        assert_s3_error(signed(dwh_server, "PUT", f"/{locked}?object-lock", body=body), 400, "MalformedXML")
    zero = config_xml("<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>0</Days></DefaultRetention></Rule>")
    assert_s3_error(signed(dwh_server, "PUT", f"/{locked}?object-lock", body=zero), 400, "InvalidArgument")
    assert_s3_error(signed(dwh_server, "DELETE", f"/{locked}?object-lock"), 405, "MethodNotAllowed")

    # a bucket without object lock: 404 on GET; PUT needs versioning Enabled, then turns it on
    with pytest.raises(ClientError) as exc:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert (status(exc), code(exc)) == (404, "ObjectLockConfigurationNotFoundError")
    with pytest.raises(ClientError) as exc:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert (status(exc), code(exc)) == (409, "InvalidBucketState")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"


@pytest.mark.s3op(
    "PutObject",
    "GetObject",
    "HeadObject",
    note="x-amz-object-lock-mode / -retain-until-date / -legal-hold on writes and reads; mode without date "
    "InvalidArgument; lock headers on a bucket without object lock InvalidRequest",
)
@pytest.mark.s3op(
    "PutObjectRetention",
    "GetObjectRetention",
    note="by versionId; extending allowed; shortening or weakening COMPLIANCE AccessDenied; GOVERNANCE changes "
    "need x-amz-bypass-governance-retention; 404 NoSuchObjectLockConfiguration",
)
@pytest.mark.s3op("DeleteObject", note="a COMPLIANCE-locked version is refused (AccessDenied) even to root")
def test_compliance_retention(s3: Any, locked: str, bucket: str) -> None:
    until = soon(2)
    put = s3.put_object(
        Bucket=locked, Key="c", Body=b"kept", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )
    vid = put["VersionId"]
    head = s3.head_object(Bucket=locked, Key="c")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
    assert "ObjectLockLegalHoldStatus" not in head
    got = s3.get_object(Bucket=locked, Key="c", VersionId=vid)
    assert (got["ObjectLockMode"], got["ObjectLockRetainUntilDate"], got["Body"].read()) == (
        "COMPLIANCE",
        until,
        b"kept",
    )
    assert s3.get_object_retention(Bucket=locked, Key="c", VersionId=vid)["Retention"] == {
        "Mode": "COMPLIANCE",
        "RetainUntilDate": until,
    }

    for bypass in (False, True):  # the root user is refused too
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=locked, Key="c", VersionId=vid, BypassGovernanceRetention=bypass)
        assert (status(exc), code(exc)) == (403, "AccessDenied")
    for mode, date in (("COMPLIANCE", soon(1)), ("GOVERNANCE", soon(3))):  # shortening, weakening
        with pytest.raises(ClientError) as exc:
            s3.put_object_retention(
                Bucket=locked,
                Key="c",
                VersionId=vid,
                Retention={"Mode": mode, "RetainUntilDate": date},
                BypassGovernanceRetention=True,
            )
        assert (status(exc), code(exc)) == (403, "AccessDenied")
    later = soon(3)
    s3.put_object_retention(Bucket=locked, Key="c", Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=locked, Key="c")["Retention"]["RetainUntilDate"] == later

    # a delete without a version id only adds a delete marker: allowed, the version stays
    marker = s3.delete_object(Bucket=locked, Key="c")
    assert marker["DeleteMarker"] is True
    assert s3.get_object(Bucket=locked, Key="c", VersionId=vid)["Body"].read() == b"kept"
    # DeleteObjects reports the refusal per key
    out = s3.delete_objects(Bucket=locked, Delete={"Objects": [{"Key": "c", "VersionId": vid}]})
    assert [e["Code"] for e in out.get("Errors", [])] == ["AccessDenied"]

    # no retention on a version: 404
    plain = s3.put_object(Bucket=locked, Key="p", Body=b"p")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object_retention(Bucket=locked, Key="p", VersionId=plain)
    assert (status(exc), code(exc)) == (404, "NoSuchObjectLockConfiguration")

    # bad requests
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=locked, Key="m", Body=b"m", ObjectLockMode="COMPLIANCE")
    assert (status(exc), code(exc)) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=locked, Key="m", Body=b"m", ObjectLockRetainUntilDate=soon())
    assert code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:  # in the past
        s3.put_object(
            Bucket=locked, Key="m", Body=b"m", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(-1)
        )
    assert code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"m", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
    assert (status(exc), code(exc)) == (400, "InvalidRequest")
    s3.put_object(Bucket=bucket, Key="m", Body=b"m")
    for call in (s3.get_object_retention, s3.get_object_legal_hold):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket, Key="m")
        assert (status(exc), code(exc)) == (400, "InvalidRequest")
        assert "Object Lock Configuration" in exc.value.response["Error"]["Message"]


@pytest.mark.s3op(
    "DeleteObject",
    "DeleteObjects",
    note="x-amz-bypass-governance-retention: a GOVERNANCE-locked version is deleted only with it",
)
def test_governance_yields_only_to_the_bypass(s3: Any, locked: str) -> None:
    vid = s3.put_object(
        Bucket=locked, Key="g", Body=b"g", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon()
    )["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="g", VersionId=vid)
    assert (status(exc), code(exc)) == (403, "AccessDenied")
    with pytest.raises(ClientError) as exc:  # shortening without the bypass
        s3.put_object_retention(
            Bucket=locked, Key="g", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon() - timedelta(hours=1)}
        )
    assert code(exc) == "AccessDenied"
    s3.put_object_retention(
        Bucket=locked,
        Key="g",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon() - timedelta(hours=1)},
        BypassGovernanceRetention=True,
    )
    s3.delete_object(Bucket=locked, Key="g", VersionId=vid, BypassGovernanceRetention=True)
    assert "Versions" not in s3.list_object_versions(Bucket=locked, Prefix="g")

    vid = s3.put_object(
        Bucket=locked, Key="h", Body=b"h", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon()
    )["VersionId"]
    target = {"Objects": [{"Key": "h", "VersionId": vid}]}
    assert [e["Code"] for e in s3.delete_objects(Bucket=locked, Delete=target).get("Errors", [])] == ["AccessDenied"]
    out = s3.delete_objects(Bucket=locked, Delete=target, BypassGovernanceRetention=True)
    assert [d["VersionId"] for d in out["Deleted"]] == [vid]


@pytest.mark.s3op(
    "PutObjectLegalHold",
    "GetObjectLegalHold",
    note="Status ON/OFF; a legal hold blocks deletion (even with the governance bypass) until removed",
)
def test_legal_hold_blocks_deletion_until_removed(dwh_server: DwhServer, s3: Any, locked: str) -> None:
    vid = s3.put_object(Bucket=locked, Key="l", Body=b"l", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.head_object(Bucket=locked, Key="l")["ObjectLockLegalHoldStatus"] == "ON"
    assert s3.get_object_legal_hold(Bucket=locked, Key="l")["LegalHold"] == {"Status": "ON"}
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="l", VersionId=vid, BypassGovernanceRetention=True)
    assert (status(exc), code(exc)) == (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=locked, Key="l", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="l", VersionId=vid)["LegalHold"] == {"Status": "OFF"}
    never = s3.put_object(Bucket=locked, Key="never-held", Body=b"n")["VersionId"]
    with pytest.raises(ClientError) as exc:  # never set: no legal hold configuration at all (not OFF)
        s3.get_object_legal_hold(Bucket=locked, Key="never-held", VersionId=never)
    assert code(exc) == "NoSuchObjectLockConfiguration"
    assert "ObjectLockLegalHoldStatus" not in s3.head_object(Bucket=locked, Key="l")
    s3.delete_object(Bucket=locked, Key="l", VersionId=vid)

    other = s3.put_object(Bucket=locked, Key="o", Body=b"o")["VersionId"]
    s3.put_object_legal_hold(Bucket=locked, Key="o", LegalHold={"Status": "ON"})
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="o", VersionId=other)
    assert code(exc) == "AccessDenied"
    bad = b"<LegalHold><Status>MAYBE</Status></LegalHold>"
    assert_s3_error(signed(dwh_server, "PUT", f"/{locked}/o?legal-hold", body=bad), 400, "MalformedXML")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=locked, Key="x", Body=b"x", ObjectLockLegalHoldStatus="MAYBE")
    assert code(exc) == "InvalidArgument"
    s3.put_object_legal_hold(Bucket=locked, Key="o", LegalHold={"Status": "OFF"})


@pytest.mark.s3op(
    "CopyObject",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    note="x-amz-object-lock-* headers: the new version takes the lock it asks for",
)
def test_copy_and_multipart_take_their_own_lock(s3: Any, locked: str) -> None:
    until = soon(2)
    s3.put_object(Bucket=locked, Key="src", Body=b"source")
    copied = s3.copy_object(
        Bucket=locked,
        Key="dst",
        CopySource={"Bucket": locked, "Key": "src"},
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )
    head = s3.head_object(Bucket=locked, Key="dst")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == (
        "COMPLIANCE",
        until,
        "ON",
    )
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="dst", VersionId=copied["VersionId"], BypassGovernanceRetention=True)
    assert code(exc) == "AccessDenied"
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="src")

    upload = s3.create_multipart_upload(
        Bucket=locked, Key="mp", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until
    )["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=locked, Key="mp", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert s3.get_object_retention(Bucket=locked, Key="mp")["Retention"] == {
        "Mode": "GOVERNANCE",
        "RetainUntilDate": until,
    }
    head = s3.head_object(Bucket=locked, Key="mp")
    assert not any(k.startswith("x-dwh") for k in head["ResponseMetadata"]["HTTPHeaders"])
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="mp", VersionId=done["VersionId"])
    assert code(exc) == "AccessDenied"
    s3.delete_object(Bucket=locked, Key="mp", VersionId=done["VersionId"], BypassGovernanceRetention=True)

    plain = unique_bucket("plain")
    s3.create_bucket(Bucket=plain)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=plain, Key="mp", ObjectLockLegalHoldStatus="ON")
    assert code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=plain, Key="dst", CopySource={"Bucket": locked, "Key": "src"}, ObjectLockLegalHoldStatus="ON"
        )
    assert code(exc) == "InvalidRequest"


def test_cli_bucket_create_object_lock(dwh_server_factory: Any) -> None:
    server = dwh_server_factory()
    server.terminate()
    out = subprocess.run(
        [str(DWH), "bucket", "create", "worm", "--object-lock", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    server.start()
    s3 = server.boto3_client()
    assert s3.get_object_lock_configuration(Bucket="worm")["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"
    }
    assert s3.get_bucket_versioning(Bucket="worm")["Status"] == "Enabled"


@pytest.mark.s3op("PostObject", note="x-amz-object-lock-* form fields (covered by the policy)")
def test_post_upload_takes_its_lock(s3: Any, locked: str) -> None:

    moment = soon(2)
    until = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    lock = {
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": until,
        "x-amz-object-lock-legal-hold": "ON",
    }
    post = s3.generate_presigned_post(locked, "posted", Fields=lock, Conditions=[{k: v} for k, v in lock.items()])
    vid = browser_post(post["url"], post["fields"], b"posted bytes").headers["x-amz-version-id"]
    head = s3.head_object(Bucket=locked, Key="posted", VersionId=vid)
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    assert head["ObjectLockRetainUntilDate"] == moment
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="posted", VersionId=vid, BypassGovernanceRetention=True)
    assert code(exc) == "AccessDenied"
    s3.put_object_legal_hold(Bucket=locked, Key="posted", VersionId=vid, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=locked, Key="posted", VersionId=vid, BypassGovernanceRetention=True)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI (`aws`) is not installed")
@pytest.mark.s3op(
    "CreateBucket",
    "PutObjectLockConfiguration",
    "GetObjectRetention",
    "PutObjectLegalHold",
    note="AWS CLI s3api (--object-lock-enabled-for-bucket, object lock options)",
)
def test_aws_cli_object_lock(dwh_server: DwhServer, tmp_path: Path) -> None:
    name = unique_bucket("cli-lock")
    api(dwh_server, tmp_path, "create-bucket", "--bucket", name, "--object-lock-enabled-for-bucket")
    config = '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"GOVERNANCE","Days":1}}}'
    api(dwh_server, tmp_path, "put-object-lock-configuration", "--bucket", name, "--object-lock-configuration", config)
    got = api(dwh_server, tmp_path, "get-object-lock-configuration", "--bucket", name)
    assert got["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    body = tmp_path / "body.bin"
    body.write_bytes(b"cli")
    vid = api(dwh_server, tmp_path, "put-object", "--bucket", name, "--key", "k", "--body", str(body))["VersionId"]
    retention = api(dwh_server, tmp_path, "get-object-retention", "--bucket", name, "--key", "k")["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    api(dwh_server, tmp_path, "put-object-legal-hold", "--bucket", name, "--key", "k", "--legal-hold", "Status=ON")
    refused = aws(
        dwh_server,
        tmp_path,
        "s3api",
        "delete-object",
        "--bucket",
        name,
        "--key",
        "k",
        "--version-id",
        vid,
        "--bypass-governance-retention",
        check=False,
    )
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    api(dwh_server, tmp_path, "put-object-legal-hold", "--bucket", name, "--key", "k", "--legal-hold", "Status=OFF")
    api(
        dwh_server,
        tmp_path,
        "delete-object",
        "--bucket",
        name,
        "--key",
        "k",
        "--version-id",
        vid,
        "--bypass-governance-retention",
    )
