"""Incremental decoder for ``aws-chunked`` request bodies (SigV4 streaming uploads).

Wire format, one variant per ``x-amz-content-sha256`` streaming mode::

    signed:    <hex-size>;chunk-signature=<sig>\\r\\n<data>\\r\\n ... 0;chunk-signature=<sig>\\r\\n
    unsigned:  <hex-size>\\r\\n<data>\\r\\n ... 0\\r\\n
    then trailer lines (``x-amz-checksum-crc32:<b64>\\r\\n``; the signed-trailer variant ends them
    with ``x-amz-trailer-signature:<sig>\\r\\n``) and an empty line.

Each chunk signature chains the previous one, starting from the request's seed signature, so
chunks can be neither altered, reordered, dropped nor appended. Bytes are fed as they arrive,
split anywhere; ``feed`` returns payload pieces and ``finish`` confirms the body ended properly.

Release rules. Unsigned variants release data as it arrives (pieces may be views into the buffer
passed to ``feed``: consume them before mutating that buffer). Signed chunks are released only
after their signature verified, so at most one chunk (``max_chunk_size``) is ever held. Either
way every piece is *provisional* until ``finish`` returns: a later error (a bad signature, a
truncated body, a missing trailer) voids the whole upload and the caller must discard it.

Everything is bounded: a chunk header line, the trailer section and a chunk's size. Framing
errors raise IncompleteBody, limits and protocol misuse InvalidRequest, signature failures
SignatureDoesNotMatch. After any error the decoder refuses further use.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from enum import Enum, auto
from typing import Final

from datawarehouse.api.s3.errors import (
    S3Error,
    incomplete_body,
    invalid_request,
    signature_does_not_match,
)
from datawarehouse.api.s3.signing import SigningContext, signatures_equal
from datawarehouse.api.s3.sigv4 import PayloadMode

MAX_LINE_SIZE: Final = 4 * 1024
MAX_TRAILER_SIZE: Final = 16 * 1024
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024

Buffer = bytes | bytearray | memoryview
Piece = bytes | memoryview

_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE_PREFIX: Final = b"chunk-signature="
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"


class _State(Enum):
    HEADER = auto()
    DATA = auto()
    DATA_END = auto()
    TRAILER = auto()
    DONE = auto()
    FAILED = auto()


def parse_trailer_header(value: str) -> frozenset[str]:
    """``x-amz-trailer: x-amz-checksum-crc32, ...`` -> the declared trailer names, lower-cased."""
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


class ChunkedDecoder:
    """Decode one aws-chunked body. Not thread-safe; one instance per request."""

    def __init__(
        self,
        mode: PayloadMode,
        signing: SigningContext | None = None,
        *,
        decoded_content_length: int | None = None,
        declared_trailers: Collection[str] | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        max_line_size: int = MAX_LINE_SIZE,
        max_trailer_size: int = MAX_TRAILER_SIZE,
    ) -> None:
        if not mode.is_streaming:
            raise ValueError(f"{mode} is not an aws-chunked payload mode")
        self._signed = mode in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)
        if self._signed and signing is None:
            raise ValueError(f"{mode} needs the request's SigningContext")
        self._mode = mode
        self._signing = signing
        self._previous = signing.seed_signature if signing is not None else ""
        self._expected_size = decoded_content_length
        self._declared = frozenset(declared_trailers) if declared_trailers is not None else None
        self._max_chunk = max_chunk_size
        self._max_line = max_line_size
        self._max_trailer = max_trailer_size
        self._state = _State.HEADER
        self._line = bytearray()
        self._remaining = 0
        self._chunk = bytearray()
        self._filled = 0
        self._hasher = hashlib.sha256()
        self._chunk_signature = ""
        self._crlf_seen = 0
        self._decoded = 0
        self._trailer_bytes = 0
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None

    def __repr__(self) -> str:
        return f"ChunkedDecoder(mode={self._mode}, state={self._state.name}, decoded={self._decoded})"

    @property
    def trailers(self) -> dict[str, str]:
        """Trailer headers received (lower-cased names), without x-amz-trailer-signature."""
        return dict(self._trailers)

    @property
    def decoded_size(self) -> int:
        return self._decoded

    # --- feeding ---------------------------------------------------------------------------------

    def feed(self, data: Buffer) -> list[Piece]:
        """Consume the next bytes of the body; return the payload bytes they complete."""
        if self._state is _State.FAILED:
            raise invalid_request("The chunked body was already refused.")
        view = memoryview(data).cast("B")
        out: list[Piece] = []
        try:
            pos = 0
            while pos < len(view):
                pos = self._step(view, pos, out)
        except S3Error:
            self._state = _State.FAILED
            self._chunk = bytearray()
            raise
        return out

    def finish(self) -> int:
        """Confirm the body ended where it should; return the decoded payload size."""
        if self._state is _State.FAILED:
            raise invalid_request("The chunked body was already refused.")
        if self._state is not _State.DONE:
            self._state = _State.FAILED
            raise incomplete_body("The request body terminated unexpectedly.")
        if self._expected_size is not None and self._decoded != self._expected_size:
            self._state = _State.FAILED
            raise incomplete_body("The body is shorter than x-amz-decoded-content-length.")
        if self._declared is not None and not self._declared <= self._trailers.keys():
            self._state = _State.FAILED
            raise invalid_request("A trailer declared in x-amz-trailer was not sent.")
        return self._decoded

    def _step(self, view: memoryview, pos: int, out: list[Piece]) -> int:
        state = self._state
        if state is _State.DATA:
            return self._take_data(view, pos, out)
        if state is _State.DATA_END:
            return self._take_crlf(view, pos)
        if state is _State.DONE:
            raise invalid_request("Unexpected data after the end of the chunked body.")
        limit = self._max_line if state is _State.HEADER else self._max_trailer - self._trailer_bytes
        new_pos, line = self._take_line(view, pos, limit)
        if line is not None:
            if state is _State.HEADER:
                self._on_chunk_header(line)
            else:
                self._trailer_bytes += len(line) + 1
                self._on_trailer_line(line)
        return new_pos

    def _take_line(self, view: memoryview, pos: int, limit: int) -> tuple[int, bytes | None]:
        """Accumulate up to LF; the returned line excludes the LF. Longer than ``limit`` -> error."""
        end = min(len(view), pos + max(limit - len(self._line), 0) + 1)
        window = view[pos:end].tobytes()
        newline = window.find(b"\n")
        if newline < 0:
            self._line += window
            if len(self._line) > limit:
                raise invalid_request("A chunk header or trailer line is too long.")
            return end, None
        self._line += window[:newline]
        line = bytes(self._line)
        self._line.clear()
        if len(line) > limit:
            raise invalid_request("A chunk header or trailer line is too long.")
        return pos + newline + 1, line

    def _take_data(self, view: memoryview, pos: int, out: list[Piece]) -> int:
        take = min(self._remaining, len(view) - pos)
        piece = view[pos : pos + take]
        self._count(take)
        if self._signed:
            self._chunk[self._filled : self._filled + take] = piece
            self._filled += take
            self._hasher.update(piece)
        else:
            out.append(piece)
        self._remaining -= take
        if self._remaining == 0:
            if self._signed:
                self._verify_chunk()
                out.append(memoryview(self._chunk))
                self._chunk = bytearray()
            self._state = _State.DATA_END
            self._crlf_seen = 0
        return pos + take

    def _take_crlf(self, view: memoryview, pos: int) -> int:
        while pos < len(view) and self._crlf_seen < 2:
            if view[pos] != b"\r\n"[self._crlf_seen]:
                raise incomplete_body("Chunk data is not followed by CRLF.")
            self._crlf_seen += 1
            pos += 1
        if self._crlf_seen == 2:
            self._state = _State.HEADER
        return pos

    def _count(self, size: int) -> None:
        self._decoded += size
        if self._expected_size is not None and self._decoded > self._expected_size:
            raise invalid_request("The body is longer than x-amz-decoded-content-length.")

    # --- chunk headers ---------------------------------------------------------------------------

    def _on_chunk_header(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise incomplete_body("A chunk header is not terminated by CRLF.")
        size_text, separator, extension = line[:-1].partition(b";")
        if not _HEX_SIZE.fullmatch(size_text):
            raise incomplete_body("A chunk header does not start with a hexadecimal size.")
        size = int(size_text, 16)
        if size > self._max_chunk:
            raise invalid_request(f"A chunk is larger than the {self._max_chunk} bytes allowed.")
        if self._signed:
            if not separator or not extension.startswith(_SIGNATURE_PREFIX):
                raise signature_does_not_match("A chunk carries no chunk-signature.")
            self._chunk_signature = extension[len(_SIGNATURE_PREFIX) :].decode("ascii", "replace")
        elif separator:
            raise incomplete_body("Unexpected chunk extension in an unsigned chunked body.")
        self._hasher = hashlib.sha256()
        if size == 0:
            if self._signed:
                self._verify_chunk()
            self._state = _State.TRAILER
            return
        self._remaining = size
        self._filled = 0
        if self._signed:
            self._chunk = bytearray(size)
        self._state = _State.DATA

    def _signing_context(self) -> SigningContext:
        if self._signing is None:  # __init__ refuses signed modes without one
            raise RuntimeError("signed aws-chunked decoding without a SigningContext")
        return self._signing

    def _verify_chunk(self) -> None:
        expected = self._signing_context().chunk_signature(self._previous, self._hasher.hexdigest())
        if not signatures_equal(expected, self._chunk_signature):
            raise signature_does_not_match("A chunk signature does not match.")
        self._previous = expected

    # --- trailers --------------------------------------------------------------------------------

    def _on_trailer_line(self, line: bytes) -> None:
        # Trailer lines tolerate a bare LF: some SDKs end them so; the signature covers content.
        line = line.removesuffix(b"\r")
        if not line:
            if self._mode is PayloadMode.STREAMING_SIGNED_TRAILER and self._trailers and not self._trailer_signature:
                return  # a blank line some SDKs put between the trailers and their signature
            self._end_trailers()
            return
        if self._mode is PayloadMode.STREAMING_SIGNED:
            raise invalid_request("STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies carry no trailers.")
        if self._trailer_signature is not None:
            raise invalid_request("x-amz-trailer-signature must be the last trailer.")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise invalid_request("A trailer is not ASCII.") from None
        name, separator, value = text.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not separator or not name:
            raise incomplete_body("A trailer line is malformed.")
        if name == _TRAILER_SIGNATURE:
            if self._mode is not PayloadMode.STREAMING_SIGNED_TRAILER:
                raise invalid_request("x-amz-trailer-signature in an unsigned chunked body.")
            self._trailer_signature = value
            return
        if name in self._trailers:
            raise invalid_request(f"The trailer {name[:64]} is repeated.")
        if self._declared is not None and name not in self._declared:
            raise invalid_request(f"The trailer {name[:64]} was not declared in x-amz-trailer.")
        self._trailers[name] = value

    def _end_trailers(self) -> None:
        if self._mode is PayloadMode.STREAMING_SIGNED_TRAILER and (
            self._trailers or self._trailer_signature is not None
        ):
            canonical = "".join(f"{name}:{value}\n" for name, value in self._trailers.items())
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            expected = self._signing_context().trailer_signature(self._previous, digest)
            if not signatures_equal(expected, self._trailer_signature or ""):
                raise signature_does_not_match("The trailer signature does not match.")
        self._state = _State.DONE
