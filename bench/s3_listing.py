"""Listing a bucket of a million keys: `dwh serve` next to moto_server, the same client, one run.

    .venv/bin/python bench/s3_listing.py                       # 1,000,000 keys (fill ~9 min)
    .venv/bin/python bench/s3_listing.py --keys 100000         # smaller
    .venv/bin/python bench/s3_listing.py --keep /tmp/listing   # keep the filled data directory
                                                               # and reuse it in later runs
    .venv/bin/python bench/s3_listing.py --workers 2           # dwh serve --workers 2
    .venv/bin/python bench/s3_listing.py --only dwh --keep /tmp/listing --dwh-src /tmp/old/src
                                                               # A/B: serve another checkout's code

The bucket holds ``d0000/f0000`` .. ``d0999/f0999`` (a thousand "directories" of a thousand keys
for a million keys; fewer directories for fewer keys), each a tiny object holding its own name.

dwh is filled in-process through ``Warehouse.put_object`` (the path an S3 PUT takes after the
HTTP layer; 64 threads, so the group commit batches them) between two starts of `dwh serve` on
the same data directory: a million S3 PUTs would take ~20 minutes here. moto is filled the same
way, through its own backend's ``put_object`` in the process that serves it (moto's
``ThreadedMotoServer``), for the same reason. Everything measured after that goes over HTTP:
presigned ListObjectsV2 / ListObjects requests on one keep-alive connection, each answer checked
(key count, order, continuation).

Measured, per server: a full scan (every page of 1,000 keys; for moto, as many pages as fit in
``--peer-budget`` seconds, since each of its pages sorts the whole bucket), and single pages that
a client asks for often, each repeated (moto: until the budget is spent): the root with
``delimiter=/`` (a page of common prefixes), one directory by prefix, a page from the middle by
start-after and by v1 marker, the last directory, and ListObjectVersions at the root with a
delimiter and from the middle by key-marker. Prints keys/s, p50/p99 ms per page, the ratio
moto/dwh per page, and server RSS; writes bench/out/s3_listing.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.s3 import ACCESS, BIN, SECRET, Target  # noqa: E402

BUCKET = "bench"
FILES_PER_DIR = 1000
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_PREFIX = re.compile(rb"<CommonPrefixes><Prefix>([^<]*)</Prefix></CommonPrefixes>")
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_TRUNCATED = re.compile(rb"<IsTruncated>(true|false)</IsTruncated>")


def key_name(i: int) -> str:
    return f"d{i // FILES_PER_DIR:04d}/f{i % FILES_PER_DIR:04d}"


# --- filling -------------------------------------------------------------------------------------


def fill_dwh(data_dir: Path, keys: int) -> float:
    """PUT ``keys`` tiny objects into the bucket ``bench`` of a stopped `dwh serve`'s data
    directory, through the warehouse's ordinary write path. Returns PUTs per second."""
    from datawarehouse.cli.serve import open_for_serving

    wh = open_for_serving(data_dir, None)
    try:
        start = time.perf_counter()

        def put(i: int) -> None:
            name = key_name(i)
            wh.put_object(BUCKET, name, name.encode())

        with ThreadPoolExecutor(64) as ex:
            for n, _ in enumerate(ex.map(put, range(keys), chunksize=256), 1):
                if n % 100_000 == 0:
                    print(f"  dwh: {n:,} keys", flush=True)
        return keys / (time.perf_counter() - start)
    finally:
        wh.close()


def serve_moto(port: int, keys: int) -> None:
    """The peer (``--serve-moto``): fill moto's backend in this process, then serve it with
    moto's own threaded server until killed."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backend.create_bucket(BUCKET, "us-east-1")
    for i in range(keys):
        name = key_name(i)
        backend.put_object(BUCKET, name, name.encode())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    while True:
        time.sleep(3600)


# --- the client ----------------------------------------------------------------------------------


class Lister:
    """Presigned listing requests over one keep-alive connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=600)

    def page(self, op: str = "list_objects_v2", **params: Any) -> tuple[bytes, float]:
        url = self.target.client.generate_presigned_url(op, Params={"Bucket": BUCKET, **params}, ExpiresIn=3600)
        parts = urlsplit(url)
        start = time.perf_counter()
        self.conn.request("GET", f"{parts.path}?{parts.query}")
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"{self.target.name}: {op} {params}: {resp.status} {body[:300]!r}")
        return body, elapsed


def keys_of(body: bytes) -> list[str]:
    return [k.decode() for k in _KEY.findall(body)]


