"""Price-aware charging in the station agent: with a departure and a two-level tariff, a car plugged in
during the peak waits for the cheap hours (binding constraint `price_plan`, 0 A), then charges and still
reaches its target before it leaves. Virtual time: the wait is 20 simulated minutes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from test_charging_session import Run, charge, pack  # same directory

SID = "CS-E2E"

PEAK, CHEAP = 0.40, 0.10
TARIFF = [CHEAP] * 9 + [PEAK] * 13 + [CHEAP] * 2  # UTC hours: peak 09:00-22:00
ARRIVE = datetime(2026, 3, 1, 21, 40, tzinfo=UTC)  # 20 min before the cheap hours


def test_a_peak_hour_arrival_waits_for_the_cheap_hours_and_still_meets_the_target() -> None:
    seen: dict[str, Any] = {}

    async def ask(run: Run) -> None:  # while it waits, the CSMS asks for the planned consumption
        await asyncio.sleep(120.0)
        seen["composite"] = await run.csms.call(SID, "GetCompositeSchedule", {"duration": 3600, "evseId": 1})

    run = charge(
        pack(soc=0.5, target_soc=0.8),
        ask,
        settings_overrides={"policy": {"price_aware": True, "dwell_s": 6 * 3600.0, "tariff_hourly": TARIFF}},
        epoch=ARRIVE,
    )
    periods = seen["composite"]["schedule"]["chargingSchedulePeriod"]
    assert periods[0]["limit"] == 0  # nothing until the cheap hours ...
    first_on = min(p["startPeriod"] for p in periods if p["limit"] > 0)
    assert abs(first_on - 18 * 60) <= 60  # ... which begin 18 min after the question (20 min after arrival)
    start = run.steps[0].t_s  # monotonic seconds of the first step, at about ARRIVE
    cheap_at = start + 20 * 60.0
    waiting = [s for s in run.steps if start + 5.0 < s.t_s < cheap_at - 5.0]
    assert waiting and all(s.current_a == 0.0 for s in waiting)
    assert all(s.binding_constraint == "price_plan" for s in waiting)
    charging = [s for s in run.steps if s.t_s > cheap_at + 60.0 and s.current_a > 0]
    assert charging and max(s.current_a for s in charging) > 100.0
    (result,) = run.results
    assert result.energy_wh > 0.25 * 150.0 * 355.0  # 50 -> 80 % of a ~53 kWh pack, give or take
    assert run.steps[-1].soc >= 0.79  # reached its target, long before the departure
    ended = run.tx_events()[-1]
    assert ended["eventType"] == "Ended"


def test_without_a_price_plan_the_same_arrival_charges_at_once() -> None:
    run = charge(pack(soc=0.5, target_soc=0.55), epoch=ARRIVE)
    early = [s for s in run.steps if s.t_s < run.steps[0].t_s + 60.0]
    assert max(s.current_a for s in early) > 100.0
    assert "price_plan" not in {s.binding_constraint for s in run.steps}
