"""Read workers of ``dwh serve --workers N``: the primary's supervisor, and a worker's main.

The primary binds the listening socket and its Unix socket, then starts N-1 worker processes
(``python -m datawarehouse.cli.workers``) that inherit the listening socket: the kernel hands
each new connection to whichever process accepts it first. A worker reads its settings — the
data directory, the socket descriptor, the Unix socket, the worker token and the root
credentials — as one JSON line on its standard input, so no secret appears in its arguments.

The supervisor restarts a worker that dies (after a pause if it keeps dying), and on shutdown
stops the workers first — their requests in flight, including those they passed on to the
primary, finish while the primary still serves — and then lets the primary stop. A worker whose
primary is gone stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn

from datawarehouse.api.s3.protocol import S3HttpProtocol
from datawarehouse.cli.balance import BalancingServer, ConnectionBoard

log = logging.getLogger(__name__)

STOP_TIMEOUT = 40.0  # a worker's graceful shutdown (30 s) and then some
RESTART_PAUSE = (0.5, 30.0)  # first and longest pause before restarting a worker that died young
YOUNG = 30.0  # a worker that dies within this many seconds of its start doubles the pause


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker is told on its standard input."""

    data_dir: str
    listen_fd: int
    socket_path: str
    token: str
    commit_socket_path: str
    root_access_key: str
    root_secret_key: str
    domain: str | None
    region: str
    board_path: str  # the shared file of open-connection counts (``balance.ConnectionBoard``)
    changes_path: str  # the primary's count of configuration changes (``engine.changes``)
    board_slot: int = 0  # this worker's slot in it (the primary's is 0); set per worker at its start
    signature_v2: bool = True


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM end the process through ``SystemExit(0)``. uvicorn handles SIGTERM with a
    graceful shutdown and then raises the signal again under the handler it found; under the
    default one that kills the process at once, before its ``finally`` blocks flush the audit
    log (or, in a worker, deliver its last audit records) and close the data directory. Installed
    before anything is opened, it also covers a SIGTERM during start-up."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def server_config(app: Any) -> uvicorn.Config:
    """The uvicorn settings of every serving process (primary and workers)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=S3HttpProtocol,  # httptools, one write per response head and body, S3 errors for bad HTTP
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=30,
        access_log=False,
    )


class Supervisor:
    """Starts, watches and stops the read workers."""

    def __init__(self, count: int, settings: WorkerSettings, board: ConnectionBoard) -> None:
        self.count = count
        self.settings = settings
        self.board = board
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._started = [0.0] * count
        self._pause = [RESTART_PAUSE[0]] * count
        self._next_start = [0.0] * count
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="dwh-supervisor", daemon=True)
        self.restarts = 0

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def start(self) -> None:
        with self._lock:
            for slot in range(self.count):
                self._spawn(slot)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datawarehouse.cli.workers"],
            stdin=subprocess.PIPE,
            pass_fds=(self.settings.listen_fd,),
            start_new_session=False,
        )
        assert proc.stdin is not None
        try:
            settings = replace(self.settings, board_slot=slot + 1)
            proc.stdin.write((json.dumps(asdict(settings)) + "\n").encode())
            proc.stdin.close()
        except OSError:
            log.warning("worker %d exited before it read its settings", slot)
        self._procs[slot] = proc
        self._started[slot] = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for slot, proc in enumerate(self._procs):
                    if proc is None or proc.poll() is None:
                        continue
                    if not self._next_start[slot]:
                        self.board.mark_gone(slot + 1)  # its connections died with it
                        young = now - self._started[slot] < YOUNG
                        self._pause[slot] = min(self._pause[slot] * 2, RESTART_PAUSE[1]) if young else RESTART_PAUSE[0]
                        self._next_start[slot] = now + self._pause[slot]
                        log.warning(
                            "read worker %d (pid %d) exited with %s; restarting in %.1f s",
                            slot,
                            proc.pid,
                            proc.returncode,
                            self._pause[slot],
                        )
                    elif now >= self._next_start[slot]:
                        self._next_start[slot] = 0.0
                        self.restarts += 1
                        self._spawn(slot)

    def stop(self) -> None:
        """SIGTERM every worker and wait for them (SIGKILL after ``STOP_TIMEOUT``)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("read worker pid %d did not stop; killed", proc.pid)
                proc.kill()
                proc.wait()


class SupervisedServer(BalancingServer):
    """The primary's uvicorn server: workers start once it listens and stop before it does."""

    def __init__(self, config: uvicorn.Config, supervisor: Supervisor, listen: socket.socket) -> None:
        super().__init__(config, listen, supervisor.board)
        self.supervisor = supervisor

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.supervisor.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.supervisor.stop)
        await super().shutdown(sockets)


def _watch_parent(server: uvicorn.Server) -> None:
    """Stop the worker when its primary is gone (it was killed: nothing would answer what the
    worker passes on, and the supervisor that would restart it is gone too)."""
    parent = os.getppid()
    while not server.should_exit:
        if os.getppid() != parent:
            log.warning("read worker: the primary process is gone; stopping")
            server.should_exit = True
            return
        time.sleep(0.5)


def worker_main() -> None:
    """A read worker: settings from stdin, a follower Warehouse, the shared socket."""
    from datawarehouse.api.s3.app import S3App
    from datawarehouse.api.s3.commitlink import CommitLink
    from datawarehouse.api.s3.forward import PrimaryLink
    from datawarehouse.api.s3.worker import PassOn, WorkerAudit
    from datawarehouse.cli.common import options
    from datawarehouse.engine.changes import ChangeCounter
    from datawarehouse.service.access import CallerDirectory
    from datawarehouse.service.credentials import Credentials
    from datawarehouse.service.warehouse import Warehouse

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_cleanly_on_sigterm()
    settings = WorkerSettings(**json.loads(sys.stdin.readline()))
    sys.stdin.close()
    listen = socket.socket(fileno=settings.listen_fd)
    data_dir = Path(settings.data_dir)
    wh = Warehouse.open(data_dir, options(data_dir), follower=True)
    sink = WorkerAudit(settings.socket_path, settings.token)
    try:
        wh.iam.set_root_credentials(Credentials(settings.root_access_key, settings.root_secret_key))
        wh.engine.share_changes(ChangeCounter(Path(settings.changes_path)))
        commits = CommitLink(settings.commit_socket_path, settings.token)
        wh.remote_commit = commits.submit
        app = S3App(
            wh,
            CallerDirectory(wh.iam).lookup,
            domain=settings.domain,
            region=settings.region,
            record_audit=sink.record,
            pass_on=PassOn(PrimaryLink(settings.socket_path, settings.token), commits),
            signature_v2=settings.signature_v2,
        )
        board = ConnectionBoard(Path(settings.board_path), settings.board_slot)
        server = BalancingServer(server_config(app), listen, board)
        threading.Thread(target=_watch_parent, args=(server,), name="dwh-parent-watch", daemon=True).start()
        gc.collect()
        gc.freeze()
        server.run(sockets=[listen])
    finally:
        sink.close()
        wh.close()


if __name__ == "__main__":
    worker_main()
