"""Engine benchmark: in-process PUT/GET throughput against the raw primitive chain, dedup, memory,
small objects, and (optionally) a profile of where a large PUT and GET spend their time.

    .venv/bin/python bench/engine.py               # the full run (1 GiB inputs, 5 GiB object)
    .venv/bin/python bench/engine.py --quick       # smoke run (128 MiB inputs, 256 MiB object)
    .venv/bin/python bench/engine.py --only put,get,raw --profile   # with cProfile (and py-spy)

Results are printed, written to bench/out/engine.json and summarised in bench/out/engine.md.
Rates are given both in MB/s (10^6 bytes per second) and in MiB/s (2^20 bytes per second).
docs/benchmarks.md explains every figure.

The script re-executes itself with the glibc allocator settings from PERFORMANCE-NOTES.md
(MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_) unless they are already set. It never exits
non-zero because a target is missed; it does exit non-zero if data comes back different.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import gc
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import xxhash

from bench.datagen import MiB, RandomSource, Source, make_source
from bench.rawchain import ETAG_STAGE, GET_STAGES, PUT_STAGES, RawChain, bench_keys
from datawarehouse.config import EngineConfig
from datawarehouse.service.warehouse import OpenOptions, Warehouse

GiB = 1024 * MiB
KiB = 1024
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}
PHASES = ("put", "get", "raw", "dedup", "rss", "small")
KINDS = ("random", "text")
TARGETS = {"put": 0.70, "get": 0.80}  # engine MB/s / single-thread raw chain MB/s (from the issue)
SPACE_FACTOR = 1.6  # free space wanted per byte written (EC(4,2) is 1.5x, plus journal and slack)
RSS_SAMPLE_SECONDS = 0.05
SMALL_CASES = (("4KiB", 4 * KiB, 2000), ("256KiB", 256 * KiB, 500))
SMALL_THREADS = (1, 8)
BUCKET = "bench"


# --- small helpers -------------------------------------------------------------------------------


def log(*parts: object) -> None:
    print(*parts, flush=True)


def parse_size(text: str) -> int:
    """``1GiB``, ``256MiB``, ``512M`` (binary units, like the rest of the script), or plain bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB, 256MiB, 4096)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}[unit])


