"""Upstream forecast over MQTT (station/grid.py): a real mosquitto broker, a real subscriber."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import numpy as np
import pytest
from structlog.testing import capture_logs

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.errors import ChargeAgentError, ConfigError
from policy.forecast import LoadForecaster, forecast_message
from policy.forecast_io import LoadHistory
from station.grid import (
    ForecastPublisher,
    GridEndpoint,
    PublishRule,
    UpstreamError,
    forecast_topic,
    p50_energy_kwh,
    publish_once,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "config/schemas/forecast.schema.json").read_text())
START_S = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday
SITE = "site-7"


def message(scale: float = 1.0, site_id: str = SITE) -> dict[str, Any]:
    """A real cold-start forecast (3 days of a daily load shape, times `scale`): fast, no model fit."""
    slots = np.arange(3 * 96)
    load_kw = scale * (20.0 + 15.0 * np.sin(2 * np.pi * (slots % 96) / 96))
    history = LoadHistory(START_S, 900, load_kw)
    forecast = LoadForecaster().fit(history).predict(history.end_s, 96)
    return forecast_message(forecast, site_id, generated_at_s=history.end_s)


async def retained(url: str, topic: str, timeout_s: float = 10.0) -> aiomqtt.Message:
    """Connect as a late subscriber and return the first message on `topic` (the retained one)."""
    endpoint = GridEndpoint.from_url(url)
    async with endpoint.client(identifier="test-late-subscriber", keepalive_s=10) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout_s):
            async for received in client.messages:
                return received
    raise AssertionError("no message")


async def until(condition: Any, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def publisher(url: str, **options: Any) -> ForecastPublisher:
    return ForecastPublisher(
        GridEndpoint.from_url(url), site_id=SITE, clock=LoopClock(), reconnect_min_s=0.05, **options
    )


# --- PublishRule (sans-I/O) ----------------------------------------------------------------------


def test_rule_publishes_first_then_on_change_beyond_the_threshold_or_when_the_schedule_is_due():
    rule = PublishRule(interval_s=900.0, change_threshold=0.1)
    assert rule.reason(0.0, 100.0) == "first"
    assert rule.reason(0.0, 100.0) == "first"  # asking does not change the state
    rule.published(0.0, 100.0)
    assert rule.reason(10.0, 109.0) is None  # 9 % < 10 %
    assert rule.reason(10.0, 91.0) is None
    assert rule.reason(10.0, 111.0) == "change"
    assert rule.reason(10.0, 89.0) == "change"
    assert rule.reason(899.0, 100.0) is None
    assert rule.reason(900.0, 100.0) == "schedule"
    assert rule.next_due_s() == 900.0
    rule.published(900.0, 111.0)  # the change is measured from the last PUBLISHED energy
    assert rule.reason(901.0, 115.0) is None
    assert rule.reason(901.0, 100.0) is None  # -9.9 % of 111
    assert rule.reason(901.0, 99.0) == "change"


def test_rule_treats_any_load_after_a_zero_forecast_as_a_change():
    rule = PublishRule(interval_s=60.0, change_threshold=0.5)
    rule.published(0.0, 0.0)
    assert rule.reason(1.0, 0.0) is None
    assert rule.reason(1.0, 0.001) == "change"


def test_rule_rejects_non_positive_settings():
    with pytest.raises(ValueError, match="must be > 0"):
        PublishRule(interval_s=0.0, change_threshold=0.1)


def test_p50_energy_is_sum_of_p50_times_interval_hours():
    doc = message()
    expected = sum(i["p50"] for i in doc["intervals"]) * doc["interval_minutes"] / 60
    assert p50_energy_kwh(doc) == pytest.approx(expected)
    assert p50_energy_kwh(message(scale=2.0)) == pytest.approx(2 * expected, rel=1e-3)


def test_grid_settings_errors_name_the_grid_keys(monkeypatch):
    with pytest.raises(ConfigError, match=r"grid\.mqtt_url"):
        GridEndpoint.from_settings(load_settings(overrides={"grid": {"mqtt_url": "http://x"}}).grid)
    with pytest.raises(ConfigError, match=r"grid\.site_id"):
        load_settings(overrides={"grid": {"site_id": "a/#"}})
    monkeypatch.delenv("GRID_PW_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"grid\.mqtt_password_env: environment variable GRID_PW_UNSET"):
        GridEndpoint.from_url("mqtt://h", password_env="GRID_PW_UNSET")


# --- against a real broker -----------------------------------------------------------------------


async def test_late_subscriber_gets_the_retained_forecast_on_the_site_topic_and_it_matches_the_schema(
    mosquitto,
):
    doc = message()
    async with publisher(mosquitto.url) as pub:
        assert pub.submit(doc)
        await until(lambda: pub.published == 1)
    received = await retained(mosquitto.url, f"chargeagent/{SITE}/forecast")
    assert str(received.topic) == forecast_topic(SITE) == "chargeagent/site-7/forecast"
    assert received.retain
    assert received.qos == 1
    payload = json.loads(bytes(received.payload))  # type: ignore[arg-type]
    jsonschema.validate(payload, SCHEMA)
    assert payload == doc


async def test_small_changes_wait_for_the_schedule_big_ones_go_out_at_once(mosquitto):
    async with publisher(mosquitto.url, interval_s=3600.0, change_threshold=0.2) as pub:
        assert pub.submit(message(scale=1.0))
        await until(lambda: pub.published == 1)
        assert not pub.submit(message(scale=1.1))  # +10 %: not significant, the schedule is an hour away
        assert pub.published == 1
        assert pub.submit(message(scale=1.5))
        await until(lambda: pub.published == 2)
    payload = json.loads(bytes((await retained(mosquitto.url, forecast_topic(SITE))).payload))  # type: ignore[arg-type]
    assert p50_energy_kwh(payload) == pytest.approx(p50_energy_kwh(message(scale=1.5)))


async def test_schedule_republishes_the_latest_forecast_without_a_new_submit(mosquitto):
    async with publisher(mosquitto.url, interval_s=0.2, change_threshold=0.5) as pub:
        pub.submit(message())
        await until(lambda: pub.published >= 3)


async def test_publisher_reconnects_after_a_broker_restart_and_publishes_again(mosquitto):
    doc = message()
    async with publisher(mosquitto.url) as pub:
        pub.submit(doc)
        await until(lambda: pub.published == 1)
        await asyncio.to_thread(mosquitto.stop)  # no persistence: the retained copy dies with it
        await until(lambda: not pub.connected)
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: pub.connections == 2 and pub.published == 2)
        received = await retained(mosquitto.url, forecast_topic(SITE))
    assert json.loads(bytes(received.payload)) == doc  # type: ignore[arg-type]


async def test_invalid_message_is_logged_and_not_sent(mosquitto):
    bad = message()
    bad["intervals"][3]["p50"] = -1.0  # the schema says minimum 0
    good, other_site = message(scale=2.0), message(site_id="other-site")
    async with publisher(mosquitto.url) as pub:
        await until(lambda: pub.connected)
        with capture_logs() as logs:
            assert not pub.submit(bad)
            assert not pub.submit(other_site)  # would land on another site's topic
        assert pub.rejected == 2
        assert [e["event"] for e in logs] == ["forecast_message_invalid"] * 2
        assert "intervals/3/p50" in logs[0]["problem"]
        assert pub.submit(good)
        await until(lambda: pub.published == 1)
    # Only the valid one ever reached the broker: the first invalid one would have been first in line.
    received = await retained(mosquitto.url, forecast_topic(SITE))
    assert json.loads(bytes(received.payload)) == good  # type: ignore[arg-type]
    with pytest.raises(ChargeAgentError, match="does not match the schema"):
        await publish_once(GridEndpoint.from_url(mosquitto.url), bad)


async def test_password_is_used_but_never_logged(mosquitto, monkeypatch):
    secret = "hunter2-grid-Secret"
    monkeypatch.setenv("TEST_GRID_MQTT_PW", secret)
    settings = load_settings(
        overrides={
            "grid": {
                "site_id": SITE,
                "mqtt_url": mosquitto.url,
                "mqtt_username": "site7",
                "mqtt_password_env": "TEST_GRID_MQTT_PW",
            }
        }
    )
    with capture_logs() as logs:
        pub = ForecastPublisher.from_settings(settings.grid, clock=LoopClock())
        assert pub.endpoint.password == secret
        async with pub:
            pub.submit(message())
            await until(lambda: pub.published == 1)
            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: not pub.connected)
        with pytest.raises(UpstreamError) as failed:
            await publish_once(pub.endpoint, message(), timeout_s=5.0)
    events = {e["event"] for e in logs}
    assert {"grid_mqtt_connected", "forecast_published", "grid_mqtt_connection_lost"} <= events
    assert secret not in repr(logs)
    assert secret not in repr(pub.endpoint)
    assert secret not in str(failed.value)


async def test_publish_once_to_an_unreachable_broker_is_an_upstream_error(mosquitto):
    url = mosquitto.url
    await asyncio.to_thread(mosquitto.stop)
    with pytest.raises(UpstreamError, match=r"MQTT broker mqtt://127\.0\.0\.1:\d+"):
        await publish_once(GridEndpoint.from_url(url), message(), timeout_s=5.0)
