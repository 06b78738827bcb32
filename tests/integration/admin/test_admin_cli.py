"""``dwh admin ...`` against a live server, in process (Typer's runner), credentials from the
environment, flags or a profile file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from s3server import DwhServer, unique_bucket
from typer.testing import CliRunner

from datawarehouse.cli.main import app


@pytest.fixture
def run(server: DwhServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DWH_ENDPOINT", server.endpoint)
    monkeypatch.setenv("DWH_ACCESS_KEY", server.access_key)
    monkeypatch.setenv("DWH_SECRET_KEY", server.secret_key)
    monkeypatch.setenv("DWH_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DWH_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["admin", *args])
        assert result.exit_code == code, (args, result.output)
        return result.output

    return invoke


def test_info_table_and_json(run) -> None:  # type: ignore[no-untyped-def]
    assert "datadir_id" in run("info")
    doc = json.loads(run("info", "--json"))
    assert doc["disks"] == 6
    assert json.loads(run("--json", "disk", "list"))["disks"][0]["state"] == "active"
    assert "shards" in run("disk", "list")


def test_bucket_commands(run, server: DwhServer) -> None:  # type: ignore[no-untyped-def]
    name = unique_bucket("cli")
    assert f"created bucket {name}" in run("bucket", "create", name)
    assert name in run("bucket", "list")
    assert "1.0 KiB" in run("bucket", "quota", name, "--max-bytes", "1KiB")
    assert json.loads(run("bucket", "quota", name, "--json"))["max_bytes"] == 1024
    run("bucket", "quota", name, "--clear")
    assert json.loads(run("bucket", "info", name, "--json"))["quota"] is None
    run("bucket", "delete", name)
    out = run("bucket", "info", name, code=4)
    assert "NoSuchBucket" in out
    assert "reserved" in run("bucket", "create", "admin", code=2)
    assert name not in run("usage")


def test_jobs_and_audit(run) -> None:  # type: ignore[no-untyped-def]
    run("scrub", "start")
    for _ in range(600):
        if json.loads(run("scrub", "status", "--json"))["state"] != "running":
            break
    assert json.loads(run("scrub", "status", "--json"))["state"] == "succeeded"
    run("gc", "start", "--grace-hours", "1")
    assert "queued chunks: 0" in run("heal", "status")
    assert "admin:StartScrub" in run("audit", "query", "--operation", "admin:StartScrub")
    assert "audit log OK" in run("audit", "verify")


def test_iam_commands(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("tenant", "create", "clitenant")
    assert "clitenant" in run("tenant", "list")
    run("user", "create", "clitenant", "carol")
    run("group", "create", "clitenant", "devs")
    run("group", "add-member", "clitenant", "devs", "carol")
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}]}))  # fmt: skip
    run("policy", "put", "clitenant", "read", "--file", str(policy))
    run("policy", "attach", "clitenant", "read", "--group", "devs")
    assert "read" in run("group", "list", "clitenant")
    key = json.loads(run("key", "create", "clitenant", "carol", "--json"))
    assert key["secret_key"]
    listing = run("key", "list", "clitenant")
    assert key["access_key_id"] in listing and key["secret_key"] not in listing
    run("key", "disable", "clitenant", key["access_key_id"])
    assert "disabled" in run("key", "list", "clitenant")
    run("quota", "set", "clitenant", "--max-buckets", "3")
    assert json.loads(run("quota", "show", "clitenant", "--json"))["max_buckets"] == 3
    run("key", "delete", "clitenant", key["access_key_id"])
    assert "NoSuchUser" in run("user", "info", "clitenant", "nobody", code=4)
    assert "give exactly one" in run("policy", "attach", "clitenant", "read", code=2)


def test_credentials_sources(run, server: DwhServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DWH_SECRET_KEY", "wrong-secret-value")
    assert "SignatureDoesNotMatch" in run("info", code=3)
    assert "datadir_id" in run("--secret-key", server.secret_key, "info")
    monkeypatch.delenv("DWH_ACCESS_KEY")
    monkeypatch.delenv("DWH_SECRET_KEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    assert "datadir_id" in run("info")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text(f"[ops]\naccess_key = {server.access_key}\nsecret_key = {server.secret_key}\n")
    monkeypatch.setenv("DWH_CREDENTIALS_FILE", str(creds))
    os.chmod(creds, 0o644)
    assert "chmod 600" in run("--profile", "ops", "info", code=78)
    os.chmod(creds, 0o600)
    assert "datadir_id" in run("--profile", "ops", "info")
    assert "no profile named 'other'" in run("--profile", "other", "info", code=78)
    assert "admin credentials" in run("info", code=2)


def test_unreachable_endpoint(run) -> None:  # type: ignore[no-untyped-def]
    assert "cannot reach" in run("--endpoint", "http://127.0.0.1:9", "info", code=69)
    assert "--endpoint" in run("--endpoint", "ftp://x", "info", code=2)
