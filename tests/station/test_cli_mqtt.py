"""`chargeagent station --bms mqtt` as users run it: a subprocess, real mosquitto, a simulated MQTT BMS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from bms_link.mqtt import MqttEndpoint
from chargeagent.clock import LoopClock
from simulators.bms_mqtt import BmsMqttNode
from simulators.csms import EmbeddedCsms
from simulators.pack import PackSpec, SimulatedBms

CLI = [sys.executable, "-m", "station.cli"]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
async def test_station_over_mqtt_charges_a_remote_started_transaction_and_ends_it_on_remote_stop(
    mosquitto, tmp_path
):
    station_id = "CLI-MQTT"
    node = BmsMqttNode(
        SimulatedBms(PackSpec("nmc", 150.0, 0.95, 96, 0.3, 0.8, 25.0, 25.0, 200.0)),
        endpoint=MqttEndpoint.from_url(mosquitto.url),
        station_id=station_id,
        clock=LoopClock(),
    )
    env = {
        **os.environ,
        "CHARGEAGENT_OCPP__METER_INTERVAL_S": "1",
        "CHARGEAGENT_LOG__FORMAT": "json",
        "CHARGEAGENT_STATION__DATA_DIR": str(tmp_path),
    }
    async with EmbeddedCsms() as csms:
        node_task = asyncio.create_task(node.run(), name="test-bms-node")
        proc = await asyncio.create_subprocess_exec(
            *CLI, "station", "--csms-url", csms.url, "--station-id", station_id,
            "--bms", "mqtt", "--mqtt-url", mosquitto.url,
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await csms.wait_for(station_id, "BootNotification", lambda _: True, timeout_s=30)
            assert await csms.request_start_transaction(station_id, id_token="OP-1", evse_id=1) == "Accepted"
            periodic = await csms.wait_for(
                station_id,
                "TransactionEvent",
                lambda p: p.get("triggerReason") == "MeterValuePeriodic",
                timeout_s=30,
            )
            tx_id = periodic.payload["transactionInfo"]["transactionId"]
            assert await csms.request_stop_transaction(station_id, tx_id) == "Accepted"
            ended = await csms.wait_for(
                station_id, "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=30
            )
            await asyncio.wait_for(node_task, timeout=10)  # the BMS got the charger's stop
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
            node_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await node_task
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
    assert ended.payload["transactionInfo"]["stoppedReason"] == "Remote"
    power_w = [
        float(v["value"])
        for r in csms.received(station_id, "TransactionEvent")
        for m in r.payload.get("meterValue", [])
        for v in m["sampledValue"]
        if v["measurand"] == "Power.Active.Import"
    ]
    assert max(power_w) > 1000  # the pack behind the broker was really charging
    assert node.bms.soc > 0.3
