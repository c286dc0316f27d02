"""GB/T 27930-2015 charging sequence, vehicle BMS side: the sans-I/O mirror of `bms_link.gbt`.

It answers CHM with BHM, CRM 0x00 with BRM, CRM 0xAA with BCP, CML/CTS with BRO (0x00 then 0xAA), and
after CRO 0xAA sends BCL/BCS/BSM at their periods while it feeds the charger's CCS output current into a
pack model (`BmsModel`, e.g. `simulators.pack.SimulatedBms`). When the model wants to stop it sends BST,
then BSD until the charger's CSD; a CST from the charger is answered the same way. Missing charger
messages end the session with BEM (clause 10.5.1). Like the charger side: a transition table, inputs
`on_payload`/`tick`, outputs `Send`/`SessionClosed`, and `next_deadline_s()`; no clock, no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

import structlog

from bms_link import gbt_codec as codec
from bms_link.gbt import TIME_EPS_S, GbtTiming, Send, SessionClosed
from bms_link.gbt_timing import send_due
from bms_link.models import BmsFault, ChargeRequest, PackInfo, PackTelemetry, StopReason
from chargeagent.errors import BmsLinkError, InvalidTransition

log = structlog.get_logger(__name__)


class BmsModel(Protocol):
    """What the BMS side needs from a pack (`simulators.pack.SimulatedBms` has exactly this)."""

    def info(self) -> PackInfo: ...
    def request(self) -> ChargeRequest: ...
    def telemetry(self, monotonic_s: float) -> PackTelemetry: ...
    def step(self, charger_current_a: float, dt_s: float) -> None: ...
    def stop_reason(self) -> StopReason | None: ...
    def inject_fault(self, fault: BmsFault) -> None: ...


class BmsPhase(StrEnum):
    IDLE = "idle"  # plugged in, waiting for the charger's CHM
    HANDSHAKE = "handshake"
    RECOGNITION = "recognition"
    PARAMETER = "parameter"
    CHARGING = "charging"
    ENDING = "ending"
    STATISTICS = "statistics"
    ENDED = "ended"
    ERROR = "error"


class BmsEvent(StrEnum):
    CHM = "CHM"
    CRM_00 = "CRM_00"
    CRM_AA = "CRM_AA"
    CML = "CML"  # CML or CTS: the charger's parameters arrived
    CRO_00 = "CRO_00"
    CRO_AA = "CRO_AA"
    CCS = "CCS"
    CST = "CST"
    CSD = "CSD"
    CEM = "CEM"
    STOP = "stop"  # the pack wants to stop (BST)
    TIMEOUT = "timeout"  # a charger message did not arrive in time (BEM)


B, V = BmsPhase, BmsEvent
_ACTIVE = (B.HANDSHAKE, B.RECOGNITION, B.PARAMETER, B.CHARGING)
BMS_TRANSITIONS: dict[tuple[BmsPhase, BmsEvent], BmsPhase] = {
    (B.IDLE, V.CHM): B.HANDSHAKE,
    (B.HANDSHAKE, V.CHM): B.HANDSHAKE,
    (B.HANDSHAKE, V.CRM_00): B.RECOGNITION,
    (B.RECOGNITION, V.CRM_00): B.RECOGNITION,
    (B.RECOGNITION, V.CRM_AA): B.PARAMETER,
    (B.PARAMETER, V.CRM_AA): B.PARAMETER,
    (B.PARAMETER, V.CML): B.PARAMETER,
    (B.PARAMETER, V.CRO_00): B.PARAMETER,
    (B.PARAMETER, V.CRO_AA): B.CHARGING,
    (B.CHARGING, V.CRO_AA): B.CHARGING,
    (B.CHARGING, V.CML): B.CHARGING,
    (B.CHARGING, V.CCS): B.CHARGING,
    **{(p, V.STOP): B.ENDING for p in (B.RECOGNITION, B.PARAMETER, B.CHARGING)},
    **{(p, V.CST): B.ENDING for p in (B.RECOGNITION, B.PARAMETER, B.CHARGING)},
    **{(p, V.TIMEOUT): B.ERROR for p in (*_ACTIVE, B.ENDING)},
    **{(p, V.CEM): B.ERROR for p in (*_ACTIVE, B.ENDING)},
    **{(B.ENDING, e): B.ENDING for e in (V.CCS, V.STOP)},
    (B.ENDING, V.CST): B.STATISTICS,
    **{(B.STATISTICS, e): B.STATISTICS for e in (V.CST, V.CCS)},
    (B.STATISTICS, V.CSD): B.ENDED,
    (B.STATISTICS, V.TIMEOUT): B.ENDED,  # no CSD within 10 s: the session is over anyway
}


def next_bms_phase(phase: BmsPhase, event: BmsEvent) -> BmsPhase:
    try:
        return BMS_TRANSITIONS[(phase, event)]
    except KeyError:
        raise InvalidTransition("gbt_bms", phase.value, event.value) from None


_BEM_FIELD = {"CRM_00": "crm00_timeout", "CRM_AA": "crmaa_timeout", "CML": "cml_timeout"} | {
    "CRO": "cro_timeout",
    "CCS": "ccs_timeout",
    "CST": "cst_timeout",
    "CSD": "csd_timeout",
}
_STATUS = {True: 1, False: 0}


def bst_for(reason: StopReason) -> codec.Bst:
    """BST content (SPN3511-3513) for why the pack stops."""
    match reason:
        case StopReason.SOC_TARGET_REACHED:
            return codec.Bst(soc_target_reached=1)
        case StopReason.VOLTAGE_TARGET_REACHED:
            return codec.Bst(total_voltage_reached=1)
        case StopReason.OVERTEMPERATURE:
            return codec.Bst(fault_pack_overtemp=1)
        case StopReason.INSULATION_FAULT:
            return codec.Bst(fault_insulation=1)
        case StopReason.STOPPED_BY_EV:
            return codec.Bst()
    return codec.Bst(fault_other=1)


def _bsm(t: PackTelemetry) -> codec.Bsm:
    def two(high: BmsFault, low: BmsFault | None = None) -> int:
        return 1 if high in t.faults else 2 if low is not None and low in t.faults else 0

    return codec.Bsm(
        max_temp_c=round(t.cell_temp_max_c),
        min_temp_c=round(t.cell_temp_min_c),
        cell_voltage_status=two(BmsFault.CELL_VOLTAGE_HIGH, BmsFault.CELL_VOLTAGE_LOW),
        soc_status=two(BmsFault.SOC_HIGH, BmsFault.SOC_LOW),
        overcurrent_status=two(BmsFault.OVERCURRENT),
        overtemp_status=two(BmsFault.OVERTEMPERATURE),
        insulation_status=two(BmsFault.INSULATION),
        connector_status=two(BmsFault.CONNECTOR),
        charging_permitted=_STATUS[t.charging_permitted],
    )


class GbtBms:
    """The vehicle's side of one GB/T 27930 session, driving a `BmsModel`."""

    def __init__(self, model: BmsModel, timing: GbtTiming | None = None) -> None:
        self.model = model
        self.timing = timing or GbtTiming()
        self.phase = BmsPhase.IDLE
        self.charger_current_a = 0.0
        self.stop_reason: StopReason | None = None
        self._out: list[Send | SessionClosed] = []
        self._periodic: dict[str, float] = {}
        self._deadlines: dict[str, float] = {}
        self._last_step_s: float | None = None
        self._bro_sent = 0
        self._cst_seen = False
        self._bst = codec.Bst()
        self._bem = codec.Bem()
        self._repeats_left = 0
        self._last: PackTelemetry | None = None
        self._last_telemetry_s = -1.0

    # --- inputs ------------------------------------------------------------------------------

    def on_payload(self, pgn: int, data: bytes, now_s: float) -> list[Send | SessionClosed]:
        """A complete message from the charger; undecodable ones raise `BmsLinkError`."""
        name = codec.message_name(pgn)
        if name is None:
            raise BmsLinkError(f"PGN 0x{pgn:04X} is not a GB/T 27930 message")
        self.on_message(codec.decode(name, data), now_s)
        return self._flush(now_s)

    def on_message(self, msg: Any, now_s: float) -> None:
        event = self._event_for(msg)
        if event is None or (self.phase, event) not in BMS_TRANSITIONS:
            return
        if isinstance(msg, codec.Ccs):
            if self.phase is B.CHARGING:
                if msg.output_current_a != self.charger_current_a:
                    self._advance(now_s)  # integrate the old current up to now, then switch
                    self.charger_current_a = msg.output_current_a
                self._deadlines["CCS"] = now_s + self.timing.ccs_timeout_s
                self._check_stop(now_s)
            return
        if event is V.CST:
            self._cst_seen = True
            if self.phase in (B.RECOGNITION, B.PARAMETER, B.CHARGING):
                self._bst = codec.Bst(charger_stopped=1)
        elif event is V.CRO_00:
            self._deadlines["CRO"] = now_s + self.timing.cro_ready_timeout_s
            return
        elif event is V.CML and self.phase is B.PARAMETER and not self._bro_sent:
            self._deadlines = {"CRO": now_s + self.timing.cro_timeout_s}
            self._periodic = {"BRO": now_s}
            return
        self._go(event, now_s)

    def tick(self, now_s: float) -> list[Send | SessionClosed]:
        for name, deadline_s in list(self._deadlines.items()):
            if now_s >= deadline_s - TIME_EPS_S and name in self._deadlines:
                log.warning("gbt_bms_timeout", message=name, phase=self.phase.value)
                self._bem = codec.Bem(**{_BEM_FIELD[name]: 1})
                self._go(BmsEvent.TIMEOUT, now_s)
        if self.phase is B.CHARGING:
            self._check_stop(now_s)
        return self._flush(now_s)

    def next_deadline_s(self) -> float | None:
        times = [*self._periodic.values(), *self._deadlines.values()]
        return min(times) if times else None

    @property
    def done(self) -> bool:
        return self.phase is B.ENDED or (self.phase is B.ERROR and not self._periodic)

    # --- internals ---------------------------------------------------------------------------

    @staticmethod
    def _event_for(msg: Any) -> BmsEvent | None:
        if isinstance(msg, codec.Crm):
            return V.CRM_AA if msg.recognized else V.CRM_00
        if isinstance(msg, codec.Cro):
            return V.CRO_AA if msg.ready else V.CRO_00
        if isinstance(msg, codec.Cts | codec.Cml):
            return V.CML
        if isinstance(msg, codec.Chm | codec.Ccs | codec.Cst | codec.Csd | codec.Cem):
            return BmsEvent(msg.NAME)
        return None

    def _advance(self, now_s: float) -> None:
        if self._last_step_s is not None and now_s > self._last_step_s:
            self.model.step(self.charger_current_a, now_s - self._last_step_s)
        self._last_step_s = now_s

    def _check_stop(self, now_s: float) -> None:
        reason = self.model.stop_reason()
        if reason is not None and self.phase is B.CHARGING:
            self.stop_reason = reason
            self._bst = bst_for(reason)
            log.info("gbt_bms_stop", reason=reason.value)
            self._go(BmsEvent.STOP, now_s)

    def _go(self, event: BmsEvent, now_s: float) -> None:
        old, new = self.phase, next_bms_phase(self.phase, event)
        if new is old:
            return
        self.phase, t = new, self.timing
        if old is B.CHARGING:
            self._advance(now_s)
            self.charger_current_a = 0.0
        if new is B.HANDSHAKE:
            self._periodic, self._deadlines = {"BHM": now_s}, {"CRM_00": now_s + t.crm_timeout_s}
        elif new is B.RECOGNITION:
            self._periodic = {"BRM": now_s}
            self._deadlines = {"CRM_AA": now_s + t.crm_ready_timeout_s}
        elif new is B.PARAMETER:
            self._periodic, self._deadlines = {"BCP": now_s}, {"CML": now_s + t.cml_timeout_s}
        elif new is B.CHARGING:
            self._periodic = {"BCL": now_s, "BCS": now_s, "BSM": now_s}
            self._deadlines = {"CCS": now_s + t.ccs_timeout_s}
            self._last_step_s = now_s
        elif new is B.ENDING:
            self._periodic = {"BST": now_s}
            self._deadlines = {} if self._cst_seen else {"CST": now_s + t.cst_timeout_s}
        elif new is B.STATISTICS:
            self._periodic, self._deadlines = {"BSD": now_s}, {"CSD": now_s + t.csd_timeout_s}
        elif new is B.ENDED:
            self._periodic, self._deadlines = {}, {}
            self._out.append(SessionClosed(new))
        elif new is B.ERROR:
            self._deadlines = {}
            self._periodic = {"BEM": now_s} if event is BmsEvent.TIMEOUT else {}
            self._repeats_left = t.end_repeats
            if event is not BmsEvent.TIMEOUT:
                self._out.append(SessionClosed(new))

    def _flush(self, now_s: float) -> list[Send | SessionClosed]:
        send_due(self._periodic, now_s, self.timing, self._send_periodic)
        out, self._out = self._out, []
        return out

    def _send(self, msg: codec.GbtMessage) -> None:
        self._out.append(Send(msg.NAME, codec.encode(msg)))

    def _handshake_message(self, name: str) -> codec.GbtMessage:
        info = self.model.info()  # rebuilt by the model on every call: only for these three
        if name == "BHM":
            return codec.Bhm(min(750.0, info.max_pack_voltage_v))
        if name == "BRM":
            return codec.Brm(info.battery_type, info.rated_capacity_ah, info.rated_voltage_v, info.vin)
        return codec.Bcp(info.max_cell_voltage_v, info.max_charge_current_a, info.nominal_energy_kwh,
                         min(750.0, info.max_pack_voltage_v), info.max_temp_c, info.soc,
                         min(750.0, info.pack_voltage_v))  # fmt: skip

    def _send_periodic(self, name: str, now_s: float) -> None:
        if name in ("BCS", "BSM", "BSD") and now_s != self._last_telemetry_s:
            self._advance(now_s)
            self._last, self._last_telemetry_s = self.model.telemetry(now_s), now_s
        last = self._last
        if name in ("BHM", "BRM", "BCP"):
            self._send(self._handshake_message(name))
        elif name == "BRO":
            self._bro_sent += 1  # first 'not ready', then 'ready' (clause 10.2.4)
            self._send(codec.Bro(ready=self._bro_sent >= 2))
        elif name == "BCL":
            req = self.model.request()
            self._send(codec.Bcl(min(750.0, req.voltage_v), req.current_a, req.mode))
        elif name == "BCS" and last is not None:
            remaining = None if last.remaining_min is None else min(600.0, last.remaining_min)
            self._send(codec.Bcs(min(750.0, last.pack_voltage_v), max(0.0, last.pack_current_a),
                                 last.cell_voltage_max_v, last.soc, 0, remaining))  # fmt: skip
        elif name == "BSM" and last is not None:
            self._send(_bsm(last))
        elif name == "BST":
            self._send(self._bst)
            if self._cst_seen and self.phase is B.ENDING:
                self._go(BmsEvent.CST, now_s)
        elif name == "BSD" and last is not None:
            min_cell_v = last.cell_voltage_min_v or last.cell_voltage_max_v
            self._send(codec.Bsd(last.soc, min_cell_v, last.cell_voltage_max_v,
                                 round(last.cell_temp_min_c), round(last.cell_temp_max_c)))  # fmt: skip
        elif name == "BEM":
            self._send(self._bem)
            self._repeats_left -= 1
            if self._repeats_left <= 0:
                del self._periodic[name]
                self._out.append(SessionClosed(self.phase))
