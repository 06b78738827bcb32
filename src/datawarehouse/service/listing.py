"""Listing a bucket the S3 way: prefix, delimiter (CommonPrefixes), marker, max-keys.

Keys come from the index in UTF-8 binary order (code point order), a batch at a time, all from one
read snapshot. When a delimiter folds keys into a common prefix, the listing seeks past every key
under that prefix (``start_after = prefix + U+10FFFF``) instead of reading them, and batches shrink
while most rows fold and grow while they do not, so a bucket with a million keys under a thousand
"directories" lists its prefixes in about a thousand small index range scans, and one without
folding in one scan per page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from datawarehouse.meta.repo import ObjectSummary
from datawarehouse.service.warehouse import Warehouse

PAGE = 1001  # the most rows one index scan returns: a full S3 page and one to tell it is truncated
MIN_BATCH = 8  # the fewest (after a seek, the next rows are likely to fold again)
_MAX_CHAR = "\U0010ffff"

Fetch = Callable[[str, int], list[ObjectSummary]]  # (start_after, limit) -> keys > start_after, ordered


@dataclass
class ListPage:
    contents: list[ObjectSummary] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    last: str | None = None  # the last key or common prefix returned (the next marker)
    scans: int = 0  # index scans made (for tests and benchmarks)
    rows: int = 0  # rows those scans returned

    @property
    def count(self) -> int:
        return len(self.contents) + len(self.common_prefixes)


def list_page(wh: Warehouse, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    """Up to ``max_keys`` keys and common prefixes strictly after ``after``, from one snapshot.
    Raises ``NoSuchBucket`` even when ``max_keys`` is 0."""
    with wh.engine.repo.read() as tx:
        bucket_id = tx.get_bucket(bucket).bucket_id
        return group_keys(
            lambda start, limit: tx.list_objects(bucket_id, prefix, start, limit), prefix, delimiter, after, max_keys
        )


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The CommonPrefix ``key`` folds into: ``prefix`` plus everything up to and including the
    first ``delimiter`` after it, or ``None`` when the key is listed itself."""
    if not delimiter:
        return None
    cut = key.find(delimiter, len(prefix))
    return key[: cut + len(delimiter)] if cut >= 0 else None


def group_keys(fetch: Fetch, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    """The grouping itself, over any ordered key source (``fetch`` returns keys under ``prefix``).

    ``after`` is exclusive. A common prefix that does not sort after ``after`` is not returned
    again (a marker inside a prefix that an earlier page returned), as in S3. ``max_keys`` 0
    returns nothing and is not truncated (S3's answer, and what keeps paginators from looping).
    """
    out = ListPage()
    if max_keys <= 0:
        return out
    cursor = after
    # Keys under ``folding`` are already accounted for (returned as a common prefix, or one the
    # marker is inside of): they are skipped, and when a batch ends among them the next scan seeks.
    folding = common_prefix(after, prefix, delimiter) if after.startswith(prefix) else None
    if folding is not None:  # a prefix of ``after``, so it sorts before it: returned earlier
        cursor = max(after, folding + _MAX_CHAR)
    batch = min(PAGE, max_keys + 1)
    while True:
        rows = fetch(cursor, batch)
        out.scans += 1
        out.rows += len(rows)
        produced = 0
        for obj in rows:
            if folding is not None and obj.key.startswith(folding):
                continue
            common = common_prefix(obj.key, prefix, delimiter)
            if out.count >= max_keys:
                out.is_truncated = True
                return out
            produced += 1
            if common is None:
                out.contents.append(obj)
                out.last = obj.key
                continue
            out.common_prefixes.append(common)
            out.last = common
            folding = common
        if len(rows) < batch:
            return out
        last = rows[-1].key
        # Seek past the rest of the prefix the batch ended in (never backwards: a key may hold
        # U+10FFFF right after the prefix).
        cursor = max(last, folding + _MAX_CHAR) if folding is not None and last.startswith(folding) else last
        # Grow while rows turn into entries, shrink to MIN_BATCH while they fold; never more than
        # this page can still use (plus one row to tell whether it is truncated).
        wanted = max(MIN_BATCH, 2 * produced)
        batch = max(1, min(PAGE, wanted, max_keys - out.count + 1))
