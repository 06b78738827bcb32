"""Reading a request body: decode aws-chunked, count, and verify every digest the client gave.

Pieces are handed out as they arrive so an upload streams through the engine; ``verify`` must be
called after the last piece and before anything is committed — a mismatch there (SHA-256,
Content-MD5, an x-amz-checksum-* header or trailer, a short body) aborts the upload, so a corrupted
or truncated body never becomes an object.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from datawarehouse.api.numbers import whole_number
from datawarehouse.api.s3 import checksums
from datawarehouse.api.s3.chunked import ChunkedDecoder, parse_trailer_header
from datawarehouse.api.s3.errors import (
    content_sha256_mismatch,
    entity_too_large,
    incomplete_body,
    invalid_argument,
    invalid_request,
    missing_content_length,
)
from datawarehouse.api.s3.http import Request
from datawarehouse.api.s3.sigv4 import AuthResult, PayloadMode

BATCH_SIZE = 1024 * 1024  # hand the engine ~1 MiB at a time: one thread hop per MiB, not per packet


@dataclass
class BodyResult:
    size: int
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm name -> base64, verified


class BodyReader:
    def __init__(
        self, request: Request, auth: AuthResult | None, max_size: int, *, checksum_headers: bool = True
    ) -> None:
        """``checksum_headers=False``: x-amz-checksum-* headers describe something else than this
        body (CompleteMultipartUpload: the object) and are not checked against it."""
        self._request = request
        self._auth = auth
        self._max = max_size
        self._size = 0
        self._received = 0
        self._sha256 = hashlib.sha256() if auth is not None and auth.payload_mode is PayloadMode.SHA256 else None
        self._decoder: ChunkedDecoder | None = None
        headers = request.headers
        length = headers.get("content-length")
        self._length: int | None = None
        if length is not None:
            self._length = whole_number(length)
            if self._length is None:
                raise invalid_argument("Content-Length must be a non-negative integer", name="Content-Length")
        elif "chunked" not in headers.get("transfer-encoding", "").lower() and request.method in ("PUT", "POST"):
            raise missing_content_length()
        if auth is not None and auth.payload_mode.is_streaming:
            decoded = headers.get("x-amz-decoded-content-length")
            if decoded is not None and whole_number(decoded) is None:
                raise invalid_argument("x-amz-decoded-content-length must be an integer")
            trailer = headers.get("x-amz-trailer")
            self._decoder = ChunkedDecoder(
                auth.payload_mode,
                auth.signing,
                decoded_content_length=int(decoded) if decoded is not None else None,
                declared_trailers=parse_trailer_header(trailer) if trailer else None,
            )
            if decoded is not None and int(decoded) > max_size:
                raise entity_too_large(max_size, int(decoded))
        elif self._length is not None and self._length > max_size:
            raise entity_too_large(max_size, self._length)
        self._checks: dict[checksums.ChecksumAlgorithm, checksums.Checksum] = {}
        self._expected: dict[checksums.ChecksumAlgorithm, str] = {}
        for name, value in headers.items() if checksum_headers else ():
            alg = checksums.algorithm_for_header(name)
            if alg is not None:
                checksums.decode_checksum_value(alg, value)  # malformed -> InvalidRequest now
                self._checks[alg] = checksums.new_checksum(alg)
                self._expected[alg] = value
        trailer_names = parse_trailer_header(headers.get("x-amz-trailer", ""))
        for name in trailer_names:
            alg = checksums.algorithm_for_header(name)
            if alg is None:
                raise invalid_request(f"unsupported trailer {name}")
            self._checks.setdefault(alg, checksums.new_checksum(alg))
        sdk_alg = headers.get("x-amz-sdk-checksum-algorithm")
        if sdk_alg:
            alg = checksums.parse_algorithm(sdk_alg)
            self._checks.setdefault(alg, checksums.new_checksum(alg))
        self._content_md5 = headers.get("content-md5")
        self._md5 = None
        if self._content_md5 is not None:
            checksums.decode_content_md5(self._content_md5)  # malformed -> InvalidDigest now
            self._md5 = hashlib.md5(usedforsecurity=False)

    def _take(self, piece: bytes | memoryview) -> None:
        self._size += len(piece)
        if self._size > self._max:
            raise entity_too_large(self._max, self._size)
        if self._sha256 is not None:
            self._sha256.update(piece)
        if self._md5 is not None:
            self._md5.update(piece)
        for check in self._checks.values():
            check.update(piece)

    async def pieces(self) -> AsyncIterator[bytes]:
        """Payload bytes in batches of about ``BATCH_SIZE``."""
        batch: list[bytes | memoryview] = []
        batched = 0
        async for raw in self._request.raw_body():
            self._received += len(raw)
            if self._length is not None and self._received > self._length:
                raise invalid_request("the body is longer than Content-Length")
            out = self._decoder.feed(raw) if self._decoder is not None else [raw]
            for piece in out:
                self._take(piece)
                batch.append(bytes(piece) if isinstance(piece, memoryview) else piece)
                batched += len(piece)
            if batched >= BATCH_SIZE:
                yield b"".join(batch)
                batch, batched = [], 0
        if batch:
            yield b"".join(batch)
        if self._length is not None and self._received < self._length:
            raise incomplete_body(f"received {self._received} of the {self._length} bytes announced")

    async def read_all(self, limit: int) -> bytes:
        """A small body (XML documents) as bytes; refuses more than ``limit`` bytes early."""
        parts = []
        async for piece in self.pieces():
            parts.append(piece)
            if sum(len(p) for p in parts) > limit:
                from datawarehouse.api.s3.errors import malformed_xml

                raise malformed_xml(f"the request body exceeds {limit} bytes")
        self.verify()
        return b"".join(parts)

    def verify(self) -> BodyResult:
        """Check every digest the client gave; raise the S3 error of the first that fails."""
        if self._decoder is not None:
            self._decoder.finish()
        if self._sha256 is not None and self._auth is not None and self._auth.payload_sha256 is not None:
            computed = self._sha256.hexdigest()
            if not hmac.compare_digest(computed, self._auth.payload_sha256):
                raise content_sha256_mismatch(self._auth.payload_sha256, computed)
        if self._content_md5 is not None and self._md5 is not None:
            checksums.verify_content_md5(self._content_md5, self._md5.digest())
        trailers = self._decoder.trailers if self._decoder is not None else {}
        result = BodyResult(self._size)
        for alg, check in self._checks.items():
            expected = self._expected.get(alg) or trailers.get(alg.header)
            if expected is not None:
                checksums.verify_checksum(check, expected)
            result.checksums[alg.value] = check.b64digest()
        return result
