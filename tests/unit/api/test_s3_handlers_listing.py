"""Listing: delimiter grouping, markers and truncation against a naive reference; the seek past
folded prefixes on a million keys; ListObjectVersions rendering; and a real warehouse."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3.handlers.versioning import render_list_versions
from datawarehouse.api.s3.xmlmodel import Owner
from datawarehouse.errors import NoSuchBucket
from datawarehouse.ids import VersionId
from datawarehouse.meta.repo import ObjectSummary, VersionSummary
from datawarehouse.service.listing import PAGE, ListPage, common_prefix, group_entries, group_keys, list_page
from datawarehouse.service.versioning import VersionPage
from datawarehouse.service.warehouse import Warehouse

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MAX = "\U0010ffff"


def summary(key: str) -> ObjectSummary:
    return ObjectSummary(key, VersionId("v"), len(key), "e" * 32, AT)


class Source:
    """An ordered key source like the index: keys > after under prefix, at most limit; counts calls."""

    def __init__(self, keys: Sequence[str], prefix: str) -> None:
        self.keys = keys
        self.prefix = prefix

    def __call__(self, after: str, limit: int) -> list[ObjectSummary]:
        lo = max(bisect.bisect_right(self.keys, after), bisect.bisect_left(self.keys, self.prefix))
        out = []
        for i in range(lo, min(lo + limit, len(self.keys))):
            if not self.keys[i].startswith(self.prefix):
                break
            out.append(summary(self.keys[i]))
        return out


def reference(keys: Sequence[str], prefix: str, delimiter: str, after: str) -> list[str]:
    """Every entry (key or common prefix) after ``after``, the obvious way."""
    entries: list[str] = []
    for key in sorted(keys):
        if not key.startswith(prefix) or key <= after:
            continue
        cp = common_prefix(key, prefix, delimiter)
        if cp is None:
            entries.append(key)
        elif cp > after and (not entries or entries[-1] != cp):
            entries.append(cp)
    return entries


def entries(page: ListPage) -> list[str]:
    return sorted([o.key for o in page.contents] + page.common_prefixes)


def group(keys: Sequence[str], prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    return group_keys(Source(sorted(keys), prefix), prefix, delimiter, after, max_keys)


KEYS = [
    "a",
    "a/b",
    "a/c/d",
    "a/c/e",
    "a/d",
    "b/",
    "b/x",
    "c",
    "c/",
    "c//",
    "é/1",
    "é/2",
    f"z/{MAX}x",
    f"z/{MAX}y",
    "zz",
]


def test_common_prefix() -> None:
    assert common_prefix("a/b/c", "", "/") == "a/"
    assert common_prefix("a/b/c", "a/", "/") == "a/b/"
    assert common_prefix("a/b", "a/", "/") is None
    assert common_prefix("a/b", "", "") is None
    assert common_prefix("xxAByyABzz", "xx", "AB") == "xxAB"
    assert common_prefix("a//", "a/", "/") == "a//"


def test_grouping_and_order() -> None:
    page = group(KEYS, "", "/", "", 1000)
    assert [o.key for o in page.contents] == ["a", "c", "zz"]
    assert page.common_prefixes == ["a/", "b/", "c/", "z/", "é/"]
    assert not page.is_truncated
    page = group(KEYS, "a/", "/", "", 1000)
    assert [o.key for o in page.contents] == ["a/b", "a/d"] and page.common_prefixes == ["a/c/"]
    page = group(KEYS, "c", "/", "", 1000)
    assert [o.key for o in page.contents] == ["c"] and page.common_prefixes == ["c/"]
    page = group(KEYS, "c/", "/", "", 1000)
    assert page.common_prefixes == ["c//"] and [o.key for o in page.contents] == ["c/"]


def test_max_keys_zero_is_empty_and_not_truncated() -> None:
    page = group(KEYS, "", "/", "", 0)
    assert page.count == 0 and not page.is_truncated and page.last is None


def test_truncation_counts_entries_not_rows() -> None:
    # One common prefix holding everything after the first entry: a full page, not truncated.
    page = group(["a/1", "a/2", "a/3"], "", "/", "", 1)
    assert page.common_prefixes == ["a/"] and not page.is_truncated
    page = group(["a/1", "a/2", "b"], "", "/", "", 1)
    assert page.common_prefixes == ["a/"] and page.is_truncated and page.last == "a/"


def test_marker_inside_a_prefix_does_not_repeat_it() -> None:
    page = group(KEYS, "", "/", "a/c/d", 1000)
    assert page.common_prefixes[0] == "b/" and "a/" not in page.common_prefixes
    page = group(KEYS, "", "/", "a/", 1000)
    assert page.common_prefixes[0] == "b/"


def test_keys_with_the_highest_code_point_after_a_prefix_fold_once() -> None:
    keys = [f"p/{MAX}{i:03d}" for i in range(50)] + ["q"]
    for size in (1, 2, 3, 1000):
        page = group(keys, "", "/", "", size)
        assert page.common_prefixes[:1] == ["p/"]
        assert entries(page) == ["p/", "q"][:size]
    all_pages = paginate(keys, "", "/", 1)
    assert all_pages == ["p/", "q"]


def paginate(keys: Sequence[str], prefix: str, delimiter: str, size: int) -> list[str]:
    out: list[str] = []
    after = ""
    for _ in range(10_000):
        page = group(keys, prefix, delimiter, after, size)
        got = entries(page)
        assert len(got) <= size
        out += got
        if not page.is_truncated:
            return out
        assert page.last is not None and page.last > after
        after = page.last
    raise AssertionError("pagination did not end")


ALPHABET = st.sampled_from(["a", "b", "/", "-", ".", "é", "€", MAX, "ab"])
KEY = st.lists(ALPHABET, min_size=1, max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    keys=st.sets(KEY, max_size=40),
    prefix=st.sampled_from(["", "a", "a/", "b", "é"]),
    delimiter=st.sampled_from(["", "/", "ab", "é"]),
    size=st.integers(1, 7),
    after=st.one_of(st.just(""), KEY),
)
def test_matches_the_reference(keys: set[str], prefix: str, delimiter: str, size: int, after: str) -> None:
    ordered = sorted(keys)
    want = reference(ordered, prefix, delimiter, after)
    page = group(ordered, prefix, delimiter, after, size)
    assert entries(page) == want[:size]
    assert page.is_truncated == (len(want) > size)
    # Every page in order gives every entry once.
    assert paginate(ordered, prefix, delimiter, size) == reference(ordered, prefix, delimiter, "")


@dataclass(frozen=True)
class Version:
    key: str
    number: int  # higher is newer


class VersionSource:
    """Versions in ListObjectVersions order (key, then newest first) after a (key, version)
    cursor, where a version of ``None`` skips every version of the key."""

    def __init__(self, versions: dict[str, int], prefix: str) -> None:
        self.rows = [Version(k, n) for k in sorted(versions) for n in range(versions[k], 0, -1)]
        self.order = [(v.key, -v.number) for v in self.rows]
        self.prefix = prefix

    def __call__(self, cursor: tuple[str, int | None], limit: int) -> list[Version]:
        key, number = cursor
        lo = bisect.bisect_right(self.order, (key, -number if number is not None else 1))
        lo = max(lo, bisect.bisect_left(self.order, (self.prefix, -(10**9))))
        return [v for v in self.rows[lo : lo + limit] if v.key.startswith(self.prefix)]


def group_versions(
    versions: dict[str, int], prefix: str, delimiter: str, cursor: tuple[str, int | None], size: int
) -> ListPage[Version]:
    return group_entries(
        VersionSource(versions, prefix),
        prefix,
        delimiter,
        cursor,
        cursor[0] if cursor[1] is None else None,
        size,
        resume=lambda v: (v.key, v.number),
        seek=lambda key: (key, None),
    )


@settings(max_examples=300, deadline=None)
@given(
    versions=st.dictionaries(KEY, st.integers(1, 3), max_size=25),
    prefix=st.sampled_from(["", "a", "a/", "é"]),
    delimiter=st.sampled_from(["", "/", "ab"]),
    size=st.integers(1, 7),
)
def test_versions_paginate_like_the_reference(versions: dict[str, int], prefix: str, delimiter: str, size: int) -> None:
    """Every version once, in order, and each common prefix once, across pages that resume from
    (key, version) markers as ListObjectVersions does."""
    want: list[object] = []
    for v in VersionSource(versions, prefix).rows:
        if not v.key.startswith(prefix):
            continue
        cp = common_prefix(v.key, prefix, delimiter)
        if cp is None:
            want.append(v)
        elif cp not in want:
            want.append(cp)
    got: list[object] = []
    cursor: tuple[str, int | None] = ("", None)
    for _ in range(1000):
        page = group_versions(versions, prefix, delimiter, cursor, size)
        assert page.count <= size
        got += sorted([*page.contents, *page.common_prefixes], key=lambda e: e if isinstance(e, str) else e.key)
        if not page.is_truncated:
            break
        assert page.last is not None
        cursor = (page.last, None) if page.last_entry is None else (page.last_entry.key, page.last_entry.number)
    assert got == want


def test_a_million_keys_of_two_versions_seek_instead_of_reading() -> None:
    versions = dict.fromkeys(Million(dirs=200), 2)  # 200,000 keys
    page = group_versions(versions, "", "/", ("", None), 1000)
    assert page.common_prefixes == [f"d{i:04d}/" for i in range(200)] and not page.is_truncated
    assert page.rows <= 1001 + 199 * 16, page.rows


class Million(Sequence[str]):
    """``d0000/f0000`` .. ``d0999/f0999``: a million sorted keys computed on demand."""

    def __init__(self, dirs: int = 1000, files: int = 1000) -> None:
        self.dirs, self.files = dirs, files

    def __len__(self) -> int:
        return self.dirs * self.files

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        return f"d{i // self.files:04d}/f{i % self.files:04d}"

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


def test_a_million_keys_under_a_thousand_prefixes_seek_instead_of_reading() -> None:
    keys = Million()
    page = group_keys(Source(keys, ""), "", "/", "", 1000)
    assert page.common_prefixes == [f"d{i:04d}/" for i in range(1000)] and not page.is_truncated
    assert page.scans <= 1100 and page.rows <= 20_000, (page.scans, page.rows)
    # Half a page, then the rest from the NextMarker.
    first = group_keys(Source(keys, ""), "", "/", "", 500)
    assert first.is_truncated and first.last == "d0499/"
    rest = group_keys(Source(keys, ""), "", "/", first.last, 1000)
    assert rest.common_prefixes[0] == "d0500/" and len(rest.common_prefixes) == 500 and not rest.is_truncated
    assert rest.rows <= 10_000


def test_a_flat_listing_reads_one_scan_per_page() -> None:
    keys = Million()
    page = group_keys(Source(keys, ""), "", "", "d0500/f0999", 1000)
    assert page.contents[0].key == "d0501/f0000" and page.is_truncated
    assert (page.scans, page.rows) == (1, PAGE)
    page = group_keys(Source(keys, ""), "", "", "", 1)
    assert page.scans == 1 and page.rows == 2  # one row to return, one to know it is truncated


def test_many_small_prefixes_grow_the_batches() -> None:
    keys = sorted(f"k{i:05d}/x" for i in range(5000))
    page = group(keys, "", "/", "", 1000)
    assert len(page.common_prefixes) == 1000 and page.is_truncated
    assert page.scans <= 20, page.scans


def vsummary(key: str, *, marker: bool = False, null: bool = True, latest: bool = True) -> VersionSummary:
    vid = VersionId("0" * 14 + "1" * 16)
    return VersionSummary(key, vid, null, latest, marker, 0 if marker else len(key), "" if marker else "e" * 32, AT)


def test_render_list_versions() -> None:
    page = VersionPage(entries=[vsummary("a+b é")], common_prefixes=["dir/"], is_truncated=True, next_key="dir/")
    body = render_list_versions("bk", "", "", "", 2, "/", page, Owner("me", "me"), "url")
    root = ET.fromstring(body)
    assert root.tag == f"{NS}ListVersionsResult"
    assert root.findtext(f"{NS}NextKeyMarker") == "dir/" and root.find(f"{NS}NextVersionIdMarker") is None
    version = root.find(f"{NS}Version")
    assert version is not None
    assert version.findtext(f"{NS}Key") == "a%2Bb+%C3%A9"
    assert version.findtext(f"{NS}VersionId") == "null" and version.findtext(f"{NS}IsLatest") == "true"
    assert version.findtext(f"{NS}ETag") == '"' + "e" * 32 + '"'
    entries = [vsummary("k", marker=True, null=False), vsummary("k", null=False, latest=False)]
    page = VersionPage(entries=entries, is_truncated=True, next_key="k", next_version="0" * 14 + "1" * 16)
    root = ET.fromstring(render_list_versions("bk", "", "", "", 2, "", page, Owner("me"), None))
    assert root.findtext(f"{NS}NextKeyMarker") == "k"
    assert root.findtext(f"{NS}NextVersionIdMarker") == "0" * 14 + "1" * 16
    assert root.find(f"{NS}Delimiter") is None
    # order kept: the marker first, then the version; a marker has no ETag, Size, StorageClass
    assert [local.tag.removeprefix(NS) for local in root if local.tag.endswith(("Version", "DeleteMarker"))] == [
        "DeleteMarker",
        "Version",
    ]
    marker = root.find(f"{NS}DeleteMarker")
    assert marker is not None and marker.find(f"{NS}ETag") is None and marker.findtext(f"{NS}IsLatest") == "true"


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    w = Warehouse.init(tmp_path / "dwh")
    try:
        yield w
    finally:
        w.close()


def test_list_page_on_a_warehouse(wh: Warehouse) -> None:
    wh.create_bucket("lst")
    keys = [f"{d}/{i}" for d in ("x", "y", "ü") for i in range(30)] + ["top", "x"]
    for key in keys:
        wh.put_object("lst", key, b"1")
    page = list_page(wh, "lst", "", "/", "", 1000)
    assert [o.key for o in page.contents] == ["top", "x"]
    assert page.common_prefixes == ["x/", "y/", "ü/"]
    page = list_page(wh, "lst", "y/", "/", "y/1", 5)
    assert [o.key for o in page.contents] == ["y/10", "y/11", "y/12", "y/13", "y/14"] and page.is_truncated
    wh.delete_object("lst", "y/10")
    assert list_page(wh, "lst", "y/", "", "y/1", 1).contents[0].key == "y/11"
    with pytest.raises(NoSuchBucket):
        list_page(wh, "nope", "", "", "", 0)
