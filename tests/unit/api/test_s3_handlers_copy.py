"""CopyObject's pure parts (x-amz-copy-source, copy-source conditions, directives) and the copy
by reference in the service: same manifest, references counted, tags and metadata directives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.handlers.copy import _directive, check_copy_conditions, check_storage_class, copy_source
from datawarehouse.config import EngineConfig
from datawarehouse.errors import NoSuchKey
from datawarehouse.ids import BucketId, VersionId
from datawarehouse.records import ChunkerParams, ObjectVersion, StorageClass
from datawarehouse.service.warehouse import ObjectSpec, Warehouse

MODIFIED = datetime(2026, 5, 6, 7, 8, 9, 500_000, tzinfo=UTC)


def version(etag: str = "abc") -> ObjectVersion:
    return ObjectVersion(
        bucket_id=BucketId(1),
        key="k",
        version_id=VersionId("v"),
        size=1,
        etag=etag,
        created_at=MODIFIED,
        storage_class=StorageClass(1, 0),
        chunker=ChunkerParams(64 * 1024, 256 * 1024, 1024 * 1024),
    )


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("src/key", ("src", "key", None)),
        ("/src/key", ("src", "key", None)),
        ("src/dir/a%20b%2Bc%C3%A9", ("src", "dir/a b+cé", None)),
        ("src/a+b", ("src", "a+b", None)),
        ("src/k%3Fx%3Dy", ("src", "k?x=y", None)),
        ("/src/key?versionId=null", ("src", "key", "null")),
        ("src/key?versionId=" + "0a" * 15, ("src", "key", "0a" * 15)),
        ("src//leading-slash-key", ("src", "/leading-slash-key", None)),
    ],
)
def test_copy_source(header: str, want: tuple[str, str, str | None]) -> None:
    assert copy_source(header) == want


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("src", "InvalidArgument"),
        ("/", "InvalidArgument"),
        ("src/k?versionId=3", "InvalidArgument"),
        ("src/k?other=1", "InvalidArgument"),
    ],
)
def test_bad_copy_source(header: str, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        copy_source(header)
    assert exc.value.code == code


def http(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({}, True),
        ({"x-amz-copy-source-if-match": '"abc"'}, True),
        ({"x-amz-copy-source-if-match": "abc"}, True),
        ({"x-amz-copy-source-if-match": '"other", "abc"'}, True),
        ({"x-amz-copy-source-if-match": "*"}, True),
        ({"x-amz-copy-source-if-match": '"other"'}, False),
        ({"x-amz-copy-source-if-none-match": '"abc"'}, False),
        ({"x-amz-copy-source-if-none-match": '"other"'}, True),
        ({"x-amz-copy-source-if-modified-since": http(MODIFIED - timedelta(days=1))}, True),
        ({"x-amz-copy-source-if-modified-since": http(MODIFIED + timedelta(days=1))}, False),
        ({"x-amz-copy-source-if-modified-since": http(MODIFIED)}, False),  # second precision
        ({"x-amz-copy-source-if-unmodified-since": http(MODIFIED)}, True),
        ({"x-amz-copy-source-if-unmodified-since": http(MODIFIED - timedelta(days=1))}, False),
        # S3's combinations: a matching If-Match wins over a failed If-Unmodified-Since, and a
        # non-matching If-None-Match over a failed If-Modified-Since.
        (
            {
                "x-amz-copy-source-if-match": '"abc"',
                "x-amz-copy-source-if-unmodified-since": http(MODIFIED - timedelta(days=1)),
            },
            True,
        ),
        (
            {
                "x-amz-copy-source-if-none-match": '"other"',
                "x-amz-copy-source-if-modified-since": http(MODIFIED + timedelta(days=1)),
            },
            True,
        ),
        ({"x-amz-copy-source-if-modified-since": "not a date"}, True),  # ignored, as S3 does
        ({"if-match": '"other"'}, True),  # plain conditions are about the destination: not checked here
    ],
)
def test_copy_source_conditions(headers: dict[str, str], ok: bool) -> None:
    if ok:
        check_copy_conditions(headers, version())
    else:
        with pytest.raises(S3Error) as exc:
            check_copy_conditions(headers, version())
        assert exc.value.code == "PreconditionFailed" and exc.value.http_status == 412


def test_directives_and_storage_class() -> None:
    assert _directive({}, "metadata") == "COPY"
    assert _directive({"x-amz-metadata-directive": "replace"}, "metadata") == "REPLACE"
    assert _directive({"x-amz-tagging-directive": "REPLACE"}, "tagging") == "REPLACE"
    with pytest.raises(S3Error) as exc:
        _directive({"x-amz-tagging-directive": "MERGE"}, "tagging")
    assert exc.value.code == "InvalidArgument"
    check_storage_class({})
    check_storage_class({"x-amz-storage-class": "STANDARD"})
    with pytest.raises(S3Error) as exc:
        check_storage_class({"x-amz-storage-class": "GLACIER"})
    assert exc.value.code == "InvalidStorageClass"


SMALL = EngineConfig(chunk_min_size=16 * 1024, chunk_avg_size=32 * 1024, chunk_max_size=64 * 1024, inline_max_size=4096)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    from datawarehouse.service.warehouse import OpenOptions

    w = Warehouse.init(tmp_path / "dwh", None, OpenOptions(config=SMALL))
    w.create_bucket("src")
    w.create_bucket("dst")
    try:
        yield w
    finally:
        w.close()


def refcounts(wh: Warehouse) -> dict[bytes, int]:
    with wh.engine.repo.read() as tx:
        return {c.chunk_id: c.refcount for c in tx.list_chunks(limit=1_000_000)}


def test_copy_by_reference_counts_references(wh: Warehouse) -> None:
    data = os.urandom(500 * 1024)  # several chunks, none shared
    src = wh.put_object(
        "src", "big", data, content_type="a/b", user_meta={"m": "1"}, system_meta={"x-amz-checksum-crc32": "AAAAAA=="}
    )
    before = refcounts(wh)
    assert before and set(before.values()) == {1}
    copy = wh.copy_object("src", "big", "dst", "copy")
    assert copy.chunks == src.chunks and copy.etag == src.etag and copy.content_type == "a/b"
    assert set(refcounts(wh).values()) == {2}
    replaced = wh.copy_object("src", "big", "dst", "copy", spec=ObjectSpec("c/d", {"n": "2"}, {"cache-control": "no"}))
    assert set(refcounts(wh).values()) == {2}  # the replaced copy released its references
    assert replaced.user_meta == {"n": "2"}
    # REPLACE keeps the checksum: it describes the bytes, which did not change.
    assert replaced.system_meta == {"cache-control": "no", "x-amz-checksum-crc32": "AAAAAA=="}
    wh.delete_object("src", "big")
    assert set(refcounts(wh).values()) == {1}
    assert wh.get_object_bytes("dst", "copy") == data


def test_copy_tags_follow_their_own_directive(wh: Warehouse) -> None:
    wh.put_object("src", "small", b"inline bytes", tags={"a": "1"})
    kept = wh.copy_object("src", "small", "dst", "t1", spec=ObjectSpec("x/y"))
    assert kept.tags == {"a": "1"} and kept.content_type == "x/y"
    replaced = wh.copy_object("src", "small", "dst", "t2", tags={"b": "2"})
    assert replaced.tags == {"b": "2"} and replaced.content_type == "application/octet-stream"
    assert wh.copy_object("src", "small", "dst", "t3", tags={}).tags == {}
    assert wh.get_object_bytes("dst", "t2") == b"inline bytes"  # inline: the sealed frame is shared


def test_copy_source_conditions_are_checked_before_anything_is_written(wh: Warehouse) -> None:
    wh.put_object("src", "c", b"x")

    def refuse(_: ObjectVersion) -> None:
        raise S3Error("PreconditionFailed")

    with pytest.raises(S3Error):
        wh.copy_object("src", "c", "dst", "c", source_conditions=refuse)
    with pytest.raises(NoSuchKey):
        wh.head_object("dst", "c")
    with pytest.raises(NoSuchKey):
        wh.copy_object("src", "missing", "dst", "c")
