"""``dwh serve --workers 2``: a primary and a read worker behind one port.

Each response names the process that answered (``x-amz-id-2``), so every check below samples
fresh connections until both processes have answered: read-after-write, deletes, listings and
key revocation hold whichever process a client reaches. Then the audit chain holds one record
per request (the worker's included), an access key used only on the worker is marked used, a
killed worker is replaced, a client cannot reach the internal endpoint, and a graceful stop
leaves no process behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError
from iamkit import GRACEFUL, anonymous
from s3server import DWH, DwhServer, unique_bucket

from datawarehouse.cli.admin_client import AdminClient

MAX_TRIES = 200  # fresh connections sampled until both processes answered
BURST, BURSTS = 8, 10  # connections opened at once, and how many times


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DwhServer]:
    srv = DwhServer(tmp_path_factory.mktemp("dwh-workers") / "data", extra_args=["--workers", "2"]).start()
    _wait_for_workers(srv, 1)
    try:
        yield srv
    finally:
        srv.terminate()


def _workers(server: DwhServer) -> list[psutil.Process]:
    """The live read workers (a killed one is a zombie until the supervisor reaps it)."""
    out = []
    for proc in psutil.Process(server.pid).children():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "datawarehouse.cli.workers" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _wait_for_workers(server: DwhServer, count: int, exclude: frozenset[int] = frozenset()) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [p for p in _workers(server) if p.pid not in exclude]
        if len(found) == count:
            # Listening means: it answers on the shared port (sampled like any client). Its start
            # takes 1.5 s on an idle machine and several on a loaded one: no fixed sleep covers it.
            primary = _primary_host(server)
            while time.monotonic() < deadline:
                conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
                try:
                    if _ask(conn, "HEAD", "/anybucket/key")[2] != primary:  # not a GetObject: audit counts stay
                        return found
                finally:
                    conn.close()
                time.sleep(0.05)
            break
        time.sleep(0.1)
    raise AssertionError(f"{count} read workers did not start:\n{server.log()[-3000:]}")


def _fresh(server: DwhServer, **kw: Any) -> Any:
    """A client with its own connection pool: a new TCP connection, accepted by either process."""
    return server.boto3_client(**kw)


def _host(resp: dict[str, Any]) -> str:
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-id-2"])


def _until_both(check: Callable[[], str]) -> set[str]:
    """Run ``check`` (which asserts, and returns the answering process) on fresh connections
    until two processes have answered."""
    hosts: set[str] = set()
    for _ in range(MAX_TRIES):
        hosts.add(check())
        if len(hosts) >= 2:
            return hosts
    raise AssertionError(f"only {hosts} answered in {MAX_TRIES} connections")


def _error_host(exc: ClientError) -> str:
    return str(exc.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-id-2"])


def test_read_after_write_whichever_process_answers(server: DwhServer) -> None:
    s3 = _fresh(server)
    bucket = unique_bucket("wk")
    s3.create_bucket(Bucket=bucket)
    counter = iter(range(10_000))

    def write_then_read() -> str:
        i = next(counter)
        body = os.urandom(1000 + 7919 * (i % 40))  # inline and chunked objects
        _fresh(server).put_object(Bucket=bucket, Key=f"k{i}", Body=body)
        got = _fresh(server).get_object(Bucket=bucket, Key=f"k{i}")
        assert got["Body"].read() == body
        head = _fresh(server).head_object(Bucket=bucket, Key=f"k{i}")
        assert head["ContentLength"] == len(body)
        return _host(got)

    assert len(_until_both(write_then_read)) == 2
    written = next(counter)

    def listing() -> str:
        page = _fresh(server).list_objects_v2(Bucket=bucket)
        assert page["KeyCount"] == written
        return _host(page)

    _until_both(listing)
    # a range read, on either process
    whole = s3.get_object(Bucket=bucket, Key="k0")["Body"].read()

    def ranged() -> str:
        got = _fresh(server).get_object(Bucket=bucket, Key="k0", Range="bytes=10-99")
        assert got["Body"].read() == whole[10:100]
        return _host(got)

    _until_both(ranged)


def test_delete_is_seen_by_every_process(server: DwhServer) -> None:
    s3 = _fresh(server)
    bucket = unique_bucket("wd")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="gone", Body=b"soon deleted" * 1000)
    _until_both(lambda: _host(_fresh(server).get_object(Bucket=bucket, Key="gone")))  # both have read it
    s3.delete_object(Bucket=bucket, Key="gone")

    def missing() -> str:
        with pytest.raises(ClientError) as err:
            _fresh(server).get_object(Bucket=bucket, Key="gone")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"
        return _error_host(err.value)

    _until_both(missing)
    s3.delete_bucket(Bucket=bucket)

    def no_bucket() -> str:
        with pytest.raises(ClientError) as err:
            _fresh(server).head_bucket(Bucket=bucket)
        assert err.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
        return _error_host(err.value)

    _until_both(no_bucket)


def _reader_of(server: DwhServer, user: str, bucket: str, body: bytes) -> tuple[AdminClient, dict[str, Any]]:
    """A new user with the readonly policy and an access key, and ``bucket`` holding ``k``."""
    admin = AdminClient(server.endpoint, access_key=server.access_key, secret_key=server.secret_key)
    admin.request("POST", "/tenants/default/users", body={"name": user})
    admin.request("PUT", f"/tenants/default/users/{user}/policies/readonly")
    key = admin.request("POST", f"/tenants/default/users/{user}/keys", body={"description": "workers test"})
    _fresh(server).create_bucket(Bucket=bucket)
    _fresh(server).put_object(Bucket=bucket, Key="k", Body=body)
    return admin, key


def _client_of(server: DwhServer, key: dict[str, Any]) -> Any:
    """A boto3 client with ``key`` on a connection pool of its own, without retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_key"],
        region_name=server.region,
        config=Config(signature_version="s3v4", retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_revoked_key_is_refused_by_every_process(server: DwhServer) -> None:
    bucket = unique_bucket("wr")
    admin, key = _reader_of(server, "reader", bucket, b"readable")

    def as_reader() -> Any:
        return _client_of(server, key)

    def allowed() -> str:
        got = as_reader().get_object(Bucket=bucket, Key="k")
        assert got["Body"].read() == b"readable"
        return _host(got)

    _until_both(allowed)  # both processes have the identity cached now
    admin.request("PATCH", f"/tenants/default/keys/{key['access_key_id']}", body={"status": "disabled"})

    def refused() -> str:
        with pytest.raises(ClientError) as err:
            as_reader().get_object(Bucket=bucket, Key="k")
        assert err.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied")
        return _error_host(err.value)

    _until_both(refused)


def test_public_access_block_is_enforced_by_every_process(server: DwhServer) -> None:
    """A public access block set through the primary binds the read worker at once: the worker
    authorizes GETs itself, from settings it must not serve stale."""
    s3 = _fresh(server)
    bucket = unique_bucket("wp")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")

    def public() -> str:
        got = anonymous(server).get_object(Bucket=bucket, Key="pub")
        assert got["Body"].read() == b"public"
        return _host(got)

    _until_both(public)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})

    def ignored() -> str:
        with pytest.raises(ClientError) as err:
            anonymous(server).get_object(Bucket=bucket, Key="pub")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        return _error_host(err.value)

    _until_both(ignored)
    s3.delete_public_access_block(Bucket=bucket)
    _until_both(public)


