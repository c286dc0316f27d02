"""What the GB/T 27930 charger core (`bms_link.gbt.GbtCharger`) returns, and how BMS status maps to ours.

Output types: `Send` (a payload for the bus), `SessionInfo`, `ChargingStarted`, `SessionEnded`,
`SessionClosed`, `FrameRejected` (plus `PackTelemetry` from `bms_link.models`), united in `Output`.
Mappings: BST stop flags -> `StopReason` (`bst_stop_reason`), BSM status -> `BmsFault` (`bsm_faults`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bms_link.gbt_messages import Bsm, Bst
from bms_link.models import BmsFault, PackInfo, PackTelemetry, StopReason


@dataclass(frozen=True, slots=True)
class Send:
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionInfo:
    pack: PackInfo


@dataclass(frozen=True, slots=True)
class ChargingStarted:
    pack: PackInfo


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: StopReason


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The end-of-session exchange is over (ENDED, or ERROR after the CEMs); `phase` is its value."""

    phase: str


@dataclass(frozen=True, slots=True)
class FrameRejected:
    pgn: int
    data: bytes
    reason: str


Output = Send | SessionInfo | ChargingStarted | PackTelemetry | SessionEnded | SessionClosed | FrameRejected


_BST_FAULTS = (  # SPN3512/3513 field -> StopReason, most specific first
    ("fault_insulation", StopReason.INSULATION_FAULT),
    ("fault_pack_overtemp", StopReason.OVERTEMPERATURE),
    ("fault_connector_overtemp", StopReason.OVERTEMPERATURE),
    ("fault_bms_overtemp", StopReason.OVERTEMPERATURE),
    *((f, StopReason.BMS_FAULT) for f in ("fault_connector", "fault_hv_relay", "fault_cc2_voltage")),
    *((f, StopReason.BMS_FAULT) for f in ("fault_other", "error_overcurrent", "error_voltage")),
)


def bst_stop_reason(bst: Bst) -> StopReason:
    """Why the BMS stopped. Faults win over targets; a fault flagged 'not credible' (10) counts."""
    for name, reason in _BST_FAULTS:
        if getattr(bst, name) in (1, 2):
            return reason
    if bst.soc_target_reached == 1:
        return StopReason.SOC_TARGET_REACHED
    if 1 in (bst.total_voltage_reached, bst.cell_voltage_reached):
        return StopReason.VOLTAGE_TARGET_REACHED
    return StopReason.STOPPED_BY_EV


def bsm_faults(bsm: Bsm) -> frozenset[BmsFault]:
    """BSM 2-bit status -> faults (SPN3090-3095). Cell voltage and SoC: 01 high, 10 low. The others:
    01 fault, 10 not credible, which we treat as the fault (the BMS cannot vouch). 11 = not available."""
    out = set()
    for status, high, low in (
        (bsm.cell_voltage_status, BmsFault.CELL_VOLTAGE_HIGH, BmsFault.CELL_VOLTAGE_LOW),
        (bsm.soc_status, BmsFault.SOC_HIGH, BmsFault.SOC_LOW),
        (bsm.overcurrent_status, BmsFault.OVERCURRENT, BmsFault.OVERCURRENT),
        (bsm.overtemp_status, BmsFault.OVERTEMPERATURE, BmsFault.OVERTEMPERATURE),
        (bsm.insulation_status, BmsFault.INSULATION, BmsFault.INSULATION),
        (bsm.connector_status, BmsFault.CONNECTOR, BmsFault.CONNECTOR),
    ):
        if status == 1:
            out.add(high)
        elif status == 2:
            out.add(low)
    return frozenset(out)
