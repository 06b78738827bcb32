"""POST-policy uploads: policies signed by botocore's ``generate_presigned_post`` checked by the
pure policy functions, and the streaming form handler fed a body in small pieces."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from datawarehouse.api.s3 import post_policy
from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.handlers import Context
from datawarehouse.api.s3.handlers.post import post_object
from datawarehouse.api.s3.http import Offload, Request
from datawarehouse.api.s3.router import Endpoint
from datawarehouse.errors import NoSuchKey
from datawarehouse.service.access import root_caller
from datawarehouse.service.warehouse import Warehouse

ACCESS, SECRET = "AKIDPOSTTEST0001", "post-test-secret"


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == ACCESS else None


def presigned(
    key: str = "up/${filename}",
    conditions: list[Any] | None = None,
    expires: int = 300,
    signature_version: str = "s3v4",
    **fields: str,
) -> dict[str, str]:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(signature_version=signature_version),
    )
    post = client.generate_presigned_post("bkt", key, Fields=fields, Conditions=conditions or [], ExpiresIn=expires)
    return {k.lower(): v for k, v in post["fields"].items()}


def now() -> datetime:
    return datetime.now(UTC)


def denied(exc: pytest.ExceptionInfo[S3Error]) -> str:
    assert exc.value.code == "AccessDenied" and exc.value.http_status == 403
    return exc.value.message


def test_signature() -> None:
    fields = presigned()
    assert post_policy.verify_signature(fields, lookup) == (ACCESS, "AWS4-HMAC-SHA256")
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature({**fields, "policy": fields["policy"][:-4] + "AAAA"}, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature({**fields, "x-amz-signature": "not hex"}, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature(fields, lambda _: None)
    assert exc.value.code == "InvalidAccessKeyId"
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature({**fields, "x-amz-algorithm": "AWS4-ECDSA-P256-SHA256"}, lookup)
    assert exc.value.code == "InvalidArgument"
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature({**fields, "x-amz-credential": "AK/20260101/us-east-1/ec2/aws4_request"}, lookup)
    assert exc.value.code == "InvalidArgument"


def test_signature_version_2() -> None:
    """boto3's generate_presigned_post signs with version 2 unless told otherwise."""
    fields = presigned(signature_version="s3")
    assert {"awsaccesskeyid", "signature"} <= set(fields) and "x-amz-algorithm" not in fields
    assert post_policy.verify_signature(fields, lookup, signature_v2=True) == (ACCESS, "AWS")
    for name, value, code in [
        ("policy", fields["policy"][:-4] + "AAAA", "SignatureDoesNotMatch"),
        ("signature", "x" * 28, "SignatureDoesNotMatch"),
        ("signature", "", "SignatureDoesNotMatch"),
        ("awsaccesskeyid", "AKIDUNKNOWN", "InvalidAccessKeyId"),
        ("awsaccesskeyid", "", "InvalidAccessKeyId"),
    ]:
        with pytest.raises(S3Error) as exc:
            post_policy.verify_signature({**fields, name: value}, lookup, signature_v2=True)
        assert exc.value.code == code, (name, value)
    with pytest.raises(S3Error) as exc:
        post_policy.verify_signature(fields, lookup, signature_v2=False)
    assert exc.value.code == "InvalidRequest"
    # The signature fields need no condition of their own.
    post_policy.check_conditions(post_policy.parse_policy(fields["policy"]), fields, "bkt", now())


def test_parse_policy() -> None:
    fields = presigned(conditions=[["content-length-range", 10, 100]])
    policy = post_policy.parse_policy(fields["policy"])
    assert (policy.min_size, policy.max_size) == (10, 100)
    assert now() < policy.expiration <= now() + timedelta(seconds=301)
    for bad in ("%%%", base64.b64encode(b"[]").decode(), base64.b64encode(b'{"conditions": []}').decode()):
        with pytest.raises(S3Error) as exc:
            post_policy.parse_policy(bad)
        assert exc.value.code == "InvalidArgument"


def test_conditions_hold_for_the_signed_form() -> None:
    fields = presigned(
        conditions=[["starts-with", "$Content-Type", "image/"], {"x-amz-meta-owner": "ann"}, ["eq", "$acl", "private"]],
        **{"Content-Type": "image/png", "x-amz-meta-owner": "ann", "acl": "private"},
    )
    policy = post_policy.parse_policy(fields["policy"])
    form = {**fields, "key": "up/cat.png", "x-ignore-anything": "1"}
    post_policy.check_conditions(policy, form, "bkt", now())
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, {**form, "key": "elsewhere/cat.png"}, "bkt", now())
    assert denied(exc).startswith('Invalid according to Policy: Policy Condition failed: ["starts-with", "$key"')
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, {**form, "content-type": "text/html"}, "bkt", now())
    assert "content-type" in denied(exc)
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, {**form, "x-amz-meta-owner": "bob"}, "bkt", now())
    assert "x-amz-meta-owner" in denied(exc)
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, form, "other-bucket", now())
    assert "bucket" in denied(exc)
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, {**form, "x-amz-meta-extra": "1"}, "bkt", now())
    assert denied(exc) == "Invalid according to Policy: Extra input fields: x-amz-meta-extra"
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, form, "bkt", now() + timedelta(seconds=400))
    assert denied(exc) == "Invalid according to Policy: Policy expired."


