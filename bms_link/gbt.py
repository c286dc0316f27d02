"""GB/T 27930-2015 charging sequence, charger side: a table-driven sans-I/O state machine.

Phases (clause 9): IDLE -> HANDSHAKE (CHM/BHM) -> RECOGNITION (CRM 0x00/BRM, then CRM 0xAA) ->
PARAMETER (BCP, CTS+CML, BRO, CRO 0x00 -> 0xAA) -> CHARGING (BCL/BCS/BSM in, CCS out) -> ENDING
(BST/CST) -> STATISTICS (BSD/CSD) -> ENDED, plus ERROR (a timeout: CEM sent; or BEM received).
`TRANSITIONS` is the whole protocol at a glance; an event a phase does not accept raises
`InvalidTransition`. Wire input never raises: out-of-phase messages are logged once and ignored.

Inputs: `start`, `on_payload` (PGN + bytes from the J1939 layer) or `on_message` (decoded), `tick`,
`set_output`, `stop`. Each returns a list of outputs: `Send` (a payload for the bus), `SessionInfo`,
`ChargingStarted`, `PackTelemetry`, `SessionEnded`, `SessionClosed`, `FrameRejected` (defined in
`bms_link.gbt_events`; periods/timeouts and charger limits in `bms_link.gbt_timing`; the content of
each frame we send and of the models we report is built in `bms_link.gbt_frames`).
`next_deadline_s()` says when `tick` must run next. The core never reads a clock.

Safety rules: the output current never exceeds the BMS demand (BCL), the BCP limit or our CML; it is
0 while the BMS forbids charging (BSM) and from the first stop/timeout on; a stop sends CCS with 0 A
before the first CST. Implausible data (outside the DBC range, or rejected by the pydantic models) is
logged once and ends the session with `StopReason.IMPLAUSIBLE_DATA`; it never becomes telemetry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from bms_link import gbt_codec as codec
from bms_link import gbt_frames as frames
from bms_link.gbt_events import (
    ChargingStarted,
    FrameRejected,
    Output,
    Send,
    SessionClosed,
    SessionEnded,
    SessionInfo,
    bsm_faults,
    bst_stop_reason,
)
from bms_link.gbt_table import TRANSITIONS, Event, Phase, next_phase
from bms_link.gbt_timing import TIME_EPS_S, ChargerLimits, GbtTiming, send_due
from bms_link.models import ChargeCommand, ChargeRequest, PackInfo, StopReason
from chargeagent.errors import BmsLinkError

# Defined here, then re-exported: the table lives in `bms_link.gbt_table`, timing/limits and the output
# types in `bms_link.gbt_timing` / `bms_link.gbt_events`; all stay importable from here.
__all__ = ["TIME_EPS_S", "TRANSITIONS", "Event", "GbtCharger", "Phase", "next_phase"]
__all__ += ["ChargerLimits", "ChargingStarted", "FrameRejected", "GbtTiming", "Output", "Send"]
__all__ += ["SessionClosed", "SessionEnded", "SessionInfo", "bsm_faults", "bst_stop_reason"]

log = structlog.get_logger(__name__)


# BMV/BMT/BSP (clauses 10.3.5-10.3.7) are optional per-cell details we do not use: ignore quietly.
_IGNORED_PGNS = frozenset({0x1500, 0x1600, 0x1700})


class GbtCharger:
    """The charger's side of one GB/T 27930 session at a time (restartable after it ends)."""

    def __init__(
        self,
        timing: GbtTiming | None = None,
        limits: ChargerLimits | None = None,
        *,
        wall_time: Callable[[], datetime] | None = None,
    ) -> None:
        self.timing = timing or GbtTiming()
        self.limits = limits or ChargerLimits()
        self._wall_time = wall_time or (lambda: datetime.now(UTC))  # CTS content only
        self.phase = Phase.IDLE
        self.implausible_count = 0
        self._out: list[Output] = []
        self._reset()

    def _reset(self) -> None:
        self.end_reason: StopReason | None = None
        self.pack: PackInfo | None = None
        self.command: ChargeCommand | None = None
        self._periodic: dict[str, float] = {}  # message -> next due time
        self._deadlines: dict[str, float] = {}  # awaited BMS message -> timeout time
        self._brm: codec.Brm | None = None
        self._bcs: codec.Bcs | None = None
        self._bsm: codec.Bsm | None = None
        self._request: ChargeRequest | None = None
        self._bms_permitted = True
        self._bro_seen = False
        self._cro_sent = 0
        self._bst_seen = False
        self._repeats_left = 0
        self._cem = codec.Cem()
        self._cst = codec.Cst()
        self._charging_since_s = 0.0
        self._last_ccs_s: float | None = None
        self._last_output = (0.0, 0.0)  # (voltage_v, current_a) of the last CCS
        self.energy_kwh = 0.0
        self._warned: set[tuple[Phase, str]] = set()

    # --- inputs ------------------------------------------------------------------------------

    def start(self, now_s: float) -> list[Output]:
        """Begin a session (plug-in): CHM until the BMS answers with BHM."""
        self._go(Event.START, now_s)
        return self._flush(now_s)

    def on_payload(self, pgn: int, data: bytes, now_s: float) -> list[Output]:
        """A complete message from the BMS (after J1939 reassembly)."""
        if pgn in _IGNORED_PGNS:
            return []
        name = codec.message_name(pgn)
        try:
            if name is None:
                raise BmsLinkError(f"PGN 0x{pgn:04X} is not a GB/T 27930 message")
            message = codec.decode(name, data)
        except codec.ImplausibleValue as exc:
            self._implausible(name or "?", str(exc), now_s)
            return self._flush(now_s)
        except BmsLinkError as exc:
            return [FrameRejected(pgn, bytes(data), str(exc))]
        return self.on_message(name, message, now_s)

    def on_message(self, name: str, message: Any, now_s: float) -> list[Output]:
        """A decoded BMS message (`gbt_codec` dataclass)."""
        try:
            event = Event(name)
        except ValueError:
            event = None
        if event is None or (self.phase, event) not in TRANSITIONS:
            if (self.phase, name) not in self._warned:
                self._warned.add((self.phase, name))
                log.info("gbt_message_ignored", message=name, phase=self.phase.value)
            return []
        getattr(self, f"_on_{name.lower()}")(message, now_s)
        return self._flush(now_s)

    def tick(self, now_s: float) -> list[Output]:
        """Let time pass: timeouts, then periodic messages that are due."""
        for name, deadline_s in list(self._deadlines.items()):
            if now_s >= deadline_s - TIME_EPS_S and name in self._deadlines:
                self._timeout(name, now_s)
        return self._flush(now_s)

    def set_output(self, command: ChargeCommand) -> None:
        """What the power stage is asked to deliver; reported (clamped) in the next CCS."""
        self.command = command

    def stop(self, reason: StopReason, now_s: float) -> list[Output]:
        """End the session from our side: CCS 0 A, then CST. Idempotent."""
        if (self.phase, Event.STOP) in TRANSITIONS:
            self._finish(reason, now_s, Event.STOP)
        return self._flush(now_s)

    def next_deadline_s(self) -> float | None:
        times = [*self._periodic.values(), *self._deadlines.values()]
        return min(times) if times else None

    @property
    def output_current_a(self) -> float:
        """What the power stage may deliver right now (0 outside CHARGING)."""
        if self.phase is not Phase.CHARGING:
            return 0.0
        return frames.output_current_a(
            self.command, self._request, self.pack, self.limits, self._bms_permitted
        )

    # --- message handlers (only reached for events the table accepts) ------------------------

    def _on_bhm(self, msg: codec.Bhm, now_s: float) -> None:
        if self.phase is Phase.HANDSHAKE:
            self._go(Event.BHM, now_s)

    def _on_brm(self, msg: codec.Brm, now_s: float) -> None:
        if self.phase is Phase.RECOGNITION and self._brm is None:
            self._brm = msg
            self._periodic["CRM"] = now_s  # CRM 0xAA now
            self._deadlines = {"BCP": now_s + self.timing.bcp_timeout_s}

    def _on_bcp(self, msg: codec.Bcp, now_s: float) -> None:
        if self.phase is not Phase.RECOGNITION or self._brm is None:
            return
        try:
            self.pack = frames.pack_info(self._brm, msg)
        except ValidationError as exc:
            self._implausible("BRM/BCP", str(exc.errors(include_url=False)), now_s)
            return
        self._go(Event.BCP, now_s)

    def _on_bro(self, msg: codec.Bro, now_s: float) -> None:
        if self.phase is not Phase.PARAMETER or self._cro_sent:
            return
        if not msg.ready:
            if not self._bro_seen:  # BRO 0x00: the BMS prepares; 0xAA must follow within 60 s
                self._deadlines["BRO"] = now_s + self.timing.bro_ready_timeout_s
            self._bro_seen = True
            return
        self._bro_seen = True
        self._deadlines.pop("BRO", None)
        self._periodic = {"CRO": now_s}

    def _on_bcl(self, msg: codec.Bcl, now_s: float) -> None:
        if self.phase is Phase.PARAMETER and self._cro_sent < 2:
            return  # the BMS may only demand after our CRO 0xAA
        try:
            self._request = ChargeRequest(voltage_v=msg.voltage_v, current_a=msg.current_a, mode=msg.mode)
        except ValidationError as exc:
            self._implausible("BCL", str(exc.errors(include_url=False)), now_s)
            return
        if self.phase in (Phase.PARAMETER, Phase.CHARGING):
            self._deadlines["BCL"] = now_s + self.timing.bcl_timeout_s
            self._go(Event.BCL, now_s)

    def _on_bcs(self, msg: codec.Bcs, now_s: float) -> None:
        self._bcs = msg
        if self.phase in (Phase.PARAMETER, Phase.CHARGING) and self._cro_sent >= 2:
            self._deadlines["BCS"] = now_s + self.timing.bcs_timeout_s
        if self.phase is Phase.CHARGING:
            self._emit_telemetry(now_s)

    def _on_bsm(self, msg: codec.Bsm, now_s: float) -> None:
        old, self._bsm = self._bsm, msg
        self._bms_permitted = msg.charging_permitted == 1  # SPN3096: anything else pauses
        status = (bsm_faults(msg), msg.charging_permitted)
        changed = old is None or (bsm_faults(old), old.charging_permitted) != status
        if self.phase is Phase.CHARGING and changed:
            self._emit_telemetry(now_s)

    def _on_bst(self, msg: codec.Bst, now_s: float) -> None:
        if self._bst_seen:
            return
        self._bst_seen = True
        if self.phase is Phase.ENDING:  # the BMS answered our CST: statistics next
            self._deadlines = {"BSD": now_s + self.timing.bsd_timeout_s}
            return
        self._finish(bst_stop_reason(msg), now_s, Event.BST)

    def _on_bsd(self, msg: codec.Bsd, now_s: float) -> None:
        if self.phase is Phase.ENDING:
            self._go(Event.BSD, now_s)

    def _on_bem(self, msg: codec.Bem, now_s: float) -> None:
        if self.phase not in (Phase.ENDED, Phase.ERROR):
            log.warning("gbt_bem_received", phase=self.phase.value, bem=str(msg))
            self._finish(StopReason.CHARGER_TIMEOUT, now_s, Event.BEM)

    # --- transitions -------------------------------------------------------------------------

    def _go(self, event: Event, now_s: float) -> None:
        old, new = self.phase, next_phase(self.phase, event)
        if new is old:
            return
        self.phase = new
        log.debug("gbt_phase", old=old.value, new=new.value, trigger=event.value)
        t = self.timing
        if new is Phase.HANDSHAKE:
            self._reset()
            self._periodic, self._deadlines = {"CHM": now_s}, {"BHM": now_s + t.bhm_timeout_s}
        elif new is Phase.RECOGNITION:
            self._periodic, self._deadlines = {"CRM": now_s}, {"BRM": now_s + t.brm_timeout_s}
        elif new is Phase.PARAMETER:
            self._periodic = {"CTS": now_s, "CML": now_s}
            self._deadlines = {"BRO": now_s + t.bro_timeout_s}
            assert self.pack is not None
            self._out.append(SessionInfo(self.pack))
        elif new is Phase.CHARGING:
            self._periodic = {"CCS": now_s}
            self._charging_since_s = now_s
            assert self.pack is not None
            self._out.append(ChargingStarted(self.pack))
        elif new is Phase.STATISTICS:
            self._periodic, self._deadlines = {"CSD": now_s}, {}
            self._repeats_left = t.end_repeats
        elif new is Phase.ENDED:
            self._periodic, self._deadlines = {}, {}
            self._out.append(SessionClosed(new))

    def _finish(self, reason: StopReason, now_s: float, event: Event) -> None:
        """Stop, time-out or BEM: output to 0 first, then CST / CEM. Idempotent."""
        old = self.phase
        if next_phase(old, event) is old:
            return
        if self.end_reason is None:
            self.end_reason = reason
            self._out.append(SessionEnded(reason))
        self._go(event, now_s)  # phase is now ENDING, ERROR or ENDED
        if old is Phase.CHARGING:
            self._send_ccs(now_s)  # output_current_a is 0 outside CHARGING
        if self.phase is Phase.ENDING:
            self._periodic = {"CST": now_s}
            self._cst = frames.cst_for(reason, bms_stopped=event is Event.BST)
            self._deadlines = (
                {"BSD": now_s + self.timing.bsd_timeout_s}
                if self._bst_seen
                else {"BST": now_s + self.timing.bst_timeout_s}
            )
        elif self.phase is Phase.ERROR:
            self._deadlines = {}
            self._periodic = {"CEM": now_s} if event is Event.TIMEOUT else {}
            self._repeats_left = self.timing.end_repeats
            if event is not Event.TIMEOUT:
                self._out.append(SessionClosed(self.phase))

    def _timeout(self, name: str, now_s: float) -> None:
        log.warning("gbt_timeout", message=name, phase=self.phase.value)
        self._cem = frames.cem_for_timeout(name)
        reason = StopReason.BMS_TIMEOUT if self.end_reason is None else self.end_reason
        self._finish(reason, now_s, Event.TIMEOUT)

    def _implausible(self, name: str, detail: str, now_s: float) -> None:
        self.implausible_count += 1
        if (self.phase, Event.STOP) in TRANSITIONS and self.end_reason is None:
            log.warning("gbt_implausible_data", message=name, error=detail, phase=self.phase.value)
            self._finish(StopReason.IMPLAUSIBLE_DATA, now_s, Event.STOP)

    # --- outputs -----------------------------------------------------------------------------

    def _flush(self, now_s: float) -> list[Output]:
        send_due(self._periodic, now_s, self.timing, self._send_periodic)
        out, self._out = self._out, []
        return out

    def _send(self, msg: codec.GbtMessage) -> None:
        self._out.append(Send(msg.NAME, codec.encode(msg)))

    def _send_periodic(self, name: str, now_s: float) -> None:
        if name in ("CHM", "CRM", "CTS", "CML"):
            self._send(frames.static_frame(name, self.limits, self._brm is not None, self._wall_time))
        elif name == "CCS":
            self._send_ccs(now_s)
        elif name == "CRO":
            self._cro_sent += 1  # first CRO 0x00 (pre-charge), then 0xAA (clause 10.2.5)
            self._send(codec.Cro(ready=self._cro_sent >= 2))
            if self._cro_sent == 2:
                self._deadlines["BCL"] = now_s + self.timing.bcl_timeout_s
                self._deadlines["BCS"] = now_s + self.timing.bcs_timeout_s
        elif name == "CST":
            self._send(self._cst)
        elif name in ("CSD", "CEM"):
            self._send(self._csd() if name == "CSD" else self._cem)
            self._repeats_left -= 1
            if self._repeats_left <= 0:
                del self._periodic[name]
                self._go(Event.DONE, now_s)  # STATISTICS -> ENDED; ERROR stays, now quiet
                if name == "CEM":
                    self._out.append(SessionClosed(self.phase))

    def _send_ccs(self, now_s: float) -> None:
        if self._last_ccs_s is not None:  # energy the power stage delivered since the last CCS
            self.energy_kwh += frames.delivered_energy_kwh(*self._last_output, now_s - self._last_ccs_s)
        permitted = self.phase is Phase.CHARGING and self._bms_permitted
        charging_s = now_s - self._charging_since_s
        ccs = frames.ccs_frame(
            self.command, self._bcs, self.limits, self.output_current_a, charging_s, permitted
        )
        self._send(ccs)
        self._last_ccs_s, self._last_output = now_s, (ccs.output_voltage_v, ccs.output_current_a)

    def _csd(self) -> codec.Csd:
        args = (self._charging_since_s, self._last_ccs_s, self.energy_kwh, self.limits.charger_number)
        return frames.csd_frame(*args)

    def _emit_telemetry(self, now_s: float) -> None:
        args = (now_s, self._bcs, self._bsm, self._request, self.pack)
        try:
            telemetry = frames.pack_telemetry(*args, charging_permitted=self._bms_permitted)
        except ValidationError as exc:
            self._implausible("BCS/BSM", str(exc.errors(include_url=False)), now_s)
            return
        if telemetry is not None:
            self._out.append(telemetry)
