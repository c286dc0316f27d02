"""The charging session's own decisions, called directly on a real agent (no CSMS, no BMS link): what a
price-aware session tells the site while it waits for cheaper hours, and what an EV's stated needs change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bms_link.models import BatteryType, ChargeMode, ChargeRequest, PackInfo, PackTelemetry
from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from station.agent import StationAgent
from station.charging import ChargingSession

ARRIVE = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)  # peak until 22:00 UTC, then cheap
TARIFF = [0.10] * 7 + [0.40] * 15 + [0.10] * 2
INFO = PackInfo(
    battery_type=BatteryType.NMC, rated_capacity_ah=150.0, rated_voltage_v=355.2, max_cell_voltage_v=4.2,
    max_charge_current_a=200.0, nominal_energy_kwh=53.3, max_pack_voltage_v=403.2, max_temp_c=55.0,
    soc=0.3, pack_voltage_v=360.0,
)  # fmt: skip
TELEMETRY = PackTelemetry(
    monotonic_s=0.0, pack_voltage_v=360.0, pack_current_a=0.0, soc=0.3, soh=0.95, cell_voltage_max_v=3.8,
    cell_temp_max_c=25.0, cell_temp_min_c=24.0, request=ChargeRequest(voltage_v=400.0, current_a=200.0,
    mode=ChargeMode.CC), max_charge_current_a=200.0, max_pack_voltage_v=403.2, max_cell_voltage_v=4.2,
    max_temp_c=55.0,
)  # fmt: skip


def session(**policy: object) -> ChargingSession:
    settings = load_settings(
        overrides={
            "site": {"mqtt_url": "mqtt://127.0.0.1:1", "failsafe_kw": 10.0},  # built, never connected
            "policy": {"price_aware": True, "tariff_hourly": TARIFF, "model_enabled": False, **policy},
        }
    )
    agent = StationAgent(settings, clock=LoopClock(epoch=ARRIVE), bms_factory=lambda: None)  # type: ignore[arg-type,return-value]
    return ChargingSession(agent, "tx-1")


async def test_a_waiting_session_tells_the_site_when_and_how_much_it_will_draw() -> None:
    s = session(dwell_s=13 * 3600.0)  # leaves 07:00: 15 kWh fit in the cheap hours
    decision = s._decide(TELEMETRY, INFO, previous_a=0.0, dt_s=1.0)
    assert decision.current_a == 0.0 and decision.binding_constraint == "price_plan"
    demand = s._site_demand(TELEMETRY, INFO, decision)
    assert demand.want_w == 0.0  # nothing now ...
    assert demand.plan_from_s == (ARRIVE + timedelta(hours=4)).timestamp()  # ... from 22:00 ...
    assert demand.plan_w is not None and demand.plan_w > 10_000.0  # ... at this power
    assert demand.plan_w == pytest.approx(decision.demand_a * 360.0)
    assert demand.need_wh == pytest.approx(0.5 * 53_300.0)  # to the configured 80 %


async def test_a_session_charging_now_states_no_later_start() -> None:
    s = session(dwell_s=2 * 3600.0)  # 26.7 kWh in 2 h of peak: the deadline wins, it charges at once
    decision = s._decide(TELEMETRY, INFO, previous_a=0.0, dt_s=1.0)
    demand = s._site_demand(TELEMETRY, INFO, decision)
    assert demand.plan_from_s is None
    assert demand.want_w > 0.0


async def test_the_evs_departure_and_target_replace_the_configured_ones() -> None:
    s = session()  # no dwell_s: without the EV's needs nothing is planned
    assert s._price_plan is None
    needs = INFO.model_copy(update={"departure": ARRIVE + timedelta(hours=12), "target_soc": 0.6})
    s._take_charging_needs(needs)
    assert s._price_plan is not None and s._departure_s == (ARRIVE + timedelta(hours=12)).timestamp()
    decision = s._decide(TELEMETRY, needs, previous_a=0.0, dt_s=1.0)
    assert decision.binding_constraint == "price_plan"
    assert s._site_demand(TELEMETRY, needs, decision).need_wh == pytest.approx(0.3 * 53_300.0)  # to 60 %
