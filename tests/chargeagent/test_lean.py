"""LeanEvent / LeanQueue behave as asyncio.Event / asyncio.Queue do where the agent uses them."""

from __future__ import annotations

import asyncio
import sys

import pytest

from chargeagent.lean import LeanEvent, LeanQueue


async def test_set_wakes_every_waiter_even_if_cleared_before_they_run():
    event = LeanEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    event.set()
    event.clear()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert not event.is_set()
    event.set()
    assert await event.wait() is True  # set: returns at once


async def test_a_cancelled_waiter_leaves_nothing_behind():
    event = LeanEvent()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert event._waiters is None
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(event.wait(), 0.01)
    assert event._waiters is None
    event.set()


async def test_queue_is_fifo_and_get_waits_for_a_put():
    queue: LeanQueue[int] = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait(1)
    await queue.put(2)
    assert await getter == 1
    assert queue.qsize() == 1
    assert queue.get_nowait() == 2
    assert queue.empty()


async def test_two_getters_one_item_each():
    queue: LeanQueue[str] = LeanQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(2)]
    await asyncio.sleep(0)
    queue.put_nowait("a")  # wakes both; one gets it, the other waits on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sum(g.done() for g in getters) == 1
    queue.put_nowait("b")
    assert sorted(await asyncio.gather(*getters)) == ["a", "b"]


async def test_a_timed_out_get_loses_no_item():
    queue: LeanQueue[int] = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    queue.put_nowait(7)
    assert await asyncio.wait_for(queue.get(), 1.0) == 7


def test_idle_instances_are_smaller_than_the_stdlib_ones():
    # not a timing: allocation sizes, deterministic per interpreter
    lean = sys.getsizeof(LeanEvent())
    stdlib = asyncio.Event()
    assert lean < sys.getsizeof(stdlib._waiters)
