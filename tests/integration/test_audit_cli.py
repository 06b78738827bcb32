"""``dwh audit verify/query/export`` on a data directory with a real audit log (in-process
through Typer's runner, so the commands run this checkout's code)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from dwh_testkit import init_wh
from typer.testing import CliRunner

from datawarehouse.cli.main import app
from datawarehouse.config import AuditConfig
from datawarehouse.service.audit.log import AuditLog

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "dwh"
    with init_wh(root) as wh, AuditLog(wh, AuditConfig(checkpoint_records=5)) as log:
        for i in range(1, 13):
            log.record(
                operation="GetObject" if i % 2 else "PutObject",
                principal="alice" if i <= 6 else "bob",
                bucket="photos" if i % 3 else "docs",
                key=f"k{i}",
                status=200 if i != 12 else 404,
                error="" if i != 12 else "NoSuchKey",
            )
    return root


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_verify_ok_then_failing_with_the_place(data_dir: Path) -> None:
    code, out = run("audit", "verify", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "audit log OK: 12 records (seq 1..12), 2 checkpoints" in out
    (spool,) = (data_dir / "audit").glob("spool-*.jsonl")
    lines = spool.read_bytes().splitlines()
    spool.write_bytes(b"\n".join([lines[1], lines[0]]) + b"\n")  # swap 11 and 12
    result = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 7
    assert "error: audit log verification failed" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["problems"][0]["kind"] == "reordered"
    assert doc["problems"][0]["seq"] == 12 and spool.name in doc["problems"][0]["where"]


def test_query_filters(data_dir: Path) -> None:
    code, out = run(
        "audit", "query", "--principal", "bob", "--operation", "putobject", "--json", "--data-dir", str(data_dir)
    )
    assert code == 0, out
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == [8, 10, 12]
    code, out = run("audit", "query", "--bucket", "docs", "--data-dir", str(data_dir))
    assert code == 0 and "docs/k3" in out and "photos" not in out
    code, out = run("audit", "query", "--since", "2100-01-01", "--json", "--data-dir", str(data_dir))
    assert code == 0 and out.strip() == ""
    code, out = run("audit", "query", "--since", "yesterday", "--data-dir", str(data_dir))
    assert code == 2 and "--since" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "cef"])
def test_export_formats(data_dir: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    code, out = run("audit", "export", "--format", fmt, "-o", str(target), "--data-dir", str(data_dir))
    assert code == 0, out
    text = target.read_text()
    if fmt == "json":
        assert [json.loads(line)["seq"] for line in text.splitlines()] == list(range(1, 13))
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 12 and rows[-1]["error"] == "NoSuchKey"
    else:
        lines = text.splitlines()
        assert len(lines) == 12 and all(line.startswith("CEF:0|DataWarehouse|") for line in lines)
        assert "outcome=404" in lines[-1]


def test_export_refuses_an_unknown_format(data_dir: Path) -> None:
    code, out = run("audit", "export", "--format", "xml", "--data-dir", str(data_dir))
    assert code == 2 and "--format" in out
