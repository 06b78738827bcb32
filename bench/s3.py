"""S3 benchmark: `dwh serve` next to moto_server and a trivial in-memory ASGI server (the ceiling),
all driven by the same asyncio client (bench/httpclient.py) with presigned URLs, in one run.

    .venv/bin/python bench/s3.py                         # full run
    .venv/bin/python bench/s3.py --quick                 # fewer objects
    .venv/bin/python bench/s3.py --only dwh,moto         # some servers (dwh, moto, trivial)
    .venv/bin/python bench/s3.py --only 4KiB,multipart   # some workloads (substring of their names)
    .venv/bin/python bench/s3.py --only dwh,get_1MiB_c8 --rounds 3 --profile bench/out/prof
                                                         # GET 3 times, py-spy on the server meanwhile
    .venv/bin/python bench/s3.py --only dwh --dwh-src /tmp/old/src  # A/B: serve another checkout's code
    .venv/bin/python bench/s3.py --workers 3              # dwh serve --workers 3 (server CPU: all processes)

Prints MB/s and ops/s per server and workload, the ratio to moto, the fraction of the ceiling,
p50/p99 of 4 KiB GETs, and server RSS; writes bench/out/s3.json. Targets (incompressible data):
>= 2.5x moto on 1 MiB PUT and >= 3x on 1 MiB GET at concurrency 8; >= 5x moto on 4 KiB PUT and
GET ops/s. A missed target never changes the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import boto3
import psutil
import uvloop
from botocore.config import Config

from bench import httpclient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ACCESS, SECRET = "BENCHACCESSKEY", "bench-secret-key-123"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def server_processes(ps: psutil.Process) -> list[psutil.Process]:
    """The server and its children (the read workers of ``dwh serve --workers``)."""
    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.Error:
        return [ps]


def server_cpu(ps: psutil.Process) -> tuple[float, float]:
    """(user + system, system) CPU seconds of the server and its children alive now."""
    total = system = 0.0
    for proc in server_processes(ps):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        system += t.system
    return total, system


def page_faults(ps: psutil.Process) -> int:
    """Minor page faults of ``ps`` and its children: each costs ~1-2 us on this VM (fresh memory
    zeroed by the kernel), so an allocator that hands large buffers back to the kernel shows here."""
    n = 0
    for proc in server_processes(ps):
        try:
            # /proc/PID/stat: the command may hold spaces, so split after its closing parenthesis.
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        n += int(fields[7])  # minflt, the 10th field of the whole line
    return n


def context_switches(ps: psutil.Process) -> int:
    """Voluntary + involuntary context switches of every thread of ``ps`` and its children."""
    n = 0
    for proc in server_processes(ps):
        try:
            tasks = list(Path(f"/proc/{proc.pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        n += int(line.split()[1])
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
    return n


class Profiler:
    """py-spy recording the server while a workload runs (``--profile DIR``)."""

    def __init__(self, out: Path | None, pid: int, label: str, gil: bool = False) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
        if spy is None:
            raise RuntimeError("--profile needs py-spy (.venv/bin/pip install py-spy)")
        rate = os.environ.get("SPY_RATE", "200")  # samples per second
        cmd = [spy, "record", "--pid", str(pid), "--threads", "--subprocesses", "--rate", rate, "--nonblocking"]
        cmd += ["--gil"] if gil else []  # only samples holding the GIL: where Python itself spends CPU
        cmd += ["--format", "raw", "-o", str(out / f"{label}.txt")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            self.proc.wait(timeout=60)


class Target:
    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], signed: bool, start_timeout: float = 60.0
    ) -> None:
        self.name, self.signed = name, signed
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [c.replace("PORT", str(self.port)) for c in cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc, start_timeout)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", max_pool_connections=64),
        )
        if signed:
            self.client.create_bucket(Bucket="bench")

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.ps.memory_info().rss + sum(c.memory_info().rss for c in self.ps.children(recursive=True))
                self.peak_rss = max(self.peak_rss, rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    def url(self, method: str, key: str) -> str:
        if not self.signed:
            return f"{self.endpoint}/bench/{key}"
        op = "put_object" if method == "PUT" else "get_object"
        return str(self.client.generate_presigned_url(op, Params={"Bucket": "bench", "Key": key}, ExpiresIn=3600))

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


CHECKED_BYTES = 64  # of each end of every GET body, compared with what was PUT


async def drive(
    urls: list[str], name: str, method: str, bodies: list[bytes], concurrency: int, client: str
) -> dict[str, Any]:
    if client == "aiohttp":
        return await drive_aiohttp(urls, name, method, bodies, concurrency)
    latencies: list[float] = []
    moved = 0
    size = max(len(b) for b in bodies)
    # Each connection receives its responses into one buffer; a GET body is checked by length and
    # by its first and last bytes against what was PUT.
    async with httpclient.Client(urls[0], concurrency, buffer_size=max(2 * size, MiB)) as http:

        async def one(i: int) -> None:
            nonlocal moved
            sent = bodies[i % len(bodies)] if method == "PUT" else b""
            conn = await http.acquire()
            try:
                t = time.perf_counter()
                status, body = await http.send(conn, method, urls[i], sent)
                if status != 200:
                    raise RuntimeError(f"{name} {method} {status}: {bytes(body[:300])!r}")
                if method == "GET":
                    expected = bodies[i % len(bodies)]
                    if (
                        len(body) != len(expected)
                        or body[:CHECKED_BYTES] != expected[:CHECKED_BYTES]
                        or body[-CHECKED_BYTES:] != expected[-CHECKED_BYTES:]
                    ):
                        raise RuntimeError(f"{name} GET: {len(body)} bytes, not the {len(expected)} bytes PUT")
                moved += len(body) if method == "GET" else len(sent)
                latencies.append(time.perf_counter() - t)
            finally:
                http.release(conn)

        pending = iter(range(len(urls)))

        async def runner() -> None:  # one per connection, each taking the next request in turn
            for i in pending:
                await one(i)

        start = time.perf_counter()
        async with asyncio.timeout(600):
            await asyncio.gather(*(runner() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return rates(len(urls), moved, elapsed, latencies)


def rates(requests: int, moved: int, elapsed: float, latencies: list[float]) -> dict[str, Any]:
    latencies.sort()
    return {
        "ops_s": requests / elapsed,
        "mb_s": moved / elapsed / 1e6,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


async def drive_aiohttp(
    urls: list[str], name: str, method: str, bodies: list[bytes], concurrency: int
) -> dict[str, Any]:
    """The earlier client (``--client aiohttp``), kept to compare with figures measured with it."""
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    moved = 0
    # GET bodies are consumed as they arrive (``iter_any``, 1 MiB reads) and checked by length
    # and by their first and last bytes against what was PUT, not joined into one ``bytes``.
    timeout = aiohttp.ClientTimeout(total=600)

    async with aiohttp.ClientSession(connector=conn, timeout=timeout, read_bufsize=1 << 20) as session:

        async def one(i: int) -> None:
            nonlocal moved
            async with sem:
                t = time.perf_counter()
                if method == "PUT":
                    async with session.put(urls[i], data=bodies[i % len(bodies)]) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{name} PUT {r.status}")
                    moved += len(bodies[i % len(bodies)])
                else:
                    expected = bodies[i % len(bodies)]
                    async with session.get(urls[i]) as r:
                        if r.status != 200:
                            raise RuntimeError(f"{name} GET {r.status}")
                        got, head, tail = 0, b"", b""
                        async for piece in r.content.iter_any():
                            if got < CHECKED_BYTES:
                                head += piece[: CHECKED_BYTES - got]
                            got += len(piece)
                            tail = (tail + piece[-CHECKED_BYTES:])[-CHECKED_BYTES:]
                    if got != len(expected) or head != expected[:CHECKED_BYTES] or tail != expected[-CHECKED_BYTES:]:
                        raise RuntimeError(f"{name} GET: {got} bytes, not the {len(expected)} bytes PUT")
                    moved += got
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(urls))))
        elapsed = time.perf_counter() - start
    return rates(len(urls), moved, elapsed, latencies)


@dataclass(frozen=True)
class Options:
    """How each workload is driven and watched."""

    client: str = "lean"  # or "aiohttp"
    rounds: int = 1  # GET passes (the best is kept)
    profile: Path | None = None  # py-spy output directory
    gil: bool = False  # py-spy: only samples that hold the GIL


def measured(
    target: Target, method: str, keys: list[str], bodies: list[bytes], concurrency: int, label: str, opts: Options
) -> dict[str, Any]:
    """One pass of ``method`` over every key, with the server's CPU per request (and py-spy on the
    server meanwhile when ``opts.profile`` is set)."""
    urls = [target.url(method, k) for k in keys]  # presigned before the clock starts
    spy = Profiler(opts.profile if target.name == "dwh" else None, target.proc.pid, label, opts.gil)
    client = psutil.Process()
    cpu, mine, machine = server_cpu(target.ps), client.cpu_times(), psutil.cpu_times()
    switches, faults = context_switches(target.ps), page_faults(target.ps)
    try:
        # aiohttp on its old event loop (it ran slower on uvloop here), so its figures stay comparable
        run = asyncio.run if opts.client == "aiohttp" else uvloop.run
        res = run(drive(urls, target.name, method, bodies, concurrency, opts.client))
    finally:
        spy.stop()
    after, mine_after, machine_after = server_cpu(target.ps), client.cpu_times(), psutil.cpu_times()
    # Server CPU per request (user + system, all threads and worker processes): steadier than
    # rates on a shared machine.
    res["server_cpu_ms"] = 1000 * (after[0] - cpu[0]) / len(keys)
    res["server_sys_ms"] = 1000 * (after[1] - cpu[1]) / len(keys)
    # The client's own CPU per request (this process: the HTTP client and the event loop), and how many
    # of the machine's cores were busy meanwhile: a target needs its rate times (server + client
    # CPU per request) in cores, which shows whether a miss is a stall or the machine's limit.
    res["client_cpu_ms"] = 1000 * (mine_after.user + mine_after.system - mine.user - mine.system) / len(keys)
    res["machine_busy_cores"] = busy_cores(machine, machine_after)
    # Thread switches cost ~10-30 us of CPU each on this VM (perf: finish_task_switch).
    res["server_switches"] = (context_switches(target.ps) - switches) / len(keys)
    res["server_faults"] = (page_faults(target.ps) - faults) / len(keys)
    print(
        f"  {label}: {res['mb_s']:.0f} MB/s, {res['ops_s']:.0f} ops/s, p50 {res['p50_ms']:.1f} ms, "
        f"server CPU {res['server_cpu_ms']:.2f} ms/op ({res['server_sys_ms']:.2f} in the kernel, "
        f"{res['server_switches']:.0f} context switches, {res['server_faults']:.0f} page faults), "
        f"client CPU {res['client_cpu_ms']:.2f} ms/op, "
        f"machine {res['machine_busy_cores']:.2f} of {os.cpu_count()} cores busy",
        flush=True,
    )
    return res


def busy_cores(before: Any, after: Any) -> float:
    """Cores busy between two ``psutil.cpu_times()`` samples of the whole machine."""
    fields = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")  # guest is inside user

    def total(t: Any) -> float:
        return sum(getattr(t, f, 0.0) for f in fields)

    idle = (after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
    spent = total(after) - total(before)
    return (os.cpu_count() or 1) * (1 - idle / spent) if spent > 0 else 0.0


def puts(target: Target, keys: list[str], bodies: list[bytes], concurrency: int, opts: Options) -> dict[str, Any]:
    label = f"{target.name}-put-{len(bodies[0])}-c{concurrency}"
    return measured(target, "PUT", keys, bodies, concurrency, label, opts)


def gets(target: Target, keys: list[str], bodies: list[bytes], concurrency: int, opts: Options) -> dict[str, Any]:
    """GET every key ``opts.rounds`` times; the best round is kept, every round is printed."""
    best: dict[str, Any] = {}
    size = len(bodies[0])
    for n in range(opts.rounds):
        label = f"{target.name}-get-{size}-c{concurrency}-r{n}"
        res = measured(target, "GET", keys, bodies, concurrency, label, opts)
        if not best or res["ops_s"] > best["ops_s"]:
            best = res
    return best


def unique_bodies(count: int, size: int) -> list[bytes]:
    pool = os.urandom(size + count * 8)
    return [i.to_bytes(8, "big") + pool[i * 8 : i * 8 + size - 8] for i in range(count)]


def boto3_ceiling(target: Target, size: int, count: int) -> dict[str, float]:
    """boto3 (8 threads, one shared client) PUT then GET of ``count`` objects of ``size`` bytes:
    against the trivial server this is boto3's own ceiling."""
    bodies = unique_bodies(count, size)
    s3 = target.client
    out: dict[str, float] = {}
    with ThreadPoolExecutor(8) as ex:
        start = time.perf_counter()
        list(ex.map(lambda i: s3.put_object(Bucket="bench", Key=f"b3-{size}-{i}", Body=bodies[i]), range(count)))
        elapsed = time.perf_counter() - start
        out["put_mb_s"], out["put_ops_s"] = size * count / elapsed / 1e6, count / elapsed
        start = time.perf_counter()
        list(ex.map(lambda i: s3.get_object(Bucket="bench", Key=f"b3-{size}-{i}")["Body"].read(), range(count)))
        elapsed = time.perf_counter() - start
        out["get_mb_s"], out["get_ops_s"] = size * count / elapsed / 1e6, count / elapsed
    return out