def truncated(body: bytes) -> bool:
    m = _TRUNCATED.search(body)
    if m is None:
        raise RuntimeError(f"no IsTruncated in {body[:300]!r}")
    return m.group(1) == b"true"


def scan(lister: Lister, keys: int, budget: float) -> dict[str, Any]:
    """Every page of ListObjectsV2 in order (until ``budget`` seconds have passed), each checked:
    the keys that were PUT, in order, each once."""
    token: str | None = None
    seen, times = 0, []
    started = time.perf_counter()
    while True:
        body, elapsed = lister.page(MaxKeys=1000, **({"ContinuationToken": token} if token else {}))
        times.append(elapsed)
        got = keys_of(body)
        want = [key_name(i) for i in range(seen, min(seen + 1000, keys))]
        if got != want:
            raise RuntimeError(f"{lister.target.name}: page {len(times)} holds {got[:2]}.., not {want[:2]}..")
        seen += len(got)
        more = truncated(body)
        if not more:
            if seen != keys:
                raise RuntimeError(f"{lister.target.name}: the scan ended after {seen} of {keys} keys")
            break
        m = _TOKEN.search(body)
        if m is None:
            raise RuntimeError(f"{lister.target.name}: a truncated page without NextContinuationToken")
        token = m.group(1).decode()
        if time.perf_counter() - started > budget:
            break
    wall = time.perf_counter() - started
    return {
        "pages": len(times),
        "keys": seen,
        "complete": seen == keys,
        "keys_s": seen / wall,
        **percentiles(times),
    }


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[max(0, round(len(ordered) * 0.99) - 1)],
    }


