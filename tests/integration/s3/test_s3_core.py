"""Server-level properties that need a private `dwh serve`: data survives a restart, and a copy
stores nothing new (the per-operation suites share one server and cannot look at its disks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dwh_testkit import shard_locations
from s3server import DwhServer

from datawarehouse.service.warehouse import Warehouse
from datawarehouse.storage.packstore import PackedLocation


@pytest.mark.s3op("PutObject", "GetObject", note="boto3's default aws-chunked upload survives a restart")
def test_streaming_upload_survives_restart(tmp_path: Path) -> None:
    """boto3's default upload (aws-chunked with a checksum trailer) of 40 MiB, then a restart."""
    srv = DwhServer(tmp_path / "dwh-data").start()
    try:
        c = srv.boto3_client()
        c.create_bucket(Bucket="core-restart")
        data = os.urandom(40 * 1024 * 1024)
        c.put_object(Bucket="core-restart", Key="big", Body=data)
        srv.restart()
        assert srv.boto3_client().get_object(Bucket="core-restart", Key="big")["Body"].read() == data
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()


@pytest.mark.s3op("CopyObject", note="by reference: no shard file written, chunk references counted")
def test_copy_stores_no_new_data(tmp_path: Path) -> None:
    srv = DwhServer(tmp_path / "dwh-data").start()
    try:
        c = srv.boto3_client()
        c.create_bucket(Bucket="copy-refs")
        c.put_object(Bucket="copy-refs", Key="src", Body=os.urandom(4 * 1024 * 1024))

        def shard_files() -> dict[str, PackedLocation]:
            return shard_locations(tmp_path / "dwh-data")  # every shard, where its record is

        before = shard_files()
        assert len(before) >= 6
        for i in range(5):
            c.copy_object(Bucket="copy-refs", Key=f"copy{i}", CopySource="copy-refs/src")
        assert shard_files() == before
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()
    with Warehouse.open(tmp_path / "dwh-data") as wh, wh.engine.repo.read() as tx:
        assert {c.refcount for c in tx.list_chunks(limit=1000)} == {6}
