"""Pure builders for what the GB/T 27930 charger core (`bms_link.gbt.GbtCharger`) sends and reports.

Each function turns session data into one outgoing message (CHM, CRM, CTS, CML, CCS, CST, CSD, CEM)
or one model for the agent (`PackInfo`, `PackTelemetry`). None of them keeps state or reads a clock:
`GbtCharger` owns the session and decides when to call them. The model builders raise pydantic's
`ValidationError` on implausible data; the caller logs it and ends the session.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bms_link import gbt_codec as codec
from bms_link.gbt_events import bsm_faults
from bms_link.gbt_timing import ChargerLimits
from bms_link.models import ChargeCommand, ChargeRequest, PackInfo, PackTelemetry, StopReason

# CEM flag (SPN3921-3927) per awaited BMS message; BHM has no flag of its own, so the BRM one covers it.
_CEM_FIELD = {"BHM": "brm_timeout", "BRM": "brm_timeout", "BCP": "bcp_timeout"} | {
    n: f"{n.lower()}_timeout" for n in ("BRO", "BCS", "BCL", "BST", "BSD")
}
# Charging time (CCS, CSD) and energy (CSD) beyond these do not fit the DBC data range.
_MAX_CHARGING_TIME_MIN = 600
_MAX_ENERGY_KWH = 1000.0


def static_frame(
    name: str, limits: ChargerLimits, brm_received: bool, wall_time: Callable[[], datetime]
) -> codec.GbtMessage:
    """CHM, CRM (0x00 before BRM, 0xAA after), CTS (read `wall_time` now) or CML from our limits."""
    if name == "CHM":
        return codec.Chm()
    if name == "CRM":
        return codec.Crm(brm_received, limits.charger_number, limits.region_code)
    if name == "CTS":
        return codec.Cts.at(wall_time())
    if name != "CML":
        raise ValueError(f"{name} is not a static charger message")
    args = (limits.max_output_voltage_v, limits.min_output_voltage_v, limits.max_output_current_a)
    return codec.Cml(*args, limits.min_output_current_a)


def ccs_frame(
    command: ChargeCommand | None,
    bcs: codec.Bcs | None,
    limits: ChargerLimits,
    current_a: float,
    charging_s: float,
    permitted: bool,
) -> codec.Ccs:
    """CCS for the (already clamped) `current_a`; `permitted` is False outside CHARGING or while the
    BMS forbids charging, and the agent's command must permit it too."""
    voltage_v = command.output_voltage_v if command else 0.0
    if voltage_v <= 0.0 and bcs is not None:  # no voltage set point yet: report the pack's own
        voltage_v = bcs.voltage_v
    voltage_v = min(voltage_v, limits.max_output_voltage_v)
    minutes = min(_MAX_CHARGING_TIME_MIN, int(charging_s // 60))
    ok = permitted and command is not None and command.charging_permitted
    return codec.Ccs(voltage_v, current_a, minutes, ok)


def output_current_a(
    command: ChargeCommand | None,
    request: ChargeRequest | None,
    pack: PackInfo | None,
    limits: ChargerLimits,
    bms_permitted: bool,
) -> float:
    """What the power stage may deliver while charging: the agent's command clamped to the BMS demand
    (BCL), the pack limit (BCP) and our CML; 0 while the agent or the BMS (BSM) forbids charging."""
    if command is None or request is None or pack is None:
        return 0.0
    if not (command.charging_permitted and bms_permitted):
        return 0.0
    limit = min(request.current_a, pack.max_charge_current_a, limits.max_output_current_a)
    return max(0.0, min(command.output_current_a, limit))


def delivered_energy_kwh(voltage_v: float, current_a: float, duration_s: float) -> float:
    """Energy of a constant output held for `duration_s` (between two CCS)."""
    return voltage_v * current_a * duration_s / 3.6e6


def csd_frame(
    charging_since_s: float, last_ccs_s: float | None, energy_kwh: float, charger_number: int
) -> codec.Csd:
    """CSD statistics: charging time up to the last CCS and the energy delivered."""
    end_s = last_ccs_s if last_ccs_s is not None else charging_since_s
    minutes = min(_MAX_CHARGING_TIME_MIN, max(0, int((end_s - charging_since_s) // 60)))
    return codec.Csd(minutes, min(_MAX_ENERGY_KWH, energy_kwh), charger_number)


def cst_for(reason: StopReason, *, bms_stopped: bool) -> codec.Cst:
    """CST content (SPN3521-3523) for our stop reason."""
    if bms_stopped:
        return codec.Cst(bms_stopped=1)
    if reason in (StopReason.REMOTE, StopReason.LOCAL, StopReason.IMMEDIATE_RESET):
        return codec.Cst(manual_stop=1)
    if reason in (StopReason.IMPLAUSIBLE_DATA, StopReason.SAFETY_ENVELOPE, StopReason.BMS_FAULT):
        return codec.Cst(fault_stop=1, fault_other=1)
    return codec.Cst(charger_setpoint_reached=1)


def cem_for_timeout(name: str) -> codec.Cem:
    """CEM flagging the BMS message `name` that did not arrive in time."""
    return codec.Cem(**{_CEM_FIELD[name]: 1})


def pack_info(brm: codec.Brm, bcp: codec.Bcp) -> PackInfo:
    """The pack as BRM (identity) and BCP (limits, state) describe it; raises `ValidationError`."""
    return PackInfo(
        battery_type=brm.battery_type,
        rated_capacity_ah=brm.rated_capacity_ah,
        rated_voltage_v=brm.rated_voltage_v,
        vin=brm.vin,
        max_cell_voltage_v=bcp.max_cell_voltage_v,
        max_charge_current_a=bcp.max_charge_current_a,
        nominal_energy_kwh=bcp.nominal_energy_kwh,
        max_pack_voltage_v=bcp.max_pack_voltage_v,
        max_temp_c=bcp.max_temp_c,
        soc=bcp.soc,
        pack_voltage_v=bcp.pack_voltage_v,
    )


def pack_telemetry(
    now_s: float,
    bcs: codec.Bcs | None,
    bsm: codec.Bsm | None,
    request: ChargeRequest | None,
    pack: PackInfo | None,
    *,
    charging_permitted: bool,
) -> PackTelemetry | None:
    """Telemetry from the latest BCS/BSM/BCL and the pack; None until all of them arrived.

    Raises `ValidationError` when the combination is implausible.
    """
    if bcs is None or bsm is None or request is None or pack is None:
        return None
    return PackTelemetry(
        monotonic_s=now_s,
        pack_voltage_v=bcs.voltage_v,
        pack_current_a=bcs.current_a,
        soc=bcs.soc,
        cell_voltage_max_v=bcs.max_cell_voltage_v,
        cell_temp_max_c=bsm.max_temp_c,
        cell_temp_min_c=bsm.min_temp_c,
        request=request,
        max_charge_current_a=pack.max_charge_current_a,
        max_pack_voltage_v=pack.max_pack_voltage_v,
        max_cell_voltage_v=pack.max_cell_voltage_v,
        max_temp_c=pack.max_temp_c,
        remaining_min=bcs.remaining_min,
        faults=bsm_faults(bsm),
        charging_permitted=charging_permitted,
    )