def single_pages(keys: int) -> dict[str, tuple[str, dict[str, Any], int, int]]:
    """name -> (operation, request parameters, entries expected, common prefixes expected)."""
    dirs = (keys + FILES_PER_DIR - 1) // FILES_PER_DIR
    mid = key_name(keys // 2)
    last_dir = f"d{(dirs - 1):04d}/"
    in_last = keys - (dirs - 1) * FILES_PER_DIR
    v2, v1, versions = "list_objects_v2", "list_objects", "list_object_versions"
    after_mid = min(1000, keys - keys // 2 - 1)
    return {
        "root_delimiter": (v2, {"Delimiter": "/", "MaxKeys": 1000}, 0, min(dirs, 1000)),
        "one_directory": (v2, {"Prefix": f"d{dirs // 2:04d}/", "Delimiter": "/"}, min(FILES_PER_DIR, keys), 0),
        "middle_start_after": (v2, {"StartAfter": mid, "MaxKeys": 1000}, after_mid, 0),
        "middle_v1_marker": (v1, {"Marker": mid, "MaxKeys": 1000}, after_mid, 0),
        "last_directory": (v2, {"Prefix": last_dir}, in_last, 0),
        "versions_root_delimiter": (versions, {"Delimiter": "/", "MaxKeys": 1000}, 0, min(dirs, 1000)),
        "versions_middle_key_marker": (versions, {"KeyMarker": mid, "MaxKeys": 1000}, after_mid, 0),
    }


def one_page(
    lister: Lister, name: str, spec: tuple[str, dict[str, Any], int, int], repeats: int, budget: float
) -> dict[str, Any]:
    """The same request ``repeats`` times (fewer once ``budget`` seconds have passed), each checked."""
    op, params, want_keys, want_prefixes = spec
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started < budget):
        body, elapsed = lister.page(op, **params)
        got_keys, got_prefixes = len(_KEY.findall(body)), len(_PREFIX.findall(body))
        if (got_keys, got_prefixes) != (want_keys, want_prefixes):
            raise RuntimeError(
                f"{lister.target.name} {name}: {got_keys} keys and {got_prefixes} prefixes, "
                f"not {want_keys} and {want_prefixes}"
            )
        times.append(elapsed)
    return {"repeats": len(times), **percentiles(times)}


def measure(target: Target, keys: int, budget: float, repeats: int) -> dict[str, Any]:
    lister = Lister(target)
    out: dict[str, Any] = {}
    out["scan"] = scan(lister, keys, budget)
    s = out["scan"]
    print(
        f"  {target.name} scan: {s['keys']:,} keys in {s['pages']} pages{'' if s['complete'] else ' (budget)'}, "
        f"{s['keys_s']:,.0f} keys/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms per page",
        flush=True,
    )
    for name, spec in single_pages(keys).items():
        out[name] = one_page(lister, name, spec, repeats, budget)
        r = out[name]
        print(
            f"  {target.name} {name}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms ({r['repeats']}x)", flush=True
        )
    out["rss_mib"] = target.peak_rss / 2**20
    return out


# --- the run -------------------------------------------------------------------------------------


def dwh_target(data_dir: Path, env: dict[str, str], workers: int) -> Target:
    cmd = [str(BIN / "dwh"), "serve", "--data-dir", str(data_dir), "--address", "127.0.0.1:PORT"]
    return Target("dwh", cmd + (["--workers", str(workers)] if workers > 1 else []), env, False)


def prepare_dwh(data_dir: Path, keys: int, env: dict[str, str]) -> dict[str, Any]:
    """A data directory holding exactly ``keys`` keys in ``bench`` (reused when it already does)."""
    marker = data_dir / "bench-listing.json"
    if marker.exists() and json.loads(marker.read_text()).get("keys") == keys:
        print(f"dwh: reusing {data_dir} ({keys:,} keys)", flush=True)
        return {"reused": True}
    shutil.rmtree(data_dir, ignore_errors=True)
    first = dwh_target(data_dir, env, 1)  # creates the data directory and root as `dwh serve` does
    try:
        first.client.create_bucket(Bucket=BUCKET)
    finally:
        first.stop()
    print(f"dwh: filling {keys:,} keys", flush=True)
    rate = fill_dwh(data_dir, keys)
    print(f"dwh: {rate:,.0f} PUTs/s in-process", flush=True)
    marker.write_text(json.dumps({"keys": keys}))
    return {"reused": False, "fill_puts_s": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="fill the dwh data directory here and reuse it in later runs")
    ap.add_argument("--workers", type=int, default=1, help="dwh serve --workers N")
    ap.add_argument("--repeats", type=int, default=20, help="requests per single-page workload")
    ap.add_argument(
        "--peer-budget", type=float, default=60.0, help="seconds moto's scan (and each of its other workloads) may take"
    )
    ap.add_argument("--only", default="dwh,moto", help="servers: dwh, moto")
    ap.add_argument("--dwh-src", metavar="DIR", help="serve dwh from this source tree (PYTHONPATH), for A/B runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--serve-moto", nargs=2, type=int, metavar=("PORT", "KEYS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_moto:
        serve_moto(*args.serve_moto)
        return
    env = {
        **os.environ,
        "DWH_ROOT_ACCESS_KEY": ACCESS,
        "DWH_ROOT_SECRET_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    servers = [s for s in args.only.split(",") if s]
    results: dict[str, Any] = {"settings": {"keys": args.keys, "workers": args.workers, "repeats": args.repeats}}
    tmp = Path(tempfile.mkdtemp(prefix="dwh-listbench-"))
    data_dir = Path(args.keep) if args.keep else tmp / "dwh-data"
    try:
        if "dwh" in servers:
            results["dwh_fill"] = prepare_dwh(data_dir, args.keys, env)
            serve_env = {**env, "PYTHONPATH": str(Path(args.dwh_src).resolve())} if args.dwh_src else env
            target = dwh_target(data_dir, serve_env, args.workers)
            try:
                results["dwh"] = measure(target, args.keys, float("inf"), args.repeats)
            finally:
                target.stop()
        if "moto" in servers:
            print(f"moto: filling {args.keys:,} keys", flush=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-moto", "PORT", str(args.keys)]
            target = Target("moto", cmd, env, False, start_timeout=600.0)  # filling takes a while
            try:
                # Its pages take seconds at a million keys: each workload stops repeating at the budget.
                results["moto"] = measure(target, args.keys, args.peer_budget, args.repeats)
            finally:
                target.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "s3_listing.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out / 's3_listing.json'}")


def report(results: dict[str, Any]) -> None:
    dwh, moto = results.get("dwh"), results.get("moto")
    print(f"\n{results['settings']['keys']:,} keys in one bucket")
    print("| workload | dwh p50 / p99 ms | moto p50 / p99 ms | moto / dwh (p50) |")
    print("|---|---:|---:|---:|")
    for name in ("scan", *single_pages(results["settings"]["keys"])):
        d = dwh.get(name) if dwh else None
        m = moto.get(name) if moto else None
        cell = lambda r: "-" if r is None else f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"  # noqa: E731
        ratio = f"{m['p50_ms'] / d['p50_ms']:.1f}x" if d and m else "-"
        print(f"| {name} | {cell(d)} | {cell(m)} | {ratio} |")
    for name, r in (("dwh", dwh), ("moto", moto)):
        if r:
            s = r["scan"]
            whole = "whole bucket" if s["complete"] else f"first {s['pages']} pages (budget)"
            print(f"{name}: scan {s['keys_s']:,.0f} keys/s ({whole}); peak server RSS {r['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
