"""Listing end to end with boto3 against a real ``dwh serve``: ListObjects v1/v2 and
ListObjectVersions over ~2,500 keys (unicode in and beyond the BMP, control characters, URL
specials), through botocore's paginators with prefixes, delimiters and page sizes, in UTF-8
binary order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from botocore.exceptions import ClientError
from s3http import assert_s3_error, code, signed
from s3server import DwhServer, unique_bucket

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

KEYS = sorted(
    {
        *(f"photos/2024/{m:02d}/img{i:03d}.jpg" for m in range(1, 13) for i in range(100)),
        *(f"logs/{d:02d}/part-{i:04d}" for d in range(12) for i in range(100)),
        *(f"ünïcödé/{i}" for i in range(40)),
        *(f"日本/ファイル{i}" for i in range(40)),
        # U+E000 sorts before U+1F600 in UTF-8 (and code point) order, after it in UTF-16 order.
        *(f"\ue000private/{i}" for i in range(20)),
        *(f"😀emoji/{i}" for i in range(20)),
        *(f"specials/{name}" for name in ("a b", "a+b", "a%20b", "a&b", "a<b>", "q?x=1", "h#frag", "semi;colon")),
        "ctl/tab\there",
        "ctl/\x01start",
        "ctl/cr\rhere",
        "a",
        "a/",
        "a//b",
        "z",
        "~tilde",
    },
    key=lambda k: k.encode("utf-8"),
)


def utf8_sorted(items: Any) -> list[str]:
    return sorted(items, key=lambda k: k.encode("utf-8"))


@pytest.fixture(scope="module")
def full(s3: Any) -> str:
    """One bucket holding KEYS (each object's body is its key)."""
    name = unique_bucket("list")
    s3.create_bucket(Bucket=name)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=k.encode()), KEYS))
    return name


def entries(pages: list[dict[str, Any]], item: str = "Contents") -> tuple[list[str], list[str]]:
    keys = [o["Key"] for p in pages for o in p.get(item, [])]
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    return keys, prefixes


