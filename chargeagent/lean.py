"""asyncio.Event and an unbounded FIFO queue, without their eager allocations.

Hand-written because the stdlib's cost is per instance and we hold thousands of them: `asyncio.Event()`
allocates a `collections.deque` for its waiters at once (~0.7 KiB with its first block, CPython 3.11) and
`asyncio.Queue()` three of them (~2.2 KiB), waited on or not. A station agent had five events and two
queues (its own and the `ocpp` library's response queue): ~8 KiB of its ~60 KiB per agent in a fleet
simulation (bench/README.md, the footprint diet). These keep the same semantics for what we use
(`set` wakes every current waiter, who returns True even if the event is cleared again before it runs;
a cancelled waiter leaves nothing behind) and allocate a waiter list only while someone waits.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class LeanEvent:
    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        try:
            await future
            return True
        finally:
            waiters = self._waiters
            if waiters is not None and future in waiters:  # cancelled (set() already dropped the list)
                waiters.remove(future)
                if not waiters:
                    self._waiters = None


class LeanQueue(Generic[T]):
    """Unbounded FIFO: `put_nowait`/`put`, `get_nowait`/`get`, `empty`, `qsize` as asyncio.Queue has them."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: list[T] = []  # short (a few items at most): list.pop(0) is cheaper than a deque here
        self._ready = LeanEvent()  # set while items wait

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    async def put(self, item: T) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        if not self._items:
            self._ready.clear()
        return item

    async def get(self) -> T:
        while not self._items:  # another getter woken by the same put may have taken it
            await self._ready.wait()
        return self.get_nowait()
