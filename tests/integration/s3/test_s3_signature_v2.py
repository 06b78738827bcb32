"""AWS Signature Version 2 against a real ``dwh serve``, signed by botocore's own V2 signers.

boto3 still signs with version 2 where nothing says otherwise: a client made with an endpoint
URL in us-east-1 presigns URLs and POST forms with it. Old SDKs and ``s3cmd --signature-v2``
sign everything with it. ``server.signature_v2 = false`` turns it off; a bucket policy can refuse
it per bucket with ``s3:signatureversion``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3http import browser_post, sign_v2
from s3http import send as send_request
from s3server import DwhServer, unique_bucket

MiB = 1024 * 1024


def v2_client(server: DwhServer) -> Any:
    return server.boto3_client(signature_version="s3")


def default_client(server: DwhServer) -> Any:
    """boto3 as most scripts make it: nothing about signatures in its config."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def fetch(
    url: str, *, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    try:
        with urlopen(Request(url, data=data, method=method, headers=headers or {}), timeout=30) as reply:
            return int(reply.status), reply.read()
    except HTTPError as err:
        return err.code, err.read()


@pytest.mark.s3op(
    "auth:sigv2",
    "PutObject",
    "GetObject",
    "HeadObject",
    "CopyObject",
    "ListObjects",
    "ListObjectsV2",
    "DeleteObjects",
    "PutObjectTagging",
    "GetObjectTagging",
    "GetObjectAcl",
    note="SigV2 Authorization header: boto3 signature_version='s3'",
)
def test_boto3_signing_with_version_2(dwh_server: DwhServer) -> None:
    s3 = v2_client(dwh_server)
    bucket = unique_bucket("v2")
    s3.create_bucket(Bucket=bucket)
    body = b"signed the old way"
    s3.put_object(Bucket=bucket, Key="dir/a key+é", Body=body, ContentType="text/plain", Metadata={"colour": "blue"})
    got = s3.get_object(Bucket=bucket, Key="dir/a key+é", ResponseContentType="application/x-test")
    assert got["Body"].read() == body and got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"colour": "blue"}
    assert s3.head_object(Bucket=bucket, Key="dir/a key+é")["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "dir/a key+é"})
    s3.put_object_tagging(Bucket=bucket, Key="copy", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="copy")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert s3.get_object_acl(Bucket=bucket, Key="copy")["Grants"]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Prefix="dir/")["Contents"]] == ["dir/a key+é"]
    assert s3.list_objects_v2(Bucket=bucket, Delimiter="/")["CommonPrefixes"] == [{"Prefix": "dir/"}]
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}, {"Key": "dir/a key+é"}]})
    assert len(deleted["Deleted"]) == 2
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.s3op(
    "auth:sigv2",
    "CreateMultipartUpload",
    "UploadPart",
    "ListParts",
    "CompleteMultipartUpload",
    note="SigV2: the uploadId and partNumber sub-resources are signed",
)
def test_multipart_upload_signed_with_version_2(dwh_server: DwhServer) -> None:
    s3 = v2_client(dwh_server)
    bucket = unique_bucket("v2mp")
    s3.create_bucket(Bucket=bucket)
    parts = [bytes([n]) * (5 * MiB) for n in range(2)] + [b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n, Body=p)["ETag"],
        }
        for n, p in enumerate(parts, 1)
    ]
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"]] == [1, 2, 3]
    s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"".join(parts)


def test_wrong_secret_and_unknown_key_with_version_2(dwh_server: DwhServer, bucket: str) -> None:
    wrong = dwh_server.boto3_client(signature_version="s3")
    wrong._request_signer._credentials = Credentials(dwh_server.access_key, "not-the-secret")
    with pytest.raises(ClientError) as err:
        wrong.list_objects(Bucket=bucket)
    assert code(err) == "SignatureDoesNotMatch"
    unknown = boto3.client(
        "s3",
        endpoint_url=dwh_server.endpoint,
        aws_access_key_id="AKIDNOBODY000000",
        aws_secret_access_key="x",
        region_name=dwh_server.region,
        config=Config(signature_version="s3", retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as err:
        unknown.list_objects(Bucket=bucket)
    assert code(err) == "InvalidAccessKeyId"


@pytest.mark.s3op(
    "auth:sigv2",
    "auth:presigned",
    note="boto3's default presigned URLs (SigV2 query string): GET and PUT with an ordinary HTTP client",
)
def test_default_boto3_presigned_urls(dwh_server: DwhServer, bucket: str) -> None:
    s3 = default_client(dwh_server)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "shared", "ContentType": "text/plain"}, ExpiresIn=300
    )
    assert "AWSAccessKeyId=" in put_url and "X-Amz-" not in put_url  # the version 2 form
    status, _ = fetch(put_url, method="PUT", data=b"via a link", headers={"Content-Type": "text/plain"})
    assert status == 200
    status, reply = fetch(put_url, method="PUT", data=b"other type", headers={"Content-Type": "text/html"})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in reply
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    assert fetch(get_url) == (200, b"via a link")
    tampered = get_url.replace("shared", "sharee")
    status, reply = fetch(tampered)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in reply
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=-60)
    status, reply = fetch(expired)
    assert status == 403 and b"Request has expired" in reply


