"""The vehicle BMS as a CAN node: `simulators.gbt_bms.GbtBms` + J1939 on a python-can bus, in asyncio.

`BmsCanNode(bms, interface=..., channel=..., clock=...)` joins the bus when constructed (so it hears the
charger's first CHM); `await node.run()` plays one charging session and returns once it has ended and BSD
was sent (or the session failed), or when cancelled. It shares `bms_link.can.CanPort`, so on a `virtual`
channel it is woken by the charger's sends and needs no polling (`poll_interval_s=None`).

Fault injection hooks (for tests and the demo): `go_silent()` stops every transmission, `drop("BCL")`
suppresses one message type, `restore()` undoes both; `faults` shows what is active.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import can
import structlog

from bms_link import gbt_codec as codec
from bms_link.can import BMS_ADDRESS, CHARGER_ADDRESS, CanPort, delay, due, log_rejected
from bms_link.gbt import GbtTiming, Send
from bms_link.j1939 import CanFrame, J1939Transport
from chargeagent.clock import Clock
from chargeagent.errors import BmsLinkError
from simulators.gbt_bms import BmsModel, BmsPhase, GbtBms

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class FaultInjection:
    """What the node currently suppresses."""

    silent: bool = False
    dropped: set[str] = field(default_factory=set)


class BmsCanNode:
    """A simulated vehicle BMS speaking GB/T 27930 on a CAN bus."""

    def __init__(
        self,
        bms: BmsModel,
        *,
        interface: str,
        channel: str,
        clock: Clock,
        timing: GbtTiming | None = None,
        poll_interval_s: float | None = 0.01,
    ) -> None:
        self.bms = bms
        self.core = GbtBms(bms, timing)
        self.faults = FaultInjection()
        self.rejected_frames = 0
        self._clock = clock
        self._log = log.bind(channel=channel, node="bms")
        self._port = CanPort(
            interface=interface, channel=channel, bitrate=250_000, clock=clock,
            poll_interval_s=poll_interval_s, log=self._log,
        )  # fmt: skip
        self._tp = J1939Transport(BMS_ADDRESS)
        self._specs = {s.name: (s.pgn, s.priority) for s in codec.all_specs()}

    # --- fault injection ---------------------------------------------------------------------

    def go_silent(self) -> None:
        """Stop transmitting anything (the charger should time out and send CEM)."""
        self.faults.silent = True

    def drop(self, message_name: str) -> None:
        """Stop sending one message type, e.g. "BCL"."""
        self.faults.dropped.add(message_name.upper())

    def restore(self) -> None:
        self.faults.silent = False
        self.faults.dropped.clear()

    # --- running -----------------------------------------------------------------------------

    @property
    def port(self) -> CanPort:
        return self._port

    async def run(self) -> None:
        """Play the session until it is over (ENDED after BSD, or ERROR after BEM/CEM)."""
        clock, core, tp, port = self._clock, self.core, self._tp, self._port
        while not core.done:
            now = clock.monotonic()
            for message in port.receive():
                self._on_frame(message, now)
            if due(tp.next_deadline_s(), now):
                self._transmit(tp.tick(now).frames)
            if due(core.next_deadline_s(), now) or core.phase is BmsPhase.CHARGING:
                self._handle(core.tick(now), now)  # in CHARGING, tick also asks the pack to stop
            if core.done:
                break
            await port.wait(delay(clock.monotonic(), core.next_deadline_s(), tp.next_deadline_s()))

    async def close(self) -> None:
        """Leave the bus (idempotent). Cancel `run()` first if it is still going."""
        self._port.close()

    def _on_frame(self, message: can.Message, now_s: float) -> None:
        if not message.is_extended_id or message.is_error_frame or message.is_remote_frame:
            return
        can_id, data = message.arbitration_id, bytes(message.data)
        result = self._tp.on_frame(can_id, data, now_s)
        self._transmit(result.frames)
        for error in result.errors:
            self._reject(can_id, data, f"J1939 {error.reason.name}: {error.detail}")
        for m in result.messages:
            if m.source != CHARGER_ADDRESS:
                continue
            try:
                outputs = self.core.on_payload(m.pgn, m.data, now_s)
            except BmsLinkError as exc:
                self._reject(can_id, m.data, str(exc))
                continue
            self._handle(outputs, now_s)

    def _handle(self, outputs: list[Any], now_s: float) -> None:
        for out in outputs:
            if not isinstance(out, Send) or out.name in self.faults.dropped:
                continue
            pgn, priority = self._specs[out.name]
            result = self._tp.send(pgn, out.data, dest=CHARGER_ADDRESS, priority=priority, now_s=now_s)
            self._transmit(result.frames)

    def _transmit(self, frames: Any) -> None:
        if self.faults.silent:
            return
        frame: CanFrame
        for frame in frames:
            with contextlib.suppress(BmsLinkError):  # a simulator keeps going; the charger will notice
                self._port.send(frame.can_id, frame.data)

    def _reject(self, can_id: int, data: bytes, reason: str) -> None:
        self.rejected_frames += 1
        log_rejected(self._log, can_id, data, reason)
