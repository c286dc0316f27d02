"""An EV that states its charging needs (departure, target SoC) over MQTT (a real mosquitto): the agent
tells the CSMS with NotifyEVChargingNeeds and plans the session by them, with no departure configured.

Real time (the broker keeps wall-clock time), so the tariff is built around the current UTC hour: peak
now, cheap from 3 h on. A price-aware agent with no `dwell_s` then waits at 0 A (`price_plan`) for an EV
leaving in 6 h; an EV whose stated departure is already past is charged at once (never a wait on a
wrong clock), with a warning in the log."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from bms_link.mqtt import MqttEndpoint
from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from simulators.csms import EmbeddedCsms
from simulators.ev import SimulatedMqttEv, mqtt_link_factory
from simulators.pack import PackSpec
from station.agent import StationAgent

SID = "CS-NEEDS"
SPEC = PackSpec("nmc", 150.0, 0.95, 96, 0.30, 0.35, 25.0, 25.0, 200.0)
PEAK, CHEAP = 0.40, 0.10


def tariff_cheap_from(hours_ahead: int) -> list[float]:
    hour = datetime.now(UTC).hour
    cheap = {(hour + hours_ahead + i) % 24 for i in range(3)}
    return [CHEAP if h in cheap else PEAK for h in range(24)]


async def session(broker_url: str, departure: datetime) -> tuple[dict[str, Any], list[Any]]:
    """Start a session, let it run 4 s after the EV's needs arrive, stop it; the needs and the steps."""
    clock = LoopClock()
    steps: list[Any] = []
    async with EmbeddedCsms(clock=clock) as csms:
        settings = load_settings(
            overrides={
                "station": {"id": SID},
                "ocpp": {"csms_url": csms.url, "meter_interval_s": 1.0},
                "bms": {"backend": "mqtt", "mqtt_url": broker_url},
                "policy": {"price_aware": True, "tariff_hourly": tariff_cheap_from(3)},  # no dwell_s
            }
        )
        spec = dataclasses.replace(SPEC, departure=departure)
        ev = SimulatedMqttEv(spec, endpoint=MqttEndpoint.from_url(broker_url), station_id=SID, clock=clock)
        agent = StationAgent(
            settings, clock=clock, bms_factory=mqtt_link_factory(settings, clock), on_step=steps.append
        )
        async with asyncio.TaskGroup() as tg:
            agent_task = tg.create_task(agent.run())
            await asyncio.wait_for(agent.booted.wait(), 30)
            ev_task = tg.create_task(ev.run())
            agent.plug_in()
            assert await csms.request_start_transaction(SID, id_token="TAG-N", evse_id=1) == "Accepted"
            needs = await csms.wait_for(SID, "NotifyEVChargingNeeds", timeout_s=30)
            await asyncio.sleep(4.0)
            started = csms.received(SID, "TransactionEvent")[0].payload
            tx_id = started["transactionInfo"]["transactionId"]
            assert await csms.request_stop_transaction(SID, tx_id) == "Accepted"
            await csms.wait_for(SID, "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=30)
            ev_task.cancel()
            agent_task.cancel()
        assert csms.internal_errors == []
    return needs.payload, steps


@pytest.mark.timeout(90)
def test_an_ev_leaving_in_6_hours_is_reported_and_waits_for_the_cheap_hours(mosquitto) -> None:
    departure = (datetime.now(UTC) + timedelta(hours=6)).replace(microsecond=0)
    needs, steps = asyncio.run(session(mosquitto.url, departure))
    assert needs["evseId"] == 1
    charging = needs["chargingNeeds"]
    assert charging["departureTime"] == departure.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    dc = charging["dcChargingParameters"]
    assert dc["fullSoC"] == 35 and dc["stateOfCharge"] == 30
    assert 0.04 * 53_000 < dc["energyAmount"] < 0.06 * 53_000  # 5 % of a ~53 kWh pack
    charging_steps = [s for s in steps if s.soc > 0.0]
    assert len(charging_steps) > 10
    assert all(s.current_a == 0.0 for s in charging_steps)  # 2.6 kWh fits in the cheap hours: it waits
    assert {s.binding_constraint for s in charging_steps[3:]} == {"price_plan"}


@pytest.mark.timeout(90)
def test_an_ev_stating_a_past_departure_charges_at_once(mosquitto) -> None:
    with capture_logs() as logs:
        needs, steps = asyncio.run(session(mosquitto.url, datetime.now(UTC) - timedelta(hours=1)))
    assert "departureTime" in needs["chargingNeeds"]  # reported as the EV said it
    assert any(e["event"] == "ev_departure_in_past" for e in logs)
    assert max(s.current_a for s in steps) > 100.0
    assert "price_plan" not in {s.binding_constraint for s in steps if s.current_a > 100.0}
