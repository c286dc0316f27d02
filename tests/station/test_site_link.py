"""The station's site link (station/site_link.py) and the controller (station/site_controller.py): the
message handling without a broker, and `chargeagent site-controller` as a real process on a real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
import structlog

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.errors import ConfigError
from station.protocol.charging_profile import ProfileStore
from station.site_controller import SiteController
from station.site_link import EvseDemand, SiteEndpoint, SiteLink
from station.site_protocol import (
    Demand,
    Grant,
    cap_topic,
    demand_topic,
    encode,
    limit_topic,
)

REPO = Path(__file__).resolve().parents[2]
EPOCH = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
VOLTS = 400.0


def link(demand: EvseDemand | None = None) -> SiteLink:
    settings = load_settings(overrides={"site": {"mqtt_url": "mqtt://127.0.0.1:1", "failsafe_kw": 8.0}})
    return SiteLink(
        ProfileStore(), settings.site, "CS1", LoopClock(epoch=EPOCH), lambda: demand or EvseDemand()
    )


def grant(**kw: object) -> bytes:
    fields: dict[str, object] = {
        "station_id": "CS1",
        "issued_at": EPOCH.timestamp(),
        "limit_w": 20_000.0,
        "valid_until": EPOCH.timestamp() + 10.0,
        "cap_w": 50_000.0,
        **kw,
    }
    return json.dumps(fields).encode()


async def test_the_failsafe_holds_from_the_start_and_a_grant_replaces_it_until_it_ends() -> None:
    site = link()
    now = site.clock.now()
    assert site.profiles.external_limit_a(now, VOLTS) == pytest.approx(8_000.0 / VOLTS)
    site.on_grant(grant())
    assert site.profiles.external_limit_a(site.clock.now(), VOLTS) == pytest.approx(20_000.0 / VOLTS)
    later = site.clock.now().replace(second=11)
    assert site.profiles.external_limit_a(later, VOLTS) == pytest.approx(8_000.0 / VOLTS)
    assert site.grants_applied == 1
    d = site.current_demand()
    assert (
        d.applied_limit_w == 20_000.0 and d.applied_grant_at == EPOCH.timestamp() and d.failsafe_w == 8_000.0
    )


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\xff garbage", "Grant: message: Invalid JSON"),
        (grant(limit_w=float("nan")), "Grant: limit_w"),
        (grant(limit_w=-5.0), "Grant: limit_w"),
        (grant(station_id="CS2"), "station_id 'CS2'"),
    ],
)
async def test_a_bad_grant_is_logged_and_the_limit_in_force_stays(payload: bytes, problem: str) -> None:
    site = link()
    site.on_grant(grant(limit_w=12_000.0))
    with structlog.testing.capture_logs() as logs:
        site.on_grant(payload)
    (entry,) = [e for e in logs if e["event"] == "site_grant_invalid"]
    assert problem in entry["problem"] and entry["log_level"] == "error"
    assert site.profiles.external_limit_a(site.clock.now(), VOLTS) == pytest.approx(12_000.0 / VOLTS)


async def test_a_grant_that_arrives_after_its_end_is_ignored() -> None:
    site = link()
    with structlog.testing.capture_logs() as logs:
        site.on_grant(grant(issued_at=EPOCH.timestamp() - 30, valid_until=EPOCH.timestamp() - 20))
    assert [e["event"] for e in logs] == ["site_grant_ignored"]
    assert site.profiles.external_limit_a(site.clock.now(), VOLTS) == pytest.approx(8_000.0 / VOLTS)


async def test_the_demand_carries_what_the_session_needs() -> None:
    site = link(EvseDemand(want_w=90_000.0, power_w=40_000.0, need_wh=30_000.0, departure_s=1e9 + 5, soh=0.8))
    d = site.current_demand()
    assert (d.want_w, d.power_w, d.need_wh, d.departure, d.soh) == (
        90_000.0,
        40_000.0,
        30_000.0,
        1e9 + 5,
        0.8,
    )
    assert d.applied_limit_w == 8_000.0 and d.applied_grant_at is None  # on the failsafe
    assert (d.plan_w, d.plan_from) == (None, None)  # the session stated no plan


async def test_the_demand_carries_the_plan_for_the_site_forecast() -> None:
    site = link(EvseDemand(want_w=0.0, need_wh=30_000.0, plan_w=60_000.0, plan_from_s=1e9 + 3600))
    d = site.current_demand()
    assert (d.want_w, d.plan_w, d.plan_from) == (0.0, 60_000.0, 1e9 + 3600)


async def test_a_demand_the_schema_would_refuse_is_sent_as_wanting_nothing() -> None:
    nan = float("nan")
    site = link(
        EvseDemand(
            want_w=nan,
            power_w=float("inf"),
            need_wh=-1.0,
            departure_s=nan,
            soh=1.7,
            plan_w=nan,
            plan_from_s=-1.0,
        )
    )
    d = site.current_demand()
    assert (d.want_w, d.power_w, d.need_wh, d.departure, d.soh) == (0.0, 0.0, 0.0, None, None)
    assert (d.plan_w, d.plan_from) == (0.0, None)


def test_a_station_without_a_failsafe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"site\.failsafe_kw: required when mqtt_url is set"):
        load_settings(overrides={"site": {"mqtt_url": "mqtt://127.0.0.1:1883"}})


async def test_the_controller_ignores_garbage_and_follows_a_cap_message() -> None:
    clock = LoopClock(epoch=EPOCH)
    controller = SiteController(
        SiteEndpoint.from_url("mqtt://127.0.0.1:1"), site_id="S1", cap_w=30_000.0, clock=clock
    )
    demand = Demand(
        station_id="CS1", sent_at=EPOCH.timestamp(), want_w=50_000.0, power_w=0.0, need_wh=1.0, failsafe_w=0.0
    )
    with structlog.testing.capture_logs() as logs:
        controller.on_message(demand_topic("S1", "CS1"), b"{not json")
        controller.on_message(demand_topic("S1", "CS9"), encode(demand))  # another station's topic
        controller.on_message(cap_topic("S1"), b'{"cap_kw": -3}')
    assert [e["event"] for e in logs] == ["site_demand_invalid", "site_demand_invalid", "site_cap_invalid"]
    assert controller.step() == []  # nobody heard from
    controller.on_message(demand_topic("S1", "CS1"), encode(demand))
    controller.on_message(cap_topic("S1"), b'{"cap_kw": 12.5}')
    (first,) = controller.step()
    assert first.limit_w == pytest.approx(12_500.0) and first.cap_w == 12_500.0


def test_site_controller_command_grants_a_station_over_a_real_broker(mosquitto) -> None:
    proc = subprocess.Popen(
        [*(sys.executable, "-m", "station.cli"), "site-controller", "--cap-kw", "22", "--site-id", "S1",
         "--mqtt-url", mosquitto.url, "--period-s", "0.2", "--valid-s", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        async def exchange() -> Grant:
            host, port = mosquitto.url.removeprefix("mqtt://").split(":")
            async with aiomqtt.Client(host, int(port), identifier="test-station") as client:
                await client.subscribe(limit_topic("S1", "CS1"), qos=1)
                demand = Demand(
                    station_id="CS1",
                    sent_at=datetime.now(UTC).timestamp(),
                    want_w=50_000.0,
                    power_w=0.0,
                    need_wh=10_000.0,
                    failsafe_w=0.0,
                )
                async with asyncio.timeout(30):
                    while True:  # until the controller is up and has answered
                        await client.publish(demand_topic("S1", "CS1"), encode(demand), qos=1)
                        try:
                            async with asyncio.timeout(0.5):
                                async for message in client.messages:
                                    assert isinstance(message.payload, bytes)
                                    return Grant.model_validate_json(message.payload)
                        except TimeoutError:
                            continue

        answer = asyncio.run(exchange())
        assert answer.station_id == "CS1" and answer.limit_w == pytest.approx(22_000.0)
        assert answer.valid_until - answer.issued_at == pytest.approx(2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "site controller stopped" in out and "site_controller_connected" in err + out


def test_site_controller_refuses_failsafes_above_the_cap() -> None:
    result = subprocess.run(
        [*(sys.executable, "-m", "station.cli"), "site-controller", "--cap-kw", "10",
         "--failsafe-budget-kw", "11", "--mqtt-url", "mqtt://127.0.0.1:1"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().endswith("exceeds --cap-kw (10.0): lower the failsafes")
