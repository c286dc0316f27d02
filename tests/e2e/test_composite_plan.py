"""GetCompositeSchedule while charging: the station's charge plan is its planned consumption (issue #8)."""

from __future__ import annotations

import asyncio
from typing import Any

from test_charging_session import Run, charge, pack  # same directory

SID = "CS-E2E"


def test_composite_schedule_for_the_station_follows_the_running_charge_plan() -> None:
    seen: dict[str, Any] = {}

    async def ask(run: Run) -> None:
        await asyncio.sleep(30)
        for evse_id in (0, 1):
            answer = await run.csms.call(
                SID, "GetCompositeSchedule", {"duration": 4 * 3600, "evseId": evse_id}
            )
            seen[evse_id] = answer
        seen["current_a"] = run.links[0].output_current_a

    run = charge(pack(soc=0.2, target_soc=0.8), ask)
    for evse_id in (0, 1):
        answer = seen[evse_id]
        assert answer["status"] == "Accepted"
        periods = answer["schedule"]["chargingSchedulePeriod"]
        assert periods[0]["limit"] < 250  # below the station's rating: the plan, not just the limits
        assert periods[-1]["limit"] == 0  # the plan ends (target SoC reached) within the 4 hours
        assert periods[0]["limit"] >= seen["current_a"] - 1.0  # never below what is flowing (the plan caps)
    assert seen[0]["schedule"]["chargingSchedulePeriod"] == seen[1]["schedule"]["chargingSchedulePeriod"]
    # after the session no plan is left: the composite is the limits again
    assert not run.agent.core.planned
