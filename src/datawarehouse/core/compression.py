"""Chunk compression: zstd when it pays, otherwise the plaintext as is.

Compression is kept only when it saves at least 1/32 of the plaintext (format.md, "Sealed chunk
frame"): below that, the CPU spent decompressing on every read buys almost nothing, and already
compressed media (the bulk of large objects) skips decompression entirely.
"""

from __future__ import annotations

import threading

import zstandard

from datawarehouse.errors import CorruptFrame, InvalidInput

NONE = 0
ZSTD = 1

MIN_LEVEL = 1
MAX_LEVEL = 22

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """A per-thread compressor for ``level``.

    ZstdCompressor objects are not safe for concurrent use, and building one allocates the zstd
    context (hundreds of KiB for higher levels) — too expensive per chunk; sealing runs on a
    thread pool, so each worker thread keeps its own.
    """
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = {}
        _local.compressors = cache
    comp = cache.get(level)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
        cache[level] = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.decompressor = dec
    return dec


def compress_view(data: bytes | memoryview, level: int = 3) -> tuple[int, bytes | memoryview]:
    """Like :func:`compress` but hands back ``data`` itself (no copy) when it stays uncompressed.

    The sealing path encrypts straight from the caller's buffer, so the copy ``compress`` makes
    for its ``bytes`` return type would be wasted there.
    """
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise InvalidInput(f"compression level must be in [{MIN_LEVEL}, {MAX_LEVEL}] (got {level})")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size == 0:
        return NONE, data
    try:
        packed = _compressor(level).compress(data)
    except zstandard.ZstdError as exc:  # not expected for valid input; keep the error tree closed
        raise InvalidInput(f"zstd compression failed: {exc}") from exc
    if len(packed) <= size - size // 32:
        return ZSTD, packed
    return NONE, data


def compress(data: bytes | memoryview, level: int = 3) -> tuple[int, bytes]:
    """``(ZSTD, compressed)`` when that saves at least ``len/32`` bytes, else ``(NONE, plaintext)``."""
    codec, payload = compress_view(data, level)
    return codec, payload if isinstance(payload, bytes) else bytes(payload)


def decompress(codec: int, payload: bytes | memoryview, plain_size: int) -> bytes:
    """Undo :func:`compress`; any disagreement with ``plain_size`` is a corrupt frame.

    zstd sizes its output buffer from the size recorded in its own frame header and then ignores
    ``max_output_size``, so that recorded size is compared with ``plain_size`` first: a crafted
    payload cannot make us allocate more than the (authenticated) chunk header promised.
    """
    if codec == NONE:
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if size != plain_size:
            raise CorruptFrame(f"uncompressed payload is {size} bytes, header says {plain_size}")
        return payload if isinstance(payload, bytes) else bytes(payload)
    if codec != ZSTD:
        raise CorruptFrame(f"unknown compression codec {codec}")
    if plain_size < 0:
        raise CorruptFrame(f"negative plaintext size {plain_size}")
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptFrame(f"zstd frame header unreadable: {exc}") from exc
    if declared != plain_size:
        # -1 (size not recorded) is refused too: our compressor always records it.
        raise CorruptFrame(f"zstd frame declares {declared} bytes, header says {plain_size}")
    if plain_size == 0:
        return b""
    try:
        plain = _decompressor().decompress(payload, max_output_size=plain_size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptFrame(f"zstd payload does not decompress: {exc}") from exc
    if len(plain) != plain_size:
        raise CorruptFrame(f"zstd payload decompressed to {len(plain)} bytes, header says {plain_size}")
    return plain
