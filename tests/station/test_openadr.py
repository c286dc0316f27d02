"""OpenADR signals → the station's limits (sans-I/O): every mapping, and refusal of what it cannot honour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chargeagent.config import load_settings
from policy.price_plan import PriceSignal
from station.grid_link import GridLink
from station.openadr import SignalRules, decide, external_profiles, forecast_points
from station.protocol.charging_profile import ProfileStore
from station.protocol.station import StationCore

T0 = datetime(2026, 6, 3, 17, 0, tzinfo=UTC)
RULES = SignalRules(site_max_w=100_000.0)


def event(name: str, kind: str, payloads: list[Any], *, status: str = "far", **signal: Any) -> dict[str, Any]:
    intervals = [
        {"uid": k, "duration": timedelta(minutes=15), "signal_payload": v} for k, v in enumerate(payloads)
    ]
    return {
        "event_descriptor": {"event_id": "ev-1", "event_status": status},
        "active_period": {"dtstart": T0, "duration": timedelta(minutes=15 * len(payloads))},
        "event_signals": [{"signal_name": name, "signal_type": kind, "intervals": intervals, **signal}],
    }


@pytest.mark.parametrize(
    ("name", "kind", "payload", "signal", "max_w"),
    [
        ("SIMPLE", "level", 0, {}, 100_000.0),
        ("simple", "level", 1, {}, 50_000.0),
        ("SIMPLE", "level", 3, {}, 0.0),
        ("LOAD_DISPATCH", "setpoint", 40, {}, 40_000.0),  # kW when the signal names no unit
        ("LOAD_DISPATCH", "setpoint", 40_000, {"measurement": {"unit": "W", "scale": "none"}}, 40_000.0),
        (
            "LOAD_DISPATCH",
            "setpoint",
            0.5,
            {"measurement": {"unit": "W", "scale": "M"}},
            100_000.0,
        ),  # site max
        ("LOAD_CONTROL", "x-loadControlCapacity", 0.3, {}, 30_000.0),
        ("LOAD_CONTROL", "x-loadControlSetpoint", 25, {}, 25_000.0),
    ],
)
def test_limiting_signals_map_to_a_maximum_site_power(
    name: str, kind: str, payload: float, signal: dict[str, Any], max_w: float
) -> None:
    decision = decide(event(name, kind, [payload], **signal), RULES)
    assert decision.opt == "optIn"
    ((limit,),) = decision.limits
    assert (limit.start, limit.end) == (T0, T0 + timedelta(minutes=15))
    assert limit.max_w == pytest.approx(max_w)


@pytest.mark.parametrize(
    ("name", "kind", "payload", "reason"),
    [
        ("SIMPLE", "level", 4, "SIMPLE level 4 is not one of 0..3"),
        ("SIMPLE", "level", 1.5, "SIMPLE level 1.5 is not one of 0..3"),
        ("SIMPLE", "level", float("nan"), "SIMPLE: payload nan is not a finite number"),
        ("LOAD_DISPATCH", "setpoint", -5, "LOAD_DISPATCH setpoint -5.0 is negative"),
        (
            "LOAD_CONTROL",
            "x-loadControlCapacity",
            1.5,
            "x-loadControlCapacity 1.5 is not a fraction in [0, 1]",
        ),
        (
            "LOAD_CONTROL",
            "x-loadControlLevelOffset",
            1,
            "signal LOAD_CONTROL/x-loadControlLevelOffset is not",
        ),
        ("BID_LOAD", "setpoint", 1, "signal BID_LOAD/setpoint is not one the station acts on"),
        ("SIMPLE", "level", "garbage", "could not convert string to float"),
    ],
)
def test_what_the_station_cannot_honour_is_refused_with_the_reason(
    name: str, kind: str, payload: Any, reason: str
) -> None:
    decision = decide(event(name, kind, [payload]), RULES)
    assert decision.opt == "optOut" and not decision.limits
    assert decision.reason.startswith(reason)


def test_malformed_events_are_refused_not_raised() -> None:
    no_signal = {"event_descriptor": {"event_id": "e"}, "event_signals": []}
    assert decide(no_signal, RULES).opt == "optOut"
    no_duration = event("SIMPLE", "level", [1])
    del no_duration["event_signals"][0]["intervals"][0]["duration"]
    assert decide(no_duration, RULES).reason == "an interval needs a start and a duration"
    no_start = event("SIMPLE", "level", [1])
    del no_start["active_period"]["dtstart"]
    assert decide(no_start, RULES).opt == "optOut"


def test_prices_are_accepted_and_recorded_without_limiting() -> None:
    decision = decide(event("ELECTRICITY_PRICE", "price", [0.31, 0.12]), RULES)
    assert decision.opt == "optIn" and not decision.limits
    assert [(p.start, p.value) for p in decision.prices] == [(T0, 0.31), (T0 + timedelta(minutes=15), 0.12)]


def test_cancelled_and_completed_events_carry_no_limits() -> None:
    for status in ("cancelled", "completed"):
        decision = decide(event("SIMPLE", "level", [3], status=status), RULES)
        assert decision.opt == "optIn" and not decision.limits


def test_sequential_intervals_become_one_profile_the_store_evaluates() -> None:
    decision = decide(event("SIMPLE", "level", [1, 2, 0]), RULES)
    profiles = external_profiles(decision, first_id=1_000_000)
    (key,) = profiles
    assert key == "ev-1/0"
    schedule = profiles[key]["chargingSchedule"][0]
    assert [p["startPeriod"] for p in schedule["chargingSchedulePeriod"]] == [0, 900, 1800]
    assert schedule["duration"] == 2700
    store = ProfileStore()
    store.install_external(key, profiles[key])
    at = [store.external_limit_a(T0 + timedelta(minutes=m), voltage_v=500.0) for m in (1, 16, 31, 46)]
    assert at == [100.0, 50.0, 200.0, None]  # 50 kW, 25 kW, 100 kW at 500 V; then over


def test_forecast_quantiles_become_watts_per_interval() -> None:
    message = {"intervals": [{"start": "2026-06-03T00:00:00Z", "p10": 1.0, "p50": 2.5, "p90": 4.0}]}
    assert forecast_points(message, "p50") == [(datetime(2026, 6, 3, tzinfo=UTC), 2500.0)]
    with pytest.raises(ValueError, match="quantile"):
        forecast_points(message, "p99")


async def test_a_price_event_reaches_the_station_price_plan_and_cancelling_removes_it() -> None:
    settings = load_settings(overrides={"grid": {"vtn_url": "http://127.0.0.1:1/OpenADR2/Simple/2.0b"}})
    link = GridLink(StationCore.__new__(StationCore), settings)  # the VEN's price path needs no core
    assert await link.ven._on_event(event("ELECTRICITY_PRICE", "priceMultiplier", [2.0])) == "optIn"
    end = T0 + timedelta(minutes=15)
    assert link.price_signals() == (PriceSignal(T0.timestamp(), end.timestamp(), 2.0, "priceMultiplier"),)
    assert link.prices_version == 1
    assert await link.ven._on_event(event("ELECTRICITY_PRICE", "priceMultiplier", [2.0], status="cancelled"))
    assert link.price_signals() == () and link.prices_version == 2
