"""NotifyEVChargingNeeds from the EV's stated needs: the schema the `ocpp` package ships accepts it, and
the numbers are the pack's (limits rounded down, percentages and Wh as the schema's integers)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ocpp.messages import Call, _validate_payload  # the sync check (validate_payload is a coroutine)
from pydantic import ValidationError

from bms_link.models import BatteryType, PackInfo
from station.protocol.charging_needs import charging_needs

DEPARTURE = datetime(2026, 3, 1, 17, 30, 0, 123456, tzinfo=UTC)


def info(**kw) -> PackInfo:  # type: ignore[no-untyped-def]
    base = {
        "battery_type": BatteryType.NMC, "rated_capacity_ah": 150.0, "rated_voltage_v": 355.2,
        "max_cell_voltage_v": 4.2, "max_charge_current_a": 199.7, "nominal_energy_kwh": 53.28,
        "max_pack_voltage_v": 403.2, "max_temp_c": 55.0, "soc": 0.304, "pack_voltage_v": 360.0,
    }  # fmt: skip
    return PackInfo(**(base | kw))


def test_departure_and_target_become_the_dc_charging_needs() -> None:
    out = charging_needs(1, info(departure=DEPARTURE, target_soc=0.8))
    assert out.action == "NotifyEVChargingNeeds" and not out.transactional
    _validate_payload(Call("1", out.action, out.payload), "2.0.1")
    needs = out.payload["chargingNeeds"]
    assert out.payload["evseId"] == 1
    assert needs["requestedEnergyTransfer"] == "DC"
    assert needs["departureTime"] == "2026-03-01T17:30:00.123Z"
    assert needs["dcChargingParameters"] == {
        "evMaxCurrent": 199,  # a limit: rounded down
        "evMaxVoltage": 403,
        "evEnergyCapacity": 53_280,
        "stateOfCharge": 30,
        "fullSoC": 80,
        "energyAmount": round((0.8 - 0.304) * 53_280),
    }


def test_a_departure_alone_reports_no_target_and_no_energy() -> None:
    out = charging_needs(1, info(departure=DEPARTURE))
    _validate_payload(Call("1", out.action, out.payload), "2.0.1")
    dc = out.payload["chargingNeeds"]["dcChargingParameters"]
    assert "fullSoC" not in dc and "energyAmount" not in dc


def test_a_target_below_the_soc_asks_for_no_energy() -> None:
    out = charging_needs(1, info(target_soc=0.2))
    assert "departureTime" not in out.payload["chargingNeeds"]
    assert out.payload["chargingNeeds"]["dcChargingParameters"]["energyAmount"] == 0


@pytest.mark.parametrize(
    "bad", [{"departure": "2026-03-01T17:30:00"}, {"target_soc": 0.0}, {"target_soc": 1.2}]
)
def test_a_bms_stating_impossible_needs_is_rejected_at_the_boundary(bad) -> None:  # type: ignore[no-untyped-def]
    # The link logs a ValidationError and treats it as a fault (bms_link/models.py).
    with pytest.raises(ValidationError, match=r"departure|target_soc"):
        info(**bad)