def expected(prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    keys, prefixes = [], []
    for k in KEYS:
        if not k.startswith(prefix):
            continue
        cut = k.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            keys.append(k)
        elif (p := k[: cut + len(delimiter)]) not in prefixes:
            prefixes.append(p)
    return keys, prefixes


def test_key_set_is_large_and_awkward() -> None:
    assert 2400 <= len(KEYS) <= 2600
    assert KEYS != sorted(KEYS, key=lambda k: k.encode("utf-16-be"))  # the order really is UTF-8's


@pytest.mark.s3op("ListObjectsV2", note="continuation-token (opaque), start-after, KeyCount, fetch-owner")
@pytest.mark.parametrize("page_size", [1000, 333, 7])
def test_v2_paginates_everything_in_utf8_order(s3: Any, full: str, page_size: int) -> None:
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=full, PaginationConfig={"PageSize": page_size}))
    keys, _ = entries(pages)
    assert keys == KEYS
    assert len(pages) == -(-len(KEYS) // page_size)
    assert all(p["KeyCount"] == len(p.get("Contents", [])) for p in pages)
    assert all(p["IsTruncated"] for p in pages[:-1]) and not pages[-1]["IsTruncated"]
    token = pages[0].get("NextContinuationToken")
    assert token and token != KEYS[page_size - 1]  # opaque, not the key itself


@pytest.mark.s3op(
    "ListObjects", note="prefix, delimiter/CommonPrefixes, marker, NextMarker only with a delimiter, max-keys"
)
@pytest.mark.parametrize("page_size", [1000, 250])
def test_v1_paginates_everything(s3: Any, full: str, page_size: int) -> None:
    pages = list(s3.get_paginator("list_objects").paginate(Bucket=full, PaginationConfig={"PageSize": page_size}))
    keys, _ = entries(pages)
    assert keys == KEYS
    assert all("NextMarker" not in p for p in pages)  # without a delimiter S3 sends no NextMarker
    r = s3.list_objects(Bucket=full, Marker=KEYS[99], MaxKeys=5)
    assert [o["Key"] for o in r["Contents"]] == KEYS[100:105] and r["Marker"] == KEYS[99]


@pytest.mark.parametrize(
    ("prefix", "delimiter", "page_size"),
    [
        ("", "/", 1000),
        ("", "/", 3),
        ("photos/", "/", 1000),
        ("photos/2024/", "/", 5),
        ("photos/2024/07/", "/", 30),
        ("logs/", "/", 4),
        ("logs/0", "/", 1000),
        ("", "2024", 1000),
        ("photos/2024/0", "/img", 4),
        ("a", "/", 1),
        ("specials/", "/", 3),
        ("日本/", "/", 7),
        ("nothing-here/", "/", 1000),
    ],
)
def test_prefix_and_delimiter_pages(s3: Any, full: str, prefix: str, delimiter: str, page_size: int) -> None:
    want = expected(prefix, delimiter)
    for op in ("list_objects_v2", "list_objects"):
        pages = list(
            s3.get_paginator(op).paginate(
                Bucket=full, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": page_size}
            )
        )
        assert entries(pages) == want, op
        assert all(len(p.get("Contents", [])) + len(p.get("CommonPrefixes", [])) <= page_size for p in pages)
        # Every page is full but the last (the truncation flag is exact).
        sizes = [len(p.get("Contents", [])) + len(p.get("CommonPrefixes", [])) for p in pages]
        assert all(s == page_size for s in sizes[:-1]), (op, sizes)
        if op == "list_objects":
            for page in pages[:-1]:
                assert page["IsTruncated"] and "NextMarker" in page


def merged(prefix: str, delimiter: str) -> list[str]:
    keys, prefixes = expected(prefix, delimiter)
    return utf8_sorted(keys + prefixes)


def test_top_level_view(s3: Any, full: str) -> None:
    r = s3.list_objects_v2(Bucket=full, Delimiter="/")
    prefixes = [p["Prefix"] for p in r["CommonPrefixes"]]
    assert prefixes == [
        "a/",
        "ctl/",
        "logs/",
        "photos/",
        "specials/",
        "ünïcödé/",
        "日本/",
        "\ue000private/",
        "😀emoji/",
    ]
    assert [o["Key"] for o in r["Contents"]] == ["a", "z", "~tilde"]
    assert r["KeyCount"] == len(prefixes) + 3 and not r["IsTruncated"]


def test_start_after_and_tokens(s3: Any, full: str) -> None:
    r = s3.list_objects_v2(Bucket=full, StartAfter="photos/2024/12/img097.jpg", Prefix="photos/")
    assert [o["Key"] for o in r["Contents"]] == ["photos/2024/12/img098.jpg", "photos/2024/12/img099.jpg"]
    assert r["StartAfter"] == "photos/2024/12/img097.jpg"
    # A continuation token wins over start-after.
    first = s3.list_objects_v2(Bucket=full, MaxKeys=2)
    again = s3.list_objects_v2(Bucket=full, MaxKeys=2, StartAfter="z", ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in again["Contents"]] == KEYS[2:4]
    # Resuming after a common prefix does not repeat it.
    top = merged("", "/")
    page = s3.list_objects_v2(Bucket=full, Delimiter="/", MaxKeys=2)
    assert [o["Key"] for o in page["Contents"]] + [p["Prefix"] for p in page["CommonPrefixes"]] == top[:2]
    assert top[:2] == ["a", "a/"] and page["IsTruncated"]
    nxt = s3.list_objects_v2(Bucket=full, Delimiter="/", MaxKeys=2, ContinuationToken=page["NextContinuationToken"])
    assert [p["Prefix"] for p in nxt["CommonPrefixes"]] == top[2:4] == ["ctl/", "logs/"]
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=full, ContinuationToken="%%%not-base64")
    assert code(exc) == "InvalidArgument"


def test_fetch_owner(s3: Any, full: str) -> None:
    plain = s3.list_objects_v2(Bucket=full, Prefix="z")["Contents"][0]
    assert "Owner" not in plain and plain["Size"] == 1 and plain["ETag"].startswith('"')
    owned = s3.list_objects_v2(Bucket=full, Prefix="z", FetchOwner=True)["Contents"][0]
    assert owned["Owner"]["ID"] and owned["StorageClass"] == "STANDARD"
    assert "Owner" in s3.list_objects(Bucket=full, Prefix="z")["Contents"][0]  # v1 always has it


def test_max_keys_limits(s3: Any, full: str) -> None:
    r = s3.list_objects_v2(Bucket=full, MaxKeys=0)
    assert r["KeyCount"] == 0 and "Contents" not in r and not r["IsTruncated"]
    r = s3.list_objects(Bucket=full, MaxKeys=0)
    assert "Contents" not in r and not r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=full, MaxKeys=5000)
    assert r["KeyCount"] == 1000 and r["MaxKeys"] == 1000 and r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=full)
    assert r["KeyCount"] == 1000 and r["MaxKeys"] == 1000


def test_bad_parameters(dwh_server: DwhServer, full: str) -> None:
    for query in ("list-type=2&max-keys=-1", "max-keys=abc", "list-type=2&max-keys=%C2%B2", "encoding-type=base64"):
        assert_s3_error(signed(dwh_server, "GET", f"/{full}?{query}"), 400, "InvalidArgument")
    for query in ("versions&version-id-marker=null", "versions&key-marker=a&version-id-marker=3HL4kqtJlcpXroDTDmJ"):
        assert_s3_error(signed(dwh_server, "GET", f"/{full}?{query}"), 400, "InvalidArgument")


