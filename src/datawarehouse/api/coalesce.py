"""One write per response head and first body piece: uvicorn's HTTP protocol with a transport that
holds a small write until the next one of the same event-loop turn.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body with the next message, in the same turn of the loop. That
is two ``send`` system calls per response, and on loopback each one also wakes the client: the
head's write was 6-7 % of the event loop's time in a 1 MiB GET (py-spy), as much as a 4 KiB
body. Here a write of at most ``HOLD_MAX`` bytes is kept back; the next write goes out together
with it (``writelines``: one ``writev``), and if none comes before the loop's next turn, a
callback sends it alone. Nothing waits for the client or for a timer, so no latency is added
(unlike Nagle's algorithm), and the bytes leave in the order they were written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD_MAX = 16 * 1024  # a response head; larger writes are never held


class CoalescingTransport:
    """The parts of ``asyncio.Transport`` that uvicorn's HTTP protocol uses, forwarded to the real
    transport, with ``write`` holding back one small write as described above."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if not data:  # uvicorn's last body message of a response is often empty
            return
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif len(data) <= HOLD_MAX and not self._transport.is_closing():
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a held write now (the loop's next turn came, or the transport is closing)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (len(self._held) if self._held is not None else 0)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
