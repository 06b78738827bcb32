"""Reading an object's bytes: only the chunks a range touches, prefetched a few at a time."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from datawarehouse.core import crypto
from datawarehouse.engine.chunkstore import ChunkStore
from datawarehouse.errors import DataUnavailable, IntegrityError, InvalidInput, InvalidRange
from datawarehouse.ids import ChunkId, DomainId
from datawarehouse.records import ChunkRecord, ObjectVersion

ChunkGetter = Callable[[DomainId, list[ChunkId]], dict[ChunkId, ChunkRecord]]
WINDOW = 256  # chunk records fetched per metadata query


def open_inline(chunks: ChunkStore, domain_id: DomainId, version: ObjectVersion) -> bytes:
    if version.inline_data is None:
        raise InvalidInput("not an inline object")
    chunk_id = version.chunks[0].chunk_id if version.chunks else ChunkId(b"\0" * 32)
    sealed = version.inline_data
    key_version = int.from_bytes(sealed[8:12], "big") if len(sealed) >= 12 else 0
    return crypto.open_chunk(chunks.keyring.version(domain_id, key_version), chunk_id, sealed)


def read_range(
    chunks: ChunkStore,
    pool: ThreadPoolExecutor,
    get_chunks: ChunkGetter,
    domain_id: DomainId,
    version: ObjectVersion,
    start: int = 0,
    end: int | None = None,
    prefetch: int = 4,
    known: Mapping[ChunkId, ChunkRecord] | None = None,
    cached_only: bool = False,
) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` of a version (``end`` exclusive, default: the size).

    A bad range raises ``InvalidRange`` here, before any byte is produced (not at the first
    ``next``), so a caller can refuse the request before it starts a response. ``known``: chunk
    records the caller already has (``MetaRepo.read_object`` returns those of the first chunks),
    so that a small object needs no further metadata query. The first chunk is read on the
    thread that calls ``next``; the following ones are prefetched on ``pool`` meanwhile.
    ``cached_only``: every chunk on the calling thread, from memory only (``ChunkStore.read``):
    ``WouldBlock`` from ``next`` when one needs the disk, for the caller to start over on a
    thread that may wait (the pieces already yielded are then void)."""
    size = version.size
    end = size if end is None else min(end, size)
    if start < 0 or (start >= size and size > 0) or start > end:
        raise InvalidRange(f"range {start}-{end} outside object of {size} bytes")
    prefetch = 0 if cached_only else prefetch
    return _read_range(chunks, pool, get_chunks, domain_id, version, start, end, prefetch, known, cached_only)


def _read_range(
    chunks: ChunkStore,
    pool: ThreadPoolExecutor,
    get_chunks: ChunkGetter,
    domain_id: DomainId,
    version: ObjectVersion,
    start: int,
    end: int,
    prefetch: int,
    known: Mapping[ChunkId, ChunkRecord] | None,
    cached_only: bool,
) -> Iterator[bytes]:
    if start == end:
        return
    if version.inline_data is not None:
        yield open_inline(chunks, domain_id, version)[start:end]
        return
    refs = version.chunks
    offsets = [r.offset for r in refs]
    first = max(0, bisect.bisect_right(offsets, start) - 1)
    wanted = [r for r in refs[first:] if r.offset < end]

    records: dict[ChunkId, ChunkRecord] = dict(known) if known else {}
    loaded = -1

    def record(index: int) -> ChunkRecord | None:
        """The record of ``wanted[index]``: a known one, else records are fetched a window of the
        manifest at a time (one query per window, not one per chunk; earlier windows are dropped,
        so memory stays bounded whatever the object size)."""
        nonlocal loaded
        chunk_id = wanted[index].chunk_id
        rec = records.get(chunk_id)
        if rec is None and index // WINDOW != loaded:
            loaded = index // WINDOW
            window = wanted[loaded * WINDOW : (loaded + 1) * WINDOW]
            records.clear()
            records.update(get_chunks(domain_id, [r.chunk_id for r in window]))
            rec = records.get(chunk_id)
        return rec

    def fetch(rec: ChunkRecord | None, chunk_id: ChunkId, plain_size: int) -> bytes:
        if rec is None:
            raise DataUnavailable(f"chunk {chunk_id.hex()[:16]} is not in the index")
        plain = chunks.read(rec, cached_only=cached_only)
        if len(plain) != plain_size:
            raise IntegrityError(f"chunk {chunk_id.hex()[:16]}: size {len(plain)} != manifest {plain_size}")
        return plain

    queue: deque[tuple[Future[bytes], int, int]] = deque()

    def submit(index: int) -> None:
        ref = wanted[index]
        queue.append((pool.submit(fetch, record(index), ref.chunk_id, ref.plain_size), ref.offset, ref.plain_size))

    def piece(plain: bytes, offset: int, plain_size: int) -> bytes:
        lo = max(start - offset, 0)
        hi = min(end - offset, plain_size)
        return plain[lo:hi] if (lo, hi) != (0, plain_size) else plain

    if not wanted or wanted[-1].offset + wanted[-1].plain_size < end:
        raise IntegrityError(f"version {version.version_id}: the manifest does not cover bytes {start}-{end}")
    head = wanted[0]
    head_rec = record(0)
    nxt = 1
    try:
        while nxt < len(wanted) and len(queue) < prefetch:
            submit(nxt)
            nxt += 1
        if prefetch == 0:  # everything on this thread
            for index, ref in enumerate(wanted):
                rec = head_rec if index == 0 else record(index)
                yield piece(fetch(rec, ref.chunk_id, ref.plain_size), ref.offset, ref.plain_size)
            return
        # The first chunk on this thread: no hand-off to the pool and back for a small object.
        yield piece(fetch(head_rec, head.chunk_id, head.plain_size), head.offset, head.plain_size)
        while queue:
            future, offset, plain_size = queue.popleft()
            if nxt < len(wanted):
                submit(nxt)
                nxt += 1
            yield piece(future.result(), offset, plain_size)
    finally:
        for future, _, _ in queue:
            future.cancel()
