"""A virtual-time asyncio event loop: simulated hours pass in seconds, with real sockets still working.

How it works: asyncio's `_run_once` asks the selector to wait until the next timer is due. Our selector
first polls the real sockets without blocking; if nothing is ready and no worker thread is busy, it
advances the loop's virtual clock straight to that timer instead of sleeping. Real I/O (loopback
websockets, pipes) is still delivered because it is polled before every jump, and a loopback send is in
the peer's receive buffer by the time `send()` returns. When nothing is scheduled at all the selector
blocks for real, so a loop waiting on a remote peer behaves normally.

Why hand-written: the maintained alternatives (`looptime`) patch pytest and the loop globally; we need a
small, dependency-free loop that the demo and the fleet runner can use in production code.

Caveat (documented for users): work in executor threads (`run_in_executor`, e.g. getaddrinfo) holds
virtual time still until it completes, and a peer in another process sees a clock that runs very fast;
run every peer of a simulation on the same virtual loop.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, TypeVar

T = TypeVar("T")

# While executor work is in flight we block in real time, but never longer than this (seconds), so a
# thread that finishes is noticed promptly through the loop's self-pipe anyway.
_EXECUTOR_WAIT_S = 0.05


class _VirtualSelector(selectors.DefaultSelector):
    """Selector that turns 'wait N seconds for I/O' into 'jump N seconds' when no I/O is pending."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0:
            return events
        loop = self.loop
        if loop is None or timeout is None:
            return super().select(timeout)  # nothing scheduled: wait for real I/O
        if loop.executor_jobs > 0:
            return super().select(min(timeout, _EXECUTOR_WAIT_S))
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Event loop whose `time()` is virtual and jumps forward whenever the loop would otherwise idle."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = 0.0
        self._jobs_lock = threading.Lock()
        self.executor_jobs = 0

    def time(self) -> float:
        return self._virtual_now

    def advance(self, duration_s: float) -> None:
        """Move virtual time forward (never backward)."""
        if duration_s > 0:
            self._virtual_now += duration_s

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        with self._jobs_lock:
            self.executor_jobs += 1
        future = super().run_in_executor(executor, func, *args)

        def _done(_: asyncio.Future[T] | ConcurrentFuture[T]) -> None:
            with self._jobs_lock:
                self.executor_jobs -= 1

        future.add_done_callback(_done)
        return future


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh `VirtualTimeLoop` (like `asyncio.run`)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
