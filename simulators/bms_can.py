"""The vehicle BMS as a CAN node: `simulators.gbt_bms.GbtBms` + J1939 on a python-can bus, in asyncio.

`BmsCanNode(bms, interface=..., channel=..., clock=...)` joins the bus when constructed (so it hears the
charger's first CHM); `await node.run()` plays one charging session and returns once it has ended and BSD
was sent (or the session failed), or when cancelled. It shares `bms_link.can.CanPort`, so on a `virtual`
channel it is woken by the charger's sends and needs no polling (`poll_interval_s=None`).

Fault injection (for tests and the demo), see `simulators.faults`: `apply(Fault)` on command, or
`schedule=FaultSchedule(...)` (seconds after the BMS entered CHARGING); `go_silent()`, `drop("BCL")` and
`restore()` are the shortcuts; `faults` shows what is active, `injected` what was applied and when.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import can
import structlog

from bms_link import gbt_codec as codec
from bms_link.can import BMS_ADDRESS, CHARGER_ADDRESS, CanPort, delay, due, log_rejected
from bms_link.gbt import GbtTiming, Send
from bms_link.j1939 import PGN_TP_DT, CanFrame, J1939Transport, make_id, parse_id
from bms_link.models import BmsFault
from chargeagent.clock import Clock
from chargeagent.errors import BmsLinkError, ConfigError
from simulators.faults import OUT_OF_RANGE_CELL_TEMP_C, Fault, FaultKind, FaultSchedule
from simulators.gbt_bms import BmsModel, BmsPhase, GbtBms

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class FaultInjection:
    """What the node currently suppresses."""

    silent: bool = False
    dropped: set[str] = field(default_factory=set)
    truncate_tp: bool = False  # multi-packet sessions lose every TP.DT after the first
    out_of_range: bool = False  # the next BSM (one-shot)


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
        schedule: FaultSchedule | None = None,
    ) -> None:
        self.bms = bms
        self.core = GbtBms(bms, timing)
        self.faults = FaultInjection()
        self.schedule = schedule or FaultSchedule()
        self.injected: list[tuple[float, Fault]] = []
        self.charging_since_s: float | None = None
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
        self.faults.silent = self.faults.truncate_tp = False
        self.faults.dropped.clear()

    def apply(self, fault: Fault) -> None:
        """Carry out `fault` now (table in `simulators.faults`); an MQTT-only fault is a `ConfigError`."""
        kind = fault.kind
        if kind is FaultKind.SILENT:
            self.go_silent()
        elif kind is FaultKind.DROP:
            self.drop(fault.message or "")
        elif kind is FaultKind.OUT_OF_RANGE:
            self.faults.out_of_range = True
        elif kind is FaultKind.CORRUPT:
            self._send_short_bcl()
        elif kind is FaultKind.TRUNCATED_TP:
            self.faults.truncate_tp = True
        elif kind in (FaultKind.OVERTEMPERATURE, FaultKind.INSULATION):
            self.bms.inject_fault(BmsFault(kind.value))
        elif kind is FaultKind.RESTORE:
            self.restore()
        else:
            raise ConfigError(f"fault {fault} does not exist on CAN")
        now_s = self._clock.monotonic()
        self.injected.append((now_s, fault))
        self._log.warning("bms_sim_fault_injected", fault=str(fault), at_s=round(now_s, 3))

    def _send_short_bcl(self) -> None:
        """One BCL cut to 3 of its 5 bytes: a frame the charger must reject without stopping."""
        request = self.bms.request()
        data = codec.encode(codec.Bcl(min(750.0, request.voltage_v), request.current_a, request.mode))
        pgn, priority = self._specs["BCL"]
        with contextlib.suppress(BmsLinkError):
            self._port.send(make_id(priority, pgn, CHARGER_ADDRESS, BMS_ADDRESS), data[:3])

    def _apply_scheduled(self, now_s: float) -> float | None:
        """Apply the due scheduled faults; the loop time of the next one (None: none, or not charging)."""
        if self.charging_since_s is None:
            if self.core.phase is not BmsPhase.CHARGING:
                return None
            self.charging_since_s = now_s
        for fault in self.schedule.due(now_s - self.charging_since_s):
            self.apply(fault)
        at_s = self.schedule.next_at_s()
        return None if at_s is None else self.charging_since_s + at_s

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
            next_fault_s = self._apply_scheduled(now)
            wake = (core.next_deadline_s(), tp.next_deadline_s(), next_fault_s)
            await port.wait(delay(clock.monotonic(), *wake))

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
            data = out.data
            if out.name == "BSM" and self.faults.out_of_range:
                self.faults.out_of_range = False
                bsm = codec.decode("BSM", data)
                assert isinstance(bsm, codec.Bsm)
                data = codec.encode(dataclasses.replace(bsm, max_temp_c=OUT_OF_RANGE_CELL_TEMP_C))
            pgn, priority = self._specs[out.name]
            result = self._tp.send(pgn, data, dest=CHARGER_ADDRESS, priority=priority, now_s=now_s)
            self._transmit(result.frames)

    def _transmit(self, frames: Any) -> None:
        if self.faults.silent:
            return
        frame: CanFrame
        for frame in frames:
            if self.faults.truncate_tp and parse_id(frame.can_id)[1] == PGN_TP_DT and frame.data[0] > 1:
                continue  # J1939-21: the receiver's T1 (750 ms) runs out and it aborts the session
            with contextlib.suppress(BmsLinkError):  # a simulator keeps going; the charger will notice
                self._port.send(frame.can_id, frame.data)

    def _reject(self, can_id: int, data: bytes, reason: str) -> None:
        self.rejected_frames += 1
        log_rejected(self._log, can_id, data, reason)
