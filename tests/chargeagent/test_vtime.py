"""The virtual-time loop: timers jump, real loopback sockets still deliver, executor work is waited for."""

import asyncio
import time

import websockets

from chargeagent.clock import LoopClock
from chargeagent.vtime import run_virtual


def test_an_hour_of_sleeping_takes_no_wall_time():
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    wall = time.monotonic()
    assert run_virtual(main()) == 3600
    assert time.monotonic() - wall < 3600  # the hour was virtual


def test_timers_fire_in_order_across_tasks():
    async def main():
        order = []

        async def sleeper(delay, name):
            await asyncio.sleep(delay)
            order.append((name, asyncio.get_running_loop().time()))

        await asyncio.gather(sleeper(30, "b"), sleeper(10, "a"), sleeper(60, "c"))
        return order

    assert run_virtual(main()) == [("a", 10), ("b", 30), ("c", 60)]


def test_loopback_websocket_round_trips_work_while_time_jumps():
    async def main():
        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                replies = []
                for i in range(20):
                    await ws.send(str(i))
                    replies.append(await ws.recv())
                    await asyncio.sleep(60)
                return replies, asyncio.get_running_loop().time()

    replies, elapsed = run_virtual(main())
    assert replies == [str(i) for i in range(20)]
    assert elapsed >= 20 * 60


def test_executor_work_completes_before_time_jumps_past_it():
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await loop.run_in_executor(None, lambda: (time.sleep(0.05), 42)[1])
        return result, loop.time() - start

    result, elapsed = run_virtual(main())
    assert result == 42
    assert elapsed < 1.0


def test_loop_clock_wall_time_follows_virtual_time_from_its_epoch():
    from datetime import UTC, datetime, timedelta

    epoch = datetime(2026, 1, 1, tzinfo=UTC)

    async def main():
        clock = LoopClock(epoch)
        first = clock.now()
        await clock.sleep(90)
        return first, clock.now()

    first, second = run_virtual(main())
    assert first == epoch
    assert second - first == timedelta(seconds=90)
