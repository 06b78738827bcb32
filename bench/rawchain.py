"""The engine's primitives chained by hand, without disks, threads of the engine or metadata.

PUT chain, per chunk: FastCDC cut -> keyed BLAKE3 chunk id -> seal (zstd + AES-256-GCM) ->
EC(k, m) encode -> the headers of all k + m shards. GET chain, per chunk: parse the k data shard
files (header + payload checksum) -> EC decode -> open (decrypt, decompress, id check).

This is the ceiling the engine is compared with: the same work with nothing around it.

The input is processed in windows (64 MiB by default): the PUT chain runs over a window's chunks
keeping their data-shard files, then the GET chain runs over those files, then the window is
dropped. Memory stays bounded, and a window larger than the last-level cache means the GET chain
reads its shards from memory rather than from cache, as it would after reading files.

Both sides pay for their data the way the engine benchmark does: the PUT time includes generating
the input pieces ("source") and the GET time includes hashing the output ("hash", xxh3-128, which
also checks the round trip against the input's digest).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import xxhash

from datawarehouse.core import crypto, digest, frame
from datawarehouse.core.chunking import FastCDC
from datawarehouse.core.erasure import ErasureCoder
from datawarehouse.records import ChunkerParams

PUT_STAGES = ("source", "chunk", "id", "seal", "encode", "pack")
# Not part of the chain (chunk+digest+compress+seal+encode) but work every S3 PUT must do:
# the MD5 of the whole stream (the ETag). Timed on its own so both comparisons can be printed.
ETAG_STAGE = "etag"
GET_STAGES = ("parse", "decode", "open", "hash")
DEFAULT_WINDOW = 64 * 1024 * 1024


@dataclass
class _Stored:
    chunk_id: bytes
    sealed_size: int
    plain_size: int
    shard_files: list[bytes]  # the k data shards, header included, as they would be on disk


@dataclass
class RawResult:
    threads: int
    bytes_in: int = 0
    bytes_out: int = 0
    put_seconds: float = 0.0
    get_seconds: float = 0.0
    chunks: int = 0
    distinct_chunks: int = 0
    sealed_bytes: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # single-thread only: seconds per stage
    digest_out: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "put_seconds": self.put_seconds,
            "get_seconds": self.get_seconds,
            "chunks": self.chunks,
            "distinct_chunks": self.distinct_chunks,
            "sealed_bytes": self.sealed_bytes,
            "compression_ratio": self.bytes_in / self.sealed_bytes if self.sealed_bytes else None,
            "stages_seconds": self.stages,
            "digest_out": self.digest_out,
        }


def bench_keys() -> crypto.DomainKeys:
    secret = hashlib.sha256(b"dwh-bench raw chain domain secret").digest()
    return crypto.derive_domain_keys(1, 1, secret)


class RawChain:
    def __init__(
        self,
        keys: crypto.DomainKeys,
        params: ChunkerParams,
        k: int = 4,
        m: int = 2,
        level: int = 3,
    ) -> None:
        self.keys = keys
        self.params = params
        self.k = k
        self.m = m
        self.level = level
        self.coder = ErasureCoder(k, m)
        self.generation = 1

    def put_one(self, plain: bytes, timers: dict[str, float] | None = None) -> _Stored:
        keys, coder, k, m = self.keys, self.coder, self.k, self.m
        t0 = time.perf_counter()
        chunk_id = digest.chunk_id(keys.id_key, plain)
        t1 = time.perf_counter()
        sealed = crypto.seal_chunk(keys, chunk_id, plain, self.level)
        t2 = time.perf_counter()
        payloads = coder.encode(sealed)
        t3 = time.perf_counter()
        headers = [
            frame.shard_header(coder.scheme, k, m, i, keys.domain_id, chunk_id, self.generation, len(sealed), payload)
            for i, payload in enumerate(payloads)
        ]
        t4 = time.perf_counter()
        # Header and payload side by side, as the disk holds them (the engine writes them with one
        # pwritev, no join): untimed, like the engine's write itself.
        files = [header + payload for header, payload in zip(headers[:k], payloads[:k], strict=True)]
        if timers is not None:
            timers["id"] += t1 - t0
            timers["seal"] += t2 - t1
            timers["encode"] += t3 - t2
            timers["pack"] += t4 - t3
        return _Stored(chunk_id, len(sealed), len(plain), files[:k])

    def get_one(self, stored: _Stored, timers: dict[str, float] | None = None) -> bytes:
        t0 = time.perf_counter()
        payloads: dict[int, Any] = {}
        for blob in stored.shard_files:
            header, payload = frame.parse_shard(blob)
            if header.chunk_id != stored.chunk_id:
                raise AssertionError("shard names another chunk")
            payloads[header.index] = payload
        t1 = time.perf_counter()
        sealed = self.coder.decode(payloads, stored.sealed_size)
        t2 = time.perf_counter()
        plain = crypto.open_chunk(self.keys, stored.chunk_id, sealed)
        t3 = time.perf_counter()
        if len(plain) != stored.plain_size:
            raise AssertionError("chunk came back with another size")
        if timers is not None:
            timers["parse"] += t1 - t0
            timers["decode"] += t2 - t1
            timers["open"] += t3 - t2
        return plain

    # --- whole runs ------------------------------------------------------------------------------

    def run(self, pieces: Iterable[bytes], *, threads: int = 1, window: int = DEFAULT_WINDOW) -> RawResult:
        if threads <= 1:
            return self._run_single(pieces, window)
        return self._run_threaded(pieces, threads, window)

    def _run_single(self, pieces: Iterable[bytes], window: int) -> RawResult:
        timers = dict.fromkeys((*PUT_STAGES, *GET_STAGES, ETAG_STAGE), 0.0)
        res = RawResult(threads=1)
        etag = hashlib.md5(usedforsecurity=False)
        cdc = FastCDC(self.params)
        out_hash = xxhash.xxh3_128()
        ids: set[bytes] = set()
        stored: list[_Stored] = []
        pending = 0

        def store(chunks: list[bytes]) -> None:
            for plain in chunks:
                s = self.put_one(plain, timers)
                stored.append(s)
                ids.add(s.chunk_id)
                res.chunks += 1
                res.sealed_bytes += s.sealed_size

        def drain() -> None:
            for s in stored:
                plain = self.get_one(s, timers)
                t0 = time.perf_counter()
                out_hash.update(plain)
                timers["hash"] += time.perf_counter() - t0
                res.bytes_out += len(plain)
            stored.clear()

        it = iter(pieces)
        while True:
            t0 = time.perf_counter()
            piece = next(it, None)
            t1 = time.perf_counter()
            timers["source"] += t1 - t0
            if piece is None:
                break
            res.bytes_in += len(piece)
            etag.update(piece)
            t2 = time.perf_counter()
            timers[ETAG_STAGE] += t2 - t1
            chunks = cdc.feed(piece)
            timers["chunk"] += time.perf_counter() - t2
            store(chunks)
            pending += len(piece)
            if pending >= window:
                drain()
                pending = 0
        t0 = time.perf_counter()
        chunks = cdc.finish()
        timers["chunk"] += time.perf_counter() - t0
        store(chunks)
        drain()
        res.stages = timers
        res.put_seconds = sum(timers[s] for s in PUT_STAGES)
        res.get_seconds = sum(timers[s] for s in GET_STAGES)
        res.distinct_chunks = len(ids)
        res.digest_out = out_hash.hexdigest()
        return res

    def _run_threaded(self, pieces: Iterable[bytes], threads: int, window: int) -> RawResult:
        """Main thread: source + chunking (PUT), ordered hashing (GET); the pool: the per-chunk work.

        At most ``2 * threads`` chunks are in flight, like the engine's bounded pipeline.
        """
        res = RawResult(threads=threads)
        cdc = FastCDC(self.params)
        out_hash = xxhash.xxh3_128()
        ids: set[bytes] = set()
        max_inflight = 2 * threads
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="raw-chain") as pool:
            inflight: deque[Future[_Stored]] = deque()
            stored: list[_Stored] = []

            def settle_one() -> None:
                s = inflight.popleft().result()
                stored.append(s)
                ids.add(s.chunk_id)
                res.chunks += 1
                res.sealed_bytes += s.sealed_size

            def submit(chunks: list[bytes]) -> None:
                for plain in chunks:
                    inflight.append(pool.submit(self.put_one, plain))
                    while len(inflight) > max_inflight:
                        settle_one()

            def drain() -> None:
                queue: deque[Future[bytes]] = deque()
                todo = iter(stored)
                for s in todo:
                    queue.append(pool.submit(self.get_one, s))
                    if len(queue) >= max_inflight:
                        break
                while queue:
                    future = queue.popleft()
                    nxt = next(todo, None)
                    if nxt is not None:
                        queue.append(pool.submit(self.get_one, nxt))
                    plain = future.result()
                    out_hash.update(plain)
                    res.bytes_out += len(plain)
                stored.clear()

            pending = 0
            start = time.perf_counter()
            for piece in pieces:
                res.bytes_in += len(piece)
                submit(cdc.feed(piece))
                pending += len(piece)
                if pending >= window:
                    while inflight:
                        settle_one()
                    t = time.perf_counter()
                    res.put_seconds += t - start
                    drain()
                    start = time.perf_counter()
                    res.get_seconds += start - t
                    pending = 0
            submit(cdc.finish())
            while inflight:
                settle_one()
            t = time.perf_counter()
            res.put_seconds += t - start
            drain()
            res.get_seconds += time.perf_counter() - t
        res.distinct_chunks = len(ids)
        res.digest_out = out_hash.hexdigest()
        return res
