"""Tagging: the x-amz-tagging header under S3's rules, and tag sets on a real warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from datawarehouse.api.s3.errors import S3Error
from datawarehouse.api.s3.handlers.tagging import header_tags
from datawarehouse.errors import NoSuchKey
from datawarehouse.service.warehouse import Warehouse


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        (None, {}),
        ("", {}),
        ("a=1", {"a": "1"}),
        ("team=storage&env=test%20a", {"team": "storage", "env": "test a"}),
        ("empty=&bare", {"empty": "", "bare": ""}),
        ("k%C3%A9y=v%C3%BC", {"kéy": "vü"}),
        ("path=a%2Fb%3Ac%40d", {"path": "a/b:c@d"}),
        ("&".join(f"k{i}=v" for i in range(10)), {f"k{i}": "v" for i in range(10)}),
        ("k=" + "v" * 256, {"k": "v" * 256}),
        ("k" * 128 + "=v", {"k" * 128: "v"}),
    ],
)
def test_header_tags(header: str | None, tags: dict[str, str]) -> None:
    assert header_tags(header) == tags


@pytest.mark.parametrize(
    "header",
    [
        "&".join(f"k{i}=v" for i in range(11)),  # 11 tags
        "a=1&a=2",  # a key twice
        "=v",  # an empty key
        "k" * 129 + "=v",
        "k=" + "v" * 257,
        "aws:cloudformation=x",  # reserved prefix
        "k=%3Cscript%3E",  # characters S3 does not allow
        "k=%FF%FE",  # not UTF-8
    ],
)
def test_bad_header_tags(header: str) -> None:
    with pytest.raises(S3Error) as exc:
        header_tags(header)
    assert exc.value.code == "InvalidTag" and exc.value.http_status == 400


def test_tags_on_a_warehouse(tmp_path: Path) -> None:
    with Warehouse.init(tmp_path / "dwh") as wh:
        wh.create_bucket("tags-unit")
        wh.put_object("tags-unit", "k", b"data", tags={"a": "1"})
        assert wh.head_object("tags-unit", "k").tags == {"a": "1"}
        wh.put_object_tags("tags-unit", "k", {"b": "2", "c": "3"})
        v = wh.head_object("tags-unit", "k")
        assert v.tags == {"b": "2", "c": "3"} and wh.get_object_bytes("tags-unit", "k") == b"data"
        wh.put_object_tags("tags-unit", "k", {})
        assert wh.head_object("tags-unit", "k").tags == {}
        with pytest.raises(NoSuchKey):
            wh.put_object_tags("tags-unit", "missing", {"a": "1"})
        assert wh.get_bucket_setting("tags-unit", "tagging") is None
        wh.set_bucket_setting("tags-unit", "tagging", '{"cost": "42"}')
        assert wh.get_bucket_setting("tags-unit", "tagging") == '{"cost": "42"}'
        wh.set_bucket_setting("tags-unit", "tagging", None)
        assert wh.get_bucket_setting("tags-unit", "tagging") is None
    # The tag operations are journaled: a rebuilt index has them.
    with Warehouse.open(tmp_path / "dwh") as wh:
        assert wh.head_object("tags-unit", "k").tags == {}
