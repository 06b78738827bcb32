"""Chunks on disks: seal, erasure-code, place and durably write them; read them back verified.

A chunk's shards live in files named by (domain, chunk id, generation, index). Reads take the
data shards first (decoding is cheapest from them), check each shard's header and checksum, and
read around any shard that is missing or bad; every such shard is reported for healing. Bytes
that fail the AEAD tag or the chunk-id check are never returned.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from datawarehouse.core import crypto, frame
from datawarehouse.core.erasure import FRAGMENT_HEADER, ErasureCoder, data_fragment_header_ok, fragment_data_size
from datawarehouse.engine.diskset import DiskSet
from datawarehouse.engine.keys import KeyRing
from datawarehouse.engine.placement import place
from datawarehouse.errors import CorruptFrame, DataUnavailable, DwhError, IntegrityError, NotFound, WouldBlock
from datawarehouse.ids import ChunkId, DiskId, DomainId, new_generation
from datawarehouse.records import ChunkRecord, StorageClass
from datawarehouse.storage.base import BlobStore

BadShardReporter = Callable[[ChunkRecord, int, str], None]

# Reads put a chunk's data shards into one scratch buffer (the sealed frame) that is dead once
# the frame is opened. A fresh ``bytearray`` is zero-filled only to be overwritten (3-4 % of the
# CPU of a 1 MiB GET from the page cache), so the larger ones are kept for reuse: a few, each
# rounded up to a whole MiB so that chunks of different sizes share them.
SCRATCH_MIN = 256 * 1024  # smaller frames get a fresh buffer (zeroing them costs next to nothing)
SCRATCH_STEP = 1024 * 1024
SCRATCH_MAX = 8 * 1024 * 1024  # larger ones are not kept
SCRATCH_KEPT = 4


def shard_prefix(domain_id: int, chunk_id: bytes) -> str:
    h = chunk_id.hex()
    return f"shards/{domain_id}/{h[0:2]}/{h}."


def shard_key(domain_id: int, chunk_id: bytes, generation: int, index: int) -> str:
    return f"{shard_prefix(domain_id, chunk_id)}{generation:016x}.{index}"


def parse_shard_key(key: str) -> tuple[DomainId, ChunkId, int, int] | None:
    """(domain, chunk id, generation, index) from a shard key, or ``None`` for anything else."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "shards":
        return None
    name = parts[3].split(".")
    try:
        if len(name) != 3 or len(name[0]) != 64:
            return None
        return DomainId(int(parts[1])), ChunkId(bytes.fromhex(name[0])), int(name[1], 16), int(name[2])
    except ValueError:
        return None


def iter_shard_files(disks: DiskSet) -> Iterator[tuple[DiskId, BlobStore, str, tuple[DomainId, ChunkId, int, int]]]:
    """Every shard file on every readable disk: (disk, store, key, parsed key). A disk that cannot
    be listed is skipped (its shards are read around like any missing shard)."""
    for disk_id, store in disks.stores().items():
        try:
            keys = list(store.list("shards/"))
        except DwhError:
            continue
        for key in keys:
            parsed = parse_shard_key(key)
            if parsed is not None:
                yield disk_id, store, key, parsed


@dataclass
class ShardCheck:
    """The state of each shard of a chunk after reading all of them."""

    good: dict[int, bytes | memoryview] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)  # index -> reason


