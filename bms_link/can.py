"""CAN backend: a python-can bus + J1939 transport + the GB/T 27930 charger state machine, as a `BmsLink`.

`CanBmsLink` is the thin asyncio shell around the sans-I/O cores (`bms_link.j1939`, `bms_link.gbt`):
one owned task drains the bus, feeds frames to the cores, sends what they return and sleeps until the
cores' next deadline. All time comes from a `chargeagent.clock.Clock`, so the same code runs on a
virtual-time loop. Any python-can interface works by configuration (`virtual` in tests and the demo,
`socketcan`, `pcan`, ... in the field); `can.CanError`/`OSError` become `BmsLinkError` here.

Receiving without threads (`CanPort`):
- if `bus.fileno()` works (socketcan), the loop watches the socket with `loop.add_reader`;
- python-can's `virtual` bus has no file descriptor, so ports on a virtual channel register in a
  module-level registry keyed by channel, and every `CanPort.send` on a virtual channel wakes the other
  ports of that channel right after `bus.send` (same event loop thread; ports on other threads or
  processes are not woken and rely on polling);
- readers always drain with `bus.recv(timeout=0)`;
- an optional fallback poll every `poll_interval_s` (default 0.01 s; `None` disables it). The simulator
  passes None: all its peers are in-process and woken by the registry, and polling would cost a timer
  event per 10 ms of virtual time.
Undecodable frames are logged once each as `can_frame_rejected` (id, data hex, reason), counted in
`rejected_frames`, and never stop the link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import can
import structlog

from bms_link import gbt_codec as codec
from bms_link.base import BmsLink
from bms_link.gbt import (
    TIME_EPS_S,
    ChargerLimits,
    ChargingStarted,
    FrameRejected,
    GbtCharger,
    GbtTiming,
    Output,
    Phase,
    Send,
    SessionClosed,
    SessionEnded,
    SessionInfo,
)
from bms_link.j1939 import J1939Transport, TpResult
from bms_link.models import ChargeCommand, PackInfo, PackTelemetry, StopReason
from chargeagent.clock import Clock, LoopClock
from chargeagent.errors import BmsLinkError

CHARGER_ADDRESS = 0x56  # GB/T 27930-2015 clause 7.3 (source addresses)
BMS_ADDRESS = 0xF4
TELEMETRY_BUFFER = 64  # snapshots kept for a slow consumer; the oldest are dropped first
_virtual_ports: dict[str, set[CanPort]] = {}


class CanPort:
    """A python-can bus opened for asyncio: non-blocking drain and wake-ups without threads."""

    def __init__(
        self,
        *,
        interface: str,
        channel: str,
        bitrate: int,
        clock: Clock,
        poll_interval_s: float | None,
        log: Any = None,
    ) -> None:
        self.interface, self.channel = interface, channel
        self._clock, self._poll_interval_s = clock, poll_interval_s
        self._log = log or structlog.get_logger(__name__).bind(channel=channel)
        try:
            self._bus = can.Bus(interface=interface, channel=channel, bitrate=bitrate)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise BmsLinkError(f"cannot open CAN {interface}:{channel}: {exc}") from exc
        try:
            self._fd: int | None = int(self._bus.fileno())
        except (NotImplementedError, OSError, ValueError):
            self._fd = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self._virtual = interface == "virtual"
        if poll_interval_s is None and not self._virtual and self._fd is None:
            self._log.warning("can_poll_required", interface=interface, poll_interval_s=0.01)
            self._poll_interval_s = 0.01  # nothing else would ever wake us for this interface
        # Without polling, frames only arrive through wake-ups (registry or add_reader), so an idle
        # wake-up (a timer) need not touch the bus at all.
        self._drain_on_timer = self._poll_interval_s is not None
        if self._virtual:
            _virtual_ports.setdefault(channel, set()).add(self)
        self._pending = False
        self._waiter: asyncio.Future[None] | None = None
        self._open = True
        self.frames_sent = 0
        self.frames_received = 0

    def wake(self) -> None:
        """Make the current or next `wait` return now (new frames, or new work from outside)."""
        self._pending = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, can_id: int, data: bytes) -> None:
        message = can.Message(arbitration_id=can_id, data=data, is_extended_id=True)
        try:
            self._bus.send(message)
        except (can.CanError, OSError) as exc:
            raise BmsLinkError(f"CAN send on {self.channel} failed: {exc}") from exc
        self.frames_sent += 1
        if self._virtual:
            for port in _virtual_ports.get(self.channel, ()):
                if port is not self:
                    port.wake()

    def receive(self) -> list[can.Message]:
        """Every frame waiting in the bus's queue, without blocking."""
        if not self._pending and not self._drain_on_timer:
            return []
        self._pending = False
        frames: list[can.Message] = []
        try:
            while (message := self._bus.recv(timeout=0)) is not None:
                frames.append(message)
        except (can.CanError, OSError) as exc:
            raise BmsLinkError(f"CAN receive on {self.channel} failed: {exc}") from exc
        self.frames_received += len(frames)
        return frames

    async def wait(self, timeout_s: float | None) -> None:
        """Until a frame may be there, `timeout_s` passed, or the poll interval elapsed."""
        loop = asyncio.get_running_loop()
        if self._fd is not None and self._reader_loop is None:
            loop.add_reader(self._fd, self.wake)
            self._reader_loop = loop
        if self._pending:
            return
        if self._poll_interval_s is not None:
            timeout_s = self._poll_interval_s if timeout_s is None else min(timeout_s, self._poll_interval_s)
        if timeout_s is not None and timeout_s <= 0:
            await asyncio.sleep(0)  # let others run, then go on
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer: asyncio.TimerHandle | None = None
        sleeper: asyncio.Task[None] | None = None
        if timeout_s is not None:
            if isinstance(self._clock, LoopClock):  # its time is loop.time(): a plain loop timer
                timer = loop.call_later(timeout_s, _resolve, waiter)
            else:
                sleeper = loop.create_task(self._sleep_then(waiter, timeout_s), name="can-port-timer")
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
            if sleeper is not None:
                sleeper.cancel()

    async def _sleep_then(self, waiter: asyncio.Future[None], duration_s: float) -> None:
        await self._clock.sleep(duration_s)
        _resolve(waiter)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._reader_loop is not None and self._fd is not None:
            self._reader_loop.remove_reader(self._fd)
        if self._virtual:
            _virtual_ports.get(self.channel, set()).discard(self)
            if not _virtual_ports.get(self.channel, True):
                del _virtual_ports[self.channel]
        with contextlib.suppress(can.CanError, OSError):
            self._bus.shutdown()
        self.wake()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def due(deadline_s: float | None, now_s: float) -> bool:
    return deadline_s is not None and now_s >= deadline_s - TIME_EPS_S


