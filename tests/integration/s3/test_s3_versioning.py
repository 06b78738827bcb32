"""Bucket versioning end to end against a real ``dwh serve``, with boto3, the AWS CLI and raw
requests: Put/GetBucketVersioning, version ids on every write (PUT, copy, multipart, POST),
delete markers and their headers, reads and deletes by version id, the null version when
suspended, ListObjectVersions paging, DeleteObjects by version."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3http import assert_s3_error, browser_post, signed
from s3server import DwhServer, unique_bucket
from test_s3_awscli import api

AWS = shutil.which("aws")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def headers(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return dict(exc.value.response["ResponseMetadata"]["HTTPHeaders"])


def enable(s3: Any, bucket: str, state: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": state})


def other_version(version_id: str) -> str:
    """A well-formed version id that is not ``version_id``: its last hex digit changed (the last
    digits are random: writing "0000" over them gives the same id one time in 65,536)."""
    return version_id[:-1] + ("1" if version_id[-1] == "0" else "0")


def listing(server: DwhServer, bucket: str, query: str = "") -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is delete marker) in the server's order (boto3 splits Version
    and DeleteMarker entries into two lists, so the raw document is read)."""
    reply = signed(server, "GET", f"/{bucket}?versions{query}")
    assert reply.status == 200, reply.body[:500]
    out = []
    for entry in ET.fromstring(reply.body):
        tag = entry.tag.removeprefix(NS)
        if tag in ("Version", "DeleteMarker"):
            out.append(
                (
                    entry.findtext(f"{NS}Key") or "",
                    entry.findtext(f"{NS}VersionId") or "",
                    entry.findtext(f"{NS}IsLatest") == "true",
                    tag == "DeleteMarker",
                )
            )
    return out


@pytest.mark.s3op(
    "PutBucketVersioning",
    "GetBucketVersioning",
    note="Enabled, Suspended; never back to unversioned; MFA delete NotImplemented",
)
def test_bucket_versioning_configuration(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    for bad in (
        b"<VersioningConfiguration><Status>Disabled</Status></VersioningConfiguration>",
        b"<VersioningConfiguration/>",
    ):
        reply = signed(dwh_server, "PUT", f"/{bucket}?versioning", body=bad)
        assert_s3_error(reply, 400, "IllegalVersioningConfigurationException")
    reply = signed(dwh_server, "PUT", f"/{bucket}?versioning", body=b"<VersioningConfiguration><Status>")
    assert_s3_error(reply, 400, "MalformedXML")
    mfa = b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>"
    assert_s3_error(signed(dwh_server, "PUT", f"/{bucket}?versioning", body=mfa), 501, "NotImplemented")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_versioning(Bucket=unique_bucket("none"))
    assert code(exc) == "NoSuchBucket"


@pytest.mark.s3op(
    "PutObject",
    "GetObject",
    "HeadObject",
    note="versionId: reads of any version, x-amz-version-id on responses; NoSuchVersion, "
    "InvalidArgument for a malformed id",
)
def test_versions_on_write_and_read(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"unversioned")
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"still unversioned")
    assert "VersionId" not in r  # a bucket that never had versioning answers without the header
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"two" and got["VersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    old = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert old["Body"].read() == b"still unversioned" and old["VersionId"] == "null"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v1)["ContentLength"] == 3
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1, Range="bytes=1-")["Body"].read() == b"ne"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=other_version(v1))
    assert code(exc) == "NoSuchVersion" and status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert code(exc) == "InvalidArgument" and status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId=other_version(v1))
    assert status(exc) == 404


