"""S3-level object use cases built on ``Warehouse``: deleting many keys (or versions) at once.

DeleteObjects removes up to 1,000 keys, each its own journaled operation. Done one after the
other, every delete waits for its own journal fsync (about 5 ms each); submitted from a few
threads at once, the committer groups them into shared transactions and fsyncs. The threads are
this module's own small pool, shared by all requests, so a batch delete never occupies more than
``DELETE_THREADS`` of the server's request threads' worth of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from datawarehouse.errors import DwhError
from datawarehouse.service.versioning import DeleteOutcome
from datawarehouse.service.warehouse import Warehouse

DELETE_THREADS = 8
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DELETE_THREADS, thread_name_prefix="dwh-delete")
    return _pool


@dataclass(frozen=True)
class DeleteTarget:
    key: str
    version_id: str | None = None


def _delete_one(wh: Warehouse, bucket: str, target: DeleteTarget, bypass_governance: bool) -> DeleteOutcome | DwhError:
    try:
        # a key or version that does not exist counts as deleted, as in S3
        return wh.delete_object(bucket, target.key, target.version_id, bypass_governance=bypass_governance)
    except DwhError as exc:
        return exc


def delete_objects(
    wh: Warehouse, bucket: str, targets: Sequence[DeleteTarget], *, bypass_governance: bool = False
) -> list[DeleteOutcome | DwhError]:
    """Delete every target of ``bucket`` (a key's current version, or the version named); per
    target what the delete did, or the error that target met. A missing bucket raises
    ``NoSuchBucket`` for the whole request."""
    wh.get_bucket(bucket)
    if len(targets) <= 1:
        return [_delete_one(wh, bucket, t, bypass_governance) for t in targets]
    return list(_executor().map(lambda t: _delete_one(wh, bucket, t, bypass_governance), targets))