def delay(now_s: float, *deadlines_s: float | None) -> float | None:
    """Seconds until the earliest deadline (None: nothing scheduled)."""
    soonest = min((d for d in deadlines_s if d is not None), default=None)
    return None if soonest is None else soonest - now_s


def log_rejected(log: Any, can_id: int, data: bytes, reason: str) -> None:
    """The one log line for a frame (or reassembled payload) we could not use."""
    log.warning("can_frame_rejected", can_id=f"0x{can_id:08X}", data=data.hex(), reason=reason)


class CanBmsLink(BmsLink):
    """GB/T 27930 charger side over CAN (see the module docstring)."""

    def __init__(
        self,
        *,
        interface: str,
        channel: str,
        bitrate: int = 250_000,
        clock: Clock,
        timing: GbtTiming | None = None,
        poll_interval_s: float | None = 0.01,
        log: Any = None,
        limits: ChargerLimits | None = None,
    ) -> None:
        self._log = log or structlog.get_logger(__name__).bind(channel=channel)
        self._clock = clock
        self._port = CanPort(
            interface=interface, channel=channel, bitrate=bitrate, clock=clock,
            poll_interval_s=poll_interval_s, log=self._log,
        )  # fmt: skip
        self._tp = J1939Transport(CHARGER_ADDRESS)
        self.core = GbtCharger(timing, limits, wall_time=clock.now)
        self._specs = {s.name: (s.pgn, s.priority) for s in codec.all_specs()}
        self._task: asyncio.Task[None] | None = None
        self._telemetry: deque[PackTelemetry] = deque(maxlen=TELEMETRY_BUFFER)
        self._progress = asyncio.Event()
        self._pack: PackInfo | None = None
        self._charging = self._ended = self._session_closed = False
        self._failure: BaseException | None = None
        self.rejected_frames = 0

    # --- BmsLink -----------------------------------------------------------------------------

    async def start_session(self) -> PackInfo:
        self._ensure_running()
        if self.core.phase in (Phase.ENDING, Phase.STATISTICS):
            await self._until(lambda: self._session_closed)  # let the previous session finish
        self._telemetry.clear()
        self._pack, self._charging, self._ended, self._session_closed = None, False, False, False
        self._handle(self.core.start(self._clock.monotonic()), self._clock.monotonic())
        self._port.wake()
        await self._until(lambda: self._charging or self._ended)
        if not self._charging or self._pack is None:
            raise BmsLinkError(f"GB/T session ended before charging: {self.core.end_reason}")
        return self._pack

    async def telemetry(self) -> AsyncIterator[PackTelemetry]:
        while True:
            while self._telemetry:
                yield self._telemetry.popleft()
            if self._ended or self._failure is not None:
                return
            self._progress.clear()
            await self._progress.wait()

    async def command(self, command: ChargeCommand) -> None:
        self.core.set_output(command)

    async def stop_session(self, reason: StopReason) -> None:
        if self._task is None or self.core.phase is Phase.IDLE:
            return
        now = self._clock.monotonic()
        self._handle(self.core.stop(reason, now), now)
        self._port.wake()
        await self._until(lambda: self._session_closed or self.core.phase is Phase.ENDED)

    @property
    def end_reason(self) -> StopReason | None:
        return self.core.end_reason

    async def close(self) -> None:
        if self._task is not None and self.core.phase in (Phase.RECOGNITION, Phase.PARAMETER, Phase.CHARGING):
            now = self._clock.monotonic()  # closing mid-session: output to 0 and tell the BMS (CCS, CST)
            with contextlib.suppress(BmsLinkError):
                self._handle(self.core.stop(StopReason.LOCAL, now), now)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._port.close()
        self._progress.set()

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def output_current_a(self) -> float:
        """What the power stage may deliver now (0 unless charging, permitted and commanded)."""
        return self.core.output_current_a

    @property
    def port(self) -> CanPort:
        return self._port

    def _ensure_running(self) -> None:
        if self._failure is not None:
            raise BmsLinkError(f"CAN link failed: {self._failure}") from self._failure
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="can-bms-link")

    async def _until(self, condition: Any) -> None:
        while not condition():
            if self._failure is not None:
                raise BmsLinkError(f"CAN link failed: {self._failure}") from self._failure
            if self._task is None:
                raise BmsLinkError("CAN link is closed")
            self._progress.clear()
            await self._progress.wait()

    async def _run(self) -> None:
        clock, core, tp, port = self._clock, self.core, self._tp, self._port
        try:
            while True:
                now = clock.monotonic()
                for message in port.receive():
                    self._on_frame(message, now)
                if due(tp.next_deadline_s(), now):
                    ticked = tp.tick(now)
                    self._send_frames(ticked.frames)
                    for error in ticked.errors:
                        self._log.warning("j1939_session_aborted", pgn=f"0x{error.pgn:04X}",
                                          reason=error.reason.name, detail=error.detail)  # fmt: skip
                if due(core.next_deadline_s(), now):
                    self._handle(core.tick(now), now)
                await port.wait(delay(clock.monotonic(), core.next_deadline_s(), tp.next_deadline_s()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead bus or a bug: fail the waiters instead of hanging them
            self._failure = exc
            self._log.error("can_link_failed", error=repr(exc))
            self._progress.set()

    def _on_frame(self, message: can.Message, now_s: float) -> None:
        if not message.is_extended_id or message.is_error_frame or message.is_remote_frame:
            return  # not J1939/GB-T traffic
        can_id, data = message.arbitration_id, bytes(message.data)
        result: TpResult = self._tp.on_frame(can_id, data, now_s)
        self._send_frames(result.frames)
        for error in result.errors:
            self._reject(can_id, data, f"J1939 {error.reason.name}: {error.detail}")
        for m in result.messages:
            if m.source == BMS_ADDRESS:
                self._handle(self.core.on_payload(m.pgn, m.data, now_s), now_s, can_id)

    def _handle(self, outputs: Iterable[Output], now_s: float, can_id: int = 0) -> None:
        for out in outputs:
            if isinstance(out, Send):
                pgn, priority = self._specs[out.name]
                result = self._tp.send(pgn, out.data, dest=BMS_ADDRESS, priority=priority, now_s=now_s)
                self._send_frames(result.frames)
            elif isinstance(out, PackTelemetry):
                self._telemetry.append(out)
                self._progress.set()
            elif isinstance(out, FrameRejected):
                self._reject(can_id, out.data, out.reason)
            else:
                self._on_event(out)

    def _on_event(self, out: Output) -> None:
        if isinstance(out, SessionInfo | ChargingStarted):
            self._pack = out.pack
            self._charging = self._charging or isinstance(out, ChargingStarted)
        elif isinstance(out, SessionEnded):
            self._ended = True
            self._log.info("gbt_session_ended", reason=out.reason.value)
        elif isinstance(out, SessionClosed):
            self._session_closed = True
        self._progress.set()

    def _send_frames(self, frames: Iterable[Any]) -> None:
        for frame in frames:
            self._port.send(frame.can_id, frame.data)

    def _reject(self, can_id: int, data: bytes, reason: str) -> None:
        self.rejected_frames += 1
        log_rejected(self._log, can_id, data, reason)
