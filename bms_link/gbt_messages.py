"""GB/T 27930-2015 messages as typed, frozen dataclasses (CHM .. CEM), one per message of our DBC.

Each field names its DBC signal and a conversion `kind` in its metadata (`_sig`), so the field tables
read like the standard's tables (GB/T 27930-2015 clause 10). Values are in our units, current
positive INTO the battery; `bms_link.gbt_codec` turns them into payload bytes and back (and flips the
sign of current fields, see its docstring). Frozen and hashable, so the codec can memoise them.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from bms_link.models import BatteryType, ChargeMode


def _sig(signal: str, kind: str = "num", default: Any = MISSING) -> Any:
    return field(default=default, metadata={"sig": signal, "kind": kind})


# --- typed messages: field = (DBC signal, conversion); our units, current positive into the battery ---


@dataclass(frozen=True, slots=True)
class Chm:
    NAME: ClassVar[str] = "CHM"
    version_major: int = _sig("version_major", "int", 1)  # GB/T 27930-2015 is protocol V1.1
    version_minor: int = _sig("version_minor", "int", 1)


@dataclass(frozen=True, slots=True)
class Bhm:
    NAME: ClassVar[str] = "BHM"
    max_charge_voltage_v: float = _sig("max_charge_voltage")


@dataclass(frozen=True, slots=True)
class Crm:
    NAME: ClassVar[str] = "CRM"
    recognized: bool = _sig("recognition", "ready")
    charger_number: int | None = _sig("charger_number", "int", 1)
    region_code: str | None = _sig("region_code", "ascii", None)


@dataclass(frozen=True, slots=True)
class Brm:
    NAME: ClassVar[str] = "BRM"
    battery_type: BatteryType = _sig("battery_type", "battery")  # noqa: RUF009 - field() wrapper
    rated_capacity_ah: float = _sig("rated_capacity")
    rated_voltage_v: float = _sig("rated_voltage")
    vin: str | None = _sig("vin_1", "vin", None)  # 17 ASCII bytes over vin_1..vin_3
    manufacturer: str | None = _sig("manufacturer", "ascii", None)
    pack_serial: int | None = _sig("pack_serial", "int", None)
    charge_count: int | None = _sig("charge_count", "int", None)
    version_major: int | None = _sig("version_major", "int", 1)
    version_minor: int | None = _sig("version_minor", "int", 1)


@dataclass(frozen=True, slots=True)
class Bcp:
    NAME: ClassVar[str] = "BCP"
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    max_charge_current_a: float = _sig("max_charge_current")
    nominal_energy_kwh: float = _sig("nominal_energy")
    max_pack_voltage_v: float = _sig("max_charge_voltage")
    max_temp_c: float = _sig("max_temp")
    soc: float = _sig("soc", "pct")  # 0..1 (wire: 0.1 %/bit)
    pack_voltage_v: float = _sig("pack_voltage")


@dataclass(frozen=True, slots=True)
class Cts:
    """Charger local time; every byte is packed BCD on the wire."""

    NAME: ClassVar[str] = "CTS"
    year: int = _sig("year", "bcd")
    month: int = _sig("month", "bcd")
    day: int = _sig("day", "bcd")
    hour: int = _sig("hour", "bcd")
    minute: int = _sig("minute", "bcd")
    second: int = _sig("second", "bcd")

    @classmethod
    def at(cls, moment: datetime) -> Cts:
        return cls(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


@dataclass(frozen=True, slots=True)
class Cml:
    NAME: ClassVar[str] = "CML"
    max_output_voltage_v: float = _sig("max_output_voltage")
    min_output_voltage_v: float = _sig("min_output_voltage")
    max_output_current_a: float = _sig("max_output_current")
    min_output_current_a: float = _sig("min_output_current", "num", 0.0)


@dataclass(frozen=True, slots=True)
class Bro:
    NAME: ClassVar[str] = "BRO"
    ready: bool = _sig("ready", "ready")


@dataclass(frozen=True, slots=True)
class Cro:
    NAME: ClassVar[str] = "CRO"
    ready: bool = _sig("ready", "ready")


@dataclass(frozen=True, slots=True)
class Bcl:
    NAME: ClassVar[str] = "BCL"
    voltage_v: float = _sig("voltage_demand")
    current_a: float = _sig("current_demand")
    mode: ChargeMode = _sig("charge_mode", "mode")  # noqa: RUF009 - field() wrapper


@dataclass(frozen=True, slots=True)
class Bcs:
    NAME: ClassVar[str] = "BCS"
    voltage_v: float = _sig("voltage")
    current_a: float = _sig("current")
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    soc: float = _sig("soc", "pct")  # 0..1 (wire: 1 %/bit)
    max_cell_group: int = _sig("max_cell_group", "int", 0)
    remaining_min: float | None = _sig("remaining_time", "num", None)


@dataclass(frozen=True, slots=True)
class Ccs:
    NAME: ClassVar[str] = "CCS"
    output_voltage_v: float = _sig("output_voltage")
    output_current_a: float = _sig("output_current")
    charging_time_min: int = _sig("charging_time", "int", 0)
    charging_permitted: bool = _sig("charging_permitted", "bit", True)  # SPN3929 00 pause, 01 permit


@dataclass(frozen=True, slots=True)
class Bsm:
    """Status fields keep the 2-bit wire codes: 00 normal, 01 high/fault, 10 low/not credible, 11 n/a."""

    NAME: ClassVar[str] = "BSM"
    max_temp_c: float = _sig("max_temp")
    min_temp_c: float = _sig("min_temp")
    max_cell_voltage_number: int | None = _sig("max_cell_voltage_number", "int", None)
    max_temp_probe: int | None = _sig("max_temp_probe", "int", None)
    min_temp_probe: int | None = _sig("min_temp_probe", "int", None)
    cell_voltage_status: int = _sig("cell_voltage_status", "int", 0)
    soc_status: int = _sig("soc_status", "int", 0)
    overcurrent_status: int = _sig("overcurrent_status", "int", 0)
    overtemp_status: int = _sig("overtemp_status", "int", 0)
    insulation_status: int = _sig("insulation_status", "int", 0)
    connector_status: int = _sig("connector_status", "int", 0)
    charging_permitted: int = _sig("charging_permitted", "int", 1)  # SPN3096 00 forbidden, 01 ok


@dataclass(frozen=True, slots=True)
class Bst:
    """SPN3511-3513, 2-bit codes: 00 no, 01 yes/fault, 10 not credible."""

    NAME: ClassVar[str] = "BST"
    soc_target_reached: int = _sig("soc_target_reached", "int", 0)
    total_voltage_reached: int = _sig("total_voltage_reached", "int", 0)
    cell_voltage_reached: int = _sig("cell_voltage_reached", "int", 0)
    charger_stopped: int = _sig("charger_stopped", "int", 0)
    fault_insulation: int = _sig("fault_insulation", "int", 0)
    fault_connector_overtemp: int = _sig("fault_connector_overtemp", "int", 0)
    fault_bms_overtemp: int = _sig("fault_bms_overtemp", "int", 0)
    fault_connector: int = _sig("fault_connector", "int", 0)
    fault_pack_overtemp: int = _sig("fault_pack_overtemp", "int", 0)
    fault_hv_relay: int = _sig("fault_hv_relay", "int", 0)
    fault_cc2_voltage: int = _sig("fault_cc2_voltage", "int", 0)
    fault_other: int = _sig("fault_other", "int", 0)
    error_overcurrent: int = _sig("error_overcurrent", "int", 0)
    error_voltage: int = _sig("error_voltage", "int", 0)


@dataclass(frozen=True, slots=True)
class Cst:
    """SPN3521-3523, 2-bit codes: 00 no, 01 yes/fault, 10 not credible."""

    NAME: ClassVar[str] = "CST"
    charger_setpoint_reached: int = _sig("charger_setpoint_reached", "int", 0)
    manual_stop: int = _sig("manual_stop", "int", 0)
    fault_stop: int = _sig("fault_stop", "int", 0)
    bms_stopped: int = _sig("bms_stopped", "int", 0)
    fault_charger_overtemp: int = _sig("fault_charger_overtemp", "int", 0)
    fault_connector: int = _sig("fault_connector", "int", 0)
    fault_internal_overtemp: int = _sig("fault_internal_overtemp", "int", 0)
    fault_energy_not_deliverable: int = _sig("fault_energy_not_deliverable", "int", 0)
    fault_emergency_stop: int = _sig("fault_emergency_stop", "int", 0)
    fault_other: int = _sig("fault_other", "int", 0)
    error_current_mismatch: int = _sig("error_current_mismatch", "int", 0)
    error_voltage: int = _sig("error_voltage", "int", 0)


@dataclass(frozen=True, slots=True)
class Bsd:
    NAME: ClassVar[str] = "BSD"
    soc: float = _sig("soc", "pct")
    min_cell_voltage_v: float = _sig("min_cell_voltage")
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    min_temp_c: float = _sig("min_temp")
    max_temp_c: float = _sig("max_temp")


@dataclass(frozen=True, slots=True)
class Csd:
    NAME: ClassVar[str] = "CSD"
    charging_time_min: int = _sig("charging_time", "int", 0)
    energy_kwh: float = _sig("energy", "num", 0.0)
    charger_number: int | None = _sig("charger_number", "int", 1)


@dataclass(frozen=True, slots=True)
class Bem:
    """Timeouts the BMS saw (SPN3901-3907): 00 normal, 01 timeout."""

    NAME: ClassVar[str] = "BEM"
    crm00_timeout: int = _sig("crm00_timeout", "int", 0)
    crmaa_timeout: int = _sig("crmaa_timeout", "int", 0)
    cml_timeout: int = _sig("cml_timeout", "int", 0)
    cro_timeout: int = _sig("cro_timeout", "int", 0)
    ccs_timeout: int = _sig("ccs_timeout", "int", 0)
    cst_timeout: int = _sig("cst_timeout", "int", 0)
    csd_timeout: int = _sig("csd_timeout", "int", 0)


@dataclass(frozen=True, slots=True)
class Cem:
    """Timeouts the charger saw (SPN3921-3927): 00 normal, 01 timeout."""

    NAME: ClassVar[str] = "CEM"
    brm_timeout: int = _sig("brm_timeout", "int", 0)
    bcp_timeout: int = _sig("bcp_timeout", "int", 0)
    bro_timeout: int = _sig("bro_timeout", "int", 0)
    bcs_timeout: int = _sig("bcs_timeout", "int", 0)
    bcl_timeout: int = _sig("bcl_timeout", "int", 0)
    bst_timeout: int = _sig("bst_timeout", "int", 0)
    bsd_timeout: int = _sig("bsd_timeout", "int", 0)


GbtMessage = (
    Chm
    | Bhm
    | Crm
    | Brm
    | Bcp
    | Cts
    | Cml
    | Bro
    | Cro
    | Bcl
    | Bcs
    | Ccs
    | Bsm
    | Bst
    | Cst
    | Bsd
    | Csd
    | Bem
    | Cem
)
