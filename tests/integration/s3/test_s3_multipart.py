"""Multipart uploads through boto3 against a real server, and what they leave in the engine."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from serverproc import Server

from datawarehouse.clock import ManualClock
from datawarehouse.engine.gc import collect
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.service import catalog
from datawarehouse.service.warehouse import OpenOptions, Warehouse

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "dwh-data")
    yield srv
    if srv.proc.poll() is None:
        assert "Traceback" not in srv.stop()


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_upload_file_round_trip_and_etag(server: Server, tmp_path: Path) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="mpbucket")
    data = os.urandom(45 * MiB + 7)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    s3.upload_file(
        str(src), "mpbucket", "big", Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    )
    parts = [data[i : i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    head = s3.head_object(Bucket="mpbucket", Key="big")
    assert head["ETag"] == f'"{want}"' and head["ContentLength"] == len(data)
    assert s3.get_object(Bucket="mpbucket", Key="big")["Body"].read() == data
    got = s3.get_object(Bucket="mpbucket", Key="big", Range="bytes=8388600-8388700")["Body"].read()
    assert got == data[8388600:8388701]
    assert "Traceback" not in server.stop()
    restarted = Server(server.data_dir)
    try:
        assert restarted.client().get_object(Bucket="mpbucket", Key="big")["Body"].read() == data
    finally:
        restarted.stop()


def test_parts_listing_replacing_and_errors(server: Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="mpbucket")
    up = s3.create_multipart_upload(Bucket="mpbucket", Key="obj", ContentType="x/y", Metadata={"m": "1"})["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpbucket")["Uploads"]] == [up]
    assert s3.list_multipart_uploads(Bucket="mpbucket", Prefix="other").get("Uploads", []) == []
    p1 = s3.upload_part(Bucket="mpbucket", Key="obj", UploadId=up, PartNumber=1, Body=b"a" * (5 * MiB))
    s3.upload_part(Bucket="mpbucket", Key="obj", UploadId=up, PartNumber=2, Body=b"first version")
    p2 = s3.upload_part(Bucket="mpbucket", Key="obj", UploadId=up, PartNumber=2, Body=b"b" * 100)  # replaces part 2
    listed = s3.list_parts(Bucket="mpbucket", Key="obj", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [(1, 5 * MiB, p1["ETag"]), (2, 100, p2["ETag"])]
    page = s3.list_parts(Bucket="mpbucket", Key="obj", UploadId=up, MaxParts=1)
    assert page["IsTruncated"] and [p["PartNumber"] for p in page["Parts"]] == [1]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mpbucket", Key="obj", UploadId=up, PartNumber=10001, Body=b"x")
    assert code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket="mpbucket", Key="obj", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]}
        )
    assert code(exc) == "InvalidPart"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket="mpbucket",
            Key="obj",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["ETag"]}]},
        )
    assert code(exc) == "InvalidPartOrder"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="mpbucket", Key="obj")  # invisible until completed
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="mpbucket")
    assert code(exc) == "BucketNotEmpty"
    done = s3.complete_multipart_upload(
        Bucket="mpbucket",
        Key="obj",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]},
    )
    assert done["ETag"].endswith('-2"')
    got = s3.get_object(Bucket="mpbucket", Key="obj")
    assert got["Body"].read() == b"a" * (5 * MiB) + b"b" * 100
    assert got["ContentType"] == "x/y" and got["Metadata"] == {"m": "1"}
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="mpbucket", Key="obj", UploadId=up)
    assert code(exc) == "NoSuchUpload"


def test_small_parts_abort_and_copy(server: Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="mpbucket")
    up = s3.create_multipart_upload(Bucket="mpbucket", Key="small")["UploadId"]
    e1 = s3.upload_part(Bucket="mpbucket", Key="small", UploadId=up, PartNumber=1, Body=b"x" * 100)["ETag"]
    e2 = s3.upload_part(Bucket="mpbucket", Key="small", UploadId=up, PartNumber=2, Body=b"y" * 100)["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket="mpbucket",
            Key="small",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
        )
    assert code(exc) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="mpbucket", Key="small", UploadId=up)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket="mpbucket", Key="small", UploadId=up)
    assert code(exc) == "NoSuchUpload"
    source = os.urandom(7 * MiB)
    s3.put_object(Bucket="mpbucket", Key="source", Body=source)
    up = s3.create_multipart_upload(Bucket="mpbucket", Key="copy")["UploadId"]
    c1 = s3.upload_part_copy(
        Bucket="mpbucket",
        Key="copy",
        UploadId=up,
        PartNumber=1,
        CopySource={"Bucket": "mpbucket", "Key": "source"},
        CopySourceRange="bytes=0-5242879",
    )["CopyPartResult"]["ETag"]
    c2 = s3.upload_part_copy(
        Bucket="mpbucket",
        Key="copy",
        UploadId=up,
        PartNumber=2,
        CopySource={"Bucket": "mpbucket", "Key": "source"},
        CopySourceRange=f"bytes=5242880-{len(source) - 1}",
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket="mpbucket",
        Key="copy",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": c1}, {"PartNumber": 2, "ETag": c2}]},
    )
    assert s3.get_object(Bucket="mpbucket", Key="copy")["Body"].read() == source
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket="mpbucket",
            Key="copy",
            UploadId="nope",
            PartNumber=1,
            CopySource={"Bucket": "mpbucket", "Key": "source"},
            CopySourceIfMatch='"0000"',
        )
    assert code(exc) in ("NoSuchUpload", "PreconditionFailed")


def test_references_after_complete_abort_rebuild_and_gc(server: Server) -> None:
    """Parts hold chunk references while open; complete and abort release them exactly; a rebuilt
    index counts the parts of an upload still open; GC then removes only unreferenced chunks."""
    s3 = server.client()
    s3.create_bucket(Bucket="mpbucket")
    done_data = os.urandom(6 * MiB)
    up = s3.create_multipart_upload(Bucket="mpbucket", Key="done")["UploadId"]
    etag = s3.upload_part(Bucket="mpbucket", Key="done", UploadId=up, PartNumber=1, Body=done_data)["ETag"]
    s3.complete_multipart_upload(
        Bucket="mpbucket", Key="done", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    open_data = os.urandom(6 * MiB)
    open_up = s3.create_multipart_upload(Bucket="mpbucket", Key="open")["UploadId"]
    s3.upload_part(Bucket="mpbucket", Key="open", UploadId=open_up, PartNumber=1, Body=open_data)
    aborted = s3.create_multipart_upload(Bucket="mpbucket", Key="aborted")["UploadId"]
    s3.upload_part(Bucket="mpbucket", Key="aborted", UploadId=aborted, PartNumber=1, Body=os.urandom(6 * MiB))
    s3.abort_multipart_upload(Bucket="mpbucket", Key="aborted", UploadId=aborted)
    assert "Traceback" not in server.stop()

    def refcounts(wh: Warehouse) -> dict[bytes, int]:
        with wh.engine.repo.read() as tx:
            return {c.chunk_id: c.refcount for c in tx.list_chunks(limit=100000)}

    with Warehouse.open(server.data_dir) as wh:
        before = refcounts(wh)
        with wh.engine.repo.read() as tx:
            part_chunks = {c.chunk_id for p in tx.get_parts(open_up) for c in p.chunks}
            version_chunks = {c.chunk_id for c in wh.head_object("mpbucket", "done").chunks}
        assert part_chunks and version_chunks
        assert all(before[c] == 1 for c in part_chunks | version_chunks)
        assert sum(1 for n in before.values() if n == 0) > 0  # the aborted upload's chunks
    (server.data_dir / "meta" / "meta.sqlite3").unlink()
    for side in ("-wal", "-shm"):
        Path(str(server.data_dir / "meta" / "meta.sqlite3") + side).unlink(missing_ok=True)
    rebuild_meta(server.data_dir, catalog.replay)
    clock = ManualClock(datetime.now(UTC))
    with Warehouse.open(server.data_dir, OpenOptions(clock=clock)) as wh:
        rebuilt = refcounts(wh)
        assert {c: n for c, n in rebuilt.items() if n} == {c: n for c, n in before.items() if n}
        clock.advance(timedelta(days=30))
        collect(wh.engine, timedelta(hours=1))
        after_gc = refcounts(wh)
        assert set(after_gc) == part_chunks | version_chunks
        assert wh.get_object_bytes("mpbucket", "done") == done_data
