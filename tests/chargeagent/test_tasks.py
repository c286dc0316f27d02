"""checkpoint(): a cancellation swallowed by an await is still honoured at the next checkpoint."""

import asyncio

import pytest

from chargeagent.tasks import checkpoint


async def test_checkpoint_raises_when_the_task_is_cancelling_even_if_the_await_returned():
    reached = []

    async def worker():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # what 3.11's wait_for can do when a result races the cancel
        reached.append("after swallow")
        checkpoint()
        reached.append("after checkpoint")

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == ["after swallow"]


async def test_checkpoint_is_silent_in_a_task_nobody_cancelled():
    checkpoint()
