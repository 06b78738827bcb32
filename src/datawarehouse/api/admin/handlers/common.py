"""Schemas and helpers several handler modules share."""

from __future__ import annotations

from typing import Any

from datawarehouse.api.admin.registry import Param, path_param
from datawarehouse.api.admin.schema import Schema, integer, nullable, obj, string

# Names as the services take them; the services check the rules and say what is wrong.
path_param("bucket", string(127, min_length=1, description="bucket name (tenant:bucket outside the default tenant)"))

path_param("tenant", string(63, min_length=1, description="tenant name"))
path_param("user", string(64, min_length=1, description="user or service account name"))
path_param("group", string(64, min_length=1, description="group name"))
path_param("policy", string(128, min_length=1, description="policy name (the tenant's, or a built-in one)"))
path_param("key", string(128, min_length=1, description="access key id"))

MARKER = Param("marker", string(256), "return items after this one (the previous page's next_marker)")


def limit_param(default: int, maximum: int) -> Param:
    return Param("limit", integer(1, maximum), f"page size (default {default}, at most {maximum})")


def page(items_name: str, item: Schema) -> Schema:
    """A page of a long list: the items, whether more follow, and the marker to ask for them."""
    return obj(
        {
            items_name: {"type": "array", "items": item},
            "truncated": {"type": "boolean"},
            "next_marker": nullable(string(256)),
        },
        (items_name, "truncated", "next_marker"),
        closed=False,
    )


def paginate(items: list[Any], key: Any, marker: str | None, limit: int) -> tuple[list[Any], bool, str | None]:
    """Items after ``marker`` (by ``key``, the list being sorted by it), at most ``limit``."""
    if marker is not None:
        items = [item for item in items if key(item) > marker]
    chosen = items[:limit]
    truncated = len(items) > limit
    return chosen, truncated, key(chosen[-1]) if truncated and chosen else None


QUOTA: Schema = obj(
    {"max_bytes": nullable(integer(0, 2**62)), "max_objects": nullable(integer(0, 2**62))},
    closed=False,
)
