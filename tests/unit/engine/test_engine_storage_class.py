"""Storage class parsing, validation and the default by number of disks."""

from __future__ import annotations

import pytest

from datawarehouse.errors import InvalidStorageClass
from datawarehouse.records import StorageClass, default_storage_class, parse_storage_class


@pytest.mark.parametrize(
    "text,disks,expected",
    [
        ("EC(4,2)", 6, (4, 2)),
        ("ec( 4 , 2 )", 6, (4, 2)),
        ("4+2", 6, (4, 2)),
        (" 2+1 ", 3, (2, 1)),
        ("8+4", 12, (8, 4)),
        ("EC(1,0)", 1, (1, 0)),
        ("replica-1", 1, (1, 0)),
        ("replica-2", 6, (1, 1)),
        ("replica-3", 6, (1, 2)),
        ("Replica-3", 6, (1, 2)),
        ("replica-5", 6, (1, 4)),
        ("raid1", 6, (1, 1)),
        ("RAID1", 2, (1, 1)),
        ("raid5", 6, (5, 1)),
        ("raid5", 3, (2, 1)),
        ("raid5", 1, (1, 1)),
        ("raid6", 6, (4, 2)),
        ("raid6", 12, (10, 2)),
        ("raid6", 3, (1, 2)),
        ("raidz3", 6, (3, 3)),
        ("raid-z3", 8, (5, 3)),
    ],
)
def test_parse(text: str, disks: int, expected: tuple[int, int]) -> None:
    assert parse_storage_class(text, disks) == StorageClass(*expected)


@pytest.mark.parametrize(
    "text,words",
    [
        ("", ["expected"]),
        ("ec(4)", ["expected"]),
        ("4+", ["expected"]),
        ("+2", ["expected"]),
        ("a+b", ["expected"]),
        ("4-2", ["expected"]),
        ("4+2+1", ["expected"]),
        ("replica-x", ["expected"]),
        ("raid7", ["raid7"]),
        ("replica-0", ["m must be >= 0"]),
        ("EC(0,2)", ["k must be >= 1"]),
        ("4+0", ["EC(4,0)", "replica-1"]),
        ("20+20", ["<= 32"]),
        ("6+5", ["EC(6,5)", "cannot recover"]),
    ],
)
def test_parse_refuses(text: str, words: list[str]) -> None:
    with pytest.raises(InvalidStorageClass) as exc:
        parse_storage_class(text, 6)
    for w in words:
        assert w in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    "count,expected",
    [
        (1, (1, 0)),
        (2, (1, 1)),
        (3, (2, 1)),
        (4, (2, 2)),
        (5, (2, 2)),
        (6, (4, 2)),
        (11, (4, 2)),
        (12, (8, 4)),
        (40, (8, 4)),
    ],
)
def test_default_by_disk_count(count: int, expected: tuple[int, int]) -> None:
    sc = default_storage_class(count)
    assert sc == StorageClass(*expected)
    sc.check_fits(count)  # the default always fits its disk set


def test_default_needs_a_disk() -> None:
    with pytest.raises(InvalidStorageClass):
        default_storage_class(0)


def test_check_fits() -> None:
    StorageClass(4, 2).check_fits(6)
    StorageClass(4, 2).check_fits(7)
    with pytest.raises(InvalidStorageClass) as exc:
        StorageClass(4, 2).check_fits(5)
    assert "needs 6 distinct disks, only 5" in str(exc.value)
    with pytest.raises(InvalidStorageClass):
        StorageClass(1, 2).check_fits(2)


def test_str_and_n() -> None:
    sc = StorageClass(8, 4)
    assert (str(sc), sc.n) == ("EC(8,4)", 12)
