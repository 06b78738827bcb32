"""The key range of a listing: a prefix and a marker as one index range scan.

Listings (objects, versions) read ``key > marker`` or ``key >= prefix``, whichever is tighter,
and ``key < prefix_end(prefix)``. Exactly one lower bound goes to the database: given both,
SQLite bounds the scan by one and filters by the other, which reads every key between the marker
and the prefix. The upper bound replaces ``LIKE``, which treats ``%``/``_`` as wildcards, is
case-insensitive for ASCII in SQLite and cannot use the key index as a plain range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

MAX_CODE_POINT: Final = 0x10FFFF


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (code point order,
    which is UTF-8 byte order), or ``None`` when there is none (empty prefix, all U+10FFFF)."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1])
        if cp == MAX_CODE_POINT:
            chars.pop()
            continue
        nxt = cp + 1
        if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not valid in keys (nor encodable in UTF-8)
            nxt = 0xE000
        chars[-1] = chr(nxt)
        return "".join(chars)
    return None


@dataclass(frozen=True, slots=True)
class KeyRange:
    inclusive: bool  # ``key >= lower`` (the prefix), else ``key > lower`` (the marker)
    lower: str
    end: str | None  # ``key < end``; ``None``: no upper bound

    def params(self) -> dict[str, Any]:
        """The values of ``bounds``'s parameters."""
        out: dict[str, Any] = {"p_lower": self.lower}
        if self.end is not None:
            out["p_end"] = self.end
        return out


def key_range(prefix: str, after: str) -> KeyRange | None:
    """The keys under ``prefix`` strictly after ``after``; ``None`` when there are none."""
    end = prefix_end(prefix)
    if end is not None and after >= end:
        return None
    inclusive = after < prefix
    return KeyRange(inclusive, prefix if inclusive else after, end)


def bounds(key: sa.ColumnElement[str], inclusive: bool, has_end: bool) -> list[sa.ColumnElement[bool]]:
    """``KeyRange``'s conditions on ``key``, with parameters ``p_lower`` and ``p_end``."""
    conds = [key >= sa.bindparam("p_lower") if inclusive else key > sa.bindparam("p_lower")]
    if has_end:
        conds.append(key < sa.bindparam("p_end"))
    return conds
