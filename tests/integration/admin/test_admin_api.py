"""The admin API against a live ``dwh serve``: auth, tokens, each endpoint, bad input, audit."""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from s3server import DwhServer, unique_bucket

from datawarehouse.api.admin.openapi import document
from datawarehouse.api.admin.registry import load_all
from datawarehouse.cli.admin_client import AdminClient
from datawarehouse.errors import RemoteError


def raw(server: DwhServer, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    """An HTTP request with exactly these headers; returns (status, decoded JSON or None)."""
    u = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("content-type")
    finally:
        conn.close()
    return resp.status, (json.loads(data) if data else None), ctype


def signed_raw(admin: AdminClient, server: DwhServer, method: str, path: str, body: bytes, **over: str) -> Any:
    headers = admin.sign_headers(method, path, [], body)
    headers.update(over)
    return raw(server, method, path, body, headers)


def expect_error(status: int, code: str | None = None):  # type: ignore[no-untyped-def]
    class Ctx:
        def __enter__(self) -> None:
            return None

        def __exit__(self, tp, exc, tb):  # type: ignore[no-untyped-def]
            assert isinstance(exc, RemoteError), f"expected HTTP {status}, got {exc!r}"
            assert exc.status == status, str(exc)
            if code is not None:
                assert exc.code == code, str(exc)
            return True

    return Ctx()


# --- auth -------------------------------------------------------------------------------------------


def test_unsigned_request_is_refused_with_json(server: DwhServer) -> None:
    status, doc, ctype = raw(server, "GET", "/admin/v1/info")
    assert status == 403 and ctype == "application/json"
    assert doc["error"]["code"] == "AccessDenied" and doc["error"]["request_id"]


def test_bad_signature_and_unknown_key(server: DwhServer, admin: AdminClient) -> None:
    wrong = AdminClient(server.endpoint, access_key=server.access_key, secret_key="not-the-secret-key")
    with expect_error(403, "SignatureDoesNotMatch"):
        wrong.request("GET", "/info")
    unknown = AdminClient(server.endpoint, access_key="NOSUCHKEY0000", secret_key="whatever-secret")
    with expect_error(403, "InvalidAccessKeyId"):
        unknown.request("GET", "/info")


def test_body_must_match_signed_hash(server: DwhServer, admin: AdminClient) -> None:
    body = json.dumps({"name": unique_bucket()}).encode()
    headers = admin.sign_headers("POST", "/admin/v1/buckets", [], body)
    status, doc, _ = raw(server, "POST", "/admin/v1/buckets", body + b" ", headers)
    assert status == 400 and doc["error"]["code"] == "XAmzContentSHA256Mismatch"
    # The payload hash is part of what is signed: claiming UNSIGNED-PAYLOAD breaks the signature.
    status, doc, _ = signed_raw(
        admin, server, "GET", "/admin/v1/info", b"", **{"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    )
    assert status == 403 and doc["error"]["code"] == "SignatureDoesNotMatch"


def test_secret_never_echoed(server: DwhServer) -> None:
    wrong = AdminClient(server.endpoint, access_key=server.access_key, secret_key="SECRET-MARKER-xyz")
    try:
        wrong.request("GET", "/info")
    except RemoteError as exc:
        assert "SECRET-MARKER" not in str(exc)
    assert "SECRET-MARKER" not in server.log()


def test_token_flow(server: DwhServer, admin: AdminClient) -> None:
    doc = admin.request("POST", "/tokens", body={"ttl_seconds": 120})
    assert doc["token_type"] == "Bearer" and len(doc["token"]) >= 40
    expires = datetime.fromisoformat(doc["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=60) < expires - datetime.now(UTC) <= timedelta(seconds=121)
    bearer = AdminClient(server.endpoint, token=doc["token"])
    assert bearer.request("GET", "/info")["version"]
    with expect_error(403, "AccessDenied"):  # a token cannot mint more tokens
        bearer.request("POST", "/tokens", body={})
    assert bearer.request("DELETE", "/tokens/current") is None
    with expect_error(403, "InvalidToken"):
        bearer.request("GET", "/info")
    with expect_error(403, "InvalidToken"):
        AdminClient(server.endpoint, token="x" * 43).request("GET", "/info")


def test_token_ttl_bounds(admin: AdminClient) -> None:
    with expect_error(400):
        admin.request("POST", "/tokens", body={"ttl_seconds": 12 * 3600 + 1})
    with expect_error(400):
        admin.request("POST", "/tokens", body={"ttl_seconds": 10})
    with expect_error(400, "InvalidRequest"):
        admin.request("POST", "/tokens", body={"ttl_seconds": "60"})


def test_revoking_without_token_is_refused(admin: AdminClient) -> None:
    with expect_error(400):
        admin.request("DELETE", "/tokens/current")


def test_expired_token_is_refused() -> None:
    """Expiry by the store's clock (no sleeping): the same code path the server uses."""
    from datawarehouse.api.admin.auth import AdminCaller, authenticate
    from datawarehouse.api.admin.errors import AdminError
    from datawarehouse.api.admin.tokens import TokenStore
    from datawarehouse.service.access import root_caller

    caller = root_caller("AK", "secret-secret")
    store: TokenStore[AdminCaller] = TokenStore()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token, _, _ = store.issue(AdminCaller(caller), now, timedelta(minutes=15))

    def auth(at: datetime) -> AdminCaller:
        return authenticate(
            method="GET",
            raw_path="/admin/v1/info",
            query=[],
            headers=[("authorization", f"Bearer {token}")],
            body=b"",
            now=at,
            lookup_caller=lambda k: caller if k == "AK" else None,
            tokens=store,
            allow_token=True,
        )

    assert auth(now + timedelta(minutes=14)).via == "token"
    with pytest.raises(AdminError) as err:
        auth(now + timedelta(minutes=15))
    assert err.value.code == "ExpiredToken" and err.value.status == 403
    with pytest.raises(AdminError) as err:
        auth(now + timedelta(minutes=16))
    assert err.value.code == "InvalidToken"  # forgotten once seen expired


# --- endpoints --------------------------------------------------------------------------------------


def test_info_and_disks(admin: AdminClient) -> None:
    info = admin.request("GET", "/info")
    assert info["disks"] == 6 and info["active_disks"] == 6 and info["uptime_seconds"] >= 0
    assert info["audit_enabled"] is True
    disks = admin.request("GET", "/disks")["disks"]
    assert len(disks) == 6 and all(d["state"] == "active" and d["reachable"] for d in disks)
    assert all(d["total_size"] >= d["free_size"] > 0 for d in disks)


def test_bucket_lifecycle_usage_and_quota(server: DwhServer, admin: AdminClient) -> None:
    name = unique_bucket("adm")
    created = admin.request("POST", "/buckets", body={"name": name})
    assert created["name"] == name and created["usage"]["objects"] == 0 and created["quota"] is None
    s3 = server.boto3_client()
    s3.put_object(Bucket=name, Key="k", Body=b"x" * 1000)
    got = admin.request("GET", f"/buckets/{name}")
    assert got["usage"] == {"objects": 1, "logical_bytes": 1000, "upload_parts": 0, "upload_bytes": 0}
    assert got["stored"]["chunks"] + got["stored"]["inline_bytes"] > 0
    names = [b["name"] for b in admin.request("GET", "/buckets")["buckets"]]
    assert name in names and "dwh--audit" not in names
    usage = admin.request("GET", "/usage")
    assert usage["totals"]["objects"] >= 1 and any(b["name"] == name for b in usage["buckets"])

    assert admin.request("PUT", f"/buckets/{name}/quota", body={"max_bytes": 1500}) == {
        "max_bytes": 1500,
        "max_objects": None,
    }
    assert admin.request("GET", f"/buckets/{name}/quota")["max_bytes"] == 1500
    with pytest.raises(Exception, match="QuotaExceeded"):
        s3.put_object(Bucket=name, Key="k2", Body=b"y" * 1000)
    assert admin.request("DELETE", f"/buckets/{name}/quota") is None
    assert admin.request("GET", f"/buckets/{name}/quota") == {"max_bytes": None, "max_objects": None}
    with expect_error(409, "BucketNotEmpty"):
        admin.request("DELETE", f"/buckets/{name}")
    s3.delete_object(Bucket=name, Key="k")
    admin.request("DELETE", f"/buckets/{name}")
    with expect_error(404, "NoSuchBucket"):
        admin.request("GET", f"/buckets/{name}")


def test_bucket_pagination(admin: AdminClient) -> None:
    made = sorted(unique_bucket("pg") for _ in range(3))
    for n in made:
        admin.request("POST", "/buckets", body={"name": n})
    seen: list[str] = []
    marker = None
    while True:
        page = admin.request("GET", "/buckets", query={"limit": 2, "marker": marker})
        assert len(page["buckets"]) <= 2
        seen += [b["name"] for b in page["buckets"]]
        if not page["truncated"]:
            assert page["next_marker"] is None
            break
        marker = page["next_marker"]
    assert seen == sorted(seen) and set(made) <= set(seen)


def test_bucket_bad_input(server: DwhServer, admin: AdminClient) -> None:
    with expect_error(400, "InvalidBucketName"):
        admin.request("POST", "/buckets", body={"name": "admin"})
    with expect_error(400, "InvalidRequest"):
        admin.request("POST", "/buckets", body={"name": 5})
    with expect_error(400, "InvalidRequest"):
        admin.request("POST", "/buckets", body={"name": "okname", "unknown": 1})
    with expect_error(400, "InvalidRequest"):
        admin.request("POST", "/buckets", body={})
    with expect_error(404, "NoSuchBucket"):
        admin.request("GET", "/buckets/no-such-bucket-here")
    with expect_error(404, "NoSuchBucket"):  # the audit log's system bucket is not the API's
        admin.request("GET", "/buckets/dwh--audit")
    with expect_error(400, "InvalidRequest"):
        admin.request("PUT", "/buckets/whatever/quota", body={"max_bytes": -1})
    with expect_error(400, "InvalidRequest"):
        admin.request("GET", "/buckets", query={"limit": "lots"})
    with expect_error(400, "InvalidRequest"):
        admin.request("GET", "/buckets", query={"limit": 0})
    body = b"{not json"
    status, doc, _ = signed_raw(admin, server, "POST", "/admin/v1/buckets", body)
    assert status == 400 and doc["error"]["code"] == "MalformedJSON"
    big = json.dumps({"name": "x" * (1024 * 1024 + 10)}).encode()
    status, doc, _ = signed_raw(admin, server, "POST", "/admin/v1/buckets", big)
    assert status == 413 and doc["error"]["code"] == "EntityTooLarge"


def test_unknown_route_and_method(server: DwhServer, admin: AdminClient) -> None:
    with expect_error(404, "NoSuchRoute"):
        admin.request("GET", "/no/such/thing")
    with expect_error(405, "MethodNotAllowed"):
        admin.request("PATCH", "/info")
    status, doc, _ = raw(server, "GET", "/admin/v1")
    assert status == 404 and doc["error"]["code"] == "NoSuchRoute"


def test_scrub_gc_heal(admin: AdminClient) -> None:
    started = admin.request("POST", "/scrub", body={"deep": True})
    assert started["kind"] == "scrub" and started["state"] in ("running", "succeeded")
    for _ in range(600):
        st = admin.request("GET", "/scrub")
        if st["state"] != "running":
            break
    assert st["state"] == "succeeded" and st["report"]["unrecoverable"] == []
    assert st["options"] == {"deep": True, "repair": True, "rate": None}
    heal = admin.request("GET", "/heal")
    assert heal["queued"] == 0 and heal["last_scrub"]["state"] == "succeeded"
    admin.request("POST", "/gc", body={"grace_hours": 1})
    for _ in range(600):
        gc = admin.request("GET", "/gc")
        if gc["state"] != "running":
            break
    assert gc["state"] == "succeeded" and "chunks_removed" in gc["report"]
    with expect_error(400):
        admin.request("POST", "/gc", body={"grace_hours": -1})
    with expect_error(400):
        admin.request("POST", "/scrub", body={"rate": 0})


def test_every_admin_request_is_audited(server: DwhServer, admin: AdminClient) -> None:
    name = unique_bucket("aud")
    admin.request("POST", "/buckets", body={"name": name})
    raw(server, "GET", "/admin/v1/usage")  # denied (unsigned): audited too
    page = admin.request("GET", "/audit", query={"operation": "admin:CreateBucket", "bucket": name})
    [rec] = page["records"]
    assert rec["status"] == 201 and rec["principal"].endswith(":root") and rec["access_key"] == server.access_key
    denied = admin.request("GET", "/audit", query={"operation": "admin:GetUsage", "limit": 1000})["records"]
    assert any(r["status"] == 403 and r["error"] == "AccessDenied" and r["principal"] == "" for r in denied)
    verify = admin.request("GET", "/audit/verify")
    assert verify["ok"] is True and verify["records"] > 0 and verify["problems"] == []


def test_audit_query_pagination_and_bad_input(admin: AdminClient) -> None:
    first = admin.request("GET", "/audit", query={"limit": 2})
    assert len(first["records"]) == 2 and first["truncated"]
    second = admin.request("GET", "/audit", query={"limit": 2, "marker": first["next_marker"]})
    assert second["records"][0]["seq"] > first["records"][-1]["seq"]
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert admin.request("GET", "/audit", query={"since": future})["records"] == []
    with expect_error(400):
        admin.request("GET", "/audit", query={"since": "yesterday"})
    with expect_error(400):
        admin.request("GET", "/audit", query={"since": future, "until": "2020-01-01T00:00:00Z"})


# --- IAM --------------------------------------------------------------------------------------------


def test_iam_round_trip_and_tenant_admin_scope(server: DwhServer, admin: AdminClient) -> None:
    admin.request("POST", "/tenants", body={"name": "acme"})
    with expect_error(409):
        admin.request("POST", "/tenants", body={"name": "acme"})
    assert "acme" in [t["name"] for t in admin.request("GET", "/tenants")["tenants"]]
    admin.request("POST", "/tenants/acme/users", body={"name": "alice"})
    admin.request("POST", "/tenants/acme/groups", body={"name": "ops"})
    admin.request("PUT", "/tenants/acme/groups/ops/members/alice")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    assert admin.request("PUT", "/tenants/acme/policies/all-s3", body={"document": doc})["document"] == doc
    admin.request("PUT", "/tenants/acme/groups/ops/policies/all-s3")
    admin.request("PUT", "/tenants/acme/users/alice/policies/admin")
    user = admin.request("GET", "/tenants/acme/users/alice")
    assert user["groups"] == ["ops"] and user["policies"] == ["admin"]
    assert admin.request("GET", "/tenants/acme/groups/ops")["members"] == ["alice"]
    with expect_error(400, "MalformedPolicyDocument"):
        admin.request("PUT", "/tenants/acme/policies/bad", body={"document": {"nope": 1}})

    key = admin.request("POST", "/tenants/acme/users/alice/keys", body={"description": "ci"})
    assert key["secret_key"] and key["kind"] == "user"
    listed = admin.request("GET", "/tenants/acme/keys")["keys"]
    assert [k["access_key_id"] for k in listed] == [key["access_key_id"]]
    assert "secret_key" not in json.dumps(listed) and key["secret_key"] not in json.dumps(listed)
    created = admin.request("GET", "/audit", query={"operation": "admin:CreateAccessKey"})["records"]
    assert created and key["secret_key"] not in json.dumps(created)

    # alice (tenant acme, admin policy) administers her own tenant, not the server or others.
    alice = AdminClient(server.endpoint, access_key=key["access_key_id"], secret_key=key["secret_key"])
    assert [u["name"] for u in alice.request("GET", "/tenants/acme/users")["users"]] == ["alice"]
    with expect_error(403):
        alice.request("GET", "/tenants")
    with expect_error(403):
        alice.request("GET", "/disks")
    with expect_error(403):
        alice.request("GET", "/tenants/default/users")
    bucket = unique_bucket("acme")
    assert alice.request("POST", "/buckets", body={"name": bucket})["name"] == f"acme:{bucket}"
    assert [b["name"] for b in alice.request("GET", "/buckets")["buckets"]] == [f"acme:{bucket}"]
    with expect_error(403):
        alice.request("GET", "/buckets/default:anything")

    # a user without an admin policy is denied (and that is audited)
    admin.request("DELETE", "/tenants/acme/users/alice/policies/admin")
    with expect_error(403, "AccessDenied"):
        alice.request("GET", "/tenants/acme/users")
    # disabling the key stops it at once
    admin.request("PATCH", f"/tenants/acme/keys/{key['access_key_id']}", body={"status": "disabled"})
    with expect_error(403):
        alice.request("GET", "/info")

    quota = admin.request("PUT", "/tenants/acme/quota", body={"max_buckets": 5})
    assert quota["max_buckets"] == 5 and quota["usage"]["buckets"] == 1
    assert admin.request("PUT", "/tenants/acme/users/alice/quota", body={"max_bytes": 10})["max_bytes"] == 10
    admin.request("DELETE", "/tenants/acme/quota")
    assert admin.request("GET", "/tenants/acme/quota")["max_buckets"] is None
    admin.request("DELETE", f"/tenants/acme/keys/{key['access_key_id']}")
    with expect_error(404, "NoSuchAccessKey"):
        admin.request("DELETE", f"/tenants/acme/keys/{key['access_key_id']}")
    with expect_error(404, "NoSuchTenant"):
        admin.request("GET", "/tenants/nope/users")


def test_service_account(server: DwhServer, admin: AdminClient) -> None:
    admin.request("POST", "/tenants", body={"name": "svc"})
    admin.request("POST", "/tenants/svc/users", body={"name": "bob"})
    admin.request("PUT", "/tenants/svc/users/bob/policies/readwrite")
    narrow = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
    }
    sa = admin.request(
        "POST", "/tenants/svc/service-accounts", body={"parent_user": "bob", "policy": narrow, "name": "backup"}
    )
    assert sa["kind"] == "service" and sa["user"] == "backup"
    users = admin.request("GET", "/tenants/svc/users", query={"kind": "service"})["users"]
    assert [(u["name"], u["parent_user"]) for u in users] == [("backup", "bob")]
    admin.request("DELETE", "/tenants/svc/service-accounts/backup")
    assert admin.request("GET", "/tenants/svc/users", query={"kind": "service"})["users"] == []


# --- the document -----------------------------------------------------------------------------------


def test_openapi_matches_routes(server: DwhServer) -> None:
    """Every declared operation is in the document and vice versa, and every documented route is
    mounted: an unsigned request to it is refused by authentication, not unknown to the router."""
    status, doc, _ = raw(server, "GET", "/admin/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    declared = {(op.method.lower(), op.full_path) for op in load_all()}
    documented = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert declared == documented
    assert doc == json.loads(json.dumps(document()))
    for method, path in sorted(documented):
        concrete = path.replace("{", "x").replace("}", "")
        status, answer, _ = raw(server, method.upper(), concrete)
        expected = 200 if path.endswith("/openapi.json") else 403
        assert status == expected, (method, path, answer)


def test_admin_bucket_name_is_reserved_for_s3_too(server: DwhServer) -> None:
    s3 = server.boto3_client()
    with pytest.raises(Exception) as err:
        s3.create_bucket(Bucket="admin")
    assert "InvalidBucketName" in str(err.value)
