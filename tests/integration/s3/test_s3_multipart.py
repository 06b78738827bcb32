"""Multipart uploads through boto3 against a real server, and what they leave in the engine."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from dwh_testkit import disk_dirs, pack_files, shard_locations
from s3http import code
from s3server import DwhServer

from datawarehouse.clock import ManualClock
from datawarehouse.engine.gc import collect
from datawarehouse.engine.rebuild import rebuild_meta
from datawarehouse.service import catalog
from datawarehouse.service.warehouse import OpenOptions, Warehouse
from datawarehouse.storage.packformat import ALIGN

MiB = 1024 * 1024


def _pack_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for disk in disk_dirs(data_dir) for p in pack_files(disk))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DwhServer]:
    srv = DwhServer(tmp_path / "dwh-data").start()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()
        assert "Traceback" not in srv.log()


def test_upload_file_round_trip_and_etag(server: DwhServer, tmp_path: Path) -> None:
    """~200 MiB through boto3's managed transfer (16 MiB parts, checksum trailers, concurrent
    parts): byte-identical back, the -N ETag, and still there after a restart."""
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mpbucket")
    src = tmp_path / "big.bin"
    part_md5s, whole = [], hashlib.sha256()
    with src.open("wb") as f:
        for i in range(13):
            piece = os.urandom(16 * MiB if i < 12 else 7 * MiB + 13)
            part_md5s.append(hashlib.md5(piece).digest())
            whole.update(piece)
            f.write(piece)
        edge = src.stat().st_size
    s3.upload_file(
        str(src), "mpbucket", "big", Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=16 * MiB)
    )
    want = hashlib.md5(b"".join(part_md5s)).hexdigest() + "-13"
    head = s3.head_object(Bucket="mpbucket", Key="big")
    assert head["ETag"] == f'"{want}"' and head["ContentLength"] == edge

    def sha256_of_body(client: Any, **kw: Any) -> str:
        digest = hashlib.sha256()
        for piece in client.get_object(Bucket="mpbucket", Key="big", **kw)["Body"].iter_chunks(MiB):
            digest.update(piece)
        return digest.hexdigest()

    assert sha256_of_body(s3) == whole.hexdigest()
    with src.open("rb") as f:
        f.seek(16 * MiB - 100)
        across = f.read(201)
    got = s3.get_object(Bucket="mpbucket", Key="big", Range=f"bytes={16 * MiB - 100}-{16 * MiB + 100}")["Body"].read()
    assert got == across  # a range across a part boundary
    server.stop()
    assert "Traceback" not in server.log()
    restarted = DwhServer(server.data_dir).start()
    try:
        assert sha256_of_body(restarted.boto3_client()) == whole.hexdigest()
    finally:
        restarted.stop()


def test_parts_listing_replacing_and_errors(server: DwhServer) -> None:
    s3 = server.boto3_client()
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


def test_small_parts_abort_and_copy(server: DwhServer) -> None:
    s3 = server.boto3_client()
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


def test_references_after_complete_abort_rebuild_and_gc(server: DwhServer) -> None:
    """Parts hold chunk references while open; complete and abort release them exactly; a rebuilt
    index counts the parts of an upload still open; GC then removes only unreferenced chunks."""
    s3 = server.boto3_client()
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
    server.stop()
    assert "Traceback" not in server.log()

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


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **kw: Any) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **kw
    )


def test_checksums_composite_and_full_object(server: DwhServer) -> None:
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mpsums")
    data = [os.urandom(5 * MiB), os.urandom(3000)]
    # COMPOSITE (SHA-256): the checksum of the parts' checksums, "-N"
    created = s3.create_multipart_upload(Bucket="mpsums", Key="composite", ChecksumAlgorithm="SHA256")
    assert created["ChecksumAlgorithm"] == "SHA256"
    up = created["UploadId"]
    parts = []
    for n, body in enumerate(data, 1):
        r = s3.upload_part(
            Bucket="mpsums", Key="composite", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="SHA256"
        )
        assert r["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    listed = s3.list_parts(Bucket="mpsums", Key="composite", UploadId=up)
    assert listed["ChecksumAlgorithm"] == "SHA256"
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [p["ChecksumSHA256"] for p in parts]
    assert s3.list_multipart_uploads(Bucket="mpsums")["Uploads"][0]["ChecksumAlgorithm"] == "SHA256"
    wrong = [parts[0], {**parts[1], "ChecksumSHA256": parts[0]["ChecksumSHA256"]}]
    with pytest.raises(ClientError) as exc:
        complete(s3, "mpsums", "composite", up, wrong)
    assert code(exc) == "InvalidPart"
    done = complete(s3, "mpsums", "composite", up, parts)
    raw = b"".join(base64.b64decode(p["ChecksumSHA256"]) for p in parts)
    want = base64.b64encode(hashlib.sha256(raw).digest()).decode() + "-2"
    assert done["ChecksumSHA256"] == want
    head = s3.head_object(Bucket="mpsums", Key="composite", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == want and head["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket="mpsums", Key="composite", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(data)
    assert "x-dwh-upload-checksum-algorithm" not in str(head["ResponseMetadata"]["HTTPHeaders"])
    # FULL_OBJECT (CRC32): the CRC of the whole object, combined from the parts'
    up = s3.create_multipart_upload(Bucket="mpsums", Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")[
        "UploadId"
    ]
    parts = []
    for n, body in enumerate(data, 1):
        r = s3.upload_part(Bucket="mpsums", Key="full", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    crc = base64.b64encode(zlib.crc32(b"".join(data)).to_bytes(4, "big")).decode()
    bad = base64.b64encode((zlib.crc32(b"".join(data)) ^ 1).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        complete(s3, "mpsums", "full", up, parts, ChecksumCRC32=bad, ChecksumType="FULL_OBJECT")
    assert code(exc) == "BadDigest"
    done = complete(s3, "mpsums", "full", up, parts, ChecksumCRC32=crc, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == crc
    head = s3.head_object(Bucket="mpsums", Key="full", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc and head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket="mpsums", Key="full", ChecksumMode="ENABLED")  # botocore verifies the CRC
    assert got["Body"].read() == b"".join(data)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket="mpsums", Key="x", ChecksumAlgorithm="SHA1", ChecksumType="FULL_OBJECT")
    assert code(exc) == "InvalidRequest"


def test_corrupt_part_is_never_committed(server: DwhServer) -> None:
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mpbad")
    up = s3.create_multipart_upload(Bucket="mpbad", Key="k")["UploadId"]
    body = os.urandom(100_000)
    wrong_md5 = base64.b64encode(hashlib.md5(body + b"x").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mpbad", Key="k", UploadId=up, PartNumber=1, Body=body, ContentMD5=wrong_md5)
    assert code(exc) == "BadDigest"
    wrong_crc = base64.b64encode(zlib.crc32(body + b"x").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mpbad", Key="k", UploadId=up, PartNumber=1, Body=body, ChecksumCRC32=wrong_crc)
    assert code(exc) == "BadDigest"
    assert s3.list_parts(Bucket="mpbad", Key="k", UploadId=up).get("Parts", []) == []
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mpbad", Key="k", UploadId="no-such-upload", PartNumber=1, Body=b"x")
    assert code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mpbad", Key="other-key", UploadId=up, PartNumber=1, Body=b"x")
    assert code(exc) == "NoSuchUpload"


def test_list_uploads_prefixes_and_pages(server: DwhServer) -> None:
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mplist")
    made = []
    for key in ["logs/b", "logs/a", "data/x", "logs/a", "top"]:
        made.append((key, s3.create_multipart_upload(Bucket="mplist", Key=key)["UploadId"]))
    everything = [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket="mplist")["Uploads"]]
    assert [k for k, _ in everything] == ["data/x", "logs/a", "logs/a", "logs/b", "top"]
    assert [u for _, u in everything if _ == "logs/a"] == [u for k, u in made if k == "logs/a"]  # by initiation
    logs = s3.list_multipart_uploads(Bucket="mplist", Prefix="logs/")
    assert [u["Key"] for u in logs["Uploads"]] == ["logs/a", "logs/a", "logs/b"] and logs["Prefix"] == "logs/"
    seen, kw = [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket="mplist", MaxUploads=2, **kw)
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == everything
    paginated = [
        (u["Key"], u["UploadId"])
        for page in s3.get_paginator("list_multipart_uploads").paginate(
            Bucket="mplist", PaginationConfig={"PageSize": 1}
        )
        for u in page.get("Uploads", [])
    ]
    assert paginated == everything
    folded = s3.list_multipart_uploads(Bucket="mplist", Delimiter="/")
    assert [u["Key"] for u in folded["Uploads"]] == ["top"]
    assert [c["Prefix"] for c in folded["CommonPrefixes"]] == ["data/", "logs/"]
    for key, upload_id in made:
        s3.abort_multipart_upload(Bucket="mplist", Key=key, UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket="mplist").get("Uploads", []) == []
    s3.delete_bucket(Bucket="mplist")  # nothing in progress any more


def test_upload_part_copy_ranges_and_conditions(server: DwhServer) -> None:
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mpcopy")
    source = os.urandom(6 * MiB + 11)
    src_etag = s3.put_object(Bucket="mpcopy", Key="src", Body=source)["ETag"]
    up = s3.create_multipart_upload(Bucket="mpcopy", Key="dst")["UploadId"]

    def copy(n: int, **kw: Any) -> Any:
        return s3.upload_part_copy(
            Bucket="mpcopy", Key="dst", UploadId=up, PartNumber=n, CopySource={"Bucket": "mpcopy", "Key": "src"}, **kw
        )

    for kw, want in [
        ({"CopySourceIfMatch": '"0123"'}, "PreconditionFailed"),
        ({"CopySourceIfNoneMatch": src_etag}, "PreconditionFailed"),
        ({"CopySourceIfModifiedSince": datetime.now(UTC) + timedelta(days=1)}, "PreconditionFailed"),
        ({"CopySourceIfUnmodifiedSince": datetime(2000, 1, 1, tzinfo=UTC)}, "PreconditionFailed"),
        ({"CopySourceRange": "bytes=0-"}, "InvalidArgument"),
        ({"CopySourceRange": "bytes=10-5"}, "InvalidArgument"),
        ({"CopySourceRange": f"bytes=0-{len(source)}"}, "InvalidArgument"),
    ]:
        with pytest.raises(ClientError) as exc:
            copy(1, **kw)
        assert code(exc) == want, kw
    whole = copy(1, CopySourceIfMatch=src_etag)["CopyPartResult"]["ETag"]
    assert whole == src_etag  # the whole source: its bytes, so its MD5
    head = copy(2, CopySourceRange=f"bytes=0-{5 * MiB - 1}")["CopyPartResult"]["ETag"]
    assert head == f'"{hashlib.md5(source[: 5 * MiB]).hexdigest()}"'
    s3.put_object(Bucket="mpcopy", Key="tiny", Body=b"0123456789")
    last = s3.upload_part_copy(
        Bucket="mpcopy",
        Key="dst",
        UploadId=up,
        PartNumber=3,
        CopySource="mpcopy/tiny?versionId=null",
        CopySourceRange="bytes=2-4",
    )["CopyPartResult"]["ETag"]
    etags = [whole, head, last]
    complete(s3, "mpcopy", "dst", up, [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)])
    assert s3.get_object(Bucket="mpcopy", Key="dst")["Body"].read() == source + source[: 5 * MiB] + b"234"


def test_complete_delete_and_gc_leave_nothing(server: DwhServer) -> None:
    """After a multipart object is completed and deleted (and an abandoned upload aborted), GC
    past the grace period leaves no chunk, no reference, no shard, and gives the packs' bytes back."""
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="mpgc")
    up = s3.create_multipart_upload(Bucket="mpgc", Key="k")["UploadId"]
    etags = []
    for n in (1, 2, 3):
        body = os.urandom(5 * MiB if n < 3 else 1234)
        etags.append(s3.upload_part(Bucket="mpgc", Key="k", UploadId=up, PartNumber=n, Body=body)["ETag"])
    s3.upload_part(Bucket="mpgc", Key="k", UploadId=up, PartNumber=4, Body=os.urandom(MiB))  # left out
    complete(s3, "mpgc", "k", up, [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)])
    s3.copy_object(Bucket="mpgc", Key="copy", CopySource="mpgc/k")
    s3.delete_object(Bucket="mpgc", Key="k")
    s3.delete_object(Bucket="mpgc", Key="copy")
    server.stop()
    assert "Traceback" not in server.log()
    packed_before = _pack_bytes(server.data_dir)
    assert packed_before > 11 * MiB  # 11 MiB written at EC(4,2)
    shards_before = len(shard_locations(server.data_dir))
    clock = ManualClock(datetime.now(UTC))
    with Warehouse.open(server.data_dir, OpenOptions(clock=clock)) as wh:
        with wh.engine.repo.read() as tx:
            chunks = tx.list_chunks(limit=100_000)
            assert chunks and all(c.refcount == 0 for c in chunks)
            assert tx.all_upload_ids() == []
        clock.advance(timedelta(days=30))
        collect(wh.engine, timedelta(hours=1))
        with wh.engine.repo.read() as tx:
            assert tx.list_chunks(limit=100_000) == []
    assert shard_locations(server.data_dir) == {}
    # GC compacted the packs it emptied: what is left of them is at most the tombstones (one
    # aligned block each) and the first block of each disk's new pack.
    left = _pack_bytes(server.data_dir)
    assert left <= (shards_before + len(disk_dirs(server.data_dir))) * ALIGN
    assert left < packed_before // 30


