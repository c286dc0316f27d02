"""BmsMqttNode seen from a bare MQTT client playing the charger (real mosquitto, real time)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from bms_link.models import ChargeCommand, StopReason
from bms_link.mqtt import MqttEndpoint
from bms_link.mqtt_protocol import (
    CommandMessage,
    InfoMessage,
    StopMessage,
    TelemetryMessage,
    command_topic,
    encode,
    parse_bms_message,
    telemetry_topic,
)
from chargeagent.clock import LoopClock
from simulators.bms_mqtt import BmsMqttNode
from simulators.pack import PackSpec, SimulatedBms

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def node_and_charger(
    url: str, port: int, station_id: str
) -> AsyncIterator[tuple[BmsMqttNode, aiomqtt.Client, asyncio.Task[None]]]:
    bms = SimulatedBms(PackSpec("nmc", 150.0, 0.95, 96, 0.5, 0.8, 25.0, 25.0, 200.0))
    node = BmsMqttNode(
        bms, endpoint=MqttEndpoint.from_url(url), station_id=station_id, clock=LoopClock(), period_s=0.05
    )
    async with aiomqtt.Client("127.0.0.1", port) as charger:
        await charger.subscribe(telemetry_topic(station_id), qos=1)
        task = asyncio.create_task(node.run(), name="test-node")
        try:
            yield node, charger, task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def next_kind(charger: aiomqtt.Client, kind: type) -> object:
    async for message in charger.messages:
        parsed = parse_bms_message(bytes(message.payload))  # type: ignore[arg-type]
        if isinstance(parsed, kind):
            return parsed
    raise AssertionError("disconnected")


async def test_node_repeats_info_until_commanded_then_charges_at_the_commanded_current(mosquitto):
    async with node_and_charger(mosquitto.url, mosquitto.port, "NODE-1") as (node, charger, _):
        for _ in range(2):  # repeated while nobody answers
            info = await asyncio.wait_for(next_kind(charger, InfoMessage), timeout=5)
        assert info.info.soc == pytest.approx(0.5)
        cmd = ChargeCommand(output_voltage_v=400.0, output_current_a=42.0)
        await charger.publish(command_topic("NODE-1"), encode(CommandMessage(command=cmd)), qos=1)
        while True:
            telemetry = await asyncio.wait_for(next_kind(charger, TelemetryMessage), timeout=5)
            if telemetry.telemetry.pack_current_a == pytest.approx(42.0):
                break
        assert node.bms.soc > 0.5


async def test_charger_stop_ends_the_run_and_the_pack_gets_no_more_current(mosquitto):
    async with node_and_charger(mosquitto.url, mosquitto.port, "NODE-2") as (node, charger, task):
        await asyncio.wait_for(next_kind(charger, InfoMessage), timeout=5)
        cmd = ChargeCommand(output_voltage_v=400.0, output_current_a=10.0)
        await charger.publish(command_topic("NODE-2"), encode(CommandMessage(command=cmd)), qos=1)
        await asyncio.wait_for(next_kind(charger, TelemetryMessage), timeout=5)
        await charger.publish(command_topic("NODE-2"), encode(StopMessage(reason=StopReason.REMOTE)), qos=1)
        await asyncio.wait_for(task, timeout=5)
        assert node.done
        assert node.commanded_current_a == 0.0


async def test_silent_node_publishes_nothing_but_garbage_on_request(mosquitto):
    async with node_and_charger(mosquitto.url, mosquitto.port, "NODE-3") as (node, charger, _):
        await asyncio.wait_for(next_kind(charger, InfoMessage), timeout=5)
        cmd = ChargeCommand(output_voltage_v=400.0, output_current_a=10.0)
        await charger.publish(command_topic("NODE-3"), encode(CommandMessage(command=cmd)), qos=1)
        await asyncio.wait_for(next_kind(charger, TelemetryMessage), timeout=5)
        node.go_silent()
        await asyncio.sleep(0.2)  # let in-flight telemetry drain
        while len(charger.messages):
            await anext(aiter(charger.messages))
        node.send_garbage()
        message = await asyncio.wait_for(anext(aiter(charger.messages)), timeout=5)
        assert message.payload == b"\x00not json{"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(aiter(charger.messages)), timeout=0.3)
