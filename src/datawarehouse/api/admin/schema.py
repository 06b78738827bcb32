"""JSON Schema (the subset the admin API uses) as plain dicts: small builders for declaring
operations, and ``check`` to validate request bodies and query values against the very schemas the
OpenAPI document publishes (so what the document promises is what the server enforces).

Supported keywords: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``maxItems``, ``minimum``, ``maximum``, ``minLength``,
``maxLength``, ``pattern``, ``enum``, ``format: date-time``. Anything else is documentation only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from datawarehouse.api.admin.errors import bad_request

Schema = dict[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = True) -> Schema:
    """An object schema; ``closed``: unknown properties are refused (request bodies)."""
    s: Schema = {"type": "object", "properties": properties}
    if required:
        s["required"] = list(required)
    if closed:
        s["additionalProperties"] = False
    return s


def string(max_length: int = 1024, *, min_length: int = 0, pattern: str | None = None, **kw: Any) -> Schema:
    s: Schema = {"type": "string", "maxLength": max_length, **kw}
    if min_length:
        s["minLength"] = min_length
    if pattern:
        s["pattern"] = pattern
    return s


def integer(minimum: int | None = 0, maximum: int | None = None, **kw: Any) -> Schema:
    s: Schema = {"type": "integer", **kw}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return s


def nullable(schema: Schema) -> Schema:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*types, "null"]}


def array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


DATE_TIME: Schema = {"type": "string", "format": "date-time"}
BOOLEAN: Schema = {"type": "boolean"}


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _type_ok(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def check(value: Any, schema: Schema, where: str) -> None:
    """Raise a 400 naming ``where`` (``body.max_bytes``) when ``value`` does not fit ``schema``."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_type_ok(value, n) for n in names):
            raise bad_request(f"{where}: expected {' or '.join(names)}")
    if "enum" in schema and value not in schema["enum"]:
        raise bad_request(f"{where}: one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        _check_string(value, schema, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise bad_request(f"{where}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise bad_request(f"{where}: must be <= {schema['maximum']}")
    elif isinstance(value, dict):
        _check_object(value, schema, where)
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise bad_request(f"{where}: at most {schema['maxItems']} items")
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                check(item, items, f"{where}[{i}]")


def _check_string(value: str, schema: Schema, where: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise bad_request(f"{where}: at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise bad_request(f"{where}: at most {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        raise bad_request(f"{where}: does not match {schema['pattern']}")
    if schema.get("format") == "date-time":
        parse_datetime(value, where)


def _check_object(value: dict[str, Any], schema: Schema, where: str) -> None:
    props: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise bad_request(f"{where}.{name}: required")
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(props))
        if unknown:
            raise bad_request(f"{where}: unknown field {unknown[0][:64]!r}")
    for name, sub in props.items():
        if name in value:
            check(value[name], sub, f"{where}.{name}")


def parse_datetime(text: str, where: str) -> datetime:
    """RFC 3339 date-time (what ``format: date-time`` means): a time zone is required."""
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d", raw):
        raise bad_request(f"{where}: not an RFC 3339 date-time with a time zone (e.g. 2026-01-31T12:00:00Z)")
    try:
        return datetime.fromisoformat(raw).astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_request(f"{where}: not a valid date-time") from None
