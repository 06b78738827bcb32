"""Journal appends made by the writer process (``engine.journal_process``), on real disks: what
reaches the segments, a disk failing inside the process, the process killed, Ctrl-C, and close."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from datawarehouse.engine import journal as jr
from datawarehouse.engine.journal_process import JournalProcess
from datawarehouse.errors import StorageError
from datawarehouse.ids import DiskId
from datawarehouse.storage.localdisk import LocalAppendFile, LocalDiskStore


class Disks:
    def __init__(self, root: Path, n: int = 3) -> None:
        self.stores = {DiskId(f"d{i}"): LocalDiskStore(root / f"d{i}", create=True) for i in range(n)}
        self.errors: list[tuple[DiskId, Exception]] = []

    def journal(self, *, writer_process: bool = True) -> jr.Journal:
        return jr.Journal(
            lambda: self.stores, lambda: 2, lambda d, e: self.errors.append((d, e)), writer_process=writer_process
        )


@pytest.fixture
def disks(tmp_path: Path) -> Disks:
    return Disks(tmp_path)


@pytest.fixture
def journal(disks: Disks) -> Iterator[jr.Journal]:
    j = disks.journal()
    try:
        yield j
    finally:
        j.close()


def writer_pid(journal: jr.Journal) -> int:
    process = journal._process
    assert process is not None
    return process.pid


def until_the_process_writes(journal: jr.Journal, records: list[tuple[int, bytes]]) -> None:
    """Append (in-process at first) until the writer process has taken the files over."""
    deadline = time.monotonic() + 30
    while not journal._process_has_files:
        assert time.monotonic() < deadline, "the writer process never became ready"
        record = (jr.RECORD_OP, f"warm-up {len(records)}".encode())
        journal.append([record])
        records.append(record)
        time.sleep(0.01)


def no_in_process_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("appended in-process")

    monkeypatch.setattr(LocalAppendFile, "write", refuse)
    monkeypatch.setattr(LocalAppendFile, "sync", refuse)


def stored(disks: Disks) -> list[tuple[int, bytes]]:
    return [(e.rtype, e.payload) for e in jr.read_all(disks.stores)]


def test_appends_go_through_the_writer_process_to_every_disk(
    disks: Disks, journal: jr.Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[tuple[int, bytes]] = []
    until_the_process_writes(journal, records)
    no_in_process_writes(monkeypatch)
    segment = journal.segment
    for i in range(50):
        batch = [(jr.RECORD_OP, os.urandom(i * 97)), (jr.RECORD_OP, f"op {i}".encode())]
        positions = journal.append(batch)
        assert [seg for seg, _ in positions] == [segment, segment]
        records += batch
    big = [(jr.RECORD_OP, os.urandom(3 * 1024 * 1024))]  # more than a socket buffer holds
    journal.append(big)
    records += big
    assert stored(disks) == records
    # Every copy holds all of it, not just the longest one.
    sizes = {store.stat(f"journal/{segment}.log").size for store in disks.stores.values()}
    assert len(sizes) == 1
    assert disks.errors == []
    # The process holds the segment files open; the journal's own copies too.
    paths = {Path(f.path).name for f in psutil.Process(writer_pid(journal)).open_files()}
    assert paths == {f"{segment}.log"}


def test_a_disk_failing_inside_the_writer_process_is_reported_and_the_journal_goes_on(
    disks: Disks, journal: jr.Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[tuple[int, bytes]] = []
    until_the_process_writes(journal, records)
    journal.rotate()
    # The next segment's d1 copy is handed to the process read-only: its writes fail there (EBADF).
    real_fileno = LocalAppendFile.fileno
    read_only: list[int] = []

    def fileno(self: LocalAppendFile) -> int:
        if Path(self._label).name == "d1":
            fd = os.open(f"/proc/self/fd/{real_fileno(self)}", os.O_RDONLY)
            read_only.append(fd)
            return fd
        return real_fileno(self)

    monkeypatch.setattr(LocalAppendFile, "fileno", fileno)
    no_in_process_writes(monkeypatch)
    record = (jr.RECORD_OP, b"reaches two of three disks")
    (position,) = journal.append([record])
    records.append(record)
    first = position[0]
    assert len(read_only) == 1, "the d1 copy was handed over once"
    assert [d for d, _ in disks.errors] == [DiskId("d1")]
    assert "Bad file descriptor" in str(disks.errors[0][1])
    # Copies now differ in length: the next append starts a new segment, with d1 again.
    monkeypatch.setattr(LocalAppendFile, "fileno", real_fileno)
    after = (jr.RECORD_OP, b"next segment")
    (position,) = journal.append([after])
    records.append(after)
    assert position[0] != first
    assert stored(disks) == records
    for fd in read_only:
        os.close(fd)


def test_a_killed_writer_process_fails_one_append_and_later_appends_go_on(disks: Disks, journal: jr.Journal) -> None:
    records: list[tuple[int, bytes]] = []
    until_the_process_writes(journal, records)
    first = journal.segment
    pid = writer_pid(journal)
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=10)
    with pytest.raises(StorageError, match="journal writer process"):
        journal.append([(jr.RECORD_OP, b"in flight when it died")])
    acknowledged = [(jr.RECORD_OP, f"after {i}".encode()) for i in range(20)]
    for record in acknowledged:
        (position,) = journal.append([record])
        assert position[0] != first
    records += acknowledged
    until_the_process_writes(journal, records)  # a new process takes over
    assert writer_pid(journal) != pid
    last = (jr.RECORD_OP, b"through the new process")
    journal.append([last])
    records.append(last)
    # Nothing acknowledged is lost; the failed append was never acknowledged (it may or may not
    # be there: the process died before it read it here, so it is not).
    assert stored(disks) == records


def test_ctrl_c_does_not_stop_the_writer_process_and_close_ends_it(disks: Disks) -> None:
    journal = disks.journal()
    records: list[tuple[int, bytes]] = []
    try:
        until_the_process_writes(journal, records)
        writer = journal._process
        assert writer is not None
        proc = psutil.Process(writer.pid)
        assert os.getsid(proc.pid) != os.getsid(0)  # a terminal's Ctrl-C goes to the server's session only
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        record = (jr.RECORD_OP, b"after the signals")
        journal.append([record])
        records.append(record)
        assert proc.is_running()
    finally:
        journal.close()
    assert writer._proc.returncode == 0  # ended on its own when the socket closed, and reaped
    assert not proc.is_running()
    assert stored(disks) == records


def test_without_the_writer_process_no_process_is_started(disks: Disks) -> None:
    journal = disks.journal(writer_process=False)
    try:
        for i in range(5):
            journal.append([(jr.RECORD_OP, f"{i}".encode())])
            time.sleep(0.01)
        assert journal._process is None
    finally:
        journal.close()
    assert len(stored(disks)) == 5


def test_the_writer_process_ends_quietly_when_its_parent_vanishes_with_bytes_unread(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A parent killed with bytes unread in its socket (here the READY greeting) resets the
    # connection instead of ending it: the child must still end, cleanly and without a traceback
    # on the server's stderr.
    writer = JournalProcess()
    readable, _, _ = select.select([writer._sock], [], [], 30)
    assert readable, "the writer process never greeted"
    writer._sock.close()
    assert writer._proc.wait(timeout=10) == 0
    assert "Traceback" not in capfd.readouterr().err
