"""``CoalescingTransport``: a response head and the next write leave in one ``writelines``; a lone
small write still leaves on the loop's next turn; nothing is reordered or lost at close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from datawarehouse.api.coalesce import HOLD_MAX, CoalescingTransport


class Recorder(asyncio.Transport):
    """The real transport's side: what was handed to it, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", (bytes(data),)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", tuple(bytes(d) for d in list_of_data)))

    def close(self) -> None:
        self.calls.append(("close", ()))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def sent(rec: Recorder) -> bytes:
    return b"".join(b"".join(parts) for kind, parts in rec.calls if kind != "close")


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def run(body: Callable[[Recorder, CoalescingTransport], Awaitable[None]]) -> None:
    """``body`` on a running loop, with a fresh recorder and the transport in front of it."""

    async def main() -> None:
        rec = Recorder()
        await body(rec, CoalescingTransport(rec, asyncio.get_running_loop()))

    asyncio.run(main())


def test_head_and_body_of_one_turn_leave_together() -> None:
    async def body(rec: Recorder, t: CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        assert rec.calls == []  # held
        assert t.get_write_buffer_size() == 7 + 38
        t.write(b"hello")
        t.write(b"")  # the closing empty body message: nothing to send
        assert rec.calls == [("writelines", (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello"))]
        await next_turn()  # the flush callback finds nothing held
        assert len(rec.calls) == 1

    run(body)


def test_a_lone_small_write_leaves_on_the_next_turn() -> None:
    async def body(rec: Recorder, t: CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert rec.calls == []
        await next_turn()
        assert rec.calls == [("write", (b"HTTP/1.1 100 Continue\r\n\r\n",))]

    run(body)


def test_large_writes_are_not_held_and_order_is_kept() -> None:
    async def body(rec: Recorder, t: CoalescingTransport) -> None:
        big = b"x" * (HOLD_MAX + 1)
        t.write(big)
        assert rec.calls == [("write", (big,))]
        t.write(b"head")
        t.write(big)
        t.write(b"tail")
        await next_turn()
        assert sent(rec) == big + b"head" + big + b"tail"
        assert [kind for kind, _ in rec.calls] == ["write", "writelines", "write"]

    run(body)


def test_close_sends_what_is_held_first() -> None:
    async def body(rec: Recorder, t: CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        t.close()
        assert rec.calls == [("write", (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",)), ("close", ())]
        assert t.is_closing()
        t.write(b"late")  # a closing transport holds nothing back
        await next_turn()
        assert rec.calls[-1] == ("write", (b"late",))
        assert t.get_extra_info("peername") == ("127.0.0.1", 5)

    run(body)