def test_sigkill_while_uploading_parts(tmp_path: Path) -> None:
    """Killing the server between and during part uploads: after a restart every acknowledged
    part is listed with its ETag, a part cut off mid-body is absent or whole, and the object
    does not exist until the upload is completed."""
    data_dir = tmp_path / "dwh-data"
    srv = DwhServer(data_dir).start()
    s3 = srv.boto3_client()
    s3.create_bucket(Bucket="mpkill")
    up = s3.create_multipart_upload(Bucket="mpkill", Key="k")["UploadId"]
    bodies = {n: os.urandom(6 * MiB) for n in range(1, 9)}
    acked: dict[int, str] = {}
    for n in (1, 2, 3):
        acked[n] = s3.upload_part(Bucket="mpkill", Key="k", UploadId=up, PartNumber=n, Body=bodies[n])["ETag"]
    stop = threading.Event()

    def upload_more() -> None:
        for n in range(4, 9):
            if stop.is_set():
                return
            try:
                acked[n] = s3.upload_part(Bucket="mpkill", Key="k", UploadId=up, PartNumber=n, Body=bodies[n])["ETag"]
            except (ClientError, BotoCoreError):
                return

    worker = threading.Thread(target=upload_more)
    worker.start()
    threading.Event().wait(random.uniform(0.2, 1.0))
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=30)
    stop.set()
    worker.join(timeout=60)
    srv = DwhServer(data_dir).start()
    try:
        s3 = srv.boto3_client()
        listed = {p["PartNumber"]: p for p in s3.list_parts(Bucket="mpkill", Key="k", UploadId=up)["Parts"]}
        for n, etag in acked.items():
            assert listed[n]["ETag"] == etag, f"acknowledged part {n} lost"
        for n, p in listed.items():  # an unacknowledged part that committed is whole
            assert p["ETag"] == f'"{hashlib.md5(bodies[n]).hexdigest()}"' and p["Size"] == len(bodies[n])
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="mpkill", Key="k")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert s3.list_objects_v2(Bucket="mpkill").get("Contents", []) == []
        numbers = sorted(listed)
        complete(s3, "mpkill", "k", up, [{"PartNumber": n, "ETag": listed[n]["ETag"]} for n in numbers])
        assert s3.get_object(Bucket="mpkill", Key="k")["Body"].read() == b"".join(bodies[n] for n in numbers)
    finally:
        srv.stop()
        assert "Traceback" not in srv.log()
