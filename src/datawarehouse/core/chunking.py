"""Content-defined chunking (FastCDC 2020, via pyfastcdc's Cython implementation).

Boundaries depend only on content, so an insert or delete changes the chunks around it and no
others — that is what makes deduplication work across versions of a file.

Streaming without changing boundaries: pyfastcdc decides a cut from at most ``max_size`` bytes
after the chunk start (it looks at ``min(remaining, max_size)`` bytes and nothing else). So a cut
computed while at least ``max_size`` bytes are buffered is exactly the cut a one-shot pass over
the whole input would make, and a shorter remainder is only cut at :meth:`FastCDC.finish`.
The chunks returned are therefore the same however the input is split across :meth:`feed`
calls, and at most about ``2 * max_size`` plus one fed block is ever buffered.

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

    Input is buffered as a list of blocks and joined into one ``bytes`` only when at least
    ``max_size + batch`` bytes are pending; every chunk that can be cut then is handed out as a
    read-only ``memoryview`` into that joined buffer, and the uncut tail (under ``max_size``
    bytes) is carried to the next join. Each byte is therefore copied about
    ``1 + max/(max+batch)`` times (~1.5 at the defaults). Copies hold the GIL and the chunker is
    the one serial step of a write, so they are what it keeps few: copying each chunk out as well
    took a quarter of the GIL in a profiled 1 GiB PUT. The price is memory: a chunk still in
    flight keeps its whole joined buffer (at most ``max_size + batch`` bytes) alive; a writer with
    ``n`` chunks in flight holds at most ``n`` such buffers, usually far fewer since consecutive
    chunks share one. At most about ``2 * max_size + batch`` bytes are buffered by the chunker itself.

    Not thread-safe; use one per stream.
    """

    def __init__(self, params: ChunkerParams, *, batch: int | None = None) -> None:
        _check_supported(params)
        self.params = params
        self._cdc = _CythonFastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
        self._max = params.max_size
        self._batch = params.max_size if batch is None else max(0, batch)
        self._pending: list[bytes | memoryview] = []  # immutable blocks (bytes, or views into them)
        self._pending_size = 0
        self._finished = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Add ``data``; return the chunks that no later input can change (possibly none).

        ``bytes`` are kept by reference; anything mutable is copied, since the caller may reuse
        its buffer after this returns.
        """
        if self._finished:
            raise InvalidInput("chunker: feed() after finish()")
        if not data:
            return []
        block = data if isinstance(data, bytes) else bytes(data)
        self._pending.append(block)
        self._pending_size += len(block)
        if self._pending_size < self._max + self._batch:
            return []
        return self._cut_pending(final=False)

    def finish(self) -> list[memoryview]:
        """End of input: cut what is left (empty input gives no chunks)."""
        if self._finished:
            return []
        self._finished = True
        chunks = self._cut_pending(final=True) if self._pending_size else []
        self._pending, self._pending_size = [], 0
        return chunks

    def _cut_pending(self, *, final: bool) -> list[memoryview]:
        """Join the pending blocks and cut while the cut cannot depend on unseen bytes."""
        pending = self._pending
        joined = pending[0] if len(pending) == 1 and isinstance(pending[0], bytes) else b"".join(pending)
        view = memoryview(joined).toreadonly()
        total = len(view)
        need = 1 if final else self._max
        chunks: list[memoryview] = []
        used = 0
        if total >= need:
            for chunk in self._cdc.cut_buf(view):
                chunks.append(view[chunk.offset : chunk.offset + chunk.length])
                used += chunk.length
                if total - used < need:
                    break
        self._pending = [view[used:]] if used < total else []
        self._pending_size = total - used
        return chunks


def chunk_all(data: bytes, params: ChunkerParams) -> list[bytes]:
    """All chunks of an in-memory input (same boundaries as any streaming of it), as bytes."""
    chunker = FastCDC(params)
    return [bytes(c) for c in chunker.feed(data) + chunker.finish()]