@pytest.mark.s3op("auth:sigv2", "PostObject", note="boto3's default generate_presigned_post (SigV2 form)")
def test_default_boto3_presigned_post(dwh_server: DwhServer, bucket: str) -> None:
    s3 = default_client(dwh_server)
    post = s3.generate_presigned_post(bucket, "form/${filename}", Conditions=[["content-length-range", 1, 1000]])
    assert "signature" in post["fields"] and "x-amz-signature" not in post["fields"]
    browser_post(post["url"], post["fields"], b"posted with version 2")
    assert s3.get_object(Bucket=bucket, Key="form/f")["Body"].read() == b"posted with version 2"
    forged = {**post["fields"], "signature": "A" * 27 + "="}
    with pytest.raises(HTTPError) as err:
        browser_post(post["url"], forged, b"forged")
    assert err.value.code == 403 and b"SignatureDoesNotMatch" in err.value.read()


@pytest.mark.s3op(
    "auth:sigv2",
    "addressing:virtual-hosted",
    note="the resource string starts with the bucket named by the Host header",
)
def test_virtual_hosted_style_with_version_2(dwh_server_factory: Callable[..., DwhServer]) -> None:
    server = dwh_server_factory(domain="localtest")
    server.boto3_client().create_bucket(Bucket="vhost2")
    host = f"vhost2.localtest:{server.port}"

    def send(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = sign_v2(server, method, path, host=host, auth_path="/vhost2" + path.split("?")[0])
        reply = send_request(server, method, path, body=body, headers=headers)
        return reply.status, reply.body

    assert send("PUT", "/a%20key", b"hosted")[0] == 200
    assert send("GET", "/a%20key") == (200, b"hosted")
    status, listing = send("GET", "/?prefix=a")
    assert status == 200 and b"<Key>a key</Key>" in listing


@pytest.mark.s3op("auth:sigv2", note="a bucket policy refuses it with s3:signatureversion; s3:authType is set")
def test_bucket_policy_can_refuse_version_2(dwh_server: DwhServer, bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    v2 = v2_client(dwh_server)
    assert v2.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"StringEquals": {"s3:signatureversion": "AWS"}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with pytest.raises(ClientError) as err:
        v2.get_object(Bucket=bucket, Key="k")
    assert code(err) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"  # version 4, header
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url and fetch(url)[0] == 403  # version 4, but a query string
    s3.delete_bucket_policy(Bucket=bucket)
    assert v2.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


@pytest.mark.s3op("auth:sigv2", note="server.signature_v2 = false: InvalidRequest naming the setting; SigV4 unchanged")
def test_version_2_turned_off(dwh_server_factory: Callable[..., DwhServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWH_SERVER_SIGNATURE_V2", "false")
    server = dwh_server_factory()
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="off")
    s3.put_object(Bucket="off", Key="k", Body=b"data")
    with pytest.raises(ClientError) as err:
        v2_client(server).get_object(Bucket="off", Key="k")
    assert code(err) == "InvalidRequest" and "signature_v2" in err.value.response["Error"]["Message"]
    url = default_client(server).generate_presigned_url("get_object", Params={"Bucket": "off", "Key": "k"})
    status, reply = fetch(url)
    assert status == 400 and b"<Code>InvalidRequest</Code>" in reply
    post = default_client(server).generate_presigned_post("off", "form")
    with pytest.raises(HTTPError) as posted:
        browser_post(post["url"], post["fields"], b"x")
    assert posted.value.code == 400 and b"InvalidRequest" in posted.value.read()
    assert s3.get_object(Bucket="off", Key="k")["Body"].read() == b"data"


def test_version_2_bad_input(dwh_server: DwhServer, bucket: str) -> None:
    """Malformed version 2 headers answer S3 errors, and the server goes on serving."""
    now = formatdate(usegmt=True)
    for authorization, expected in [
        ("AWS nocolon", b"InvalidArgument"),
        ("AWS :sig", b"InvalidArgument"),
        (f"AWS {dwh_server.access_key}:" + "x" * 5000, b"SignatureDoesNotMatch"),
        ("AWS " + "A" * 300 + ":sig", b"InvalidAccessKeyId"),
    ]:
        status, reply = fetch(f"{dwh_server.endpoint}/{bucket}", headers={"Authorization": authorization, "Date": now})
        assert status in (400, 403) and expected in reply, (authorization[:40], status, reply[:200])
        assert b"Traceback" not in reply
    status, reply = fetch(f"{dwh_server.endpoint}/{bucket}", headers={"Authorization": "AWS a:b", "Date": "never"})
    assert status == 403 and b"AccessDenied" in reply
    signed_long_ago = formatdate(0, usegmt=True)
    status, reply = fetch(
        f"{dwh_server.endpoint}/{bucket}", headers={"Authorization": "AWS a:b", "Date": signed_long_ago}
    )
    assert status == 403 and b"RequestTimeTooSkewed" in reply
    assert v2_client(dwh_server).list_objects(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