def multipart(target: Target, size: int) -> dict[str, float]:
    part = 16 * MiB
    s3 = target.client
    up = s3.create_multipart_upload(Bucket="bench", Key="multipart")["UploadId"]
    body = os.urandom(part)
    start = time.perf_counter()

    def send(n: int) -> dict[str, Any]:
        data = n.to_bytes(8, "big") + body[8:]
        etag = s3.upload_part(Bucket="bench", Key="multipart", UploadId=up, PartNumber=n, Body=data)["ETag"]
        return {"PartNumber": n, "ETag": etag}

    with ThreadPoolExecutor(8) as ex:
        parts = list(ex.map(send, range(1, size // part + 1)))
    s3.complete_multipart_upload(Bucket="bench", Key="multipart", UploadId=up, MultipartUpload={"Parts": parts})
    return {"mb_s": size / (time.perf_counter() - start) / 1e6}


async def big_object(target: Target, size: int) -> dict[str, float]:
    """Stream one ``size``-byte object up and back down (1 MiB pieces, never held whole) while
    sampling the server's RSS: memory must stay bounded by the chunks in flight."""
    pool = os.urandom(64 * MiB)

    async def body() -> Any:
        for i in range(size // MiB):
            off = (i * 7919) % (63 * MiB)
            yield i.to_bytes(8, "big") + pool[off : off + MiB - 8]

    target.peak_rss = 0
    base = target.ps.memory_info().rss
    url = target.url("PUT", "big-object")
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        async with session.put(url, data=body(), headers={"Content-Length": str(size)}) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"big PUT {r.status}")
        put_s = time.perf_counter() - start
        peak_put = target.peak_rss
        target.peak_rss = 0
        start = time.perf_counter()
        got = 0
        async with session.get(target.url("GET", "big-object")) as r:
            async for piece in r.content.iter_chunked(MiB):
                got += len(piece)
        get_s = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"big GET returned {got} of {size} bytes")
    return {
        "size_gib": size / 1024**3,
        "put_mb_s": size / put_s / 1e6,
        "get_mb_s": size / get_s / 1e6,
        "rss_base_mib": base / MiB,
        "rss_peak_put_mib": peak_put / MiB,
        "rss_peak_get_mib": target.peak_rss / MiB,
    }


WORKLOADS = (
    "put_1MiB_c1",
    "get_1MiB_c1",
    "put_1MiB_c8",
    "get_1MiB_c8",
    "put_1MiB_c32",
    "get_1MiB_c32",
    "put_4KiB_c16",
    "get_4KiB_c16",
    "multipart",
    "boto3_ceiling",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 x 1 MiB, 1,000 x 4 KiB, 256 MiB multipart")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated server names (dwh, moto, trivial) and/or workload name fragments "
        "(put_1MiB_c8, 4KiB, multipart, boto3_ceiling...)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--rounds", type=int, default=1, help="run each GET workload this many times (best is kept)")
    ap.add_argument(
        "--profile", metavar="DIR", help="py-spy (raw folded stacks) of the server during each PUT and GET workload"
    )
    ap.add_argument("--profile-gil", action="store_true", help="with --profile: only samples that hold the GIL")
    ap.add_argument("--dwh-src", metavar="DIR", help="serve dwh from this source tree (PYTHONPATH), for A/B runs")
    ap.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="HTTP client for the PUT and GET workloads: bench/httpclient.py (default) or aiohttp, "
        "the client of figures before 2026-11-25",
    )
    ap.add_argument("--workers", type=int, default=1, help="dwh serve --workers N (a primary and N-1 read workers)")
    ap.add_argument(
        "--big-only",
        type=float,
        metavar="GIB",
        help="only stream one object of this many GiB through dwh serve and report server RSS",
    )
    args = ap.parse_args()
    n_big = 64 if args.quick else 256
    n_small = 1000 if args.quick else 4000
    mp_size = 256 * MiB if args.quick else 1024 * MiB
    env = {
        **os.environ,
        "DWH_ROOT_ACCESS_KEY": ACCESS,
        "DWH_ROOT_SECRET_KEY": SECRET,
        "MALLOC_MMAP_THRESHOLD_": "67108864",
        "MALLOC_TRIM_THRESHOLD_": "268435456",
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    dwh_env = dict(env)
    if args.dwh_src:
        dwh_env["PYTHONPATH"] = str(Path(args.dwh_src).resolve())
    opts = Options(args.client, args.rounds, Path(args.profile) if args.profile else None, args.profile_gil)
    tmp = Path(tempfile.mkdtemp(prefix="dwh-s3bench-"))
    targets = {
        "trivial": ([sys.executable, str(ROOT / "bench" / "trivial_s3.py"), "PORT"], False),
        "moto": ([str(BIN / "moto_server"), "-p", "PORT"], True),
        "dwh": (
            [str(BIN / "dwh"), "serve", "--data-dir", str(tmp / "dwh-data"), "--address", "127.0.0.1:PORT"]
            + (["--workers", str(args.workers)] if args.workers > 1 else []),
            True,
        ),
    }
    if args.big_only:
        cmd, _ = targets["dwh"]
        target = Target("dwh", cmd, dwh_env, True)
        try:
            res = asyncio.run(big_object(target, int(args.big_only * 1024**3) // MiB * MiB))
        finally:
            target.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res, indent=1))
        return
    only = [w for w in args.only.split(",") if w]
    servers = [n for n in targets if n in only] or list(targets)
    fragments = [w for w in only if w not in targets]
    workloads = [w for w in WORKLOADS if not fragments or any(f in w for f in fragments)]
    big = unique_bodies(n_big, MiB)
    small = unique_bodies(n_small, 4096)
    results: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "load_start": os.getloadavg()},
        "settings": {
            "quick": args.quick,
            "n_1MiB": n_big,
            "n_4KiB": n_small,
            "multipart_bytes": mp_size,
            "workers": args.workers,
            "client": args.client,
        },
    }
    for name in servers:
        cmd, signed = targets[name]
        res: dict[str, Any] = {}
        results[name] = res
        try:
            target = Target(name, cmd, dwh_env if name == "dwh" else env, signed)
        except Exception as exc:  # a server that cannot start is reported, not fatal
            res["error"] = f"start: {exc!r}"
            print(f"{name}: could not start: {exc!r}", flush=True)
            continue
        try:
            for conc in (1, 8, 32):
                keys = [f"big-{conc}-{i}" for i in range(n_big)]
                if f"put_1MiB_c{conc}" in workloads or f"get_1MiB_c{conc}" in workloads:
                    res[f"put_1MiB_c{conc}"] = puts(target, keys, big, conc, opts)
                if f"get_1MiB_c{conc}" in workloads:
                    res[f"get_1MiB_c{conc}"] = gets(target, keys, big, conc, opts)
            keys = [f"small-{i}" for i in range(n_small)]
            if "put_4KiB_c16" in workloads or "get_4KiB_c16" in workloads:
                res["put_4KiB_c16"] = puts(target, keys, small, 16, opts)
            if "get_4KiB_c16" in workloads:
                res["get_4KiB_c16"] = gets(target, keys, small, 16, opts)
            if signed and "multipart" in workloads:
                res["multipart"] = multipart(target, mp_size)
            if not signed and "boto3_ceiling" in workloads:
                res["boto3_ceiling_1MiB"] = boto3_ceiling(target, MiB, 64 if args.quick else 256)
                res["boto3_ceiling_4KiB"] = boto3_ceiling(target, 4096, 500 if args.quick else 2000)
        except Exception as exc:  # keep what was measured; the report shows the gap
            res["error"] = repr(exc)
            print(f"{name}: failed: {exc!r}", flush=True)
        finally:
            target.stop()
        res["peak_rss_mib"] = target.peak_rss / MiB
        print(f"{name}: done", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_end"] = os.getloadavg()
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "s3.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out / 's3.json'}")