def test_signature_version_2_is_verified_by_every_process(server: DwhServer) -> None:
    """A read worker verifies the GETs it serves itself, version 2 signatures and presigned URLs
    included; what it passes on (a PUT) the primary verifies from the headers it forwards."""
    s3 = _fresh(server)
    bucket = unique_bucket("wv2")
    s3.create_bucket(Bucket=bucket)
    for n in range(6):
        _fresh(server, signature_version="s3").put_object(Bucket=bucket, Key=f"k{n}", Body=b"v2 %d" % n)

    def get_v2() -> str:
        got = _fresh(server, signature_version="s3").get_object(Bucket=bucket, Key="k5")
        assert got["Body"].read() == b"v2 5"
        return _host(got)

    def presigned_v2() -> str:
        url = _fresh(server, signature_version="s3").generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "k0"}
        )
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.read() == b"v2 0"
            return str(reply.headers["x-amz-id-2"])

    _until_both(get_v2)
    _until_both(presigned_v2)


def test_a_burst_of_connections_is_spread_over_both_processes(server: DwhServer) -> None:
    """A client that opens its whole pool at once (boto3, rclone, a benchmark) gets both
    processes: left to the event loop, the first process to wake accepted every waiting
    connection, and one process served the burst alone."""
    primary = _primary_host(server)
    for _ in range(BURSTS):
        conns = [http.client.HTTPConnection(server.host, server.port, timeout=10) for _ in range(BURST)]
        try:
            for conn in conns:
                conn.connect()
            hosts = [_ask(conn, "HEAD", "/anybucket/key")[2] for conn in conns]
        finally:
            for conn in conns:
                conn.close()
        on_primary = hosts.count(primary)
        assert BURST // 4 <= on_primary <= BURST - BURST // 4, hosts
        time.sleep(0.3)  # the processes republish their counts after the connections close


