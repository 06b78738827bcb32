"""Writing an object's bytes: chunk, dedup, seal, encode and place — pipelined over threads.

The writer is push-style (``write`` as bytes arrive, ``finish`` at the end) so that the CLI and
the S3 server stream through it alike, holding only a few chunks in memory. Chunk ids are looked
up as they are cut: a known chunk only gains a reference at commit; a new one is written once per
object even if it repeats. Shards are staged (written without an fsync each) and made durable
in batches: ``finish`` flushes the disks before anything refers to them (or, with
``flush=False``, names them for the committer, which flushes the disks of a whole batch of
objects at once before journaling it), and a long object is flushed every ``FLUSH_EVERY`` bytes
of shards too, in the background, which bounds the work left for ``finish`` and the time a staged
shard waits unsynced.

Objects up to ``inline_max_size`` are not chunked: they become one sealed frame stored in the
metadata (and its journal), so a small object costs no shard files at all.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from datawarehouse.core import crypto, digest
from datawarehouse.core.chunking import FastCDC
from datawarehouse.engine.chunkstore import ChunkStore
from datawarehouse.errors import InvalidInput
from datawarehouse.ids import ChunkId, DiskId, DomainId
from datawarehouse.records import ChunkerParams, ChunkRecord, ChunkRef, StorageClass

# (domain, chunk id) -> whether the chunk is stored already. Implemented by the caller over meta;
# it also restarts the grace period of an unreferenced chunk it is about to reuse.
ChunkKnown = Callable[[DomainId, ChunkId], bool]


@dataclass
class WrittenData:
    """What the writer produced; the commit turns it into metadata."""

    size: int
    etag: str  # the stream's MD5 (hex) when the writer computed one, else digest.content_etag
    chunks: tuple[ChunkRef, ...]
    new_chunks: list[ChunkRecord]
    refs: Counter[ChunkId] = field(default_factory=Counter)
    inline_data: bytes | None = None
    # Disks holding staged shards of this object not yet made durable (``finish(flush=False)``):
    # whoever commits the object must flush them first (the committer does, once per batch).
    unflushed: frozenset[DiskId] = frozenset()


_Result = tuple[ChunkId, ChunkRecord | None, set[DiskId]]

FLUSH_EVERY = 64 * 1024 * 1024  # bytes of staged shards between two flushes of a long object


class _BackgroundMD5:
    """MD5 of the stream (the S3 ETag), computed on its own thread in input order.

    MD5 runs at ~0.7 GB/s on one core and cannot be parallelised, so computed inline it caps a
    long write; hashlib releases the GIL, so on a thread it overlaps chunking and sealing. The
    first ``INLINE_BYTES`` are hashed inline: for the many objects of a few MiB a thread started
    and joined per object cost more (spawn, hand-offs, join) than the ~1.5 ms per MiB it overlaps,
    while concurrent uploads already keep the cores busy.
    """

    MAX_PENDING = 8
    INLINE_BYTES = 8 * 1024 * 1024

    def __init__(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._inline_left = self.INLINE_BYTES

    def update(self, data: bytes | memoryview) -> None:
        if self._executor is None:
            if len(data) <= self._inline_left:
                self._inline_left -= len(data)
                self._md5.update(data)
                return
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwh-md5")
        self._pending.append(self._executor.submit(self._md5.update, data))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        while self._pending:
            self._pending.popleft().result()
        self.close()
        return self._md5.hexdigest()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class ObjectWriter:
    def __init__(
        self,
        chunks: ChunkStore,
        pool: ThreadPoolExecutor,
        known: ChunkKnown,
        domain_id: DomainId,
        storage_class: StorageClass,
        chunker: ChunkerParams,
        now: datetime,
        *,
        inline_max_size: int,
        compression_level: int | None = 3,
        max_inflight: int = 4,
        max_size: int | None = None,
        md5_etag: bool = False,
    ) -> None:
        storage_class.check_fits(len(chunks.disks.active()))
        self._chunks = chunks
        self._pool = pool
        self._known = known
        self._domain = domain_id
        self._class = storage_class
        self._chunker = chunker
        self._cdc: FastCDC | None = None  # made when the object outgrows the inline size (most never do)
        self._now = now
        self._inline_max = inline_max_size
        self._level = compression_level
        self._max_inflight = max_inflight
        self._max_size = max_size
        self._keys = chunks.keyring.current(domain_id)
        self._md5 = _BackgroundMD5() if md5_etag else None
        self._size = 0
        self._offset = 0
        self._head: list[bytes] | None = []  # bytes held back while the object may still be inline
        self._inflight: deque[tuple[Future[_Result], int, int]] = deque()
        self._held: bytes | memoryview | None = None  # the newest cut chunk, not yet dispatched
        self._seen: set[ChunkId] = set()
        self._seen_lock = threading.Lock()
        self._refs: list[ChunkRef] = []
        self._new: list[ChunkRecord] = []
        self._dirty: set[DiskId] = set()
        self._staged_bytes = 0
        self._flushing: list[Future[None]] = []  # the periodic flush in progress, one per disk
        self._done = False

    # --- streaming -----------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        if self._done:
            raise InvalidInput("writer already finished")
        if not data:
            return
        self._size += len(data)
        if self._max_size is not None and self._size > self._max_size:
            raise InvalidInput(f"object larger than the allowed {self._max_size} bytes")
        if self._head is not None:
            self._head.append(bytes(data))
            if self._size <= self._inline_max:
                return
            data, self._head = b"".join(self._head), None
        if self._md5 is not None:
            self._md5.update(data)
        if self._cdc is None:
            self._cdc = FastCDC(self._chunker)
        for piece in self._cdc.feed(data):
            self._submit(piece)

    def _submit(self, plain: bytes | memoryview) -> None:
        """Queue a cut chunk. The newest one is held back until the next arrives, so that the
        last chunk of an object (the only one, for most objects of a few MiB) is processed by
        ``finish`` on the calling thread: handing it to the pool and waiting for it would cost two
        thread switches and buy no overlap."""
        held, self._held = self._held, plain
        if held is not None:
            self._dispatch(held, self._pool.submit(self._process, held))

    def _dispatch(self, plain: bytes | memoryview, future: Future[_Result]) -> None:
        self._inflight.append((future, self._offset, len(plain)))
        self._offset += len(plain)
        while len(self._inflight) > self._max_inflight:
            self._settle_one()

    def _process_here(self, plain: bytes | memoryview) -> None:
        future: Future[_Result] = Future()
        try:
            future.set_result(self._process(plain))
        except BaseException as exc:  # re-raised by _settle_one, in order
            future.set_exception(exc)
        self._dispatch(plain, future)

    def _process(self, plain: bytes | memoryview) -> _Result:
        """On a pool thread: identify the chunk, and store it unless it is known or already being
        stored by this writer (a repeat within the object)."""
        chunk_id = digest.chunk_id(self._keys.id_key, plain)
        with self._seen_lock:
            if chunk_id in self._seen:
                return chunk_id, None, set()
            self._seen.add(chunk_id)
        if self._known(self._domain, chunk_id):
            return chunk_id, None, set()
        rec, dirty = self._chunks.write(self._domain, chunk_id, plain, self._class, self._now, self._level)
        return chunk_id, rec, dirty

    def _settle_one(self) -> None:
        future, offset, size = self._inflight.popleft()
        chunk_id, rec, dirty = future.result()
        self._refs.append(ChunkRef(chunk_id, offset, size))
        if rec is not None:
            self._new.append(rec)
            self._dirty |= dirty
            self._staged_bytes += rec.sealed_size * (rec.k + rec.m) // rec.k
            if self._staged_bytes >= FLUSH_EVERY:
                # In the background: the pipeline keeps cutting and sealing while the filesystem
                # syncs. At most one such flush at a time (the next waits for the previous).
                self._wait_flush()
                self._flushing = self._chunks.start_flush(self._dirty)
                self._dirty, self._staged_bytes = set(), 0

    def _wait_flush(self) -> None:
        flushing, self._flushing = self._flushing, []
        for future in flushing:
            future.result()

    def finish(self, *, flush: bool = True) -> WrittenData:
        """Describe what was written, every new shard made durable first; with ``flush=False``
        the last shards are left staged and their disks named in ``unflushed``, for a committer
        that flushes the disks of a whole batch of objects at once."""
        if self._done:
            raise InvalidInput("writer already finished")
        self._done = True
        if self._head is not None:
            plain = b"".join(self._head)
            chunk_id = digest.chunk_id(self._keys.id_key, plain)
            ref = ChunkRef(chunk_id, 0, len(plain))
            if self._md5 is not None:
                self._md5.update(plain)
            etag = self._etag((ref,))
            sealed = crypto.seal_chunk(self._keys, chunk_id, plain, self._level)
            return WrittenData(self._size, etag, (ref,), [], Counter(), sealed)
        for piece in self._cdc.finish() if self._cdc is not None else ():
            self._submit(piece)
        if self._held is not None:
            held, self._held = self._held, None
            self._process_here(held)
        while self._inflight:
            self._settle_one()
        etag = self._etag(self._refs)
        self._wait_flush()
        unflushed = frozenset(self._dirty)
        if flush:
            self._chunks.flush(unflushed)
            unflushed = frozenset()
        refs = Counter(ref.chunk_id for ref in self._refs)
        return WrittenData(self._size, etag, tuple(self._refs), self._new, refs, unflushed=unflushed)

    def _etag(self, refs: Sequence[ChunkRef]) -> str:
        if self._md5 is not None:
            return self._md5.hexdigest()
        return digest.content_etag((ref.chunk_id, ref.plain_size) for ref in refs)

    def abort(self) -> None:
        """Stop early; shards already written become orphans that GC removes after the grace period."""
        self._done = True
        self._held = None
        if self._md5 is not None:
            self._md5.close()
        while self._inflight:
            future, _, _ = self._inflight.popleft()
            future.cancel()