def _get(r: dict[str, Any], server: str, key: str, unit: str) -> float | None:
    value = r.get(server, {}).get(key, {}).get(unit)
    return float(value) if value is not None else None


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def report(r: dict[str, Any]) -> None:
    rows = [
        ("put_1MiB_c1", "mb_s"),
        ("get_1MiB_c1", "mb_s"),
        ("put_1MiB_c8", "mb_s"),
        ("get_1MiB_c8", "mb_s"),
        ("put_1MiB_c32", "mb_s"),
        ("get_1MiB_c32", "mb_s"),
        ("put_4KiB_c16", "ops_s"),
        ("get_4KiB_c16", "ops_s"),
    ]
    print("\n| workload | unit | dwh | moto | trivial (ceiling) | dwh / moto | dwh / ceiling |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key, unit in rows:
        d, m, t = (_get(r, n, key, unit) for n in ("dwh", "moto", "trivial"))
        if d is None and m is None and t is None:
            continue
        label = "MB/s" if unit == "mb_s" else "ops/s"
        vs_moto = f"{d / m:.2f}x" if d and m else "-"
        vs_ceiling = f"{d / t:.0%}" if d and t else "-"
        print(f"| {key} | {label} | {_fmt(d)} | {_fmt(m)} | {_fmt(t)} | {vs_moto} | {vs_ceiling} |")
    dm, mm = _get(r, "dwh", "multipart", "mb_s"), _get(r, "moto", "multipart", "mb_s")
    if dm or mm:
        size = r.get("settings", {}).get("multipart_bytes", 0) // MiB
        ratio = f"{dm / mm:.2f}x" if dm and mm else "-"
        print(
            f"| multipart {size} MiB (boto3, 8 threads, 16 MiB parts) | MB/s "
            f"| {_fmt(dm)} | {_fmt(mm)} | - | {ratio} | - |"
        )
    for name in ("dwh", "moto", "trivial"):
        g = r.get(name, {}).get("get_4KiB_c16")
        if g:
            print(f"4 KiB GET latency {name}: p50 {g['p50_ms']:.1f} ms, p99 {g['p99_ms']:.1f} ms")
    t = r.get("trivial", {})
    if t.get("put_1MiB_c8") or t.get("boto3_ceiling_1MiB"):
        print("client ceilings against the trivial server:")
        client = r.get("settings", {}).get("client", "aiohttp")
        for key in ("put_1MiB_c8", "get_1MiB_c8", "put_1MiB_c32", "get_1MiB_c32"):
            if key in t:
                print(f"  {client} {key}: {t[key]['mb_s']:.0f} MB/s")
        for key in ("put_4KiB_c16", "get_4KiB_c16"):
            if key in t:
                print(f"  {client} {key}: {t[key]['ops_s']:.0f} ops/s")
        b1, b4 = t.get("boto3_ceiling_1MiB"), t.get("boto3_ceiling_4KiB")
        if b1:
            print(f"  boto3 8 threads 1 MiB: PUT {b1['put_mb_s']:.0f} MB/s, GET {b1['get_mb_s']:.0f} MB/s")
        if b4:
            print(f"  boto3 8 threads 4 KiB: PUT {b4['put_ops_s']:.0f} ops/s, GET {b4['get_ops_s']:.0f} ops/s")
    rss = ", ".join(
        f"{n} {r[n]['peak_rss_mib']:.0f}" for n in ("dwh", "moto", "trivial") if "peak_rss_mib" in r.get(n, {})
    )
    if rss:
        print(f"peak server RSS MiB (sampled every 0.1 s): {rss}")
    for name in ("dwh", "moto", "trivial"):
        if "error" in r.get(name, {}):
            print(f"ERROR {name}: {r[name]['error']}")
    targets = [
        ("put_1MiB_c8", "mb_s", 2.5),
        ("get_1MiB_c8", "mb_s", 3.0),
        ("put_4KiB_c16", "ops_s", 5.0),
        ("get_4KiB_c16", "ops_s", 5.0),
    ]
    for key, unit, want in targets:
        d, m = _get(r, "dwh", key, unit), _get(r, "moto", key, unit)
        if d is None or m is None:
            print(f"target {key}: >= {want}x moto: not measured")
            continue
        ratio = d / m
        print(f"target {key}: {ratio:.2f}x moto (>= {want}x): {'PASS' if ratio >= want else 'FAIL'}")
        w = r["dwh"][key]
        if ratio < want and "client_cpu_ms" in w:
            ops = r["moto"][key]["ops_s"] * want  # the rate the target asks for
            cores = ops * (w["server_cpu_ms"] + w["client_cpu_ms"]) / 1000
            print(
                f"  CPU budget: {ops:.0f} ops/s x ({w['server_cpu_ms']:.2f} server + {w['client_cpu_ms']:.2f} "
                f"client ms/op) = {cores:.1f} cores at today's cost per request, on {os.cpu_count()}; "
                f"{w['machine_busy_cores']:.2f} were busy during the run"
            )
    r["targets"] = {
        key: {"want_x_moto": want, "got_x_moto": (d / m) if d and m else None}
        for key, unit, want in targets
        for d, m in [(_get(r, "dwh", key, unit), _get(r, "moto", key, unit))]
    }


if __name__ == "__main__":
    main()
