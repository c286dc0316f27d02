"""The site forecast's known future from the stations' demands (station/site_forecast.py): where each
plugged-in car's energy lands, what is dropped, and the subscription on a real mosquitto."""

from __future__ import annotations

import asyncio

import aiomqtt
import numpy as np
import pytest
from structlog.testing import capture_logs

from chargeagent.clock import LoopClock
from chargeagent.mqtt_connect import MqttEndpoint
from policy.forecast_features import interval_mean_kw
from station.site_forecast import DemandBook, follow_demands
from station.site_protocol import Demand, demand_topic, encode

NOW = 1_800_000_000.0  # epoch s
SITE = "depot"


def demand(sid: str, **kw: float | None) -> Demand:
    fields: dict[str, object] = {"station_id": sid, "sent_at": NOW, "want_w": 0.0, "power_w": 0.0}
    fields |= {"need_wh": 20_000.0, "failsafe_w": 0.0} | kw
    return Demand.model_validate(fields)


def book_with(*demands: Demand, at: float = NOW) -> DemandBook:
    book = DemandBook(max_age_s=30.0)
    for d in demands:
        book.on_message(demand_topic(SITE, d.station_id), encode(d), at)
    return book


def energy_kwh(intervals, t0: float, t1: float) -> float:  # type: ignore[no-untyped-def]
    n = int((t1 - t0) // 900)
    return float(
        interval_mean_kw(intervals.on_s, intervals.off_s, intervals.power_kw, t0, 900.0, n).sum() / 4
    )


def test_a_waiting_price_plan_lands_where_the_station_plans_to_charge() -> None:
    waiting = demand("S1", want_w=0.0, plan_w=40_000.0, plan_from=NOW + 3 * 3600, need_wh=20_000.0)
    intervals = book_with(waiting).plugged_in(NOW)
    assert energy_kwh(intervals, NOW, NOW + 3 * 3600) == pytest.approx(0.0)
    assert energy_kwh(intervals, NOW + 3 * 3600, NOW + 4 * 3600) == pytest.approx(20.0)  # 30 min at 40 kW
    assert intervals.power_kw.tolist() == [40.0]


def test_a_station_that_does_not_state_a_plan_draws_its_want_from_now_until_it_leaves() -> None:
    charging = demand("S2", want_w=50_000.0, need_wh=100_000.0, departure=NOW + 3600)
    intervals = book_with(charging).plugged_in(NOW)
    assert intervals.on_s.tolist() == [NOW] and intervals.off_s.tolist() == [NOW + 3600]  # leaves first
    assert energy_kwh(intervals, NOW, NOW + 4 * 3600) == pytest.approx(50.0)


def test_idle_full_and_silent_stations_add_nothing() -> None:
    book = book_with(
        demand("idle", need_wh=0.0),
        demand("nothing-planned", want_w=0.0, need_wh=5_000.0),  # no plan, wants nothing: no energy placed
        demand("old", want_w=20_000.0),
    )
    book.on_message(demand_topic(SITE, "fresh"), encode(demand("fresh", want_w=10_000.0)), NOW + 20.0)
    intervals = book.plugged_in(NOW + 31.0)  # idle/old heard 31 s ago: dropped
    assert intervals.power_kw.tolist() == [10.0]
    assert len(book) == 1


def test_garbage_and_a_demand_on_another_stations_topic_are_logged_and_ignored() -> None:
    book = DemandBook()
    with capture_logs() as logs:
        book.on_message(demand_topic(SITE, "S1"), b"{not json", NOW)
        book.on_message(demand_topic(SITE, "S1"), encode(demand("S2", want_w=10_000.0)), NOW)
        book.on_message(demand_topic(SITE, "S3"), b'{"station_id": "S3", "want_w": NaN}', NOW)
    assert len(book) == 0
    assert [e["event"] for e in logs] == ["site_demand_invalid"] * 3
    assert book.plugged_in(NOW).power_kw.size == 0


@pytest.mark.timeout(60)
async def test_the_book_follows_the_stations_demands_on_a_real_broker(mosquitto) -> None:
    endpoint = MqttEndpoint.from_url(mosquitto.url)
    book, connected, clock = DemandBook(), asyncio.Event(), LoopClock()
    follower = asyncio.create_task(follow_demands(endpoint, SITE, book, clock, connected))
    try:
        await asyncio.wait_for(connected.wait(), 20)
        now = clock.now().timestamp()
        sent = demand("S9", sent_at=now, want_w=0.0, plan_w=22_000.0, plan_from=now + 7200)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-station") as client:
            await client.publish(demand_topic(SITE, "S9"), encode(sent), qos=1)
            await client.publish(demand_topic("other-site", "S8"), encode(demand("S8", want_w=1e4)), qos=1)
        async with asyncio.timeout(10):
            while len(book) == 0:
                await asyncio.sleep(0.05)
        intervals = book.plugged_in(clock.now().timestamp())
        assert intervals.on_s.tolist() == [pytest.approx(now + 7200)]
        assert intervals.power_kw.tolist() == [22.0]
        assert len(book) == 1  # the other site's station is not ours
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert np.isfinite(intervals.off_s).all()
