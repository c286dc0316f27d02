"""One clock for all time: monotonic seconds for timers, UTC wall time for OCPP timestamps.

Everything in chargeagent reads time through a `Clock`. The default `LoopClock` takes monotonic
time from the running asyncio loop, so the same code runs in real time on a normal loop and
faster than real time on `chargeagent.vtime.VirtualTimeLoop` (the loop's time() is virtual there).
Sans-I/O cores never read a clock: they are handed `now_s` by their adapter.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the asyncio adapters need from time."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    def now(self) -> datetime:
        """Current UTC wall time (timezone-aware)."""
        ...

    async def sleep(self, duration_s: float) -> None:
        """Sleep `duration_s` seconds of this clock's time."""
        ...


class LoopClock:
    """Clock driven by the running event loop's time().

    With `epoch=None` wall time is the real UTC time. With an epoch, wall time is
    `epoch + (loop.time() - loop time at first use)`, which is what a virtual-time simulation wants.
    """

    def __init__(self, epoch: datetime | None = None) -> None:
        if epoch is not None and epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self._epoch = epoch
        self._t0: float | None = None

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        if self._epoch is None:
            return datetime.now(UTC)
        t = self.monotonic()
        if self._t0 is None:
            self._t0 = t
        return self._epoch + timedelta(seconds=t - self._t0)

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(duration_s)


def ocpp_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a Z suffix.

    Strict CSMSs reject Python's microsecond isoformat() as a FormationViolation
    (OCPP 2.0.1 part 4, 'dateTime' is RFC 3339; most implementations accept at most ms).
    """
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
