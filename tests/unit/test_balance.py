"""Connection balancing of ``dwh serve --workers N`` (``cli/balance.py``), in one event loop: two
acceptors on two descriptors of one listening socket stand for two processes. A burst of
connections is split evenly; an over-share acceptor whose peer never accepts still takes every
connection (after its pause); closing stops accepting and marks the slot gone."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from datawarehouse.cli.balance import GONE, BalancedAcceptor, ConnectionBoard


@pytest.fixture
def board_path(tmp_path: Path) -> Path:
    path = tmp_path / "connections"
    ConnectionBoard.create(path, 3)
    return path


def test_board_slots_are_shared_between_openers(board_path: Path) -> None:
    primary, worker = ConnectionBoard(board_path, 0), ConnectionBoard(board_path, 1)
    assert os.stat(board_path).st_mode & 0o777 == 0o600
    assert primary.slots == worker.slots == 3
    assert primary.fewest_elsewhere() == GONE  # workers not started yet count as gone
    worker.publish(5)
    assert primary.fewest_elsewhere() == 5
    primary.publish(2)
    assert worker.fewest_elsewhere() == 2  # slot 2 is still gone
    primary.mark_gone(1)
    assert primary.fewest_elsewhere() == GONE
    with pytest.raises(ValueError, match="slot 3 of 3"):
        ConnectionBoard(board_path, 3)
    with pytest.raises(FileExistsError):
        ConnectionBoard.create(board_path, 3)


class _Held(asyncio.Protocol):
    """A connection that stays open; it joins ``live`` as uvicorn's protocols join theirs."""

    def __init__(self, live: set[asyncio.Protocol]) -> None:
        self.live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock
    finally:
        sock.close()


async def _burst(port: int, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.connect(("127.0.0.1", port))  # completes in the kernel: queued until accepted
        clients.append(client)
    return clients


async def _settle(live: list[set[asyncio.Protocol]], total: int) -> None:
    for _ in range(500):
        if sum(len(s) for s in live) == total:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"accepted {[len(s) for s in live]} of {total}")


def test_bursts_go_to_the_acceptor_with_fewer_connections(listener: socket.socket, board_path: Path) -> None:
    """The first acceptor alone takes a burst of 4; a second one then gets the whole next burst
    of 4 (taking turns would have split it 2/2), and a burst of 8 after that splits 4/4."""

    async def main() -> list[list[int]]:
        live: list[set[asyncio.Protocol]] = [set(), set()]
        port = listener.getsockname()[1]
        acceptors, clients, seen = [], [], []

        def start(slot: int) -> None:
            sock = socket.socket(fileno=os.dup(listener.fileno()))
            board = ConnectionBoard(board_path, slot)
            acceptors.append(BalancedAcceptor(sock, lambda: _Held(live[slot]), live[slot], board))

        ConnectionBoard(board_path, 0).mark_gone(2)
        start(0)
        for burst, acceptor_count in ((4, 1), (4, 2), (8, 2)):
            if len(acceptors) < acceptor_count:
                start(1)
            clients += await _burst(port, burst)
            await _settle(live, len(clients))
            seen.append([len(s) for s in live])
        for acceptor in acceptors:
            acceptor.close()
            await acceptor.wait_closed()
        for client in clients:
            client.close()
        return seen

    assert uvloop.run(main()) == [[4, 0], [4, 4], [8, 8]]


def test_an_over_share_acceptor_still_takes_what_nobody_else_does(listener: socket.socket, board_path: Path) -> None:
    """The peer's slot says it holds nothing, but it never accepts (stuck, or slow to wake):
    every connection is still accepted, each after the pause."""

    async def main() -> tuple[int, int]:
        live: set[asyncio.Protocol] = set()
        peer = ConnectionBoard(board_path, 1)
        peer.publish(0)
        peer.mark_gone(2)
        board = ConnectionBoard(board_path, 0)
        acceptor = BalancedAcceptor(listener, lambda: _Held(live), live, board)
        clients = await _burst(listener.getsockname()[1], 6)
        await _settle([live], 6)
        accepted = len(live)
        acceptor.close()
        await acceptor.wait_closed()
        # Closed: the slot says gone, and a new connection waits in the queue untaken.
        late = socket.create_connection(listener.getsockname())
        await asyncio.sleep(0.05)
        after_close = len(live)
        assert peer.fewest_elsewhere() == GONE
        for client in [*clients, late]:
            client.close()
        return accepted, after_close

    accepted, after_close = uvloop.run(main())
    assert accepted == 6
    assert after_close == 6


class _OutOfDescriptors(socket.socket):
    """A listening socket whose ``accept`` fails, while ``failing``, as when the process has no
    descriptor left."""

    calls = 0
    failing = True

    def accept(self) -> tuple[socket.socket, object]:
        type(self).calls += 1
        if type(self).failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_a_failing_accept_pauses_instead_of_spinning(listener: socket.socket, board_path: Path) -> None:
    """The socket stays readable while accept fails: the acceptor stops watching it for a second
    (the other processes keep accepting) and then takes the connection."""

    async def main() -> tuple[int, int]:
        live: set[asyncio.Protocol] = set()
        ConnectionBoard(board_path, 0).mark_gone(1)
        ConnectionBoard(board_path, 0).mark_gone(2)
        sock = _OutOfDescriptors(fileno=os.dup(listener.fileno()))
        acceptor = BalancedAcceptor(sock, lambda: _Held(live), live, ConnectionBoard(board_path, 0))
        client = socket.create_connection(listener.getsockname())
        await asyncio.sleep(0.5)
        during_pause = _OutOfDescriptors.calls
        _OutOfDescriptors.failing = False
        await _settle([live], 1)
        acceptor.close()
        await acceptor.wait_closed()
        client.close()
        return during_pause, _OutOfDescriptors.calls

    during_pause, in_all = uvloop.run(main())
    assert during_pause == 1  # a spinning loop would have tried thousands of times
    assert in_all == 2  # after the pause: one accept, which took the connection