class ChunkStore:
    def __init__(self, disks: DiskSet, keyring: KeyRing, report_bad: BadShardReporter | None = None) -> None:
        self.disks = disks
        self.keyring = keyring
        self._report_bad = report_bad
        # Flushes (and direct puts of repair/rebalance) have their own threads: the disks of
        # one flush are synced concurrently, so their journal commits overlap.
        self._io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dwh-shard-io")
        self._scratch: list[bytearray] = []  # list.pop/append are atomic: no lock

    def _take_scratch(self, size: int) -> bytearray:
        if size < SCRATCH_MIN:
            return bytearray(size)
        try:
            buf = self._scratch.pop()
        except IndexError:
            buf = bytearray()
        return buf if len(buf) >= size else bytearray(-(-size // SCRATCH_STEP) * SCRATCH_STEP)

    def _give_scratch(self, buf: bytearray) -> None:
        if SCRATCH_MIN <= len(buf) <= SCRATCH_MAX and len(self._scratch) < SCRATCH_KEPT:
            self._scratch.append(buf)

    def close(self) -> None:
        self._io.shutdown(wait=True)

    # --- write ---------------------------------------------------------------------------------

    def write(
        self,
        domain_id: DomainId,
        chunk_id: ChunkId,
        plain: bytes | memoryview,
        storage_class: StorageClass,
        created_at: datetime,
        level: int | None = 3,
    ) -> tuple[ChunkRecord, set[DiskId]]:
        """Seal, encode and stage all shards (``BlobStore.stage``: written now, made durable and
        renamed into place by the next ``flush`` of their disks, together with every other shard
        staged meanwhile — two filesystem syncs per disk per batch instead of two fsyncs per
        shard).

        Returns the chunk record (refcount 0: the commit sets it) and the disks that must be
        flushed before the chunk is referenced (or read).
        """
        keys = self.keyring.current(domain_id)
        sealed = crypto.seal_chunk(keys, chunk_id, plain, level)
        coder = ErasureCoder(storage_class.k, storage_class.m)
        targets = place(chunk_id, self.disks.active(), storage_class.n)
        generation = new_generation()
        # Staged on this (chunk pool) thread: with no fsync per shard, a hand-off of each shard
        # to another pool cost more in thread wake-ups and GIL transfers than it overlapped
        # (profiled: ~280 futex calls per MiB written). Chunks still go to disk concurrently,
        # one chunk per pool thread. The payloads may be views of the EC library's buffers
        # (valid inside the block): each is written after its header, never joined to it.
        with coder.encode_views(sealed) as payloads:
            for index, target in enumerate(targets):
                header = frame.shard_header(
                    coder.scheme,
                    storage_class.k,
                    storage_class.m,
                    index,
                    domain_id,
                    chunk_id,
                    generation,
                    len(sealed),
                    payloads[index],
                )
                key = shard_key(domain_id, chunk_id, generation, index)
                # Reads take the data shards; parity is read only to repair: a store opened with
                # direct I/O (engine.direct_parity) writes it around the page cache.
                self.disks.store(target).stage(key, payloads[index], cache=index < storage_class.k, prefix=header)
        rec = ChunkRecord(
            domain_id=domain_id,
            chunk_id=chunk_id,
            generation=generation,
            plain_size=len(plain),
            sealed_size=len(sealed),
            k=storage_class.k,
            m=storage_class.m,
            refcount=0,
            created_at=created_at,
            placement=tuple(targets),
        )
        return rec, set(targets)

    def start_flush(self, disk_ids: Iterable[DiskId]) -> list[Future[None]]:
        """Begin making staged shards (and deferred directory entries) durable, all disks at
        once, on the I/O threads; durable once every returned future is done. A writer flushing
        in the background waits on these rather than parking a chunk thread on the syncs."""
        return [self._io.submit(self.disks.store(d).flush) for d in disk_ids]

    def flush(self, disk_ids: Iterable[DiskId]) -> None:
        """Make staged shards (and deferred directory entries) durable, all disks at once."""
        for future in self.start_flush(disk_ids):
            future.result()

    # --- read ----------------------------------------------------------------------------------

    def _read_shard(self, rec: ChunkRecord, index: int) -> bytes | memoryview:
        """One verified shard payload; raises IntegrityError/NotFound with a reason."""
        key = shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)
        candidates: list[BlobStore] = []
        if index < len(rec.placement) and self.disks.has(rec.placement[index]):
            candidates.append(self.disks.store(rec.placement[index]))
        last: DwhError | None = None
        for attempt in range(2):
            if attempt == 1:
                # Not where the placement says (an interrupted move, a rebuilt index): look everywhere.
                placed = candidates[0] if candidates else None
                candidates = [s for s in self.disks.stores().values() if s is not placed]
            for store in candidates:
                try:
                    blob = store.get(key)
                except NotFound as exc:
                    last = exc
                    continue
                except DwhError as exc:
                    last = exc
                    continue
                header, payload = frame.parse_shard(blob)
                self._check_identity(rec, index, header)
                return payload  # a view of the blob read: decoding copies it once anyway
            if last is None or not isinstance(last, NotFound):
                break
        raise last if last is not None else NotFound("shard missing")

    def _read_data_shards(
        self,
        rec: ChunkRecord,
        scratch: bytearray,
        shards: dict[int, bytes | memoryview],
        bad: dict[int, str],
        cached_only: bool = False,
    ) -> memoryview | None:
        """The sealed frame, read from the k data shards of an erasure-coded chunk straight into
        one buffer, where the systematic code has already put the frame in order: each shard's
        headers go to a small buffer and its data (``BlobStore.get_into``) to its place in the
        frame, so nothing is joined or decoded. Every shard is verified as ``_read_shard`` does.

        ``None`` when any data shard cannot be used this way: a shard that fails its checks is
        entered in ``bad``; the verified ones are entered in ``shards`` (whole fragments, for
        the decoder); one that is missing, unreadable or of another length is left out of both,
        for ``read`` to look for it as usual. ``scratch``: at least k times the fragment size,
        the frame is a view of it (nothing else is). ``cached_only``: see ``read``."""
        k = rec.k
        data_size = fragment_data_size(rec.sealed_size, k)
        head = frame.SHARD_HEADER_SIZE + FRAGMENT_HEADER
        buf = memoryview(scratch)
        verified: dict[int, bytes] = {}  # index -> the headers read with it
        complete = True
        for index in range(k):
            dest = buf[index * data_size : (index + 1) * data_size]
            got = None
            if index < len(rec.placement) and self.disks.has(rec.placement[index]):
                key = shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)
                try:
                    got = self.disks.store(rec.placement[index]).get_into(key, head, dest, cached_only=cached_only)
                except WouldBlock:
                    raise
                except DwhError:  # read's usual path looks for it again
                    got = None
            if got is None:
                complete = False
                continue
            try:
                header = frame.parse_shard_split(got, dest)
                self._check_identity(rec, index, header)
            except IntegrityError as exc:
                bad[index] = f"{exc.__class__.__name__}: {exc}"
                complete = False
                continue
            verified[index] = got
            fragment_header = memoryview(got)[frame.SHARD_HEADER_SIZE :]
            if not data_fragment_header_ok(fragment_header, index, data_size, rec.sealed_size):
                complete = False  # a layout this path does not know: the decoder reads it
        if complete:
            return buf[: rec.sealed_size]
        for index, got in verified.items():
            shards[index] = got[frame.SHARD_HEADER_SIZE :] + buf[index * data_size : (index + 1) * data_size]
        return None

    @staticmethod
    def _check_identity(rec: ChunkRecord, index: int, header: frame.ShardHeader) -> None:
        if (
            header.chunk_id != rec.chunk_id
            or header.index != index
            or header.generation != rec.generation
            or header.k != rec.k
            or header.m != rec.m
        ):
            raise CorruptFrame("shard header names another chunk, index or generation")

    def _open(self, rec: ChunkRecord, sealed: bytes | memoryview) -> bytes:
        key_version = struct.unpack_from(">I", sealed, 8)[0] if len(sealed) >= 12 else 0
        keys = self.keyring.version(rec.domain_id, key_version)
        return crypto.open_chunk(keys, rec.chunk_id, sealed)

    def _decode(self, rec: ChunkRecord, shards: Mapping[int, bytes | memoryview]) -> bytes:
        return self._open(rec, ErasureCoder(rec.k, rec.m).decode(shards, rec.sealed_size))

    def read(self, rec: ChunkRecord, *, cached_only: bool = False) -> bytes:
        """The chunk's plaintext, verified; reads around bad shards and reports them.

        ``cached_only``: for a caller that must not wait (an event loop). Only the common case
        is done: the k data shards of an erasure-coded chunk, all in memory (the page cache),
        all sound. Anything else — a byte on the disk, a lost or bad shard, a frame that fails
        to open — raises ``WouldBlock`` and reports nothing; the ordinary read, on a thread,
        then does the whole job (and reports what it finds)."""
        scratch = self._take_scratch(rec.k * fragment_data_size(rec.sealed_size, rec.k) if rec.k > 1 else 0)
        try:
            # The plaintext is a new object (the AEAD's output), never a view of the scratch.
            return self._read(rec, scratch, cached_only)
        finally:
            self._give_scratch(scratch)

    def _read(self, rec: ChunkRecord, scratch: bytearray, cached_only: bool) -> bytes:
        shards: dict[int, bytes | memoryview] = {}
        bad: dict[int, str] = {}
        if cached_only:
            sealed = self._read_data_shards(rec, scratch, shards, bad, cached_only=True) if rec.k > 1 else None
            if sealed is None:
                raise WouldBlock(f"chunk {rec.chunk_id.hex()[:16]}: needs more than its data shards in memory")
            try:
                return self._open(rec, sealed)
            except IntegrityError:
                raise WouldBlock(f"chunk {rec.chunk_id.hex()[:16]}: needs the full read") from None
        try:
            if rec.k > 1:
                sealed = self._read_data_shards(rec, scratch, shards, bad)
                if sealed is not None:
                    return self._open(rec, sealed)
            order = [i for i in range(rec.k + rec.m) if i not in shards and i not in bad]
            pos = 0
            while len(shards) < rec.k and pos < len(order):
                index = order[pos]
                pos += 1
                try:
                    shards[index] = self._read_shard(rec, index)
                except DwhError as exc:
                    bad[index] = f"{exc.__class__.__name__}: {exc}"
            for index, reason in bad.items():
                self._bad(rec, index, reason)
            if len(shards) < rec.k:
                raise DataUnavailable(
                    f"chunk {rec.chunk_id.hex()[:16]}: only {len(shards)} of the {rec.k} shards needed are readable"
                )
            return self._decode(rec, shards)
        except IntegrityError:
            # Shards with valid checksums decoded to bytes that fail authentication: rare (a
            # shard rewritten together with its checksum). Try the other shards before giving up.
            check = self.check(rec)
            for index, reason in check.bad.items():
                self._bad(rec, index, reason)
            return self._decode_any(rec, check.good)

    def _decode_any(self, rec: ChunkRecord, good: Mapping[int, bytes | memoryview]) -> bytes:
        from itertools import combinations, islice

        last: Exception | None = None
        for subset in islice(combinations(sorted(good), rec.k), 64):
            try:
                return self._decode(rec, {i: good[i] for i in subset})
            except IntegrityError as exc:
                last = exc
        if last is not None:
            raise last
        raise DataUnavailable(f"chunk {rec.chunk_id.hex()[:16]}: not enough verified shards")

    def _bad(self, rec: ChunkRecord, index: int, reason: str) -> None:
        if index < len(rec.placement):
            self.disks.record_error(rec.placement[index])
        if self._report_bad is not None:
            self._report_bad(rec, index, reason)

    # --- verify and repair (scrub, heal) -------------------------------------------------------

    def check(self, rec: ChunkRecord) -> ShardCheck:
        """Read and verify every shard (header, checksum, identity)."""
        out = ShardCheck()
        for index in range(rec.k + rec.m):
            try:
                out.good[index] = self._read_shard(rec, index)
            except DwhError as exc:
                out.bad[index] = f"{exc.__class__.__name__}: {exc}"
        return out

    def verify_plaintext(self, rec: ChunkRecord, check: ShardCheck) -> None:
        """Decode and authenticate (deep scrub); raises IntegrityError/DataUnavailable."""
        if len(check.good) < rec.k:
            raise DataUnavailable(f"chunk {rec.chunk_id.hex()[:16]}: {len(check.good)} of {rec.k} shards readable")
        self._decode_any(rec, check.good)

    def repair(self, rec: ChunkRecord, check: ShardCheck) -> dict[int, DiskId]:
        """Rewrite the bad shards from the good ones (byte-identical to the originals).

        A shard whose disk is gone or no longer active is written to an active disk that holds
        no other shard of the chunk. Returns the new placement of rewritten shards.
        """
        if not check.bad:
            return {}
        if len(check.good) < rec.k:
            raise DataUnavailable(f"chunk {rec.chunk_id.hex()[:16]}: {len(check.good)} of {rec.k} shards readable")
        coder = ErasureCoder(rec.k, rec.m)
        # Authenticate before re-encoding so a corrupt set never spreads.
        self.verify_plaintext(rec, check)
        rebuilt = coder.reconstruct(check.good, sorted(check.bad))
        active = {d.disk_id for d in self.disks.active()}
        used = {rec.placement[i] for i in check.good if i < len(rec.placement)}
        moved: dict[int, DiskId] = {}
        touched: set[DiskId] = set()
        spare = [d for d in place(rec.chunk_id, self.disks.active(), len(active)) if d not in used]
        for index in sorted(check.bad):
            target = rec.placement[index] if index < len(rec.placement) else None
            if target is None or target not in active or target in used:
                if not spare:
                    raise DataUnavailable(f"chunk {rec.chunk_id.hex()[:16]}: no free disk to place shard {index}")
                target = spare.pop(0)
            elif target in spare:
                spare.remove(target)
            used.add(target)
            header = frame.shard_header(
                coder.scheme,
                rec.k,
                rec.m,
                index,
                rec.domain_id,
                rec.chunk_id,
                rec.generation,
                rec.sealed_size,
                rebuilt[index],
            )
            key = shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)
            # As when first written: header in front of the payload, parity flagged cache=False.
            self.disks.store(target).stage(key, rebuilt[index], cache=index < rec.k, prefix=header)
            touched.add(target)
            if index >= len(rec.placement) or rec.placement[index] != target:
                moved[index] = target
        self.flush(touched)
        return moved

    def delete(self, rec: ChunkRecord) -> int:
        """Remove every shard file of the chunk's generation from every disk; count removed."""
        removed = 0
        for store in self.disks.stores().values():
            for index in range(rec.k + rec.m):
                try:
                    if store.delete(shard_key(rec.domain_id, rec.chunk_id, rec.generation, index)):
                        removed += 1
                except DwhError:
                    continue
        return removed
