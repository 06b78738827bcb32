"""Listing a bucket the S3 way: prefix, delimiter (CommonPrefixes), marker, max-keys.

Keys come from the index in UTF-8 binary order (code point order), a batch at a time, all from one
read snapshot. When a delimiter folds keys into a common prefix, the listing seeks past every key
under that prefix (``start_after = prefix + U+10FFFF``) instead of reading them, and batches shrink
while most rows fold and grow while they do not, so a bucket with a million keys under a thousand
"directories" lists its prefixes in about a thousand small index range scans, and one without
folding in one scan per page. ListObjectVersions groups the same way (``group_entries``), its
cursor a key and a version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from datawarehouse.meta.repo import ObjectSummary
from datawarehouse.service.warehouse import Warehouse

PAGE = 1001  # the most rows one index scan returns: a full S3 page and one to tell it is truncated
MIN_BATCH = 8  # the fewest (after a seek, the next rows are likely to fold again)
_MAX_CHAR = "\U0010ffff"


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


E = TypeVar("E", bound=Keyed)  # an entry: an object, or a version of one
C = TypeVar("C")  # a cursor: where a scan resumes (a key; a key and a version)

Fetch = Callable[[str, int], Sequence[ObjectSummary]]  # (start_after, limit) -> keys > start_after, ordered


@dataclass
class ListPage(Generic[E]):
    contents: list[E] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    last: str | None = None  # the last key or common prefix returned (the next marker)
    last_entry: E | None = None  # the entry returned last, unless a common prefix came after it
    scans: int = 0  # index scans made (for tests and benchmarks)
    rows: int = 0  # rows those scans returned

    @property
    def count(self) -> int:
        return len(self.contents) + len(self.common_prefixes)


ObjectPage = ListPage[ObjectSummary]


def list_page(wh: Warehouse, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ObjectPage:
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


def group_keys(fetch: Fetch, prefix: str, delimiter: str, after: str, max_keys: int) -> ObjectPage:
    """The grouping of keys (``fetch`` returns keys under ``prefix``, in order, after a key).

    ``after`` is exclusive. A common prefix that does not sort after ``after`` is not returned
    again (a marker inside a prefix that an earlier page returned), as in S3. ``max_keys`` 0
    returns nothing and is not truncated (S3's answer, and what keeps paginators from looping).
    """
    return group_entries(fetch, prefix, delimiter, after, after, max_keys, resume=_key_of, seek=_same)


def _key_of(entry: ObjectSummary) -> str:
    return entry.key


def _same(key: str) -> str:
    return key


def group_entries(
    fetch: Callable[[C, int], Sequence[E]],
    prefix: str,
    delimiter: str,
    start: C,
    start_key: str | None,
    max_keys: int,
    *,
    resume: Callable[[E], C],
    seek: Callable[[str], C],
) -> ListPage[E]:
    """The grouping over any ordered source of entries (keys, or versions in key order).

    ``fetch(cursor, limit)`` returns up to ``limit`` entries under ``prefix`` after ``cursor``;
    ``resume(entry)`` is the cursor right after an entry, ``seek(key)`` the cursor after every
    entry of ``key``. The page starts after ``start``; ``start_key`` is the key the marker names
    (``None`` when it points between two versions of one key, which is then not folded again).
    """
    out: ListPage[E] = ListPage()
    if max_keys <= 0:
        return out
    cursor = start
    # Keys under ``folding`` are already accounted for (returned as a common prefix, or one the
    # marker is inside of): they are skipped, and when a batch ends among them the next scan seeks.
    folding = None
    if start_key is not None and start_key.startswith(prefix):
        folding = common_prefix(start_key, prefix, delimiter)
        if folding is not None:  # a prefix of the marker, so it sorts before it: returned earlier
            cursor = seek(max(start_key, folding + _MAX_CHAR))
    batch = min(PAGE, max_keys + 1)
    while True:
        rows = fetch(cursor, batch)
        out.scans += 1
        out.rows += len(rows)
        produced = 0
        for entry in rows:
            if folding is not None and entry.key.startswith(folding):
                continue
            if out.count >= max_keys:
                out.is_truncated = True
                return out
            produced += 1
            common = common_prefix(entry.key, prefix, delimiter)
            if common is None:
                out.contents.append(entry)
                out.last, out.last_entry = entry.key, entry
                continue
            out.common_prefixes.append(common)
            out.last, out.last_entry = common, None
            folding = common
        if len(rows) < batch:
            return out
        last = rows[-1]
        # Seek past the rest of the prefix the batch ended in (never backwards: a key may hold
        # U+10FFFF right after the prefix).
        if folding is not None and last.key.startswith(folding):
            cursor = seek(max(last.key, folding + _MAX_CHAR))
        else:
            cursor = resume(last)
        # Grow while rows turn into entries, shrink to MIN_BATCH while they fold; never more than
        # this page can still use (plus one row to tell whether it is truncated).
        wanted = max(MIN_BATCH, 2 * produced)
        batch = max(1, min(PAGE, wanted, max_keys - out.count + 1))
