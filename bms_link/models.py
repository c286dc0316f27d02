"""Transport-agnostic BMS data: what the battery tells the charger and what the charger commands.

Conventions (all backends convert to these at their boundary):
- current is positive INTO the battery (charging); GB/T's negative charging current is flipped in the codec;
- `soc`/`soh` are 0..1 fractions; temperatures are cell temperatures in °C;
- `monotonic_s` is the receiving side's clock (`Clock.monotonic()`), not the BMS's.
Ranges below are plausibility limits: a value outside them is a corrupt or lying BMS, rejected at the
boundary with a `ValidationError` (the link logs it and treats it as a fault). Operating limits (e.g.
stop at 55 °C) are the safety envelope's business, not the model's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Plausibility ranges. GB/T 27930 can encode -50..200 °C, but a cell reading above 100 °C or below -40 °C
# is not a battery that is still charging: it is a broken sensor or a corrupt frame.
CellTempC = Annotated[float, Field(ge=-40.0, le=100.0, allow_inf_nan=False)]
PackVoltageV = Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)]
CellVoltageV = Annotated[float, Field(ge=0.0, le=5.0, allow_inf_nan=False)]
CurrentA = Annotated[float, Field(ge=-400.0, le=400.0, allow_inf_nan=False)]
ChargeCurrentA = Annotated[float, Field(ge=0.0, le=400.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatteryType(StrEnum):
    """GB/T 27930-2015 BRM battery type codes (subset we model)."""

    LEAD_ACID = "lead_acid"
    LFP = "lfp"
    NMC = "nmc"
    LMO = "lmo"
    LTO = "lto"
    OTHER = "other"


class ChargeMode(StrEnum):
    """BCL charge mode: the BMS asks for constant voltage or constant current."""

    CV = "cv"
    CC = "cc"


class BmsFault(StrEnum):
    """Faults a BMS can flag (GB/T BSM 2-bit status fields, BST fault bits) or the link can infer."""

    CELL_VOLTAGE_HIGH = "cell_voltage_high"
    CELL_VOLTAGE_LOW = "cell_voltage_low"
    SOC_HIGH = "soc_high"
    SOC_LOW = "soc_low"
    OVERCURRENT = "overcurrent"
    OVERTEMPERATURE = "overtemperature"
    INSULATION = "insulation"
    CONNECTOR = "connector"
    IMPLAUSIBLE_DATA = "implausible_data"


class StopReason(StrEnum):
    """Why a charging session ended; the station maps these to OCPP stoppedReason/triggerReason."""

    SOC_TARGET_REACHED = "soc_target_reached"  # BST: required SoC reached
    VOLTAGE_TARGET_REACHED = "voltage_target_reached"  # BST: total voltage / cell voltage setpoint
    STOPPED_BY_EV = "stopped_by_ev"  # BST without a fault bit
    BMS_FAULT = "bms_fault"  # BST fault bits, BSM fault status
    OVERTEMPERATURE = "overtemperature"
    INSULATION_FAULT = "insulation_fault"
    BMS_TIMEOUT = "bms_timeout"  # missing BCL/BCS/... (charger sends CEM)
    CHARGER_TIMEOUT = "charger_timeout"  # BMS reported our messages missing (BEM)
    REMOTE = "remote"  # CSMS RequestStopTransaction
    LOCAL = "local"  # operator/station decided (e.g. shutdown)
    IMMEDIATE_RESET = "immediate_reset"  # OCPP Reset Immediate (B11): the station restarts now
    EV_DISCONNECTED = "ev_disconnected"
    SAFETY_ENVELOPE = "safety_envelope"  # the envelope refused to continue
    IMPLAUSIBLE_DATA = "implausible_data"


class PackInfo(_Frozen):
    """Identity and limits learned during handshake/parameter configuration (BHM, BRM, BCP)."""

    battery_type: BatteryType
    rated_capacity_ah: Annotated[float, Field(gt=0.0, le=1000.0)]
    rated_voltage_v: PackVoltageV
    vin: str | None = None
    max_cell_voltage_v: CellVoltageV
    max_charge_current_a: ChargeCurrentA
    nominal_energy_kwh: Annotated[float, Field(gt=0.0, le=1000.0)]
    max_pack_voltage_v: PackVoltageV
    max_temp_c: CellTempC
    soc: Fraction
    pack_voltage_v: PackVoltageV
    # The EV's charging needs, when it states them (ISO 15118 ChargeParameterDiscovery carries a
    # departure time and, in -20, a target SoC; an MQTT BMS may send both). GB/T 27930 has neither: None.
    departure: AwareDatetime | None = None
    target_soc: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] | None = None


class ChargeRequest(_Frozen):
    """What the BMS asks for right now (GB/T BCL)."""

    voltage_v: PackVoltageV
    current_a: ChargeCurrentA
    mode: ChargeMode


class PackTelemetryBody(_Frozen):
    """A pack snapshot as the BMS states it (what travels on MQTT); `PackTelemetry` adds the receipt time."""

    pack_voltage_v: PackVoltageV
    pack_current_a: CurrentA
    soc: Fraction
    soh: Fraction | None = None  # GB/T does not carry SoH; MQTT BMSs and the simulator may
    cell_voltage_max_v: CellVoltageV
    cell_voltage_min_v: CellVoltageV | None = None
    cell_temp_max_c: CellTempC
    cell_temp_min_c: CellTempC
    request: ChargeRequest
    max_charge_current_a: ChargeCurrentA
    max_pack_voltage_v: PackVoltageV
    max_cell_voltage_v: CellVoltageV
    max_temp_c: CellTempC
    remaining_min: Annotated[float, Field(ge=0.0, le=600.0)] | None = None
    faults: frozenset[BmsFault] = frozenset()
    charging_permitted: bool = True


class PackTelemetry(PackTelemetryBody):
    """One consistent snapshot of the pack during charging, as the charger sees it."""

    monotonic_s: float  # the receiver's Clock.monotonic() when the snapshot arrived


class ChargeCommand(_Frozen):
    """What the charger tells the BMS it is delivering/limiting to (GB/T CCS, and CST when stopping)."""

    output_voltage_v: PackVoltageV
    output_current_a: ChargeCurrentA
    charging_permitted: bool = True
