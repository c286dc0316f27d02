"""The VEN against openleadr's own VTN on loopback: registration, reports, events, back-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from station.openadr import SignalRules
from station.openadr_ven import GridVen, VenConfig
from tests.station.vtn import Vtn

SITE_MAX_W = 100_000.0


def _forecast() -> dict[str, Any]:
    start = datetime(2026, 6, 3, tzinfo=UTC)
    return {
        "site_id": "S1",
        "interval_minutes": 15,
        "unit": "kW",
        "intervals": [
            {
                "start": (start + timedelta(minutes=15 * k)).isoformat(),
                "p10": 1.0 + k,
                "p50": 2.0 + k,
                "p90": 4.0 + k,
            }
            for k in range(8)
        ],
    }


@asynccontextmanager
async def _running(ven: GridVen) -> AsyncIterator[GridVen]:
    task = asyncio.create_task(ven.run())
    try:
        yield ven
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_registers_and_reports_measured_load_and_forecast_quantiles() -> None:
    async with Vtn() as vtn:
        ven = GridVen(
            VenConfig(vtn.url, "site-ven", "S1", report_interval_s=1.0),
            SignalRules(SITE_MAX_W),
            measured_w=lambda: 12_345.0,
            forecast=_forecast,
        )
        async with _running(ven):
            await asyncio.wait_for(ven.registered.wait(), 15)
            await vtn.wait_for(lambda: all(vtn.values.get(r) for r in ("load", "p10", "p50", "p90")))
    assert vtn.registrations[0]["ven_name"] == "site-ven"
    assert ("S1-forecast", "p50", "Projected") in vtn.offered
    assert ("S1-load", "load", "Direct Read") in vtn.offered
    assert vtn.values["load"][0][0][1] == 12_345.0
    p10, p50, p90 = (vtn.values[q][0] for q in ("p10", "p50", "p90"))
    assert [v for _, v in p50] == [1e3 * (2.0 + k) for k in range(8)]  # kW in the message, W upstream
    assert all(a[1] <= b[1] <= c[1] for a, b, c in zip(p10, p50, p90, strict=True))
    assert p50[0][0] == datetime(2026, 6, 3, tzinfo=UTC)


async def test_simple_event_becomes_an_external_constraint_and_cancel_removes_it() -> None:
    limits: dict[str, dict[str, Any]] = {}
    cancelled: list[str] = []

    def on_limits(event_id: str, profiles: dict[str, dict[str, Any]]) -> None:
        limits.update(profiles)

    async with Vtn() as vtn:
        ven = GridVen(
            VenConfig(vtn.url, "ven", "CS001", report_interval_s=5.0),
            SignalRules(SITE_MAX_W),
            measured_w=lambda: 0.0,
            on_limits=on_limits,
            on_cancel=cancelled.append,
        )
        async with _running(ven):
            await asyncio.wait_for(ven.registered.wait(), 15)
            start = datetime.now(UTC) + timedelta(seconds=2)
            event_id = vtn.add_event(
                "SIMPLE",
                "level",
                [{"dtstart": start, "duration": timedelta(minutes=30), "signal_payload": 2}],
            )
            await vtn.wait_for(lambda: event_id in vtn.opts)
            assert vtn.opts[event_id] == "optIn"
            (profile,) = limits.values()
            assert profile["chargingProfilePurpose"] == "ChargingStationExternalConstraints"
            schedule = profile["chargingSchedule"][0]
            assert schedule["chargingRateUnit"] == "W"
            assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 0.25 * SITE_MAX_W}]
            assert schedule["duration"] == 1800
            vtn.server.cancel_event(ven_id="ven-under-test", event_id=event_id)
            await vtn.wait_for(lambda: cancelled == [event_id])


async def test_unknown_signal_is_refused_with_opt_out() -> None:
    async with Vtn() as vtn:
        ven = GridVen(VenConfig(vtn.url, "ven", "CS001"), SignalRules(SITE_MAX_W), measured_w=lambda: 0.0)
        async with _running(ven):
            await asyncio.wait_for(ven.registered.wait(), 15)
            event_id = vtn.add_event(
                "BID_LOAD",
                "setpoint",
                [{"dtstart": datetime.now(UTC), "duration": timedelta(minutes=5), "signal_payload": 3}],
            )
            await vtn.wait_for(lambda: event_id in vtn.opts)
    assert vtn.opts[event_id] == "optOut"
    assert ven.decisions[-1][2] == "signal BID_LOAD/setpoint is not one the station acts on"


async def test_unreachable_vtn_is_retried_with_back_off_until_it_appears() -> None:
    vtn = Vtn()
    ven = GridVen(
        VenConfig(vtn.url, "ven", "CS001", retry_min_s=0.2, retry_max_s=0.4),
        SignalRules(SITE_MAX_W),
        measured_w=lambda: 0.0,
    )
    async with _running(ven):
        await asyncio.sleep(1.0)  # a few failed registrations
        assert not ven.registered.is_set()
        async with vtn:
            await asyncio.wait_for(ven.registered.wait(), 15)
    assert len(vtn.registrations) >= 1
