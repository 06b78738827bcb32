"""DeleteObjects end to end against a real ``dwh serve``: boto3's batch delete (quiet and not),
missing and repeated keys, awkward keys, versionId null, 1,000 keys, and the raw request rules
(Content-MD5 or a checksum required and verified, XML limits, NoSuchBucket)."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.sax.saxutils import escape

import pytest
from botocore.exceptions import ClientError
from s3http import assert_s3_error, code, signed
from s3server import DwhServer, unique_bucket

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
AWKWARD = ["plain", "sp ace", " leading", "trailing ", "a&b<c>'\"", "ünï/cödé", "😀", "dir/", "tab\tkey", "%41"]


def keys_of(s3: Any, bucket: str) -> list[str]:
    return [
        o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])
    ]


def put_all(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


@pytest.mark.s3op(
    "DeleteObjects",
    note="up to 1,000 keys, Quiet, missing keys reported Deleted, per-key errors, Content-MD5 or x-amz-checksum-* "
    "required (InvalidRequest) and verified",
)
def test_delete_objects_reports_every_key(s3: Any, bucket: str) -> None:
    put_all(s3, bucket, AWKWARD)
    request = [{"Key": k} for k in [*AWKWARD, "never-existed", "plain"]]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": request})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted([*AWKWARD, "never-existed", "plain"])
    assert "Errors" not in r
    assert keys_of(s3, bucket) == []


def test_quiet_mode_reports_only_errors(s3: Any, bucket: str) -> None:
    put_all(s3, bucket, ["q1", "q2", "q3"])
    r = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "q1"}, {"Key": "q2"}, {"Key": "nope"}], "Quiet": True}
    )
    assert "Deleted" not in r and "Errors" not in r
    assert keys_of(s3, bucket) == ["q3"]
    r = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "q3"}, {"Key": "q3", "VersionId": "3sL4kqtJlcpXroDTDmJ"}], "Quiet": True},
    )
    assert "Deleted" not in r
    assert [(e["Key"], e["Code"], e["VersionId"]) for e in r["Errors"]] == [
        ("q3", "NoSuchVersion", "3sL4kqtJlcpXroDTDmJ")
    ]
    assert keys_of(s3, bucket) == []


def test_version_id_null_is_the_object(s3: Any, bucket: str) -> None:
    put_all(s3, bucket, ["v"])
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "v", "VersionId": "null"}]})
    assert r["Deleted"] == [{"Key": "v", "VersionId": "null"}]
    assert keys_of(s3, bucket) == []


def test_a_thousand_keys_in_one_request(s3: Any, bucket: str) -> None:
    keys = [f"many/{i:04d}" for i in range(1000)]
    put_all(s3, bucket, keys)
    started = time.monotonic()
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    elapsed = time.monotonic() - started
    assert len(r["Deleted"]) == 1000 and "Errors" not in r
    assert keys_of(s3, bucket) == []
    assert elapsed < 20, elapsed  # grouped commits: about a second here, not 1,000 fsyncs in a row
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert code(exc) == "MalformedXML"


def body_for(keys: list[str], quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    return f"<Delete><Quiet>{str(quiet).lower()}</Quiet>{objects}</Delete>".encode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_integrity_headers_are_required_and_verified(dwh_server: DwhServer, s3: Any, bucket: str) -> None:
    put_all(s3, bucket, ["i1", "i2", "i3"])
    target = f"/{bucket}?delete"
    body = body_for(["i1"])
    root = assert_s3_error(signed(dwh_server, "POST", target, body=body), 400, "InvalidRequest")
    assert "Content-MD5" in (root.findtext("Message") or "")
    assert_s3_error(
        signed(dwh_server, "POST", target, body=body, headers={"Content-MD5": md5_b64(b"other")}), 400, "BadDigest"
    )
    wrong_crc = base64.b64encode((zlib.crc32(b"other")).to_bytes(4, "big")).decode()
    reply = signed(dwh_server, "POST", target, body=body, headers={"x-amz-checksum-crc32": wrong_crc})
    assert reply.status == 400
    assert keys_of(s3, bucket) == ["i1", "i2", "i3"]  # nothing deleted by a refused request
    reply = signed(dwh_server, "POST", target, body=body, headers={"Content-MD5": md5_b64(body)})
    assert reply.status == 200, reply.body
    deleted = [e.findtext(f"{NS}Key") for e in ET.fromstring(reply.body).iter(f"{NS}Deleted")]
    assert deleted == ["i1"]
    body = body_for(["i2"], quiet=True)
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    reply = signed(dwh_server, "POST", target, body=body, headers={"x-amz-checksum-crc32": crc})
    assert reply.status == 200 and b"<Deleted>" not in reply.body, reply.body
    assert keys_of(s3, bucket) == ["i3"]


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete></Delete>",
        b"<Delete><Object><Key></Key></Object></Delete>",
        b"<Delete><Object></Object></Delete>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<NotDelete><Object><Key>k</Key></Object></NotDelete>",
        b"<Delete><Object><Key>k</Key></Object>",
        b"",
    ],
)
def test_malformed_requests(dwh_server: DwhServer, bucket: str, body: bytes) -> None:
    reply = signed(dwh_server, "POST", f"/{bucket}?delete", body=body, headers={"Content-MD5": md5_b64(body)})
    assert_s3_error(reply, 400, "MalformedXML")


def test_missing_bucket_is_one_error(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=unique_bucket("none"), Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    assert code(exc) == "NoSuchBucket"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
