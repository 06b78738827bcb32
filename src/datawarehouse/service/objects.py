"""S3-level object use cases built on ``Warehouse``: deleting many keys at once.

DeleteObjects removes up to 1,000 keys, each its own journaled operation. Done one after the
other, every delete waits for its own journal fsync (about 5 ms each); submitted from a few
threads at once, the committer groups them into shared transactions and fsyncs. The threads are
this module's own small pool, shared by all requests, so a batch delete never occupies more than
``DELETE_THREADS`` of the server's request threads' worth of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from datawarehouse.errors import DwhError
from datawarehouse.service.warehouse import Warehouse

DELETE_THREADS = 8
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DELETE_THREADS, thread_name_prefix="dwh-delete")
    return _pool


def _delete_one(wh: Warehouse, bucket: str, key: str) -> DwhError | None:
    try:
        wh.delete_object(bucket, key)  # a key that does not exist counts as deleted, as in S3
    except DwhError as exc:
        return exc
    return None


def delete_objects(wh: Warehouse, bucket: str, keys: Sequence[str]) -> list[DwhError | None]:
    """Delete every key of ``bucket``; per key ``None`` (deleted, or there was nothing) or the
    error that key met. A missing bucket raises ``NoSuchBucket`` for the whole request."""
    wh.get_bucket(bucket)
    if len(keys) <= 1:
        return [_delete_one(wh, bucket, key) for key in keys]
    return list(_executor().map(lambda key: _delete_one(wh, bucket, key), keys))