def human(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def rate(nbytes: int, seconds: float) -> dict[str, float]:
    seconds = max(seconds, 1e-9)
    return {"bytes": nbytes, "seconds": seconds, "MB_s": nbytes / 1e6 / seconds, "MiB_s": nbytes / MiB / seconds}


def fmt_rate(r: dict[str, float]) -> str:
    return f"{r['MB_s']:8.1f} MB/s ({r['MiB_s']:7.1f} MiB/s) in {r['seconds']:.2f} s"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def du(paths: Iterable[Path]) -> dict[str, int]:
    """Allocated bytes (``st_blocks * 512``, what ``du`` reports) and apparent bytes under ``paths``."""
    allocated = apparent = files = 0
    stack = [str(p) for p in paths]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return {"allocated": allocated, "apparent": apparent, "files": files}


def du_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def hashed(pieces: Iterable[bytes], hasher: Any) -> Iterator[bytes]:
    for piece in pieces:
        hasher.update(piece)
        yield piece


# --- environment -----------------------------------------------------------------------------------


def ensure_allocator_env() -> None:
    """Re-exec with the allocator settings of PERFORMANCE-NOTES.md when they are not set."""
    missing = {k: v for k, v in ALLOCATOR_ENV.items() if k not in os.environ}
    if not missing:
        return
    if os.environ.get("DWH_BENCH_REEXEC"):
        log(f"warning: could not set {sorted(missing)} (re-exec did not take); continuing without")
        return
    env = dict(os.environ, **missing, DWH_BENCH_REEXEC="1")
    log("re-executing with " + " ".join(f"{k}={v}" for k, v in missing.items()))
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _cpu_model() -> tuple[str, list[str]]:
    model, flags = "", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                wanted = {"aes", "vaes", "pclmulqdq", "vpclmulqdq", "sha_ni", "avx2", "avx512f"}
                flags = sorted(wanted & set(value.split()))
    return model or platform.processor() or platform.machine(), flags


def _git() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def machine_info(base: Path) -> dict[str, Any]:
    model, flags = _cpu_model()
    versions: dict[str, str | None] = {}
    for name in ("blake3", "zstandard", "cryptography", "pyeclib", "pyfastcdc", "xxhash", "SQLAlchemy", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    extra: dict[str, str] = {}
    with contextlib.suppress(Exception):
        import zstandard

        extra["libzstd"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    with contextlib.suppress(Exception):
        from cryptography.hazmat.backends.openssl.backend import backend

        extra["openssl"] = backend.openssl_version_text()
    usage = shutil.disk_usage(base)
    return {
        "hostname": platform.node(),
        "cpu_model": model,
        "cpu_flags": flags,
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "memory_total": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": versions,
        "native": extra,
        "git": _git(),
        "allocator_env": {k: os.environ.get(k) for k in ALLOCATOR_ENV},
        "bench_dir": str(base),
        "bench_dir_free": usage.free,
        "loadavg_start": os.getloadavg(),
    }


def print_machine(m: dict[str, Any]) -> None:
    log("== Machine ==")
    log(f"  CPU: {m['cpu_model']} — nproc {m['nproc']} (cpu_count {m['cpu_count']}); flags: {' '.join(m['cpu_flags'])}")
    log(f"  memory {human(m['memory_total'])}; Python {m['python']} ({m['platform']})")
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    log(f"  libraries: {libs}; " + ", ".join(f"{k} {v}" for k, v in m["native"].items()))
    git = m["git"]
    log(f"  datawarehouse commit {git['commit']}{' (+ uncommitted changes)' if git['dirty'] else ''}")
    log("  allocator: " + " ".join(f"{k}={v}" for k, v in m["allocator_env"].items()))
    log(f"  working dir {m['bench_dir']} ({human(m['bench_dir_free'])} free); load average {m['loadavg_start']}")


def enough_space(base: Path, nbytes: int, what: str) -> bool:
    free = shutil.disk_usage(base).free
    if free >= SPACE_FACTOR * nbytes:
        return True
    log(f"  note: {what} wants ~{human(SPACE_FACTOR * nbytes)} free under {base}; only {human(free)} is")
    return False


# --- warehouses ------------------------------------------------------------------------------------


class Bench:
    """State shared by the phases: where to put data directories, and whether to keep them."""

    def __init__(self, base: Path, keep: bool) -> None:
        self.base = base
        self.keep = keep
        self._count = 0
        self.failures: list[str] = []

    @contextlib.contextmanager
    def warehouse(self, name: str) -> Iterator[Warehouse]:
        self._count += 1
        root = self.base / f"{self._count:02d}-{name}"
        wh = Warehouse.init(root, options=OpenOptions(config=EngineConfig()))
        try:
            wh.create_bucket(BUCKET)
            yield wh
        finally:
            wh.close()
            if not self.keep:
                shutil.rmtree(root, ignore_errors=True)
            gc.collect()

    def check(self, ok: bool, what: str) -> str:
        if not ok:
            self.failures.append(what)
            log(f"  !! MISMATCH: {what}")
        return "ok" if ok else "MISMATCH"


def disk_paths(wh: Warehouse) -> list[Path]:
    return [Path(rec.path) for rec in wh.engine.disks.records()]


def chunk_stats(wh: Warehouse) -> dict[str, int]:
    """Chunk rows, their plaintext bytes (unique data) and sealed bytes (after compression)."""
    plain = 0
    after = None
    with wh.engine.repo.transaction() as tx:
        count = tx.chunk_count()
        sealed = tx.stored_size_total()
        while True:
            page = tx.list_chunks(after, 1000)
            plain += sum(c.plain_size for c in page)
            if len(page) < 1000:
                break
            after = (page[-1].domain_id, page[-1].chunk_id)
    return {"chunks": count, "plain_bytes": plain, "sealed_bytes": sealed}


def read_all(wh: Warehouse, key: str) -> tuple[int, str]:
    _, it = wh.get_object(BUCKET, key)
    hasher = xxhash.xxh3_128()
    n = 0
    for piece in it:
        hasher.update(piece)
        n += len(piece)
    return n, hasher.hexdigest()


# --- phase 1 and 2: engine PUT/GET against the raw chain --------------------------------------------


def source_pass(src: Source) -> tuple[str, dict[str, float]]:
    """Generate the input once, untimed by the phases: its digest, and what generating it costs."""
    t0 = time.perf_counter()
    digest = src.digest()
    return digest, rate(src.total_size, time.perf_counter() - t0)


def phase_engine(
    bench: Bench, kind: str, src: Source, expected: str, do_get: bool, *, md5_etag: bool = False
) -> dict[str, Any]:
    """One PUT (and GET) of the whole source. ``md5_etag``: the PUT also computes the stream's
    MD5, as an S3 PUT does (the Python API's default is the free content ETag)."""
    out: dict[str, Any] = {}
    with bench.warehouse(f"engine-{kind}{'-md5' if md5_etag else ''}") as wh:
        key = f"{kind}-object"
        t0 = time.perf_counter()
        version = wh.put_object(BUCKET, key, src.pieces(), md5_etag=md5_etag)
        put = rate(src.total_size, time.perf_counter() - t0)
        stats = chunk_stats(wh)
        disk = du(disk_paths(wh))
        out["put"] = put
        out["object"] = {
            "chunks": len(version.chunks),
            "average_chunk": src.total_size / max(1, len(version.chunks)),
            "compression_ratio": stats["plain_bytes"] / stats["sealed_bytes"] if stats["sealed_bytes"] else None,
            "disk_allocated": disk["allocated"],
            "disk_files": disk["files"],
            "disk_expansion": disk["allocated"] / src.total_size if src.total_size else None,
        }
        log(f"  engine PUT {kind:6s} {fmt_rate(put)}{'  (with the MD5 ETag)' if md5_etag else ''}")
        log(
            f"             {len(version.chunks)} chunks (avg {human(out['object']['average_chunk'])}), "
            f"compression {out['object']['compression_ratio']:.2f}x, on disk {human(disk['allocated'])} "
            f"in {disk['files']} files ({out['object']['disk_expansion']:.2f}x the input)"
        )
        if do_get:
            t0 = time.perf_counter()
            n, digest = read_all(wh, key)
            get = rate(n, time.perf_counter() - t0)
            out["get"] = get
            out["get"]["verified"] = bench.check(n == src.total_size and digest == expected, f"engine GET {kind}")
            log(f"  engine GET {kind:6s} {fmt_rate(get)}  [{out['get']['verified']}]")
    return out


def phase_raw(bench: Bench, kind: str, src: Source, expected: str, threads: int) -> dict[str, Any]:
    chain = RawChain(bench_keys(), EngineConfig().chunker, 4, 2, EngineConfig().compression_level)
    res = chain.run(src.pieces(), threads=threads)
    out = res.to_json()
    out["put"] = rate(res.bytes_in, res.put_seconds)
    if res.stages.get(ETAG_STAGE):
        out["put_with_etag"] = rate(res.bytes_in, res.put_seconds + res.stages[ETAG_STAGE])
    out["get"] = rate(res.bytes_out, res.get_seconds)
    ok = res.bytes_out == src.total_size and res.digest_out == expected
    out["verified"] = bench.check(ok, f"raw chain {kind} {threads} thread(s)")
    label = f"raw {threads}T"
    log(f"  {label} PUT  {kind:6s} {fmt_rate(out['put'])}")
    log(f"  {label} GET  {kind:6s} {fmt_rate(out['get'])}  [{out['verified']}]")
    if res.distinct_chunks != res.chunks:
        log(f"             note: {res.chunks - res.distinct_chunks} repeated chunks in the input")
    if res.stages:
        total = src.total_size / MiB

        def stages(names: tuple[str, ...]) -> str:
            return ", ".join(f"{s} {res.stages[s] * 1000 / total:.3f}" for s in names)

        etag_ms = res.stages[ETAG_STAGE] * 1000 / total
        log(f"             ms per MiB — PUT: {stages(PUT_STAGES)} (+ MD5 ETag {etag_ms:.3f})")
        log(f"                          GET: {stages(GET_STAGES)}")
        out["stages_ms_per_MiB"] = {s: v * 1000 / total for s, v in res.stages.items()}
    return out


def disk_ceiling(bench: Bench, data_bytes: int, threads: int = 6) -> dict[str, Any]:
    """What the disk allows a PUT at EC(4,2) with ~1 MiB chunks through the engine's pack stores:
    six ~256 KiB shard records per MiB staged into the active pack of six disks, ``threads`` at a
    time (the engine's chunk threads), every disk flushed (one group-committed ``fdatasync``) after
    each 8 MiB — the engine's shard I/O without any of its CPU work. The engine's PUT cannot beat
    this on this disk."""
    from datawarehouse.storage.packstore import PackStore

    root = bench.base / "disk-ceiling"
    stores = [PackStore(root / f"d{i}", create=True) for i in range(1, 7)]
    chunks = max(1, data_bytes // MiB)
    payload = os.urandom(256 * KiB + 176)  # a 1 MiB chunk's shard: payload + fragment and shard headers
    batch = 8

    def put_chunk(i: int) -> None:
        for index, store in enumerate(stores):
            store.stage(f"shards/1/{i % 256:02x}/{i:064x}.{0:016x}.{index}", payload)

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for first in range(0, chunks, batch):
                list(pool.map(put_chunk, range(first, min(first + batch, chunks))))
                list(pool.map(lambda store: store.flush(), stores))
        seconds = time.perf_counter() - t0
    finally:
        for store in stores:
            store.close()
        shutil.rmtree(root, ignore_errors=True)
    out = rate(chunks * MiB, seconds)
    out["records_per_s"] = chunks * 6 / seconds
    out["threads"] = threads
    return out


def phase_throughput(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    phases = args.only
    if not ({"put", "get", "raw"} & phases):
        return
    log(f"\n== PUT/GET throughput: {human(args.size)} per data kind, 6 disks at EC(4,2), default EngineConfig ==")
    enough_space(bench.base, args.size, "the PUT/GET phase")
    if "put" in phases:
        ceiling = disk_ceiling(bench, min(args.size, 256 * MiB))
        results["disk_ceiling"] = ceiling
        log(
            f"  disk ceiling       {fmt_rate(ceiling)} of object data "
            f"({ceiling['records_per_s']:.0f} shard records/s appended to packs + fdatasynced, "
            f"{ceiling['threads']} threads)"
        )
    engine: dict[str, Any] = results.setdefault("engine", {})
    raw: dict[str, Any] = results.setdefault("raw", {})
    sources: dict[str, Any] = results.setdefault("source", {})
    for kind in args.kinds:
        src = make_source(kind, f"{args.seed}-{kind}", args.size)
        expected, gen = source_pass(src)
        sources[kind] = {"generate_and_hash": gen, "digest": expected}
        log(f"  source {kind:6s}   {fmt_rate(gen)} (generating + xxh3, included in every PUT below)")
        # Rounds interleave the engine and the single-thread chain: this machine's memory speed
        # drifts (the chain alone measured 297-438 MB/s in four runs a minute apart), so each
        # ratio compares two runs made seconds apart, and the median round is reported.
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for r in range(args.rounds):
            if args.rounds > 1:
                log(f"  -- round {r + 1}/{args.rounds}")
            eng_r = phase_engine(bench, kind, src, expected, "get" in phases) if {"put", "get"} & phases else {}
            if "put" in phases:
                eng_r[MD5_PUT] = phase_engine(bench, kind, src, expected, False, md5_etag=True)["put"]
            raw_r = phase_raw(bench, kind, src, expected, 1) if "raw" in phases else {}
            rounds.append((eng_r, raw_r))
            gc.collect()
        engine[kind], raw_1t, round_ratios = median_rounds(rounds)
        if "raw" in phases:
            raw[kind] = {"1T": raw_1t, "2T": phase_raw(bench, kind, src, expected, 2)}
        if round_ratios:
            results.setdefault("round_ratios", {})[kind] = round_ratios
        gc.collect()
    ratios: dict[str, Any] = results.setdefault("ratios", {})
    for kind in args.kinds:
        for op in ("put", "get"):
            eng = engine.get(kind, {}).get(op)
            base = raw.get(kind, {}).get("1T", {}).get(op)
            if not eng or not base:
                continue
            ratio = eng["MB_s"] / base["MB_s"]
            ratios.setdefault(kind, {})[op] = {
                "ratio": ratio,
                "target": TARGETS[op],
                "pass": ratio >= TARGETS[op],
                "vs_2T": eng["MB_s"] / raw[kind]["2T"][op]["MB_s"],
                "rounds": results.get("round_ratios", {}).get(kind, {}).get(op, [ratio]),
            }
            with_etag = raw.get(kind, {}).get("1T", {}).get("put_with_etag")
            md5_put = engine.get(kind, {}).get(MD5_PUT)
            if op == "put" and with_etag and md5_put:
                ratios[kind][op]["md5_etag_vs_with_etag"] = md5_put["MB_s"] / with_etag["MB_s"]
                ratios[kind][op]["md5_etag_rounds"] = results.get("round_ratios", {}).get(kind, {}).get(MD5_PUT, [])
            if op == "put" and kind == "random" and "disk_ceiling" in results:  # same bytes per file
                ratios[kind][op]["vs_disk_ceiling"] = eng["MB_s"] / results["disk_ceiling"]["MB_s"]
    if ratios:
        log("  engine / raw chain (1 thread):")
        for kind, ops in ratios.items():
            for op, r in ops.items():
                verdict = "PASS" if r["pass"] else "FAIL"
                extra = f"; vs the disk ceiling: {r['vs_disk_ceiling'] * 100:.1f} %" if "vs_disk_ceiling" in r else ""
                if "md5_etag_vs_with_etag" in r:
                    md5_each = ", ".join(f"{x * 100:.1f}" for x in r["md5_etag_rounds"])
                    extra += (
                        f"; with the MD5 ETag (an S3 PUT) vs the chain + MD5: "
                        f"{r['md5_etag_vs_with_etag'] * 100:.1f} % [{md5_each}]"
                    )
                each = ", ".join(f"{x * 100:.1f}" for x in r["rounds"])
                log(
                    f"    {kind:6s} {op.upper():3s} {r['ratio'] * 100:6.1f} %  (target >= {r['target'] * 100:.0f} %) "
                    f"{verdict}   [rounds: {each} %; vs the 2-thread raw chain: {r['vs_2T'] * 100:.1f} %{extra}]"
                )


MD5_PUT = "put_md5_etag"  # the engine PUT computing the MD5 ETag, compared with the chain + MD5


def median_rounds(
    rounds: list[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[float]]]:
    """Engine and raw-chain results of the round with the median engine/raw ratio, per operation
    (PUT and GET may pick different rounds), and every round's ratio per operation."""
    engine: dict[str, Any] = dict(rounds[0][0])
    raw: dict[str, Any] = dict(rounds[0][1])
    ratios: dict[str, list[float]] = {}
    md5_pairs = [
        (e[MD5_PUT]["MB_s"] / r["put_with_etag"]["MB_s"], e[MD5_PUT])
        for e, r in rounds
        if MD5_PUT in e and "put_with_etag" in r
    ]
    if md5_pairs:
        ratios[MD5_PUT] = [p[0] for p in md5_pairs]
        engine[MD5_PUT] = sorted(md5_pairs, key=lambda p: p[0])[len(md5_pairs) // 2][1]
    for op in ("put", "get"):
        pairs = [(e[op]["MB_s"] / r[op]["MB_s"], e, r) for e, r in rounds if op in e and op in r]
        if not pairs:
            continue
        ratios[op] = [p[0] for p in pairs]
        _ratio, eng, base = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]
        engine[op] = eng[op]
        raw[op] = base[op]
        if op == "put":
            engine["object"] = eng.get("object")
            for field in ("put_with_etag", "stages_ms_per_MiB", "stages_seconds"):
                if field in base:
                    raw[field] = base[field]
    return engine, raw, ratios


# --- phase 3: dedup -------------------------------------------------------------------------------


def added(put: dict[str, Any]) -> str:
    """Bytes a put added to the disk directories: written (apparent size), and allocated, which
    also counts the space the active packs reserve ahead of their end (up to 32 MiB per disk at a
    time, ``PREALLOC_STEP``) whenever a write crosses into the next reservation."""
    d = put["disk_added"]
    return f"+{human(d['apparent'])} written (+{human(d['allocated'])} allocated)"


def phase_dedup(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    size = args.dedup_size
    log(f"\n== Dedup: {human(size)} of random data ==")
    enough_space(bench.base, 2 * size, "the dedup phase")
    out: dict[str, Any] = {"size": size}
    with bench.warehouse("dedup") as wh:
        disks = disk_paths(wh)
        meta = [wh.engine.datadir.root / "meta"]

        def put(key: str, src: Source) -> dict[str, Any]:
            d0, m0, c0 = du(disks), du(meta), chunk_stats(wh)
            t0 = time.perf_counter()
            wh.put_object(BUCKET, key, src.pieces())
            seconds = time.perf_counter() - t0
            d1, m1, c1 = du(disks), du(meta), chunk_stats(wh)
            return {
                "put": rate(src.total_size, seconds),
                "disk_added": du_delta(d1, d0),
                "meta_added": du_delta(m1, m0),
                "new_chunks": c1["chunks"] - c0["chunks"],
                "chunks_after": c1,
            }

        same = RandomSource(f"{args.seed}-dedup", size)
        first = put("same-1", same)
        second = put("same-2", same)
        logical = 2 * same.total_size
        unique = second["chunks_after"]["plain_bytes"]
        out["same_twice"] = {
            "first": first,
            "second": second,
            "dedup_ratio": logical / unique if unique else None,
        }
        log(f"  first put:  {first['new_chunks']} chunks stored, {added(first)} on the disks; {fmt_rate(first['put'])}")
        log(
            f"  same again: {second['new_chunks']} chunks stored, {added(second)} on the disks "
            f"(+{human(second['meta_added']['allocated'])} metadata); {fmt_rate(second['put'])}"
        )
        log(f"  dedup ratio (logical bytes / unique chunk bytes): {out['same_twice']['dedup_ratio']:.3f}")

        base = RandomSource(f"{args.seed}-shift", size)
        shifted = RandomSource(f"{args.seed}-shift", size, prefix=b"\x00")
        original = put("shift-0", base)
        moved = put("shift-1", shifted)
        out["one_byte_shift"] = {
            "original": original,
            "shifted": moved,
            "chunks_in_object": original["new_chunks"],
        }
        log(
            f"  one-byte insert at the front: {moved['new_chunks']} new chunks of {original['new_chunks']}, "
            f"{added(moved)} on the disks "
            f"(+{human(moved['meta_added']['allocated'])} metadata); {fmt_rate(moved['put'])}"
        )
    results["dedup"] = out


# --- phase 4: peak RSS of a big object, in a child process ------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), in bytes; ``None`` off Linux."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: writing 5 to clear_refs), so the next phase gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _malloc_trim() -> bool:
    """Hand free heap memory back to the OS (glibc), so RSS drops to what is really in use."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def child_rss(args: argparse.Namespace) -> None:
    """Child side: write then read one big object, announcing phases on stdout.

    Besides the parent's sampling, the child reports its own kernel-kept peaks (VmHWM, reset
    before each phase): exact, where 50 ms sampling can miss a short spike. (``ru_maxrss`` is not
    used: Linux carries it over from the parent across fork and exec.)
    """

    def phase(name: str) -> None:
        print(f"PHASE {name}", flush=True)

    root = Path(args.dir) / "rss"
    wh = Warehouse.init(root, options=OpenOptions(config=EngineConfig()))
    kernel: dict[str, Any] = {}
    try:
        wh.create_bucket(BUCKET)
        src = RandomSource(f"{args.seed}-big", args.big_size)
        gc.collect()
        kernel["hwm_before_baseline"] = _proc_status_kib("VmHWM")
        phase("baseline")
        time.sleep(1.0)
        kernel["rss_baseline"] = _proc_status_kib("VmRSS")
        kernel["peak_reset"] = _reset_peak_rss()
        phase("write")
        hasher = xxhash.xxh3_128()
        t0 = time.perf_counter()
        wh.put_object(BUCKET, "big", hashed(src.pieces(), hasher))
        write_s = time.perf_counter() - t0
        kernel["hwm_write"] = _proc_status_kib("VmHWM")
        kernel["rss_after_write"] = _proc_status_kib("VmRSS")
        gc.collect()
        kernel["malloc_trim"] = _malloc_trim()
        phase("idle")
        time.sleep(0.5)
        kernel["rss_after_trim"] = _proc_status_kib("VmRSS")
        _reset_peak_rss()
        phase("read")
        t0 = time.perf_counter()
        n, digest = read_all(wh, "big")
        read_s = time.perf_counter() - t0
        kernel["hwm_read"] = _proc_status_kib("VmHWM")
        phase("done")
        result = {
            "size": src.total_size,
            "write": rate(src.total_size, write_s),
            "read": rate(n, read_s),
            "verified": n == src.total_size and digest == hasher.hexdigest(),
            "kernel": kernel,
        }
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        wh.close()


def phase_rss(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    size = args.big_size
    free = shutil.disk_usage(bench.base).free
    if free < SPACE_FACTOR * size:
        shrunk = max(256 * MiB, int(free / SPACE_FACTOR) // (256 * MiB) * (256 * MiB))
        log(
            f"\n  note: {human(free)} free under {bench.base} is not ~{SPACE_FACTOR}x {human(size)}: "
            f"using {human(shrunk)}"
        )
        size = shrunk
    log(f"\n== Peak RSS: one {human(size)} object written then read, in a child process sampled every 50 ms ==")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "rss",
        "--big-size",
        str(size),
        "--dir",
        str(bench.base),
        "--seed",
        args.seed,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1, cwd=REPO_DIR)
    state = {"phase": "start"}
    child_result: dict[str, Any] = {}

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PHASE "):
                state["phase"] = line.split()[1]
            elif line.startswith("RESULT "):
                child_result.update(json.loads(line[7:]))
            else:
                log("  child: " + line.rstrip())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    peaks: dict[str, int] = {}
    samples: dict[str, int] = {}
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss
            except psutil.NoSuchProcess:
                break
            ph = state["phase"]
            peaks[ph] = max(peaks.get(ph, 0), rss)
            samples[ph] = samples.get(ph, 0) + 1
            time.sleep(RSS_SAMPLE_SECONDS)
    finally:
        proc.wait()
        thread.join(timeout=10)
        if not bench.keep:
            shutil.rmtree(bench.base / "rss", ignore_errors=True)
    if proc.returncode != 0 or not child_result:
        bench.failures.append(f"RSS child exited with {proc.returncode}")
        log(f"  !! the child failed (exit {proc.returncode})")
        return
    baseline = peaks.get("baseline", 0)
    kernel = child_result.get("kernel", {})
    out = {
        "size": size,
        "baseline_rss": baseline,
        "peak_rss_write": peaks.get("write", 0),
        "peak_rss_read": peaks.get("read", 0),
        "peak_over_baseline_write": peaks.get("write", 0) - baseline,
        "peak_over_baseline_read": peaks.get("read", 0) - baseline,
        "sampled_peaks_by_phase": peaks,
        "samples": samples,
        "kernel": kernel,
        "write": child_result["write"],
        "read": child_result["read"],
        "verified": bench.check(child_result["verified"], "big object read back"),
    }
    results["rss"] = out

    def k(name: str) -> str:
        value = kernel.get(name)
        return human(value) if isinstance(value, int) else "n/a"

    log(f"  baseline RSS (engine open, before the write): {human(baseline)}")
    log(
        f"  peak RSS while writing: {human(out['peak_rss_write'])} (+{human(out['peak_over_baseline_write'])}); "
        f"kernel peak (VmHWM) {k('hwm_write')}"
    )
    log(
        f"  RSS after the write {k('rss_after_write')}, after gc + malloc_trim {k('rss_after_trim')} "
        "(the allocator keeps freed memory: MALLOC_TRIM_THRESHOLD_ is 256 MiB)"
    )
    log(
        f"  peak RSS while reading: {human(out['peak_rss_read'])} (+{human(out['peak_over_baseline_read'])}); "
        f"kernel peak (VmHWM) {k('hwm_read')}"
    )
    log(f"  samples per phase: {samples}")
    log(f"  write {fmt_rate(out['write'])}; read {fmt_rate(out['read'])}  [{out['verified']}]")


# --- phase 5: small objects -------------------------------------------------------------------------


def _latency_stats(latencies: list[float], wall: float) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "ops": len(lat),
        "seconds": wall,
        "ops_s": len(lat) / max(wall, 1e-9),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "mean_ms": sum(lat) / len(lat) * 1000 if lat else float("nan"),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
    }


def _run_ops(op: Callable[[int], float], count: int, threads: int) -> dict[str, float]:
    t0 = time.perf_counter()
    if threads == 1:
        latencies = [op(i) for i in range(count)]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            latencies = list(pool.map(op, range(count)))
    return _latency_stats(latencies, time.perf_counter() - t0)


def phase_small(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    log("\n== Small objects: unique random payloads, one warehouse ==")
    out: dict[str, Any] = {}
    with bench.warehouse("small") as wh:
        for label, size, count in SMALL_CASES:
            for threads in SMALL_THREADS:
                src = RandomSource(f"{args.seed}-small-{label}-{threads}", size * count, piece_size=size)
                payloads = list(src.pieces())
                keys = [f"{label}/{threads}t/{i:06d}" for i in range(count)]
                paths: set[str] = set()

                def put(
                    i: int, keys: list[str] = keys, payloads: list[bytes] = payloads, paths: set[str] = paths
                ) -> float:
                    t0 = time.perf_counter()
                    v = wh.put_object(BUCKET, keys[i], payloads[i])
                    dt = time.perf_counter() - t0
                    paths.add("inline" if v.inline_data is not None else "chunked")
                    return dt

                bad: list[int] = []

                def get(
                    i: int, keys: list[str] = keys, payloads: list[bytes] = payloads, bad: list[int] = bad
                ) -> float:
                    t0 = time.perf_counter()
                    data = wh.get_object_bytes(BUCKET, keys[i])
                    dt = time.perf_counter() - t0
                    if data != payloads[i]:
                        bad.append(i)
                    return dt

                puts = _run_ops(put, count, threads)
                gets = _run_ops(get, count, threads)
                entry = {
                    "size": size,
                    "threads": threads,
                    "path": "/".join(sorted(paths)),
                    "put": puts,
                    "get": gets,
                    "verified": bench.check(not bad, f"small {label} {threads}T read back"),
                }
                out[f"{label}-{threads}T"] = entry
                for name, s in (("PUT", puts), ("GET", gets)):
                    log(
                        f"  {label:>6s} {name} {threads}T ({entry['path']}): {s['ops_s']:8.1f} ops/s, "
                        f"p50 {s['p50_ms']:7.2f} ms, p99 {s['p99_ms']:7.2f} ms ({s['ops']} ops)"
                    )
                del payloads
    results["small"] = out


# --- phase 6: profile ---------------------------------------------------------------------------------


class _ThreadProfiles:
    """cProfile for every thread started while installed (cProfile only sees the thread that
    enabled it): ``threading.setprofile`` runs a one-shot hook in each new thread that starts
    that thread's own profiler. The engine's pools start their threads lazily, so installing
    this before the data directory is opened covers the writer pool, the shard I/O pool, the
    MD5 thread and the committer."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile()
        with self._lock:
            self.profiles.append(prof)
        prof.enable()

    def install(self) -> None:
        threading.setprofile(self._hook)

    def uninstall(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]


# (label, file name suffix or "~" for built-ins, function name): cumulative time, summed over threads.
PUT_BUCKETS = (
    ("input generation (bench source)", "bench/datagen.py", "piece"),
    ("MD5 of the stream (ETag)", "~", "<method 'update' of '_hashlib.HASH' objects>"),
    ("FastCDC.feed", "core/chunking.py", "feed"),
    ("ObjectWriter._process (per chunk)", "engine/writer.py", "_process"),
    ("  chunk id (keyed BLAKE3)", "core/digest.py", "chunk_id"),
    ("  lookup_chunk (metadata)", "engine/engine.py", "lookup_chunk"),
    ("  ChunkStore.write", "engine/chunkstore.py", "write"),
    ("    seal_chunk (zstd + AES-GCM)", "core/crypto.py", "seal_chunk"),
    ("      zstd compress", "core/compression.py", "compress_view"),
    ("    EC encode", "core/erasure.py", "encode"),
    ("    shard put (pack, write, fsync, rename)", "engine/chunkstore.py", "put"),
    ("      shard_header", "core/frame.py", "shard_header"),
    ("      LocalDiskStore.put", "storage/localdisk.py", "put"),
    ("        os.fsync", "~", "<built-in method posix.fsync>"),
    ("ChunkStore.flush (directory fsyncs)", "engine/chunkstore.py", "flush"),
    ("commit (journal + SQLite)", "engine/engine.py", "commit"),
)
GET_BUCKETS = (
    ("per-chunk fetch (reader pool)", "engine/reader.py", "fetch"),
    ("  get_chunk (metadata)", "engine/engine.py", "get_chunk"),
    ("  ChunkStore.read", "engine/chunkstore.py", "read"),
    ("    shard reads (open, read, header check)", "engine/chunkstore.py", "_read_shard"),
    ("      LocalDiskStore.get", "storage/localdisk.py", "get"),
    ("      parse_shard (xxh3 of the payload)", "core/frame.py", "parse_shard"),
    ("    EC decode", "core/erasure.py", "decode"),
    ("    open_chunk", "core/crypto.py", "open_chunk"),
    ("      zstd decompress", "core/compression.py", "decompress"),
    ("      id check (keyed BLAKE3)", "core/digest.py", "chunk_id"),
    ("head_object + get_bucket (metadata)", "service/warehouse.py", "head_object"),
    ("output hashing (bench, xxh3-128)", "~", "<method 'update' of 'xxhash.xxh3_128' objects>"),
)


def _bucket_times(stats: pstats.Stats, buckets: tuple[tuple[str, str, str], ...]) -> list[tuple[str, float, int]]:
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    out = []
    for label, suffix, func in buckets:
        cum = 0.0
        calls = 0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in table.items():
            if name == func and (filename == suffix if suffix == "~" else filename.endswith(suffix)):
                cum += ct
                calls += nc
        out.append((label, cum, calls))
    return out


_PLUMBING = ("/threading.py", "/queue.py", "/concurrent/futures/", "/contextlib.py")
_WAITS = (
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
)


def _top(stats: pstats.Stats, key: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    """The top functions by ``tottime`` or ``cumtime``, leaving out thread plumbing and lock waits
    (idle pool threads would otherwise fill the list with time spent waiting for work)."""
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    field = 3 if key == "cumtime" else 2
    rows = [
        (fn, line, name, nc, tt, ct)
        for (fn, line, name), (_cc, nc, tt, ct, _callers) in table.items()
        if name not in _WAITS and not any(part in fn for part in _PLUMBING)
    ]
    rows.sort(key=lambda r: r[field + 2], reverse=True)
    rows = rows[:count]
    text = [f"{'ncalls':>9s} {'tottime':>9s} {'cumtime':>9s}  function"]
    entries = []
    for fn, line, name, nc, tt, ct in rows:
        where = name if fn == "~" else f"{_short_path(fn)}:{line}({name})"
        text.append(f"{nc:9d} {tt:9.3f} {ct:9.3f}  {where}")
        entries.append({"function": where, "ncalls": nc, "tottime": tt, "cumtime": ct})
    return "\n".join(text), entries


def _short_path(path: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker) :].lstrip("/")
    return path


def _fresh_pools(engine: Any) -> list[str]:
    """Replace the engine's thread pools by new ones (whose threads the installed hook profiles),
    keeping everything else warm; the old pools' threads exit. Returns what could not be swapped."""
    missing = []
    for owner, attr in ((engine, "pool"), (getattr(engine, "chunks", None), "_io")):
        old = getattr(owner, attr, None)
        if not isinstance(old, ThreadPoolExecutor):
            missing.append(f"{type(owner).__name__}.{attr}")
            continue
        workers = getattr(old, "_max_workers", 4)
        prefix = getattr(old, "_thread_name_prefix", "") or "pool"
        setattr(owner, attr, ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix))
        old.shutdown(wait=True)
    return missing


def _report_profile(
    label: str,
    main: cProfile.Profile,
    profiles: list[cProfile.Profile],
    wall: float,
    nbytes: int,
    path: Path,
    buckets: tuple[tuple[str, str, str], ...],
) -> dict[str, Any]:
    stats = pstats.Stats(main)
    for prof in profiles:
        stats.add(prof)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(path)
    log(
        f"  {label}: wall {wall:.2f} s under the profiler ({fmt_rate(rate(nbytes, wall))}), "
        f"{len(profiles)} more threads"
    )
    log(f"  saved {path} (snakeviz, or `python -m pstats`)")
    log("  Time by stage: cumulative seconds summed over all threads (can exceed the wall time);")
    log("  indented rows are part of the row above:")
    table = _bucket_times(stats, buckets)
    main_stats: dict[tuple[str, int, str], Any] = pstats.Stats(main).stats  # type: ignore[attr-defined]
    table.append(
        ("caller thread blocked (waiting on the engine)", sum(v[2] for k, v in main_stats.items() if k[2] in _WAITS), 0)
    )
    for name, cum, calls in table:
        log(f"    {name:46s} {cum:8.2f} s {cum / wall * 100:6.1f} % of wall  ({calls} calls)")
    text_tot, top_tot = _top(stats, "tottime", 15)
    text_cum, top_cum = _top(stats, "cumtime", 15)
    log(f"  {label} top 15 by own time (tottime; seconds summed over threads; thread plumbing, lock waits left out):")
    log("    " + text_tot.replace("\n", "\n    "))
    log(f"  {label} top 15 by cumulative time (same):")
    log("    " + text_cum.replace("\n", "\n    "))
    return {
        "wall_seconds": wall,
        "threads_profiled": len(profiles) + 1,
        "stages": [{"label": n.strip(), "cumtime": c, "calls": k} for n, c, k in table],
        "top_tottime": top_tot,
        "top_cumtime": top_cum,
        "prof_file": str(path),
    }


def phase_profile(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """cProfile a random PUT of --size, then a GET of it (warm directory caches, new pool threads)."""
    log(f"\n== Profile: {human(args.size)} random PUT then GET under cProfile (every thread) ==")
    out_dir = Path(args.out)
    src = RandomSource(f"{args.seed}-profile", args.size)
    put_threads, get_threads = _ThreadProfiles(), _ThreadProfiles()
    put_main, get_main = cProfile.Profile(), cProfile.Profile()
    get_wall = 0.0
    n = 0
    put_threads.install()
    try:
        with bench.warehouse("profile") as wh:
            t0 = time.perf_counter()
            put_main.enable()
            wh.put_object(BUCKET, "profiled", src.pieces())
            put_main.disable()
            put_wall = time.perf_counter() - t0
            get_threads.install()
            missing = _fresh_pools(wh.engine)
            if missing:
                log(f"  note: could not swap {', '.join(missing)}: the GET profile mixes in PUT time there")
            t0 = time.perf_counter()
            get_main.enable()
            n, _ = read_all(wh, "profiled")
            get_main.disable()
            get_wall = time.perf_counter() - t0
        # Closing the warehouse stopped its threads: every thread profile is complete now.
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    results["profile"] = {
        "put": _report_profile(
            "PUT", put_main, put_threads.profiles, put_wall, src.total_size, out_dir / "put-random.prof", PUT_BUCKETS
        ),
    }
    log("")
    results["profile"]["get"] = _report_profile(
        "GET", get_main, get_threads.profiles, get_wall, n, out_dir / "get-random.prof", GET_BUCKETS
    )
    results["profile"]["py_spy"] = run_py_spy(bench, args, out_dir)


_SPY_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Leaf functions that mean "this thread is waiting", not working (py-spy does not always tell
# blocked threads apart): an idle pool worker sits in _worker, waits on futures in Condition.wait.
_SPY_WAITING = {"_worker", "Condition.wait", "Event.wait", "Thread._wait_for_tstate_lock", "Queue.get", "wait"}


_SPY_PLUMBING = ("(threading.py)", "(concurrent/futures/", "(bench/engine.py)")


def _spy_function(frame: str) -> tuple[str, bool]:
    """``func (file:line)`` -> (``func (file)``, whether it is a waiting frame)."""
    m = _SPY_FRAME.match(frame)
    if not m:
        return frame, False
    return f"{m['func']} ({m['file']})", m["func"] in _SPY_WAITING


def summarise_py_spy(raw_path: Path, count: int = 15) -> dict[str, Any]:
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = waiting = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = [_spy_function(f) for f in stack.split(";")]
        total += n
        leaf, is_wait = frames[-1]
        if is_wait:
            waiting += n
            continue
        own[leaf] = own.get(leaf, 0) + n
        for name in {name for name, _ in frames}:
            if not any(part in name for part in _SPY_PLUMBING):
                inclusive[name] = inclusive.get(name, 0) + n
    busy = max(total - waiting, 1)
    return {
        "samples": total,
        "waiting_samples": waiting,
        "top_own": [
            {"function": f, "share_of_busy": n / busy} for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:count]
        ],
        "top_inclusive": [
            {"function": f, "share_of_busy": n / busy}
            for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:count]
        ],
    }


def run_py_spy(bench: Bench, args: argparse.Namespace, out_dir: Path) -> dict[str, Any] | None:
    """Sample the same PUT with py-spy (all threads, native code excluded) in a child process.

    py-spy attaches to the child once its data directory is open, so start-up is not sampled.
    Attaching needs ptrace rights (root, or kernel.yama.ptrace_scope = 0).
    """
    exe = shutil.which("py-spy")
    if exe is None:
        log("  py-spy: not installed, skipped")
        return None
    raw_path = out_dir / "put-random.pyspy.txt"
    child = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "put",
        "--size",
        str(args.size),
        "--dir",
        str(bench.base),
        "--seed",
        args.seed,
    ]
    log(f"  py-spy: sampling a {human(args.size)} random PUT in a child process at 100 Hz")
    proc = subprocess.Popen(child, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_DIR)
    assert proc.stdin is not None and proc.stdout is not None
    spy: subprocess.Popen[str] | None = None
    try:
        if proc.stdout.readline().strip() != "READY":
            log("  py-spy: the child did not start")
            return {"error": "child failed"}
        spy = subprocess.Popen(
            [exe, "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw", "--output", str(raw_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)  # let py-spy attach
        if spy.poll() is not None:
            err = spy.stderr.read().strip()[-400:] if spy.stderr else ""
            log(f"  py-spy could not attach (exit {spy.returncode}): {err}")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            return {"error": "py-spy could not attach"}
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result_line = proc.stdout.readline()
        proc.wait()
        spy.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if spy is not None and spy.poll() is None:
            spy.terminate()
            spy.wait()
        if not args.keep:
            shutil.rmtree(bench.base / "py-spy", ignore_errors=True)
    if not raw_path.exists():
        log(f"  py-spy wrote nothing (exit {spy.returncode if spy else '?'})")
        return {"error": "no output"}
    summary = summarise_py_spy(raw_path)
    if result_line.startswith("RESULT "):
        summary["put"] = json.loads(result_line[7:])
    busy = summary["samples"] - summary["waiting_samples"]
    log(
        f"  py-spy: {summary['samples']} samples over all threads, {summary['waiting_samples']} of them waiting "
        f"(idle pool threads, futures) and left out; saved {raw_path} (collapsed stacks: speedscope, inferno)"
    )
    log(f"  py-spy top 15 by own samples (share of the {busy} busy samples):")
    for e in summary["top_own"]:
        log(f"    {e['share_of_busy'] * 100:6.1f} %  {e['function']}")
    log("  py-spy top 15 by inclusive samples:")
    for e in summary["top_inclusive"]:
        log(f"    {e['share_of_busy'] * 100:6.1f} %  {e['function']}")
    summary["raw_file"] = str(raw_path)
    return summary


def child_put(args: argparse.Namespace) -> None:
    """Child side of the py-spy recording: one random PUT in a fresh warehouse, started on "go"."""
    root = Path(args.dir) / "py-spy"
    shutil.rmtree(root, ignore_errors=True)
    wh = Warehouse.init(root, options=OpenOptions(config=EngineConfig()))
    try:
        wh.create_bucket(BUCKET)
        src = RandomSource(f"{args.seed}-profile", args.size)
        print("READY", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        wh.put_object(BUCKET, "profiled", src.pieces())
        print("RESULT " + json.dumps(rate(src.total_size, time.perf_counter() - t0)), flush=True)
    finally:
        wh.close()


# --- summary ------------------------------------------------------------------------------------------


def summary_markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    m = results["machine"]
    lines.append(
        f"Machine: {m['cpu_model']}, nproc {m['nproc']}, Python {m['python']}; "
        f"load average at start {m['loadavg_start'][0]:.2f}, at end {m.get('loadavg_end', [float('nan')])[0]:.2f}. "
        "MB/s = 10^6 bytes/s, MiB/s = 2^20 bytes/s."
    )
    lines.append("")
    engine, raw, ratios = results.get("engine", {}), results.get("raw", {}), results.get("ratios", {})
    if engine or raw:
        lines.append(
            "| data | op | engine MB/s | engine MiB/s | raw chain 1T MB/s | raw chain 2T MB/s "
            "| engine / raw 1T | target |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---|")
        for kind in KINDS:
            for op in ("put", "get"):
                eng = engine.get(kind, {}).get(op)
                r1 = raw.get(kind, {}).get("1T", {}).get(op)
                r2 = raw.get(kind, {}).get("2T", {}).get(op)
                if not (eng or r1):
                    continue
                r = ratios.get(kind, {}).get(op)
                cells = [
                    kind,
                    op.upper(),
                    f"{eng['MB_s']:.0f}" if eng else "-",
                    f"{eng['MiB_s']:.0f}" if eng else "-",
                    f"{r1['MB_s']:.0f}" if r1 else "-",
                    f"{r2['MB_s']:.0f}" if r2 else "-",
                    f"{r['ratio'] * 100:.0f} %" if r else "-",
                    f">= {TARGETS[op] * 100:.0f} %: {'PASS' if r['pass'] else 'FAIL'}" if r else "-",
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    ceiling = results.get("disk_ceiling")
    if ceiling:
        lines.append(
            f"Disk ceiling for a PUT (the engine's pack stores alone, no CPU work): {ceiling['MB_s']:.0f} MB/s "
            f"({ceiling['MiB_s']:.0f} MiB/s) of object data, {ceiling['records_per_s']:.0f} shard records/s."
        )
        lines.append("")
    dedup = results.get("dedup")
    if dedup:
        st, sh = dedup["same_twice"], dedup["one_byte_shift"]
        lines.append("| dedup test | new chunks | bytes written to the disks (allocated) | dedup ratio |")
        lines.append("|---|---:|---:|---:|")
        lines.append(
            f"| same {human(dedup['size'])} put twice (second put) | {st['second']['new_chunks']} | "
            f"{human(st['second']['disk_added']['apparent'])} ({human(st['second']['disk_added']['allocated'])}) | "
            f"{st['dedup_ratio']:.3f} |"
        )
        lines.append(
            f"| {human(dedup['size'])}, then one byte inserted at the front | {sh['shifted']['new_chunks']} of "
            f"{sh['chunks_in_object']} | {human(sh['shifted']['disk_added']['apparent'])} "
            f"({human(sh['shifted']['disk_added']['allocated'])}) | - |"
        )
        lines.append("")
    rss = results.get("rss")
    if rss:
        lines.append(
            "| big object | size | baseline RSS | peak RSS writing | peak RSS reading | write MB/s | read MB/s |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        lines.append(
            f"| random | {human(rss['size'])} | {human(rss['baseline_rss'])} | {human(rss['peak_rss_write'])} | "
            f"{human(rss['peak_rss_read'])} | {rss['write']['MB_s']:.0f} | {rss['read']['MB_s']:.0f} |"
        )
        lines.append("")
    small = results.get("small")
    if small:
        lines.append(
            "| small objects | path | threads | PUT ops/s | PUT p50 ms | PUT p99 ms "
            "| GET ops/s | GET p50 ms | GET p99 ms |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, e in small.items():
            p, g = e["put"], e["get"]
            lines.append(
                f"| {name.split('-')[0]} x {p['ops']} | {e['path']} | {e['threads']} | {p['ops_s']:.0f} | "
                f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {g['ops_s']:.0f} | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=parse_size, help="bytes per data kind for PUT/GET/raw (default 1GiB; --quick 128MiB)")
    p.add_argument("--dedup-size", type=parse_size, help="bytes per dedup test input (default 256MiB; --quick 128MiB)")
    p.add_argument("--big-size", type=parse_size, help="size of the RSS test object (default 5GiB; --quick 256MiB)")
    p.add_argument("--quick", action="store_true", help="smoke run: 128 MiB inputs, 256 MiB big object")
    p.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, among {','.join(PHASES)} (default: all)",
    )
    p.add_argument("--kinds", default=",".join(KINDS), help="data kinds for PUT/GET/raw (default: random,text)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="engine + single-thread chain rounds per data kind; the median ratio is reported (default 3; --quick 1)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile a random PUT and GET of --size (cProfile; py-spy too if installed)",
    )
    p.add_argument("--dir", help="where to create the temporary data directories (default: a new dir in /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument("--out", default=str(BENCH_DIR / "out"), help="where to write engine.json and engine.md")
    p.add_argument("--seed", default="1", help="seed of every generated input (default 1)")
    p.add_argument("--child", choices=("rss", "put"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.size = args.size or (128 * MiB if args.quick else GiB)
    args.dedup_size = args.dedup_size or (128 * MiB if args.quick else 256 * MiB)
    args.big_size = args.big_size or (256 * MiB if args.quick else 5 * GiB)
    args.rounds = max(1, args.rounds if args.rounds is not None else (1 if args.quick else 3))
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(PHASES)
    if unknown:
        p.error(f"--only: unknown phase(s) {', '.join(sorted(unknown))}; choose among {', '.join(PHASES)}")
    args.only = only
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        p.error(f"--kinds: choose among {', '.join(KINDS)}")
    args.kinds = kinds
    return args


def main(argv: list[str] | None = None) -> int:
    ensure_allocator_env()
    args = parse_args(argv)
    if args.child == "rss":
        child_rss(args)
        return 0
    if args.child == "put":
        child_put(args)
        return 0

    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="dwh-bench-", dir=args.dir))
    else:
        base = Path(tempfile.mkdtemp(prefix="dwh-bench-", dir="/tmp"))
    bench = Bench(base, args.keep)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.orig_argv),
        "settings": {
            "size": args.size,
            "dedup_size": args.dedup_size,
            "big_size": args.big_size,
            "phases": sorted(args.only),
            "kinds": args.kinds,
            "seed": args.seed,
            "quick": args.quick,
            "engine_config": dataclasses.asdict(EngineConfig()),
            "storage_class": "EC(4,2) on 6 disk directories",
        },
    }
    results["machine"] = machine_info(base)
    print_machine(results["machine"])
    try:
        phase_throughput(bench, args, results)
        if "dedup" in args.only:
            phase_dedup(bench, args, results)
        if "rss" in args.only:
            phase_rss(bench, args, results)
        if "small" in args.only:
            phase_small(bench, args, results)
        if args.profile:
            phase_profile(bench, args, results)
    finally:
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["duration_seconds"] = time.perf_counter() - started
        results["failures"] = bench.failures
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "engine.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        if "machine" in results:
            table = summary_markdown(results)
            (out_dir / "engine.md").write_text(table + "\n")
            log("\n== Summary ==\n" + table)
        log(f"results: {out_dir / 'engine.json'}, {out_dir / 'engine.md'}; took {results['duration_seconds']:.0f} s")
        if args.keep:
            log(f"data directories kept under {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if bench.failures:
        log("DATA MISMATCH: " + "; ".join(bench.failures))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
