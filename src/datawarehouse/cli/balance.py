"""Spreading connections over the processes of ``dwh serve --workers N``.

Every serving process accepts from the same inherited listening socket. Left to the event loop,
the process that wakes first accepts every connection waiting in the queue (libuv loops on
``accept`` until it would block), so a client that opens its pool in one burst -- boto3, rclone,
the AWS CLI, a benchmark at concurrency 8 -- often lands all of it on one process while the
others idle: with 2 processes, a test opening bursts of 8 connections saw a burst split 8/0 or
7/1 in half of its runs.

Here each process accepts one connection at a time, and a process that holds more open
connections than the least-loaded other process waits ``DEFER`` before accepting, leaving the
connection to that one (the kernel wakes every process for each arrival). If nobody else takes
it meanwhile, it accepts anyway: balance never costs more than one short pause per connection.
The processes publish their open-connection counts in a small shared file (``ConnectionBoard``),
one 8-byte slot each, written only by its owner; a stale count costs balance, never a connection.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import weakref
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

import uvicorn

from datawarehouse.core.slots import MappedSlots

log = logging.getLogger(__name__)

DEFER = 0.002  # how long an over-share process leaves a waiting connection to the others
REFRESH = 0.1  # how often a process republishes its count (connections also close)
GONE = 1 << 62  # the count of a process that is not running: never the least loaded


class ConnectionBoard:
    """Open connections per serving process, in a shared file of one 8-byte slot each."""

    def __init__(self, path: Path, slot: int) -> None:
        self._slots = MappedSlots(path)
        self.slots = self._slots.count
        if not 0 <= slot < self.slots:
            raise ValueError(f"connection board slot {slot} of {self.slots}")
        self.slot = slot
        self._others = [i for i in range(self.slots) if i != slot]

    @staticmethod
    def create(path: Path, slots: int) -> None:
        """A new board where every process but the creator counts as not running yet."""
        MappedSlots.create(path, [GONE if i else 0 for i in range(slots)])

    def publish(self, count: int) -> None:
        self._slots.set(self.slot, count)

    def mark_gone(self, slot: int) -> None:
        """Called by the supervisor when the process of ``slot`` died (its count is stale)."""
        self._slots.set(slot, GONE)

    def fewest_elsewhere(self) -> int:
        return min((self._slots.get(i) for i in self._others), default=GONE)


class BalancedAcceptor:
    """Accepts from the shared listening socket for one process, by the rule in the module's
    docstring, and hands each connection to the event loop with ``protocol_factory``. Stands in
    for an ``asyncio.Server`` in uvicorn's list of servers (``close``/``wait_closed``)."""

    def __init__(
        self,
        listen: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        connections: Container[Any],
        board: ConnectionBoard,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._listen = listen
        self._fd = listen.fileno()
        self._factory = protocol_factory
        self._connections = connections  # every open connection of the process
        # The protocols made here: the process's open connections also include those of its
        # other sockets (the primary's workers' pool), which are not the clients' to balance.
        self._accepted: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()
        self._board = board
        self._closed = False
        self._waiting: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        listen.setblocking(False)
        self._loop.add_reader(self._fd, self._readable)
        self._refresh()

    def _open(self) -> int:
        return sum(1 for p in self._accepted if p in self._connections)

    def _make_protocol(self) -> asyncio.BaseProtocol:
        protocol = self._factory()
        self._accepted.add(protocol)
        return protocol

    def _refresh(self) -> None:
        if not self._closed:
            self._board.publish(self._open())
            self._loop.call_later(REFRESH, self._refresh)

    def _readable(self) -> None:
        mine = self._open()
        self._board.publish(mine)
        if mine > self._board.fewest_elsewhere():
            self._loop.remove_reader(self._fd)
            self._waiting = self._loop.call_later(DEFER, self._after_pause)
            return
        self._accept_one()

    def _after_pause(self) -> None:
        self._waiting = None
        if self._closed:
            return
        self._accept_one()  # still waiting after the pause: nobody else took it
        if not self._closed and self._waiting is None:  # (not paused again by a failed accept)
            self._loop.add_reader(self._fd, self._readable)

    def _accept_one(self) -> None:
        try:
            conn, _ = self._listen.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process took it
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return  # the client gave up while it waited in the queue
            # Out of descriptors or memory: stop listening for a moment rather than spin on a
            # socket that stays readable; the other processes keep accepting.
            log.error("accept failed: %s; pausing for a second", exc)
            self._loop.remove_reader(self._fd)
            self._waiting = self._loop.call_later(1.0, self._after_pause)
            return
        conn.setblocking(False)
        self._board.publish(self._open() + 1)
        task = self._loop.create_task(self._attach(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._make_protocol, conn)
        except Exception as exc:
            log.warning("could not take a new connection: %s", exc)
            conn.close()

    # -- the asyncio.Server surface uvicorn uses on shutdown

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()
        self._loop.remove_reader(self._fd)
        self._board.publish(GONE)

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class BalancingServer(uvicorn.Server):
    """A uvicorn server that accepts from ``listen`` through a ``BalancedAcceptor``; other sockets
    it is given (the primary's Unix socket for its workers) are served the ordinary way."""

    def __init__(self, config: uvicorn.Config, listen: socket.socket, board: ConnectionBoard) -> None:
        super().__init__(config)
        self._listen = listen
        self._board = board

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        others = [s for s in sockets or [] if s is not self._listen]
        await super().startup(others)
        if self.should_exit:
            return
        config = self.config

        def create_protocol() -> asyncio.BaseProtocol:
            protocol: asyncio.BaseProtocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return protocol

        acceptor = BalancedAcceptor(self._listen, create_protocol, self.server_state.connections, self._board)
        self.servers.append(acceptor)  # type: ignore[arg-type]
