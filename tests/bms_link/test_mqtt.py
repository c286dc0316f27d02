"""MqttBmsLink against a real mosquitto and a real BmsMqttNode (real time: the broker is another process).

Injected faults (silence, garbage, out-of-range values, BMS stops, the BMS or the broker going away) are in
test_mqtt_faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from bms_link.models import ChargeCommand, PackTelemetry, StopReason
from bms_link.mqtt import MqttBmsLink, MqttEndpoint
from bms_link.mqtt_protocol import status_topic
from chargeagent.clock import LoopClock
from chargeagent.errors import BmsLinkError, ConfigError
from simulators.bms_mqtt import BmsMqttNode
from simulators.pack import PackSpec, SimulatedBms

PERIOD_S = 0.1
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(30)


def spec(soc: float = 0.5) -> PackSpec:
    # 2 Ah so that a 2 A charge from SoC 0.7995 reaches the 0.8 target in about 2 s of real time.
    return PackSpec("nmc", 2.0, 0.95, 96, soc, 0.8, 25.0, 25.0, 10.0)


def command(current_a: float) -> ChargeCommand:
    return ChargeCommand(output_voltage_v=400.0, output_current_a=current_a)


@contextlib.asynccontextmanager
async def session(
    url: str, station_id: str, *, soc: float = 0.5, **link_options: float
) -> AsyncIterator[tuple[MqttBmsLink, BmsMqttNode]]:
    """A started session between a link and a simulated BMS; both closed (and the node cancelled) on exit."""
    clock = LoopClock()
    endpoint = MqttEndpoint.from_url(url)
    link = MqttBmsLink(endpoint, station_id=station_id, clock=clock, **link_options)  # type: ignore[arg-type]
    node = BmsMqttNode(
        SimulatedBms(spec(soc)), endpoint=endpoint, station_id=station_id, clock=clock, period_s=PERIOD_S
    )
    node_task = asyncio.create_task(node.run(), name="test-bms-node")
    try:
        await link.start_session()
        yield link, node
    finally:
        await link.close()
        node_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node_task


async def drive(link: MqttBmsLink, current_a: float) -> list[PackTelemetry]:
    """Command `current_a` on every telemetry until the session ends; everything received."""
    seen = []
    async for telemetry in link.telemetry():
        seen.append(telemetry)
        await link.command(command(current_a))
    return seen


async def test_session_runs_from_info_to_the_bms_stop_and_commands_reach_the_pack(mosquitto):
    async with session(mosquitto.url, "E2E", soc=0.7995) as (link, node):
        assert link.core.pack is not None
        assert link.core.pack.soc == pytest.approx(0.7995)
        seen = await asyncio.wait_for(drive(link, 2.0), timeout=15)
        assert link.end_reason is StopReason.SOC_TARGET_REACHED
        assert link.output_current_a == 0.0
    assert node.done
    assert len(seen) >= 5
    assert seen[0].pack_current_a == 0.0  # before the first command nothing flows
    assert any(t.pack_current_a == pytest.approx(2.0) for t in seen)  # the command reached the physics
    stamps = [t.monotonic_s for t in seen]
    assert stamps == sorted(stamps)
    assert seen[-1].soc > seen[0].soc


async def test_link_reconnects_after_a_broker_restart_and_telemetry_flows_again(mosquitto):
    async with session(mosquitto.url, "RESTART", telemetry_timeout_s=5.0) as (link, _node):
        telemetry = link.telemetry()
        await anext(telemetry)
        await link.command(command(1.0))
        mosquitto.stop()
        await _until(lambda: not link.connected)
        assert link.output_current_a == 0.0  # disconnected: no output
        mosquitto.start()
        await asyncio.wait_for(_until(lambda: link.connected), timeout=10)
        assert link.connections == 2
        reconnected_s = asyncio.get_running_loop().time()
        after = await asyncio.wait_for(_received_after(telemetry, link, reconnected_s), timeout=10)
        assert after.monotonic_s >= reconnected_s
        assert link.end_reason is None  # a short outage is not a session end


async def test_last_will_offline_is_published_when_the_charger_process_dies(mosquitto):
    script = (
        "import asyncio, sys\n"
        "from bms_link.mqtt import MqttBmsLink, MqttEndpoint\n"
        "from chargeagent.clock import LoopClock\n"
        "async def main():\n"
        f"    endpoint = MqttEndpoint.from_url({mosquitto.url!r})\n"
        "    link = MqttBmsLink(endpoint, station_id='WILL', clock=LoopClock())\n"
        "    await link.connect()\n"
        "    print('connected', flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO, stdout=asyncio.subprocess.PIPE, env={**os.environ}
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(_line(proc.stdout, b"connected\n"), timeout=15)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as observer:
            await observer.subscribe(status_topic("WILL"), qos=1)
            messages = aiter(observer.messages)
            first = await asyncio.wait_for(anext(messages), timeout=5)
            assert first.payload == b"online"  # retained
            proc.send_signal(signal.SIGKILL)
            second = await asyncio.wait_for(anext(messages), timeout=5)
            assert second.payload == b"offline"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_closing_the_link_publishes_a_retained_offline_status(mosquitto):
    link = MqttBmsLink(MqttEndpoint.from_url(mosquitto.url), station_id="BYE", clock=LoopClock())
    await link.connect()
    await link.close()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as observer:
        await observer.subscribe(status_topic("BYE"), qos=1)
        message = await asyncio.wait_for(anext(aiter(observer.messages)), timeout=5)
    assert message.payload == b"offline"
    assert message.retain


async def test_no_info_from_the_bms_raises_bms_link_error_with_bms_timeout(mosquitto):
    link = MqttBmsLink(
        MqttEndpoint.from_url(mosquitto.url), station_id="NOBODY", clock=LoopClock(), info_timeout_s=0.3
    )
    try:
        with pytest.raises(BmsLinkError, match="bms_timeout"):
            await link.start_session()
        assert link.end_reason is StopReason.BMS_TIMEOUT
    finally:
        await link.close()


def test_password_comes_from_the_named_env_var_and_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("TEST_MQTT_PW", "s3cret")
    endpoint = MqttEndpoint.from_url(
        "mqtts://broker.example:8884", username="cs", password_env="TEST_MQTT_PW"
    )
    assert (endpoint.host, endpoint.port, endpoint.tls, endpoint.password) == (
        "broker.example",
        8884,
        True,
        "s3cret",
    )
    assert "s3cret" not in repr(endpoint)
    assert MqttEndpoint.from_url("mqtts://broker.example").port == 8883


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("http://broker:1883", None, "bms.mqtt_url"),
        ("mqtt://broker:1883", "TEST_MQTT_PW_MISSING", "TEST_MQTT_PW_MISSING is not set"),
    ],
)
def test_bad_mqtt_config_is_a_config_error(url, env, message):
    with pytest.raises(ConfigError, match=message):
        MqttEndpoint.from_url(url, password_env=env)


async def _line(stream: asyncio.StreamReader, wanted: bytes) -> None:
    while (line := await stream.readline()) != wanted:
        assert line, "the charger process exited"


async def _until(condition, step_s: float = 0.02) -> None:
    while not condition():
        await asyncio.sleep(step_s)


async def _received_after(
    telemetry: AsyncIterator[PackTelemetry], link: MqttBmsLink, since_s: float
) -> PackTelemetry:
    """The first telemetry received at or after `since_s` (older buffered ones are skipped)."""
    async for item in telemetry:
        await link.command(command(1.0))
        if item.monotonic_s >= since_s:
            return item
    raise AssertionError("session ended")