@pytest.mark.s3op(
    "DeleteObject",
    note="delete markers (x-amz-delete-marker, x-amz-version-id), versionId deletes permanently; reads of a "
    "marker: 404 NoSuchKey / 405 MethodNotAllowed with the marker headers",
)
def test_delete_markers(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] not in (v1, "null")
    marker = d["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert code(exc) == "NoSuchKey" and status(exc) == 404
    assert headers(exc)["x-amz-delete-marker"] == "true" and headers(exc)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert status(exc) == 404 and headers(exc)["x-amz-delete-marker"] == "true"
    reply = signed(dwh_server, "GET", f"/{bucket}/k?versionId={marker}")
    assert_s3_error(reply, 405, "MethodNotAllowed")
    assert reply.headers["x-amz-delete-marker"] == "true" and reply.headers["x-amz-version-id"] == marker
    assert signed(dwh_server, "HEAD", f"/{bucket}/k?versionId={marker}").status == 405
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert listing(dwh_server, bucket) == [("k", marker, True, True), ("k", v1, False, False)]
    # removing the marker by id restores the object
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert r["DeleteMarker"] is True and r["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    # deleting a version permanently
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert r["VersionId"] == v1 and "DeleteMarker" not in r
    assert listing(dwh_server, bucket) == []
    reply = signed(dwh_server, "DELETE", f"/{bucket}/k?versionId=bad%20id")
    assert_s3_error(reply, 400, "InvalidArgument")


@pytest.mark.s3op(
    "PutObject",
    "DeleteObject",
    note="Suspended: writes and delete markers use the null version, replacing the previous null version",
)
def test_suspended_null_version(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null one")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null two")
    assert listing(dwh_server, bucket) == [("k", "null", True, False), ("k", v1, False, False)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null two"
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    assert listing(dwh_server, bucket) == [("k", "null", True, True), ("k", v1, False, False)]
    enable(s3, bucket)
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    assert listing(dwh_server, bucket) == [("k", v3, True, False), ("k", "null", False, True), ("k", v1, False, False)]


@pytest.mark.s3op(
    "ListObjectVersions",
    note="prefix, delimiter, key-marker/version-id-marker, max-keys; Version and DeleteMarker entries in key, "
    "then newest-first order",
)
def test_list_object_versions_paging(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    made: list[tuple[str, str]] = []
    for key in ["a", "d/1", "d/2", "z"]:
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=key.encode())["VersionId"] for _ in range(3)]
        made += [(key, vid) for vid in reversed(ids)]
    marker = s3.delete_object(Bucket=bucket, Key="z")["VersionId"]
    want = [*made[:9], ("z", marker), *made[9:]]
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}))
    assert len(pages) == 4
    got = []
    for p in pages:
        got += [(v["Key"], v["VersionId"]) for v in p.get("Versions", [])]
        got += [(m["Key"], m["VersionId"]) for m in p.get("DeleteMarkers", [])]
    assert sorted(got) == sorted(want) and len(got) == len(want)
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "a" and first["NextVersionIdMarker"] == made[1][1]
    r = s3.list_object_versions(Bucket=bucket, KeyMarker="a", VersionIdMarker=made[1][1], MaxKeys=2)
    assert [(v["Key"], v["VersionId"]) for v in r["Versions"]] == [made[2], made[3]]
    r = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["d/"]
    assert {v["Key"] for v in r["Versions"]} == {"a", "z"} and r["DeleteMarkers"][0]["IsLatest"] is True
    r = s3.list_object_versions(Bucket=bucket, Prefix="d/")
    assert {v["Key"] for v in r["Versions"]} == {"d/1", "d/2"} and "DeleteMarkers" not in r
    reply = signed(dwh_server, "GET", f"/{bucket}?versions&key-marker=a&version-id-marker=zz")
    assert_s3_error(reply, 400, "InvalidArgument")
    reply = signed(dwh_server, "GET", f"/{bucket}?versions&version-id-marker={made[0][1]}")
    assert_s3_error(reply, 400, "InvalidArgument")
    # ListObjects sees only the latest non-marker versions
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a", "d/1", "d/2"]


@pytest.mark.s3op(
    "CopyObject",
    "UploadPartCopy",
    note="x-amz-copy-source ?versionId= (x-amz-copy-source-version-id); the copy gets a version id",
)
def test_copy_from_a_version(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"old bytes")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new bytes")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert r["CopySourceVersionId"] == v1 and r["VersionId"] not in (v1, "null")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old bytes"
    # copying a version onto its own key restores it as the newest
    r = s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"old bytes"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part_copy(
        Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1}
    )
    assert part["CopySourceVersionId"] == v1
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )
    assert done["VersionId"] not in (None, "null")
    assert s3.get_object(Bucket=bucket, Key="mp", VersionId=done["VersionId"])["Body"].read() == b"old bytes"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src", "VersionId": other_version(v1)}
        )
    assert code(exc) == "NoSuchVersion"


