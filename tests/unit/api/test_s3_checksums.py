"""S3 additional checksums: published check values, and botocore's implementations as reference."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.httpchecksum import (
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from datawarehouse.api.s3.checksums import (
    ChecksumAlgorithm,
    algorithm_for_header,
    combine_crc,
    composite_checksum,
    compute_checksum,
    decode_checksum_value,
    decode_content_md5,
    new_checksum,
    new_md5,
    parse_algorithm,
    verify_checksum,
    verify_content_md5,
)
from datawarehouse.api.s3.errors import S3Error

A = ChecksumAlgorithm
CHECK_INPUT = b"123456789"

# The catalogue "check" values (CRC RevEng) and FIPS digests of "123456789".
KNOWN = {
    A.CRC32: 0xCBF43926.to_bytes(4, "big"),
    A.CRC32C: 0xE3069283.to_bytes(4, "big"),
    A.CRC64NVME: 0xAE8B14860A799888.to_bytes(8, "big"),
    A.SHA1: bytes.fromhex("f7c3bc1d808e04732adf679965ccc34ca7ae3441"),
    A.SHA256: bytes.fromhex("15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"),
}

BOTOCORE = {
    A.CRC32: Crc32Checksum,
    A.CRC32C: CrtCrc32cChecksum,
    A.CRC64NVME: CrtCrc64NvmeChecksum,
    A.SHA1: Sha1Checksum,
    A.SHA256: Sha256Checksum,
}


@pytest.mark.parametrize("algorithm", list(A))
def test_known_check_values(algorithm: ChecksumAlgorithm) -> None:
    checksum = new_checksum(algorithm)
    checksum.update(CHECK_INPUT)
    assert checksum.digest() == KNOWN[algorithm]
    assert checksum.b64digest() == base64.b64encode(KNOWN[algorithm]).decode()
    assert compute_checksum(algorithm, CHECK_INPUT) == checksum.b64digest()
    assert len(checksum.digest()) == algorithm.digest_size


@pytest.mark.parametrize("algorithm", list(A))
def test_empty_input(algorithm: ChecksumAlgorithm) -> None:
    reference = BOTOCORE[algorithm]()
    assert compute_checksum(algorithm, b"") == reference.b64digest()


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=6), algorithm=st.sampled_from(list(A))
)
def test_incremental_matches_botocore(data: bytes, cuts: list[int], algorithm: ChecksumAlgorithm) -> None:
    ours = new_checksum(algorithm)
    reference = BOTOCORE[algorithm]()
    reference.update(data)
    start = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        ours.update(memoryview(data)[start:cut])
        start = cut
    assert ours.b64digest() == reference.b64digest()


def test_digest_does_not_end_the_checksum() -> None:
    checksum = new_checksum(A.SHA256)
    checksum.update(b"1234")
    checksum.digest()
    checksum.update(b"56789")
    assert checksum.digest() == KNOWN[A.SHA256]


def test_header_names_and_parsing() -> None:
    assert A.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert algorithm_for_header("X-Amz-Checksum-CRC32C") is A.CRC32C
    assert algorithm_for_header("x-amz-checksum-md5") is None
    assert algorithm_for_header("content-md5") is None
    assert parse_algorithm(" crc32 ") is A.CRC32
    with pytest.raises(S3Error) as caught:
        parse_algorithm("MD5")
    assert caught.value.code == "InvalidRequest"


@pytest.mark.parametrize("value", ["", "not base64!", "AAAA", "AAAAAAAA", "AAAAAA==x", "ü"])
def test_invalid_checksum_values(value: str) -> None:
    with pytest.raises(S3Error) as caught:
        decode_checksum_value(A.CRC32, value)
    assert caught.value.code == "InvalidRequest"


def test_verify_checksum() -> None:
    checksum = new_checksum(A.CRC32C)
    checksum.update(CHECK_INPUT)
    verify_checksum(checksum, base64.b64encode(KNOWN[A.CRC32C]).decode())
    with pytest.raises(S3Error) as caught:
        verify_checksum(checksum, "AAAAAA==")
    assert caught.value.code == "BadDigest"


def test_composite_checksum() -> None:
    parts = [b"part one", b"part two", b"three"]
    values = [compute_checksum(A.SHA256, p) for p in parts]
    inner = b"".join(hashlib.sha256(p).digest() for p in parts)
    expected = base64.b64encode(hashlib.sha256(inner).digest()).decode() + "-3"
    assert composite_checksum(A.SHA256, values) == expected


@settings(max_examples=40, deadline=None)
@given(
    first=st.binary(max_size=2000),
    second=st.binary(max_size=2000),
    algorithm=st.sampled_from([A.CRC32, A.CRC32C, A.CRC64NVME]),
)
def test_combine_crc_equals_crc_of_concatenation(first: bytes, second: bytes, algorithm: ChecksumAlgorithm) -> None:
    combined = combine_crc(
        algorithm, compute_checksum(algorithm, first), compute_checksum(algorithm, second), len(second)
    )
    assert combined == compute_checksum(algorithm, first + second)


def test_combine_refuses_sha() -> None:
    value = compute_checksum(A.SHA1, b"x")
    with pytest.raises(S3Error):
        combine_crc(A.SHA1, value, value, 1)


def test_content_md5() -> None:
    md5 = new_md5()
    md5.update(b"")
    verify_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==", md5.digest())
    assert decode_content_md5(" 1B2M2Y8AsgTpgAmY7PhCfg== ") == md5.digest()
    with pytest.raises(S3Error) as caught:
        verify_content_md5(base64.b64encode(b"\0" * 16).decode(), md5.digest())
    assert caught.value.code == "BadDigest"
    for bad in ["", "zzz", base64.b64encode(b"\0" * 15).decode(), "1B2M2Y8AsgTpgAmY7PhCfg=!"]:
        with pytest.raises(S3Error) as caught:
            decode_content_md5(bad)
        assert caught.value.code == "InvalidDigest"
