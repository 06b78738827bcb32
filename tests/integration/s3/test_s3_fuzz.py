"""Signed requests with hostile parameters, driven by Hypothesis against a real ``dwh serve``.

The other bad-input suites each try one kind of mistake. This one mixes them: any method, any
path shape, any S3 sub-resource and query parameter with any value, any of the request headers
the handlers read with any value, and a body that is empty, random, or XML that is nearly
right. Every request is signed correctly (botocore's signer), so it gets past authentication
and reaches the handlers and their parsers.

What must hold for every one of them:

* the answer is never a 5xx: a client's mistake is a 4xx (or a success);
* an error has the S3 XML error document (code, message, request id) and no Python stack;
* the server is still up afterwards; an object in a bucket the requests never name reads back
  unchanged, and the object they aim at is either whole or absent, never torn.

``DWH_FUZZ_EXAMPLES`` sets how many requests to try (CI: the default below, with a fixed seed
so that a failure is reproducible; run more by hand to search wider).
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from s3http import Reply, send, sign, sign_v2
from s3server import DwhServer

EXAMPLES = int(os.environ.get("DWH_FUZZ_EXAMPLES", "1000"))
STORED = os.urandom(3000)

# Values that parsers of numbers, dates, ids, tokens and ranges stumble on.
UPLOAD = "{upload}"  # replaced by the id of a multipart upload in progress
_UPLOADS: dict[int, str] = {}  # server port -> that upload's id (made by the fixture)
_TRICKY = [
    "",
    "0",
    "-1",
    "1",
    "2",
    "10000",
    "10001",
    "99999999999999999999999999",
    "1e3",
    " 5",
    "0x10",
    "NaN",
    "true",
    "false",
    "null",
    "..",
    "../../etc/passwd",
    "%00",
    "\x00",
    "\x08",
    "a" * 1100,
    "é€😀",
    "bytes=0-0",
    "bytes=5-1",
    "bytes=-0",
    "bytes=0-",
    "bytes=a-b",
    "bytes=0-1,2-3",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "2015-10-21T07:28:00Z",
    "not a date",
    "*",
    '"etag"',
    "d41d8cd98f00b204e9800998ecf8427e",
    "AAAA",
    "====",
    "GOVERNANCE",
    "COMPLIANCE",
    'uri="http://acs.amazonaws.com/groups/global/AllUsers"',
    "id=arn:dwh:iam::default:root",
    "ON",
    "OFF",
    "COPY",
    "REPLACE",
    "CRC32",
    "SHA256",
    "CRC64NVME",
    "STANDARD",
    "url",
    "/",
    "fuzz/stored",
    "fuzz/stored?versionId=null",
    "/fuzz-bucket/fuzz/stored",
    "fuzz-bucket/fuzz/stored?versionId=null",
    UPLOAD,
]

_SUBRESOURCES = [
    "acl",
    "tagging",
    "uploads",
    "uploadId",
    "partNumber",
    "versionId",
    "versions",
    "list-type",
    "max-keys",
    "max-uploads",
    "max-parts",
    "part-number-marker",
    "key-marker",
    "upload-id-marker",
    "version-id-marker",
    "delimiter",
    "prefix",
    "marker",
    "start-after",
    "continuation-token",
    "encoding-type",
    "fetch-owner",
    "delete",
    "cors",
    "lifecycle",
    "versioning",
    "object-lock",
    "retention",
    "legal-hold",
    "location",
    "policy",
    "policyStatus",
    "attributes",
    "restore",
    "select",
    "website",
    "notification",
    "response-content-type",
    "response-content-disposition",
    "response-expires",
    "response-cache-control",
    "x-id",
]

_HEADERS = [
    "Range",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "Content-Type",
    "Content-MD5",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
    "x-amz-copy-source",
    "x-amz-copy-source-range",
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-unmodified-since",
    "x-amz-metadata-directive",
    "x-amz-tagging-directive",
    "x-amz-tagging",
    "x-amz-meta-fuzz",
    "x-amz-storage-class",
    "x-amz-checksum-algorithm",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-mode",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-bucket-object-lock-enabled",
    "x-amz-bypass-governance-retention",
    "x-amz-expected-bucket-owner",
    "x-amz-object-attributes",
    "x-amz-max-parts",
    "x-amz-part-number-marker",
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-full-control",
    "x-amz-mfa",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-website-redirect-location",
    "Origin",
    "Access-Control-Request-Method",
]

_XML_BODIES = [
    b"<Delete><Object><Key>fuzz/stored</Key></Object><Quiet>maybe</Quiet></Delete>",
    b"<Delete><Object></Object></Delete>",
    b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
    b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
    b"<CompleteMultipartUpload></CompleteMultipartUpload>",
    b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet></Tagging>",
    b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * 11 + b"</TagSet></Tagging>",
    b"<CORSConfiguration><CORSRule><AllowedMethod>PUT</AllowedMethod></CORSRule></CORSConfiguration>",
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>BREW</AllowedMethod>"
    b"</CORSRule></CORSConfiguration>",
    b"<VersioningConfiguration><Status>Sometimes</Status></VersioningConfiguration>",
    b"<LifecycleConfiguration><Rule><Status>Enabled</Status><Expiration><Days>-4</Days></Expiration>"
    b"</Rule></LifecycleConfiguration>",
    b"<LifecycleConfiguration><Rule><ID>x</ID><Filter><And></And></Filter><Status>Enabled</Status>"
    b"</Rule></LifecycleConfiguration>",
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>yesterday</RetainUntilDate></Retention>",
    b"<LegalHold><Status>MAYBE</Status></LegalHold>",
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
    b"<Mode>COMPLIANCE</Mode><Days>0</Days><Years>1</Years></DefaultRetention></Rule></ObjectLockConfiguration>",
    b"<CreateBucketConfiguration><LocationConstraint>mars-1</LocationConstraint></CreateBucketConfiguration>",
    b"<AccessControlPolicy><AccessControlList><Grant><Grantee><URI>http://acs.amazonaws.com/groups/global/AllUsers"
    b"</URI></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
    b"<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList><Grant><Grantee><ID></ID><URI>u</URI>"
    b"</Grantee></Grant></AccessControlList></AccessControlPolicy>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Delete><Object><Key>&a;</Key></Object></Delete>',
    b"<a><b><c><d><e><f>" * 50,
    b"not xml at all",
    b'{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}',
    b'{"Version": "2012-10-17", "Statement": "x"}',
    b"\xff\xfe<\x00D\x00",
]

_FUZZ_BUCKET = "fuzz-bucket"
_SENTINEL_BUCKET = "fuzz-sentinel"
_STORED_PATH = f"/{_FUZZ_BUCKET}/fuzz/stored"
_PATHS = [
    "/",
    f"/{_FUZZ_BUCKET}",
    f"/{_FUZZ_BUCKET}/",
    _STORED_PATH,
    f"/{_FUZZ_BUCKET}/fuzz/other",
    f"/{_FUZZ_BUCKET}/fuzz/%2e%2e/stored",
    f"/{_FUZZ_BUCKET}/" + quote("ключ/😀", safe="/"),
    "/fuzz-missing-bucket",
    "/fuzz-missing-bucket/k",
    "/Bad_Bucket/k",
    "/xn--bucket/k",
]

values = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=40), st.integers(-(2**70), 2**70).map(str))
queries = st.lists(
    st.tuples(st.one_of(st.sampled_from(_SUBRESOURCES), st.text(min_size=1, max_size=12)), values),
    max_size=4,
)
# Header values are mostly printable (so that most requests reach the handlers); the control
# characters HTTP forbids come from ``_TRICKY``.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
header_values = st.one_of(st.sampled_from(_TRICKY), header_text, st.integers(-(2**70), 2**70).map(str))
headers = st.dictionaries(st.sampled_from(_HEADERS), header_values, max_size=5)
bodies = st.one_of(st.just(b""), st.sampled_from(_XML_BODIES), st.binary(max_size=2048))


def _target(path: str, query: list[tuple[str, str]]) -> str:
    if not query:
        return path
    parts = [quote(k, safe="-_.~") + ("=" + quote(v, safe="-_.~") if v else "") for k, v in query]
    return path + "?" + "&".join(parts)


def _header_safe(value: str) -> str:
    """HTTP/1.1 header values are latin-1 text without line breaks (a client cannot send more)."""
    return value.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ").strip()


def _check(reply: Reply, method: str, target: str) -> None:
    where = f"{method} {target}"
    assert reply.status < 500 or reply.status == 501, (where, reply.status, reply.body[:600])
    assert b"Traceback" not in reply.body and b'File "' not in reply.body, (where, reply.body[:2000])
    if reply.status >= 300 and method != "HEAD" and reply.status != 304:
        root = ET.fromstring(reply.body)
        assert root.tag == "Error", (where, reply.body[:600])
        assert root.findtext("Code"), (where, reply.body[:600])
        assert root.findtext("RequestId") == reply.headers.get("x-amz-request-id"), (where, reply.body[:600])


@pytest.fixture(scope="module", params=["one-process", "workers"])
def fuzz_server(
    request: pytest.FixtureRequest, dwh_server: DwhServer, tmp_path_factory: pytest.TempPathFactory
) -> DwhServer:
    """The shared server, and one with a read worker (``--workers 2``): each request opens a
    connection, which either process may accept, so the worker's own handlers and its passing
    of requests to the primary are fuzzed as well."""
    server = dwh_server
    if request.param == "workers":
        server = DwhServer(tmp_path_factory.mktemp("dwh-fuzz") / "data", extra_args=["--workers", "2"]).start()
        request.addfinalizer(server.terminate)
    s3 = server.boto3_client()
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for name in (_FUZZ_BUCKET, _SENTINEL_BUCKET):
        if name not in existing:
            s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="fuzz/stored", Body=STORED)
    upload_id = s3.create_multipart_upload(Bucket=_FUZZ_BUCKET, Key="fuzz/stored")["UploadId"]
    s3.upload_part(Bucket=_FUZZ_BUCKET, Key="fuzz/stored", UploadId=upload_id, PartNumber=1, Body=STORED)
    _UPLOADS[server.port] = upload_id
    return server


@pytest.mark.s3op("hostile-input", note="Hypothesis: signed requests mixing hostile parameters, headers and bodies")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("DWH_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
    path=st.sampled_from(_PATHS),
    query=queries,
    extra=headers,
    body=bodies,
    v2=st.integers(0, 3).map(lambda n: n == 0),
)
def test_signed_hostile_requests_get_s3_errors(
    fuzz_server: DwhServer,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    extra: dict[str, str],
    body: bytes,
    v2: bool,
) -> None:
    """A quarter of the requests are signed with SigV2 (its own parsing of dates, sub-resources
    and the Authorization header), the rest with SigV4."""
    upload_id = _UPLOADS[fuzz_server.port]
    target = _target(path, [(k, v.replace(UPLOAD, upload_id)) for k, v in query])
    hdrs = {name: _header_safe(value.replace(UPLOAD, upload_id)) for name, value in extra.items()}
    if method in ("GET", "HEAD"):
        body = b""
    if v2:
        signed_headers = sign_v2(fuzz_server, method, target, headers=hdrs)
    else:
        signed_headers = sign(fuzz_server, method, target, body=body, headers=hdrs)
    note(f"{'SigV2 ' if v2 else ''}{method} {target!r} headers={hdrs!r} body={body[:200]!r}")
    reply = send(fuzz_server, method, target, body=body, headers=signed_headers)
    _check(reply, method, target)
    if method in ("PUT", "POST", "DELETE") and reply.status < 300 and path.startswith(f"/{_FUZZ_BUCKET}"):
        # A valid request may have replaced or deleted the object the others aim at: put it
        # back, so that the next requests still find one to read, copy and condition on.
        fuzz_server.boto3_client().put_object(Bucket=_FUZZ_BUCKET, Key="fuzz/stored", Body=STORED)


def test_fuzzed_server_still_serves_what_it_stored(fuzz_server: DwhServer) -> None:
    s3: Any = fuzz_server.boto3_client()
    assert s3.get_object(Bucket=_SENTINEL_BUCKET, Key="fuzz/stored")["Body"].read() == STORED
    # The aimed-at object may have been replaced by a valid request (and put back after it);
    # whatever is there is whole: it reads back with its length and its own MD5 ETag.
    head = s3.head_object(Bucket=_FUZZ_BUCKET, Key="fuzz/stored")
    got = s3.get_object(Bucket=_FUZZ_BUCKET, Key="fuzz/stored")["Body"].read()
    assert len(got) == head["ContentLength"]
    if "-" not in head["ETag"]:
        assert head["ETag"].strip('"') == hashlib.md5(got).hexdigest()


# --- presigned URLs ----------------------------------------------------------------------------------

_AUTH_PARAMS = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
]
_V2_AUTH_PARAMS = ["AWSAccessKeyId", "Signature", "Expires"]
_PRESIGN_VALUES = st.one_of(
    st.sampled_from(_TRICKY),
    st.sampled_from(["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1", "host", "host;x-amz-date", "604801", "0", "-3600"]),
    st.text(max_size=40),
)


def _edits(auth_params: list[str], covered: list[str]) -> st.SearchStrategy[tuple[str, str, str]]:
    """One change to a valid presigned GET: a parameter's value replaced, the parameter removed,
    sent twice with another value, or a parameter added that the signature covers (SigV4 covers
    every parameter; SigV2 only sub-resources and overrides) or that makes another scheme."""
    return st.one_of(
        st.tuples(st.just("replace"), st.sampled_from(auth_params), _PRESIGN_VALUES),
        st.tuples(st.just("remove"), st.sampled_from(auth_params), st.just("")),
        st.tuples(st.just("repeat"), st.sampled_from(auth_params), _PRESIGN_VALUES),
        st.tuples(st.just("add"), st.sampled_from(covered), _PRESIGN_VALUES),
    )


presign_edits = _edits(
    _AUTH_PARAMS, ["x-amz-security-token", "versionId", "response-content-type", "X-Amz-Content-Sha256", "acl"]
)
presign_v2_edits = _edits(
    _V2_AUTH_PARAMS, ["x-amz-security-token", "versionId", "response-content-type", "acl", "X-Amz-Signature"]
)
_PRESIGN_SETTINGS = settings(
    max_examples=max(EXAMPLES // 3, 50),
    deadline=None,
    derandomize=os.environ.get("DWH_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check_changed_presigned_url(
    server: DwhServer, signature_version: str, edit: tuple[str, str, str], method: str
) -> None:
    url = server.boto3_client(signature_version=signature_version).generate_presigned_url(
        "get_object", Params={"Bucket": _FUZZ_BUCKET, "Key": "fuzz/stored"}, ExpiresIn=600
    )
    path, _, query = url.partition("://")[2].partition("/")[2].partition("?")
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    kind, name, value = edit
    encoded = quote(value, safe="-_.~")
    if kind == "replace":
        params = [(k, encoded if k == name else v) for k, v in params]
    elif kind == "remove":
        params = [(k, v) for k, v in params if k != name]
    else:
        params.append((name, encoded))
    changed = sorted(params) != sorted(tuple(p.split("=", 1)) for p in query.split("&"))
    target = "/" + path + "?" + "&".join(f"{k}={v}" for k, v in params)
    note(f"{method} {target!r}")
    reply = send(server, method, target, body=b"x" if method == "PUT" else b"")
    _check(reply, method, target)
    if changed or method != "GET":
        assert reply.status in (400, 403, 405), (method, target, reply.status, reply.body[:300])
        assert reply.body != STORED
    else:
        assert reply.status == 200 and reply.body == STORED


@pytest.mark.s3op("hostile-input", note="Hypothesis: presigned URLs with one query parameter changed, removed or added")
@_PRESIGN_SETTINGS
@given(edit=presign_edits, method=st.sampled_from(["GET", "HEAD", "GET", "PUT", "DELETE"]))
def test_a_changed_presigned_url_is_refused(fuzz_server: DwhServer, edit: tuple[str, str, str], method: str) -> None:
    """The URL was signed for a GET of one object: any change to what the signature covers, or a
    different method, is refused with an S3 error (never a 5xx, never the object)."""
    _check_changed_presigned_url(fuzz_server, "s3v4", edit, method)


@pytest.mark.s3op("hostile-input", "auth:sigv2", note="Hypothesis: the same changes to SigV2 presigned URLs")
@_PRESIGN_SETTINGS
@given(edit=presign_v2_edits, method=st.sampled_from(["GET", "HEAD", "GET", "PUT", "DELETE"]))
def test_a_changed_v2_presigned_url_is_refused(fuzz_server: DwhServer, edit: tuple[str, str, str], method: str) -> None:
    """As above for a SigV2 URL (boto3's default), whose signature covers the method, the path,
    Expires and the sub-resources."""
    _check_changed_presigned_url(fuzz_server, "s3", edit, method)
