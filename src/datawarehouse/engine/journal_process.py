"""Journal appends made by a writer process, outside the server's GIL.

A journal append writes one buffer to every disk's segment file and ``fdatasync``s each, one
thread per disk. Alone that takes ~0.7-1.0 ms here. Inside a busy server it took 2.7-3.6 ms:
each of those threads needs the GIL to start, again after ``write`` and ``fdatasync`` and again
to hand back its result, while the event loop holds it. The append is the longest step of the
committer's round, and a small PUT waits for about one and a half rounds.

So the committer hands the buffer to a process of its own (``journal_process_main``), which holds
copies of the segment's file descriptors and does the same writes and syncs on its threads. The
committer sends one message and blocks on one ``recv``: one GIL hand-off for the whole append.
The files are the same open file descriptions (``O_APPEND``), so what reaches the disks is what
the in-process writes produced. Measured (4 KiB PUTs, ``--workers 2``, interleaved rounds):
3-10 % more PUTs per second (``docs/benchmarks.md``).

Until the process has said it is ready, and whenever a segment file has no descriptor (stores
other than local disks), the journal writes in-process as before. If the process dies, the
append in flight fails (the committer fails its batch, nothing of it is acknowledged), the
journal starts a new segment and a new process is started for later appends.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
from collections.abc import Sequence

from datawarehouse.engine import journal_process_main as child
from datawarehouse.errors import StorageError

log = logging.getLogger(__name__)


class JournalProcess:
    """The parent's end of one writer process. Not thread-safe: the journal calls it under its lock."""

    def __init__(self) -> None:
        parent, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", child.__file__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            theirs.close()
        self._sock = parent
        self._ready = False
        self._files = 0

    @property
    def pid(self) -> int:
        return self._proc.pid

    def ready(self) -> bool:
        """Whether the process has started and can take appends; never waits."""
        if not self._ready:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if readable:
                if self._sock.recv(1) != child.READY:
                    raise StorageError("the journal writer process ended before it was ready")
                self._ready = True
        return self._ready

    def set_files(self, fds: Sequence[int]) -> None:
        """Hand over the segment's files (the process duplicates them; the caller keeps its own)."""
        header = child.HEADER.pack(child.FILES, 0)
        try:
            if fds:
                socket.send_fds(self._sock, [header], list(fds))
            else:
                self._sock.sendall(header)
        except OSError as exc:
            raise StorageError(f"the journal writer process is gone: {exc}") from exc
        self._files = len(fds)

    def append(self, data: bytes) -> list[int]:
        """Append ``data`` to every file handed over and sync them; one code per file, in order:
        0, or the ``errno`` of its failure. Raises ``StorageError`` if the process is gone."""
        try:
            pending = [memoryview(child.HEADER.pack(child.APPEND, len(data))), memoryview(data)]
            while pending:
                sent = self._sock.sendmsg(pending)
                while pending and sent >= len(pending[0]):
                    sent -= len(pending[0])
                    pending.pop(0)
                if pending and sent:
                    pending[0] = pending[0][sent:]
            answer = child.receive_exactly(self._sock, child.CODE.size * self._files)
        except OSError as exc:
            raise StorageError(f"the journal writer process is gone: {exc}") from exc
        if answer is None:
            raise StorageError("the journal writer process ended during an append")
        return [code for (code,) in child.CODE.iter_unpack(answer)]

    def close(self) -> None:
        """Close the socket (the process then closes its files and ends) and reap the process."""
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("the journal writer process %d did not end; killing it", self._proc.pid)
            self._proc.kill()
            self._proc.wait()


def start() -> JournalProcess | None:
    """A new writer process, or ``None`` (logged) if one cannot be started here."""
    try:
        return JournalProcess()
    except OSError as exc:
        log.warning("journal appends stay in-process: could not start the writer process (%s)", exc)
        return None


def error_for(code: int) -> str:
    """What an ``errno`` from the writer process means, for a ``StorageError`` message."""
    return f"{os.strerror(code)} (errno {code})"
