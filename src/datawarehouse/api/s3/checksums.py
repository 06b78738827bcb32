"""S3 additional checksums (x-amz-checksum-*) and Content-MD5, as S3 computes and reports them.

Each algorithm is an incremental hasher (``new_checksum(...).update(...)``) whose result S3
reports base64-encoded: CRCs as big-endian unsigned integers of their width, SHAs as their raw
digests. CRC32 comes from zlib; CRC32C and CRC64NVME from ``awscrt`` — AWS's maintained native
runtime, the same implementation botocore uses for them — so there is no home-made CRC table.
Mismatches raise the S3 codes clients expect: ``BadDigest`` for a wrong value, ``InvalidDigest``
for an unusable Content-MD5, ``InvalidRequest`` for an unusable checksum header value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Final, Protocol

from awscrt import checksums as crt

from datawarehouse.api.s3.errors import bad_digest, invalid_digest, invalid_request
from datawarehouse.api.s3.xmlmodel import Checksums

Buffer = bytes | bytearray | memoryview


class ChecksumAlgorithm(StrEnum):
    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header(self) -> str:
        """The request/response header carrying this checksum: ``x-amz-checksum-crc32``..."""
        return f"x-amz-checksum-{self.value.lower()}"

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZES[self]


_DIGEST_SIZES: Final = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}


class Checksum(Protocol):
    """An incremental checksum; ``digest`` may be called at any point without ending it."""

    @property
    def algorithm(self) -> ChecksumAlgorithm: ...

    def update(self, data: Buffer) -> None: ...

    def digest(self) -> bytes: ...

    def b64digest(self) -> str: ...


class _Crc:
    __slots__ = ("_algorithm", "_step", "_value")

    def __init__(self, algorithm: ChecksumAlgorithm, step: Callable[[Buffer, int], int]) -> None:
        self._algorithm = algorithm
        self._step = step
        self._value = 0

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    def update(self, data: Buffer) -> None:
        self._value = self._step(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._algorithm.digest_size, "big")

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _Sha:
    __slots__ = ("_algorithm", "_hash")

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm.value.lower(), usedforsecurity=False)

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def _crc32(data: Buffer, value: int) -> int:
    return zlib.crc32(data, value) & 0xFFFFFFFF


def _crc32c(data: Buffer, value: int) -> int:
    return int(crt.crc32c(data, value))


def _crc64nvme(data: Buffer, value: int) -> int:
    return int(crt.crc64nvme(data, value))


_CRC_STEPS: Final[dict[ChecksumAlgorithm, Callable[[Buffer, int], int]]] = {
    ChecksumAlgorithm.CRC32: _crc32,
    ChecksumAlgorithm.CRC32C: _crc32c,
    ChecksumAlgorithm.CRC64NVME: _crc64nvme,
}

_CRC_COMBINE: Final[dict[ChecksumAlgorithm, Callable[[int, int, int], int]]] = {
    ChecksumAlgorithm.CRC32: crt.combine_crc32,
    ChecksumAlgorithm.CRC32C: crt.combine_crc32c,
    ChecksumAlgorithm.CRC64NVME: crt.combine_crc64nvme,
}


def new_checksum(algorithm: ChecksumAlgorithm) -> Checksum:
    step = _CRC_STEPS.get(algorithm)
    return _Crc(algorithm, step) if step is not None else _Sha(algorithm)


def stored_checksums(meta: Mapping[str, str]) -> Checksums:
    """The x-amz-checksum-* entries of stored headers, as the XML model reports them."""
    values = {alg.value.lower(): meta[alg.header] for alg in ChecksumAlgorithm if alg.header in meta}
    return Checksums(**values, checksum_type=meta.get("x-amz-checksum-type") if values else None)


def compute_checksum(algorithm: ChecksumAlgorithm, data: Buffer) -> str:
    """One-shot: the base64 value S3 would report for ``data``."""
    checksum = new_checksum(algorithm)
    checksum.update(data)
    return checksum.b64digest()


# --- naming ----------------------------------------------------------------------------------------


def parse_algorithm(name: str) -> ChecksumAlgorithm:
    """``x-amz-sdk-checksum-algorithm`` / ``x-amz-checksum-algorithm`` value -> algorithm."""
    try:
        return ChecksumAlgorithm(name.strip().upper())
    except ValueError:
        raise invalid_request("Checksum algorithm provided is unsupported.") from None


def algorithm_for_header(header_name: str) -> ChecksumAlgorithm | None:
    """``x-amz-checksum-crc32c`` -> CRC32C; any other header name -> None."""
    prefix = "x-amz-checksum-"
    name = header_name.lower()
    if not name.startswith(prefix):
        return None
    try:
        return ChecksumAlgorithm(name[len(prefix) :].upper())
    except ValueError:
        return None


# --- verification ----------------------------------------------------------------------------------


def decode_checksum_value(algorithm: ChecksumAlgorithm, value: str) -> bytes:
    """Decode a client-supplied base64 checksum; wrong base64 or length -> InvalidRequest."""
    raw = _b64decode(value)
    if raw is None or len(raw) != algorithm.digest_size:
        raise invalid_request(f"Value for {algorithm.header} header is invalid.")
    return raw


def verify_checksum(checksum: Checksum, expected_b64: str) -> None:
    """Compare the computed checksum with the client's value (BadDigest on mismatch)."""
    expected = decode_checksum_value(checksum.algorithm, expected_b64)
    if not hmac.compare_digest(expected, checksum.digest()):
        raise bad_digest(f"The {checksum.algorithm.value} you specified did not match the calculated checksum.")


def composite_checksum(algorithm: ChecksumAlgorithm, part_checksums_b64: Iterable[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' raw checksums, ``-<count>``."""
    outer = new_checksum(algorithm)
    count = 0
    for value in part_checksums_b64:
        outer.update(decode_checksum_value(algorithm, value))
        count += 1
    return f"{outer.b64digest()}-{count}"


def combine_crc(algorithm: ChecksumAlgorithm, first_b64: str, second_b64: str, second_size: int) -> str:
    """CRC of A||B from CRC(A), CRC(B) and len(B): S3's FULL_OBJECT multipart checksum, part by part."""
    combine = _CRC_COMBINE.get(algorithm)
    if combine is None:
        raise invalid_request(f"The {algorithm.value} algorithm cannot be combined; use a CRC.")
    size = algorithm.digest_size
    first = int.from_bytes(decode_checksum_value(algorithm, first_b64), "big")
    second = int.from_bytes(decode_checksum_value(algorithm, second_b64), "big")
    combined = int(combine(first, second, second_size))
    return base64.b64encode(combined.to_bytes(size, "big")).decode("ascii")


# --- Content-MD5 -----------------------------------------------------------------------------------


class Md5(Protocol):
    def update(self, data: Buffer, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def new_md5() -> Md5:
    """MD5 for ETags and Content-MD5 only: an integrity check, never security."""
    return hashlib.md5(usedforsecurity=False)


def decode_content_md5(header_value: str) -> bytes:
    """The 16 raw bytes of a Content-MD5 header; anything else -> InvalidDigest."""
    raw = _b64decode(header_value)
    if raw is None or len(raw) != 16:
        raise invalid_digest()
    return raw


def verify_content_md5(header_value: str, md5_digest: bytes) -> None:
    """Check the computed MD5 digest against the client's Content-MD5 (BadDigest on mismatch)."""
    expected = decode_content_md5(header_value)
    if not hmac.compare_digest(expected, md5_digest):
        raise bad_digest("The Content-MD5 you specified did not match what we received.")


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
