"""The journal's writer process (the child side of ``engine.journal_process``).

Run as a script with the standard library alone (``python -I -S journal_process_main.py FD``): it
imports nothing of the project, so it starts in milliseconds and owes nothing to the import path.
FD is its end of a Unix stream socket pair. It says ``READY``, then serves two requests, one at a
time, until the socket closes or is reset (the parent closed the journal, or died):

* ``FILES``: the header alone, sent with the open segment files as ``SCM_RIGHTS``; they replace
  the files held before, which are closed.
* ``APPEND``: the header, then ``size`` bytes. The bytes are appended to every file, each file
  on its own thread, and each file is ``fdatasync``-ed; the answer is one ``>H`` per file, in
  the order the files came: 0, or the ``errno`` that failed it.

SIGINT and SIGTERM are ignored (and the process has its own session): a terminal's Ctrl-C must not
take the journal away from a server that is finishing its in-flight requests.
"""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

HEADER = struct.Struct(">cQ")  # kind, payload size
FILES = b"F"
APPEND = b"A"
READY = b"R"
CODE = struct.Struct(">H")
MAX_FILES = 64
_FD_SIZE = array.array("i").itemsize


def _receive_header(sock: socket.socket) -> tuple[bytes, int, list[int]] | None:
    """The next header and the descriptors that came with it; ``None`` at the end of the stream."""
    got = b""
    fds: list[int] = []
    while len(got) < HEADER.size:
        data, ancdata, _flags, _addr = sock.recvmsg(HEADER.size - len(got), socket.CMSG_SPACE(MAX_FILES * _FD_SIZE))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % _FD_SIZE
                fds.extend(array.array("i", payload[:usable]))
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        got += data
    kind, size = HEADER.unpack(got)
    return kind, size, fds


def receive_exactly(sock: socket.socket, size: int) -> bytearray | None:
    """``size`` bytes from ``sock``; ``None`` if the stream ends first (the parent uses it too)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return buf


def _append(fd: int, data: bytearray) -> int:
    view = memoryview(data)
    try:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
        os.fdatasync(fd)
    except OSError as exc:
        return exc.errno or 0xFFFF
    return 0


def serve(sock: socket.socket) -> None:
    files: list[int] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="journal-append") as pool:
        sock.sendall(READY)
        while True:
            header = _receive_header(sock)
            if header is None:
                break
            kind, size, fds = header
            if kind == FILES:
                for fd in files:
                    os.close(fd)
                files = fds
                continue
            for fd in fds:  # descriptors only ever come with FILES
                os.close(fd)
            if kind != APPEND:
                break
            data = receive_exactly(sock, size)
            if data is None:
                break
            codes = list(pool.map(_append, files, [data] * len(files)))
            sock.sendall(b"".join(CODE.pack(code) for code in codes))
    for fd in files:
        os.close(fd)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A parent that died with bytes unread resets the connection instead of ending the stream.
    with socket.socket(fileno=int(sys.argv[1])) as sock, contextlib.suppress(ConnectionError):
        serve(sock)


if __name__ == "__main__":
    main()