def test_internal_endpoint_is_not_reachable_by_clients(server: DwhServer) -> None:
    """The workers' audit path, with a forged token, over TCP to either process: an S3 error,
    and nothing lands in the audit log under the forged operation."""
    hosts: set[str] = set()
    body = b'[{"operation":"ForgedByClient","status":200}]'
    for _ in range(MAX_TRIES):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request(
            "POST",
            "/_dwh_internal/audit",
            body=body,
            headers={"x-dwh-worker-token": "guess", "content-type": "application/json"},
        )
        resp = conn.getresponse()
        text = resp.read()
        assert resp.status >= 400 and b"<Error>" in text, (resp.status, text)
        hosts.add(resp.getheader("x-amz-id-2") or "")
        conn.close()
        if len(hosts) >= 2:
            break
    assert len(hosts) == 2
    admin = AdminClient(server.endpoint, access_key=server.access_key, secret_key=server.secret_key)
    assert admin.request("GET", "/audit", query={"operation": "ForgedByClient"})["records"] == []


def _ask(conn: http.client.HTTPConnection, method: str, path: str, **headers: str) -> tuple[int, bytes, str]:
    conn.request(method, path, body=b"" if method == "PUT" else None, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read(), resp.getheader("x-amz-id-2") or ""


def _primary_host(server: DwhServer) -> str:
    """The primary's ``x-amz-id-2``: a write is always answered by the primary."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        return _ask(conn, "PUT", "/anybucket/key")[2]
    finally:
        conn.close()


def test_a_header_value_with_trailing_whitespace_is_passed_on(server: DwhServer) -> None:
    """httptools keeps the space of ``x-note: v `` and h11 refused to send it: the worker
    answered 500. Now the value is trimmed (the space is not part of it) and the primary's
    answer comes back. The request goes on a connection known to be the worker's: a GET
    answered there first (by another process than the one answering passed-on requests)."""

    primary = _primary_host(server)
    for _ in range(MAX_TRIES):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            _, _, host = _ask(conn, "GET", "/anybucket/key")
            if host == primary:
                continue
            status, text, answered_by = _ask(conn, "PUT", "/anybucket/key", **{"x-note": "v "})
        finally:
            conn.close()
        assert status == 403 and b"<Code>AccessDenied</Code>" in text, (status, text)
        assert answered_by == primary
        break
    else:
        raise AssertionError("no connection reached the worker")
    assert "LocalProtocolError" not in server.log()


def test_key_used_only_on_a_worker_is_marked_used(server: DwhServer) -> None:
    """An access key's "last used" moves for requests a worker served: the worker's audit
    records reach the primary, which notes the key. The key is used once, on a connection the
    worker is known to hold (an anonymous GET there was answered by another process than the
    primary), so the primary never sees the request itself."""
    bucket = unique_bucket("wl")
    admin, key = _reader_of(server, "lastused", bucket, b"read by the worker")

    def last_used() -> str | None:
        keys = admin.request("GET", "/tenants/default/keys", query={"user": "lastused"})["keys"]
        (found,) = [k for k in keys if k["access_key_id"] == key["access_key_id"]]
        return found["last_used_at"]  # type: ignore[no-any-return]

    assert last_used() is None
    params = {"Bucket": bucket, "Key": "k"}
    url = _client_of(server, key).generate_presigned_url("get_object", Params=params, ExpiresIn=600)
    path = url[len(server.endpoint) :]
    primary = _primary_host(server)
    for _ in range(MAX_TRIES):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            if _ask(conn, "GET", f"/{bucket}/k")[2] == primary:  # anonymous: refused, but names the process
                continue
            status, body, host = _ask(conn, "GET", path)
        finally:
            conn.close()
        assert (status, body) == (200, b"read by the worker")
        assert host != primary
        break
    else:
        raise AssertionError("no connection reached the worker")
    deadline = time.monotonic() + 30
    while last_used() is None:
        assert time.monotonic() < deadline, "the worker's use of the key never reached the primary"
        time.sleep(0.2)


def test_killed_worker_is_replaced(server: DwhServer) -> None:
    bucket = unique_bucket("wkill")
    _fresh(server).create_bucket(Bucket=bucket)
    _fresh(server).put_object(Bucket=bucket, Key="k", Body=b"still here" * 100)
    (victim,) = _workers(server)
    before = _until_both(lambda: _host(_fresh(server).get_object(Bucket=bucket, Key="k")))
    os.kill(victim.pid, signal.SIGKILL)
    _wait_for_workers(server, 1, exclude=frozenset({victim.pid}))
    after = _until_both(lambda: _host(_fresh(server).get_object(Bucket=bucket, Key="k")))
    assert len(before & after) == 1  # the primary; the replacement is a new process
    assert "read worker 0" in server.log() and "restarting" in server.log()


def test_audit_chain_holds_every_request_after_graceful_stop(tmp_path: Path) -> None:
    srv = DwhServer(tmp_path / "data", extra_args=["--workers", "2"]).start()
    try:
        _wait_for_workers(srv, 1)
        bucket = unique_bucket("wa")
        _fresh(srv).create_bucket(Bucket=bucket)
        _fresh(srv).put_object(Bucket=bucket, Key="k", Body=b"audited")
        gets = 0

        def read() -> str:
            nonlocal gets
            got = _fresh(srv).get_object(Bucket=bucket, Key="k")
            gets += 1
            return _host(got)

        _until_both(read)
        pids = [p.pid for p in _workers(srv)]
    finally:
        rc = srv.terminate()
    assert rc in GRACEFUL, srv.log()[-3000:]
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    verify = subprocess.run(
        [str(DWH), "audit", "verify", "--data-dir", str(srv.data_dir)], capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    query = subprocess.run(
        [str(DWH), "audit", "query", "--data-dir", str(srv.data_dir), "--operation", "GetObject", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert query.returncode == 0, query.stderr
    records = [line for line in query.stdout.splitlines() if line.strip()]
    assert len(records) == gets  # the worker's records reached the primary's chain, none twice


# --- small writes served by the worker (the commit made by the primary) --------------------------


def test_small_puts_are_served_by_both_processes(server: DwhServer) -> None:
    """A PutObject small enough to be inline is answered by whichever process took the
    connection (the worker commits through the primary's commit link); a larger one, or one that
    names an ACL, is always answered by the primary. Each reads back from both."""
    bucket = unique_bucket("ws")
    _fresh(server).create_bucket(Bucket=bucket)
    primary = _primary_host(server)
    counter = iter(range(10_000))
    written: dict[str, bytes] = {}

    def small_put() -> str:
        key, body = f"s{next(counter)}", os.urandom(3000)
        resp = _fresh(server).put_object(Bucket=bucket, Key=key, Body=body)
        assert resp["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        written[key] = body
        return _host(resp)

    assert primary in _until_both(small_put)
    for i in range(6):
        big = os.urandom(64 * 1024 + 1 + i)
        resp = _fresh(server).put_object(Bucket=bucket, Key=f"big{i}", Body=big)
        assert _host(resp) == primary
        written[f"big{i}"] = big
        resp = _fresh(server).put_object(Bucket=bucket, Key=f"acl{i}", Body=b"public", ACL="public-read")
        assert _host(resp) == primary
    for key, body in written.items():
        assert _fresh(server).get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_write_conditions_hold_whichever_process_writes(server: DwhServer) -> None:
    """If-None-Match: * is decided in the primary's commit: once the key exists, a create through
    either process is refused with PreconditionFailed, and the first body stays."""
    bucket = unique_bucket("wc")
    _fresh(server).create_bucket(Bucket=bucket)
    _fresh(server).put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")

    def refused() -> str:
        with pytest.raises(ClientError) as err:
            _fresh(server).put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
        assert err.value.response["Error"]["Code"] == "PreconditionFailed"
        return _error_host(err.value)

    _until_both(refused)
    assert _fresh(server).get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_versioning_holds_for_writes_through_the_worker(server: DwhServer) -> None:
    """Versioning enabled on the primary is seen by the worker's next write: every PUT of the
    same key, whichever process answers, is a new version."""
    bucket = unique_bucket("wv")
    s3 = _fresh(server)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    versions: list[str] = []

    def put_version() -> str:
        resp = _fresh(server).put_object(Bucket=bucket, Key="k", Body=f"v{len(versions)}".encode())
        versions.append(resp["VersionId"])
        return _host(resp)

    _until_both(put_version)
    assert "null" not in versions and len(set(versions)) == len(versions)
    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in listed] == versions[::-1]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == f"v{len(versions) - 1}".encode()


def test_acknowledged_small_writes_survive_a_killed_worker(server: DwhServer) -> None:
    """SIGKILL of the worker while small PUTs stream in: every PUT that was answered 200 reads
    back intact; the others failed on the client's side (its connection was cut)."""
    bucket = unique_bucket("wkw")
    _fresh(server).create_bucket(Bucket=bucket)
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            key, body = f"w{n}-{i}", os.urandom(2000)
            i += 1
            try:
                _fresh(server).put_object(Bucket=bucket, Key=key, Body=body)
            except Exception:
                continue  # cut by the kill, or refused while the worker restarts
            acknowledged[key] = body

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        (victim,) = _workers(server)
        os.kill(victim.pid, signal.SIGKILL)
        _wait_for_workers(server, 1, exclude=frozenset({victim.pid}))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(acknowledged) > 20
    s3 = _fresh(server)
    for key, body in acknowledged.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