def test_unknown_condition_and_size_limits() -> None:
    doc = {"expiration": "2099-01-01T00:00:00.000Z", "conditions": [["matches", "$key", ".*"]]}
    policy = post_policy.parse_policy(base64.b64encode(json.dumps(doc).encode()).decode())
    with pytest.raises(S3Error) as exc:
        post_policy.check_conditions(policy, {"key": "k"}, "bkt", now())
    assert exc.value.code == "InvalidArgument"
    sized = post_policy.Policy(now(), (), 2, 4)
    post_policy.check_size(sized, 2)
    post_policy.check_size(sized, 4)
    for size, code in ((1, "EntityTooSmall"), (5, "EntityTooLarge")):
        with pytest.raises(S3Error) as exc:
            post_policy.check_size(sized, size)
        assert exc.value.code == code


# --- the streaming handler -------------------------------------------------------------------------

BOUNDARY = "----unit-boundary-7d1f"


def form(
    fields: dict[str, str], content: bytes, filename: str = "cat.png", after: dict[str, str] | None = None
) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts += [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (after or {}).items()
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    w = Warehouse.init(tmp_path / "dwh")
    w.create_bucket("bkt")
    try:
        yield w
    finally:
        w.close()


def run_post(wh: Warehouse, body: bytes, piece: int = 7, *, truncate: int | None = None) -> Any:
    sent = body if truncate is None else body[:truncate]
    messages = [
        {"type": "http.request", "body": sent[i : i + piece], "more_body": True} for i in range(0, len(sent), piece)
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    it = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(it)

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(len(body))}
    request = Request("POST", "/bkt", "", [], headers, list(headers.items()), None, receive, "RID")
    offload = Offload(2)
    try:
        ctx = Context(
            wh,
            offload,
            request,
            Endpoint("PostObject", "bkt"),
            None,
            "us-east-1",
            lookup,
            lookup_caller=lambda key: root_caller(key, secret) if (secret := lookup(key)) else None,
        )
        return asyncio.run(post_object(ctx))
    finally:
        offload.close()


def test_streamed_form_upload(wh: Warehouse) -> None:
    fields = presigned(
        conditions=[["content-length-range", 1, 300_000], {"success_action_status": "201"}], success_action_status="201"
    )
    content = bytes(range(256)) * 1000
    resp = run_post(wh, form(fields, content, after={"success_action_status": "200", "key": "ignored"}), piece=1000)
    assert resp.status == 201 and b"<Key>up/cat.png</Key>" in resp.body  # fields after the file are ignored
    assert wh.get_object_bytes("bkt", "up/cat.png") == content
    assert wh.head_object("bkt", "up/cat.png").content_type == "image/png"


def test_refused_forms_store_nothing(wh: Warehouse) -> None:
    fields = presigned(conditions=[["content-length-range", 1, 100]])
    cases = [
        (form(fields, b"x" * 101), "EntityTooLarge"),
        (form(fields, b""), "EntityTooSmall"),
        (form({**fields, "key": "other/${filename}"}, b"x"), "AccessDenied"),
        (form({**fields, "x-amz-signature": "0" * 64}, b"x"), "SignatureDoesNotMatch"),
        (form({k: v for k, v in fields.items() if k != "policy"}, b"x"), "AccessDenied"),
        (form({**fields, "x-amz-meta-sneaky": "1"}, b"x"), "AccessDenied"),
    ]
    for body, code in cases:
        with pytest.raises(S3Error) as exc:
            run_post(wh, body)
        assert exc.value.code == code
    with pytest.raises(S3Error) as exc:  # no file part at all
        run_post(
            wh, f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=key\r\n\r\nk\r\n--{BOUNDARY}--\r\n".encode()
        )
    assert exc.value.code == "MalformedPOSTRequest"
    body = form(fields, b"y" * 50)
    with pytest.raises(S3Error):  # the body stops inside the file part
        run_post(wh, body, truncate=len(body) - 30)
    with pytest.raises(NoSuchKey):
        wh.head_object("bkt", "up/cat.png")
    with pytest.raises(NoSuchKey):
        wh.head_object("bkt", "other/cat.png")


def test_policy_may_name_the_unsubstituted_key(wh: Warehouse) -> None:
    fields = presigned(key="exact/${filename}", conditions=[{"key": "exact/${filename}"}])
    resp = run_post(wh, form(fields, b"data", filename="f.txt"))
    assert resp.status == 204 and ("location", "/bkt/exact/f.txt") in resp.headers
    assert wh.get_object_bytes("bkt", "exact/f.txt") == b"data"
