"""Content-defined chunking (FastCDC 2020, via pyfastcdc's Cython implementation).

Boundaries depend only on content, so an insert or delete changes the chunks around it and no
others — that is what makes deduplication work across versions of a file.

Streaming without changing boundaries: pyfastcdc decides a cut from at most ``max_size`` bytes
after the chunk start (it looks at ``min(remaining, max_size)`` bytes and nothing else). So a cut
computed while at least ``max_size`` bytes are buffered is exactly the cut a one-shot pass over
the whole input would make, and a shorter remainder is only cut at :meth:`FastCDC.finish`.
The chunks returned are therefore the same however the input is split across :meth:`feed`
calls, and at most about ``max_size`` plus one fed block is ever buffered.

pyfastcdc's range limits are narrower than :class:`ChunkerParams` allows (avg 256 B-4 MiB,
min 64 B-1 MiB, max 1 KiB-16 MiB); parameters outside them are refused with ``InvalidInput``.
With an odd ``min_size`` pyfastcdc may cut one byte short of it (it scans in steps of two).
"""

from __future__ import annotations

from pyfastcdc import FastCDC as _CythonFastCDC

from datawarehouse.errors import InvalidInput
from datawarehouse.records import ChunkerParams

_AVG_RANGE = (256, 4 * 1024 * 1024)
_MIN_RANGE = (64, 1024 * 1024)
_MAX_RANGE = (1024, 16 * 1024 * 1024)


def _check_supported(params: ChunkerParams) -> None:
    for name, value, (low, high) in (
        ("avg_size", params.avg_size, _AVG_RANGE),
        ("min_size", params.min_size, _MIN_RANGE),
        ("max_size", params.max_size, _MAX_RANGE),
    ):
        if not low <= value <= high:
            raise InvalidInput(f"chunker: {name} must be within [{low}, {high}] (got {value})")


class FastCDC:
    """Push-style streaming chunker: ``feed`` blocks, collect the chunks that became final.

    Not thread-safe; use one per stream.
    """

    def __init__(self, params: ChunkerParams) -> None:
        _check_supported(params)
        self.params = params
        self._cdc = _CythonFastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
        self._max = params.max_size
        # Bytes after the last emitted chunk. A bytearray because deleting from its front is O(1)
        # in CPython (it advances a start offset) and appending is amortised O(1).
        self._buf = bytearray()
        self._finished = False

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Add ``data``; return the chunks that no later input can change (possibly none)."""
        if self._finished:
            raise InvalidInput("chunker: feed() after finish()")
        if not data:
            return []
        if self._buf:
            self._buf += data
            chunks, used = self._cut(self._buf, final=False)
            del self._buf[:used]
            return chunks
        # Nothing pending: cut straight from the caller's buffer and copy only the tail.
        chunks, used = self._cut(data, final=False)
        with memoryview(data) as view:
            self._buf += view[used:]
        return chunks

    def finish(self) -> list[bytes]:
        """End of input: cut what is left (empty input gives no chunks)."""
        if self._finished:
            return []
        self._finished = True
        chunks, _ = self._cut(self._buf, final=True)
        self._buf = bytearray()
        return chunks

    def _cut(self, src: bytes | bytearray | memoryview, *, final: bool) -> tuple[list[bytes], int]:
        """Cut chunks off the front of ``src`` while the cut cannot depend on unseen bytes.

        Returns the chunks (copied out) and how many bytes of ``src`` they cover. Kept in its own
        function so that every view into ``src`` (ours and pyfastcdc's) is gone when it returns,
        which lets the caller resize the bytearray behind ``src``.
        """
        chunks: list[bytes] = []
        used = 0
        with memoryview(src) as view:
            total = view.nbytes
            need = 1 if final else self._max
            if total >= need:
                for chunk in self._cdc.cut_buf(view):
                    chunks.append(bytes(chunk.data))
                    used += chunk.length
                    if total - used < need:
                        break
                del chunk
        return chunks, used


def chunk_all(data: bytes, params: ChunkerParams) -> list[bytes]:
    """All chunks of an in-memory input (same boundaries as any streaming of it)."""
    chunker = FastCDC(params)
    return chunker.feed(data) + chunker.finish()
