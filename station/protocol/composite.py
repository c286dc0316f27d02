"""Composite schedules (OCPP 2.0.1 K08, GetCompositeSchedule): the limit the station expects over time.

Computed exactly by evaluating the stacked profiles (`ProfileStore.limit_a`) at every instant where any of
them can change — validFrom/validTo, schedule starts and ends, period starts — and merging equal neighbours.
Where no profile applies, the station's own rating is the limit (K08.FR.xx: the composite reflects what
the station would actually do).

The station's own charge plans are a local limit too: while a session runs, its planned current
(`policy.plan.Plan.current_schedule`) caps that EVSE's composite, and evseId 0 is capped by the sum of the
EVSEs' plans — the station's planned consumption, which is what a grid operator asking for the station's
schedule wants to know (issue #8). Without any plan the composite is the limits alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from chargeagent.clock import ocpp_timestamp
from station.protocol.charging_profile import ProfileStore, parse_time, schedule_runs


def _breakpoints(
    store: ProfileStore, start: datetime, end: datetime, tx_start: datetime | None
) -> list[datetime]:
    points = {start}
    for installed in store.installed():
        profile = installed.profile
        for key in ("validFrom", "validTo"):
            if key in profile:
                points.add(parse_time(profile[key]))
        for schedule in profile.get("chargingSchedule", []):
            for origin, length in schedule_runs(profile, schedule, start, end, tx_start):
                for period in schedule["chargingSchedulePeriod"]:
                    points.add(origin + timedelta(seconds=float(period["startPeriod"])))
                if length is not None:
                    points.add(origin + timedelta(seconds=length))
    return sorted(p for p in points if start <= p < end)


def composite_schedule(
    store: ProfileStore,
    evse_id: int,
    start: datetime,
    duration_s: int,
    *,
    tx_id: str | None,
    tx_start: datetime | None,
    voltage_v: float,
    default_limit_a: float,
    unit: str = "A",
    planned: Sequence[tuple[datetime, Sequence[tuple[float, float]]]] = (),
) -> dict[str, Any]:
    """The CompositeScheduleType for [start, start + duration) in `unit` (A, or W at `voltage_v`).

    `planned`: (planned at, [(seconds from then, A)]) of the charge plans that cap this schedule (summed).
    """
    end = start + timedelta(seconds=duration_s)
    periods: list[dict[str, Any]] = []
    points = set(_breakpoints(store, start, end, tx_start))
    for origin, plan in planned:
        points.update(p for p in (origin + timedelta(seconds=t) for t, _ in plan) if start <= p < end)
    for point in sorted(points):
        limit_a = store.limit_a(evse_id, point, tx_id=tx_id, tx_start=tx_start, voltage_v=voltage_v)
        limit_a = default_limit_a if limit_a is None else min(limit_a, default_limit_a)
        if planned:
            limit_a = min(limit_a, sum(_planned_at(origin, plan, point) for origin, plan in planned))
        limit = limit_a * voltage_v if unit == "W" else limit_a
        if periods and periods[-1]["limit"] == round(limit, 1):
            continue
        periods.append({"startPeriod": int((point - start).total_seconds()), "limit": round(limit, 1)})
    return {
        "evseId": evse_id,
        "duration": duration_s,
        "scheduleStart": ocpp_timestamp(start),
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods,
    }


def _planned_at(origin: datetime, plan: Sequence[tuple[float, float]], at: datetime) -> float:
    """The planned current at `at` (the last period started by then; 0 before the plan and after it)."""
    offset_s = (at - origin).total_seconds() + 1e-3  # datetimes hold microseconds: breakpoints round down
    current = 0.0
    for start_s, current_a in plan:
        if start_s <= offset_s:
            current = current_a
    return current
