"""A real ``dwh serve`` subprocess on a free port (``DwhServer``), shared by the S3 integration
tests through ``conftest.py``'s fixtures and imported directly where a test needs the class."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ACCESS_KEY = "DWHTESTACCESSKEY0001"
SECRET_KEY = "dwh-test-secret-key-0123456789abcdef"
REGION = "us-east-1"
DWH = Path(sys.executable).parent / "dwh"
START_TIMEOUT = 60.0


def reserve_port(port: int = 0) -> socket.socket:
    """A socket bound to ``port`` (0: a free one) but not listening, with SO_REUSEADDR: while it
    is held no other process is given the port, yet ``dwh serve`` (which sets SO_REUSEADDR too)
    can listen on it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class DwhServer:
    """One ``dwh serve`` process; ``restart()`` reuses the data directory and the port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        domain: str | None = None,
        port: int | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.domain = domain
        self.host = "127.0.0.1"
        # The port stays reserved until the server listens, and again while it is stopped: a free
        # port let go before the server binds it may be taken meanwhile by another process (the
        # other xdist worker's server), and the server would fail to start or a client reach that one.
        self._reserved: socket.socket | None = None
        if not port:
            self._reserved = reserve_port()
            port = int(self._reserved.getsockname()[1])
        self.port = port
        self.endpoint = f"http://{self.host}:{self.port}"
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.extra_args = list(extra_args or [])
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    # -- process control -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not running"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> DwhServer:
        assert not self.running, "already running"
        cmd = [str(DWH), "serve", "--data-dir", str(self.data_dir), "--address", f"{self.host}:{self.port}"]
        if self.domain:
            cmd += ["--domain", self.domain]
        cmd += self.extra_args
        env = dict(os.environ, DWH_ROOT_ACCESS_KEY=self.access_key, DWH_ROOT_SECRET_KEY=self.secret_key)
        self._starts += 1
        # The log goes to a file, never to a pipe nobody reads (a full pipe would block the server).
        with open(self.log_path, "ab") as log:
            log.write(f"\n----- start #{self._starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_listening()
        if self._reserved is not None:
            self._reserved.close()  # the server's own socket holds the port now
            self._reserved = None
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"dwh serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"dwh serve did not listen within {START_TIMEOUT}s:\n{self.log()[-4000:]}")

    def terminate(self, timeout: float = 60.0) -> int:
        """Graceful shutdown (SIGTERM) and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reserve_again()
        return int(self.proc.returncode)

    stop = terminate

    def kill(self) -> int:
        """SIGKILL and wait (a crash: nothing is flushed or closed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._reserve_again()
        return int(self.proc.returncode)

    def _reserve_again(self) -> None:
        """Hold the port of a stopped server until it starts again (see ``__init__``)."""
        if self._reserved is None:
            with contextlib.suppress(OSError):  # still in use (read workers left behind): start() says so
                self._reserved = reserve_port(self.port)

    def restart(self, *, kill: bool = False) -> DwhServer:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) and start again on the same data dir and port."""
        if kill:
            self.kill()
        else:
            self.terminate()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- clients ---------------------------------------------------------------------------

    def boto3_client(self, endpoint_url: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client (default botocore config apart from SigV4 and no retries unless given)."""
        import boto3
        from botocore.config import Config

        config.setdefault("signature_version", "s3v4")
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config),
        )

    def url(self, bucket: str = "", key: str = "") -> str:
        from urllib.parse import quote

        path = "/" + bucket + ("/" + quote(key, safe="/~") if key else "")
        return self.endpoint + path

    def __repr__(self) -> str:
        return f"DwhServer({self.endpoint}, data_dir={self.data_dir}, running={self.running})"


_counter = itertools.count()


def unique_bucket(prefix: str = "b") -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{int(time.time() * 1000) % 10**8}"
