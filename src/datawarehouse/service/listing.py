"""Listing a bucket the S3 way: prefix, delimiter (CommonPrefixes), marker, max-keys.

Keys come from the index in UTF-8 binary order, a page at a time. When a delimiter folds keys
into a common prefix, the listing seeks past every key under that prefix instead of reading them,
so a bucket with a million keys under a few "directories" lists in a few queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datawarehouse.meta.repo import ObjectSummary
from datawarehouse.service.warehouse import Warehouse

PAGE = 1000
_MAX_CHAR = "\U0010ffff"


@dataclass
class ListPage:
    contents: list[ObjectSummary] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    last: str | None = None  # the last key or common prefix returned (the next marker)


def list_page(wh: Warehouse, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    """Up to ``max_keys`` keys and common prefixes strictly after ``after``."""
    out = ListPage()
    if max_keys <= 0:
        out.is_truncated = bool(wh.list_objects(bucket, prefix, after, 1))
        return out
    cursor = after
    while True:
        batch = wh.list_objects(bucket, prefix, cursor, PAGE)
        if not batch:
            return out
        for obj in batch:
            if len(out.contents) + len(out.common_prefixes) >= max_keys:
                out.is_truncated = True
                return out
            cursor = obj.key
            rest = obj.key[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            if cut < 0:
                out.contents.append(obj)
                out.last = obj.key
                continue
            common = prefix + rest[: cut + len(delimiter)]
            if common <= after:
                continue  # a marker inside this prefix: S3 does not repeat the prefix
            out.common_prefixes.append(common)
            out.last = common
            cursor = common + _MAX_CHAR  # seek past every key under the common prefix
            break
        else:
            if len(batch) < PAGE:
                return out
