"""Bucket and key name rules (the S3 ones)."""

from __future__ import annotations

import pytest

from datawarehouse.errors import InvalidBucketName, InvalidKey
from datawarehouse.service.naming import MAX_KEY_BYTES, check_bucket_name, check_key


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 63, "my-bucket", "my.bucket", "0bucket9", "1.2.3", "b-1.c-2", "xn-bucket", "bucket-s3", "123"],
)
def test_valid_bucket_names(name: str) -> None:
    assert check_bucket_name(name) == name


@pytest.mark.parametrize(
    "name,why",
    [
        ("", "3-63"),
        ("ab", "3-63"),
        ("a" * 64, "3-63"),
        ("Bucket", "lowercase"),
        ("bucket_name", "lowercase"),
        ("bucket name", "lowercase"),
        ("bück", "lowercase"),
        ("-bucket", "starting"),
        ("bucket-", "ending"),
        (".bucket", "starting"),
        ("bucket.", "ending"),
        ("my..bucket", "'.'"),
        ("my.-bucket", "'.'"),
        ("my-.bucket", "'.'"),
        ("192.168.1.1", "IP address"),
        ("10.0.0.255", "IP address"),
        ("xn--bucket", "reserved"),
        ("sthree-bucket", "reserved"),
        ("bucket-s3alias", "reserved"),
        ("bucket--ol-s3", "reserved"),
        ("bucket\n", "3-63"),
    ],
)
def test_invalid_bucket_names(name: str, why: str) -> None:
    with pytest.raises(InvalidBucketName) as exc:
        check_bucket_name(name)
    assert str(exc.value).startswith("bucket name:")
    assert why in str(exc.value)


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "x" * MAX_KEY_BYTES,
        "é" * (MAX_KEY_BYTES // 2),
        "😀" * (MAX_KEY_BYTES // 4),
        "a/b/c",
        "/leading/slash",
        "../../etc/passwd",
        "spaces and\ttabs\nnewlines",
        "\x00nul",
        ".",
    ],
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key,why",
    [
        ("", "1..1024"),
        ("x" * (MAX_KEY_BYTES + 1), "1..1024"),
        ("é" * (MAX_KEY_BYTES // 2) + "x", "1..1024"),  # 1025 bytes though 513 characters
        ("😀" * (MAX_KEY_BYTES // 4 + 1), "1..1024"),
        ("lone \ud800 surrogate", "UTF-8"),
    ],
)
def test_invalid_keys(key: str, why: str) -> None:
    with pytest.raises(InvalidKey) as exc:
        check_key(key)
    assert why in str(exc.value)


def test_admin_is_reserved_for_the_admin_api() -> None:
    import pytest as _pytest

    from datawarehouse.errors import InvalidBucketName as _Invalid
    from datawarehouse.service.naming import check_bucket_name as _check

    with _pytest.raises(_Invalid, match="reserved"):
        _check("admin")
    assert _check("admins") == "admins"
