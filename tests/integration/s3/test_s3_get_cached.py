"""GETs read small objects from the page cache on the event loop, and anything else on a worker
thread: whether the shards are in memory, on the disk, or damaged, the client gets the same
bytes, and a damaged shard is still reported for healing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from dwh_testkit import evict_page_cache, flip_shard_byte
from s3server import DwhServer

from datawarehouse.service.maintenance import heal_queue
from datawarehouse.service.warehouse import Warehouse

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv2 RWF_NOWAIT (Linux)")


def _check_all(s3: Any, bodies: dict[str, bytes]) -> None:
    for key, body in bodies.items():
        got = s3.get_object(Bucket="cached", Key=key)
        assert got["Body"].read() == body, key
        part = s3.get_object(Bucket="cached", Key=key, Range="bytes=100-200099")
        assert part["Body"].read() == body[100:200100], key


def test_get_answers_alike_from_memory_from_disk_and_around_a_bad_shard(
    dwh_server_factory: Callable[..., DwhServer],
) -> None:
    server = dwh_server_factory()
    s3 = server.boto3_client()
    s3.create_bucket(Bucket="cached")
    # One hop of the event loop (up to 2 MiB), and a larger object streamed from threads.
    bodies = {"one": os.urandom(MiB), "two": os.urandom(2 * MiB - 7), "big": os.urandom(5 * MiB + 3)}
    for key, body in bodies.items():
        s3.put_object(Bucket="cached", Key=key, Body=body)
    _check_all(s3, bodies)  # just written: from the page cache

    if not evict_page_cache(server.data_dir):
        pytest.skip("this file system keeps every page in memory (tmpfs)")
    _check_all(s3, bodies)  # from the disks, through the worker threads

    with Warehouse.open(server.data_dir, follower=True) as view:
        found = view.open_object("cached", "one")
        rec = found.chunks[found.version.chunks[0].chunk_id]
        assert heal_queue(view)[0] == 0
    flip_shard_byte(server.data_dir, rec, 0, -3)  # a data shard, inside its payload
    _check_all(s3, bodies)
    with Warehouse.open(server.data_dir, follower=True) as view:
        count, entries = heal_queue(view)
    assert count == 1 and entries[0].chunk_id == rec.chunk_id.hex()
    assert "Traceback" not in server.log()