def test_encoding_type_url_on_the_wire(dwh_server: DwhServer, full: str) -> None:
    """Explicit encoding-type=url: keys, prefixes, markers and the delimiter are form-encoded."""
    reply = signed(dwh_server, "GET", f"/{full}?encoding-type=url&prefix=specials%2F&delimiter=%3C&marker=specials%2Fa")
    assert reply.status == 200, reply.body
    root = ET.fromstring(reply.body)
    assert root.findtext(f"{NS}EncodingType") == "url"
    assert root.findtext(f"{NS}Prefix") == "specials/" and root.findtext(f"{NS}Delimiter") == "%3C"
    keys = [e.findtext(f"{NS}Key") for e in root.iter(f"{NS}Contents")]
    prefixes = [e.findtext(f"{NS}Prefix") for e in root.iter(f"{NS}CommonPrefixes")]
    assert prefixes == ["specials/a%3C"]
    assert [unquote_plus(k or "") for k in keys] == [k for k in expected("specials/", "<")[0] if k > "specials/a"]
    assert "specials/a+b" in keys and "specials/a%2Bb" in keys and "specials/a%2520b" in keys
    reply = signed(dwh_server, "GET", f"/{full}?list-type=2&encoding-type=url&prefix={quote('ctl/', safe='')}")
    keys = [e.findtext(f"{NS}Key") for e in ET.fromstring(reply.body).iter(f"{NS}Contents")]
    assert keys == ["ctl/%01start", "ctl/cr%0Dhere", "ctl/tab%09here"]


def test_without_encoding_type_keys_come_back_as_xml_can_carry_them(dwh_server: DwhServer, full: str) -> None:
    """A tab and a carriage return survive (the latter as ``&#13;``, which parsers keep); a
    control character XML 1.0 cannot carry is replaced, as S3 advises asking for encoding."""
    reply = signed(dwh_server, "GET", f"/{full}?list-type=2&prefix=ctl%2F")
    assert reply.status == 200, reply.body
    keys = [e.findtext(f"{NS}Key") for e in ET.fromstring(reply.body).iter(f"{NS}Contents")]
    assert keys == ["ctl/\ufffdstart", "ctl/cr\rhere", "ctl/tab\there"]


def test_botocore_decodes_what_it_asked_to_be_encoded(s3: Any, full: str) -> None:
    # boto3 asks for encoding-type=url by itself and decodes, so control characters survive XML.
    r = s3.list_objects_v2(Bucket=full, Prefix="ctl/")
    assert [o["Key"] for o in r["Contents"]] == ["ctl/\x01start", "ctl/cr\rhere", "ctl/tab\there"]
    body = s3.get_object(Bucket=full, Key="ctl/\x01start")["Body"].read()
    assert body == b"ctl/\x01start"


@pytest.mark.s3op(
    "ListObjectVersions",
    note="a bucket never versioned: each object once, VersionId null, IsLatest; "
    "key-marker/version-id-marker, prefix, delimiter, max-keys",
)
def test_list_object_versions(s3: Any, full: str) -> None:
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=full, PaginationConfig={"PageSize": 400}))
    versions = [v for p in pages for v in p.get("Versions", [])]
    assert [v["Key"] for v in versions] == KEYS
    assert {v["VersionId"] for v in versions} == {"null"} and all(v["IsLatest"] for v in versions)
    assert all("DeleteMarkers" not in p for p in pages)
    assert pages[0]["NextKeyMarker"] == KEYS[399] and pages[0]["NextVersionIdMarker"] == "null"
    pages = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=full, Prefix="photos/2024/", Delimiter="/", PaginationConfig={"PageSize": 5}
        )
    )
    assert entries(pages, "Versions") == expected("photos/2024/", "/")
    r = s3.list_object_versions(Bucket=full, KeyMarker="z", VersionIdMarker="null")
    assert [v["Key"] for v in r["Versions"]] == [k for k in KEYS if k.encode() > b"z"]


def test_listing_follows_writes_and_deletes(s3: Any, bucket: str) -> None:
    for key in ("k1", "k2", "k3"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"longer")  # an overwrite lists once, new size
    s3.delete_object(Bucket=bucket, Key="k1")
    r = s3.list_objects_v2(Bucket=bucket)
    assert [(o["Key"], o["Size"]) for o in r["Contents"]] == [("k2", 6), ("k3", 1)]
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == ["k2", "k3"]
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=unique_bucket("none"))
    assert code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=unique_bucket("none"))
    assert code(exc) == "NoSuchBucket"
