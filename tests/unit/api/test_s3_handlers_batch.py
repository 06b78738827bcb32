"""DeleteObjects: the integrity header S3 requires, and the service's batch delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from datawarehouse.api.s3.handlers.batch import has_integrity_header
from datawarehouse.errors import NoSuchBucket, NoSuchKey
from datawarehouse.service.objects import DeleteTarget, delete_objects
from datawarehouse.service.versioning import DeleteOutcome
from datawarehouse.service.warehouse import Warehouse


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, True),
        ({"x-amz-checksum-crc32": "AAAAAA=="}, True),
        ({"x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}, True),
        ({"x-amz-trailer": "x-amz-checksum-crc32c"}, True),
        ({}, False),
        ({"x-amz-sdk-checksum-algorithm": "CRC32"}, False),  # an algorithm without a value checks nothing
        ({"x-amz-checksum-mode": "ENABLED"}, False),
        ({"x-amz-checksum-type": "FULL_OBJECT"}, False),
        ({"x-amz-trailer": "x-amz-meta-foo"}, False),
    ],
)
def test_integrity_header(headers: dict[str, str], ok: bool) -> None:
    assert has_integrity_header(headers) is ok


def test_delete_objects(tmp_path: Path) -> None:
    with Warehouse.init(tmp_path / "dwh") as wh:
        wh.create_bucket("batch-unit")
        keys = [f"k{i}" for i in range(40)]
        for key in keys:
            wh.put_object("batch-unit", key, key.encode())
        # missing and repeated keys
        outcome = delete_objects(wh, "batch-unit", [DeleteTarget(k) for k in [*keys[:30], "missing", "k0"]])
        assert all(isinstance(o, DeleteOutcome) and not o.delete_marker for o in outcome) and len(outcome) == 32
        assert [o.key for o in wh.list_objects("batch-unit")] == sorted(keys[30:])
        assert delete_objects(wh, "batch-unit", [DeleteTarget("k35")]) == [DeleteOutcome(None, False, True)]
        with pytest.raises(NoSuchKey):
            wh.head_object("batch-unit", "k35")
        with pytest.raises(NoSuchBucket):
            delete_objects(wh, "no-such-bucket", [DeleteTarget("a"), DeleteTarget("b")])