@pytest.mark.s3op("PostObject", note="a versioned bucket answers x-amz-version-id")
def test_post_upload_gets_a_version(dwh_server: DwhServer, s3: Any, bucket: str) -> None:

    enable(s3, bucket)
    post = s3.generate_presigned_post(bucket, "posted")
    vid = browser_post(post["url"], post["fields"], b"posted bytes").headers["x-amz-version-id"]
    assert vid and vid != "null"
    assert s3.get_object(Bucket=bucket, Key="posted", VersionId=vid)["Body"].read() == b"posted bytes"


@pytest.mark.s3op("DeleteObjects", note="VersionId per entry; DeleteMarker / DeleteMarkerVersionId reported")
def test_delete_objects_by_version(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="a", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="a", Body=b"2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": v1}, {"Key": "b"}]})
    deleted = {d["Key"]: d for d in r["Deleted"]}
    assert deleted["a"] == {"Key": "a", "VersionId": v1}
    assert deleted["b"]["DeleteMarker"] is True and deleted["b"]["DeleteMarkerVersionId"]
    marker = deleted["b"]["DeleteMarkerVersionId"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b", "VersionId": marker}]})
    assert r["Deleted"] == [{"Key": "b", "VersionId": marker, "DeleteMarker": True, "DeleteMarkerVersionId": marker}]
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"b"
    assert [(k, v) for k, v, _, _ in listing(dwh_server, bucket, "&prefix=a")] == [("a", v2)]


def test_versioned_bucket_must_be_emptied_version_by_version(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert code(exc) == "BucketNotEmpty"
    for p in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in p.get("Versions", []) + p.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.skipif(AWS is None, reason="the AWS CLI (`aws`) is not installed: pip install awscli")
@pytest.mark.s3op(
    "client:awscli",
    note="aws s3api put-bucket-versioning/get-bucket-versioning/list-object-versions, get/delete-object --version-id",
)
def test_awscli_versioning(dwh_server: DwhServer, tmp_path: Path) -> None:
    bucket = unique_bucket("cli-ver")
    api(dwh_server, tmp_path, "create-bucket", "--bucket", bucket)
    api(
        dwh_server,
        tmp_path,
        "put-bucket-versioning",
        "--bucket",
        bucket,
        "--versioning-configuration",
        "Status=Enabled",
    )
    assert api(dwh_server, tmp_path, "get-bucket-versioning", "--bucket", bucket)["Status"] == "Enabled"
    body = tmp_path / "b"
    ids = []
    for text in (b"first", b"second"):
        body.write_bytes(text)
        ids.append(
            api(dwh_server, tmp_path, "put-object", "--bucket", bucket, "--key", "k", "--body", str(body))["VersionId"]
        )
    listed = api(dwh_server, tmp_path, "list-object-versions", "--bucket", bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    out = tmp_path / "out"
    api(dwh_server, tmp_path, "get-object", "--bucket", bucket, "--key", "k", "--version-id", ids[0], str(out))
    assert out.read_bytes() == b"first"
    marker = api(dwh_server, tmp_path, "delete-object", "--bucket", bucket, "--key", "k")
    assert marker["DeleteMarker"] is True
    listed = api(dwh_server, tmp_path, "list-object-versions", "--bucket", bucket)
    assert listed["DeleteMarkers"][0]["VersionId"] == marker["VersionId"]
    api(dwh_server, tmp_path, "delete-object", "--bucket", bucket, "--key", "k", "--version-id", ids[1])
    listed = api(dwh_server, tmp_path, "list-object-versions", "--bucket", bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [ids[0]]
    assert json.dumps(listed)  # plain JSON all the way
    assert io.BytesIO(out.read_bytes()).read() == b"first"
