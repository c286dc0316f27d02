"""Every fault the simulated MQTT BMS can inject (`simulators/faults.py`), scheduled, against `MqttBmsLink`,
plus the broker itself going away. Real mosquitto, so real time (the broker is another process).

Each case: the fault is scheduled `AT_S` into charging; the test asserts the safe reaction (0 A on the link,
the last command on the wire at 0 A, the charger's `stop` message with the reason when the charger is the
one stopping, the end reason, the structured log line) and the time from injection to the end. Timing
bounds are protocol bounds: a timeout never fires before `telemetry_timeout_s` minus one BMS period after
the injection (the last telemetry went out at most one period earlier); the upper bounds carry
`SLACK_S` for scheduling on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from bms_link.models import ChargeCommand, StopReason
from bms_link.mqtt import MqttBmsLink, MqttEndpoint
from bms_link.mqtt_protocol import command_topic, telemetry_topic
from chargeagent.clock import LoopClock
from chargeagent.errors import ConfigError
from simulators.bms_mqtt import BmsMqttNode
from simulators.faults import Fault, FaultKind, FaultSchedule
from simulators.pack import PackSpec, SimulatedBms

PERIOD_S = 0.1  # the BMS publishes every 100 ms
TIMEOUT_S = 0.5  # bms.mqtt_telemetry_timeout_s for these tests
AT_S = 0.3
SLACK_S = 0.3
SPEC = PackSpec("nmc", 2.0, 0.95, 96, 0.5, 0.8, 25.0, 25.0, 10.0)
pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Case:
    fault: str
    reason: StopReason | None  # None: the session goes on
    within_s: tuple[float, float]
    log_event: str
    charger_stops: bool  # the charger publishes `stop` (it does not echo a BMS's own stop)


_SILENCE = (TIMEOUT_S - PERIOD_S, TIMEOUT_S + SLACK_S)
_NEXT_PUBLISH = (0.0, PERIOD_S + SLACK_S)
CASES = {
    # The watchdog: no telemetry for `telemetry_timeout_s` -> 0 A, stop "bms_timeout".
    "silent": Case("silent", StopReason.BMS_TIMEOUT, _SILENCE, "bms_telemetry_timeout", True),
    "drop_telemetry": Case("drop:telemetry", StopReason.BMS_TIMEOUT, _SILENCE, "bms_telemetry_timeout", True),
    "bms_leaves_broker": Case(
        "broker_disconnect", StopReason.BMS_TIMEOUT, _SILENCE, "bms_telemetry_timeout", True
    ),
    # Implausible values end the session at the first such message (the next publish).
    "out_of_range": Case(
        "out_of_range", StopReason.IMPLAUSIBLE_DATA, _NEXT_PUBLISH, "mqtt_payload_rejected", True
    ),
    # The BMS stops itself with the reason; the charger goes to 0 A and does not echo a stop.
    "overtemperature": Case(
        "overtemperature", StopReason.OVERTEMPERATURE, _NEXT_PUBLISH, "mqtt_bms_session_ended", False
    ),
    "insulation": Case(
        "insulation", StopReason.INSULATION_FAULT, _NEXT_PUBLISH, "mqtt_bms_session_ended", False
    ),
    # Garbage is logged and dropped; the session goes on.
    "corrupt": Case("corrupt", None, (0.0, 0.0), "mqtt_payload_rejected", False),
}  # fmt: skip


def _command(current_a: float) -> ChargeCommand:
    return ChargeCommand(output_voltage_v=400.0, output_current_a=current_a)


@contextlib.asynccontextmanager
async def _observed(url: str, station_id: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every message the charger publishes on the command topic, decoded, while the block runs."""
    seen: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", MqttEndpoint.from_url(url).port) as observer:
        await observer.subscribe(command_topic(station_id), qos=1)

        async def collect() -> None:
            async for message in observer.messages:
                assert isinstance(message.payload, bytes)
                seen.append(json.loads(message.payload))

        async with asyncio.TaskGroup() as tg:
            collector = tg.create_task(collect(), name="command-observer")
            try:
                yield seen
                await asyncio.sleep(0.2)  # the last QoS 1 publishes reach the observer
            finally:
                collector.cancel()


async def _charge_with(url: str, case: Case, station_id: str) -> dict[str, Any]:
    clock = LoopClock()
    endpoint = MqttEndpoint.from_url(url)
    schedule = FaultSchedule([(AT_S, case.fault)])
    node = BmsMqttNode(
        SimulatedBms(SPEC), endpoint=endpoint, station_id=station_id, clock=clock, period_s=PERIOD_S,
        schedule=schedule,
    )  # fmt: skip
    link = MqttBmsLink(endpoint, station_id=station_id, clock=clock, telemetry_timeout_s=TIMEOUT_S)
    result: dict[str, Any] = {"node": node, "link": link}
    async with _observed(url, station_id) as commands, asyncio.TaskGroup() as tg:
        node_task = tg.create_task(node.run(), name="bms-node")
        try:
            await link.start_session()
            after = 0
            result["hottest_cell_c"] = -40.0
            async for telemetry in link.telemetry():
                result["hottest_cell_c"] = max(result["hottest_cell_c"], telemetry.cell_temp_max_c)
                await link.command(_command(1.0))
                after += bool(node.injected)
                if case.reason is None and after >= 3:
                    break
            result["ended_at_s"] = clock.monotonic()
            result["end_reason"], result["output_a"] = link.end_reason, link.output_current_a
        finally:
            await link.close()
            node_task.cancel()
    result["commands"] = commands
    return result


async def _run_case(
    url: str, case: Case, station_id: str
) -> tuple[dict[str, Any], list[MutableMapping[str, Any]]]:
    with capture_logs() as logs:
        result = await asyncio.wait_for(_charge_with(url, case, station_id), timeout=20)
    return result, logs


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_scheduled_fault_gets_the_safe_reaction_in_time(mosquitto: Any, case: Case) -> None:
    station_id = f"F-{case.fault.replace(':', '-')}"
    result, logs = await _run_case(mosquitto.url, case, station_id)
    link: MqttBmsLink = result["link"]
    node: BmsMqttNode = result["node"]
    ((injected_at_s, fault),) = node.injected
    assert fault == Fault.parse(case.fault)
    assert node.charging_since_s is not None
    # the schedule is checked once per BMS period
    assert 0.0 <= injected_at_s - (node.charging_since_s + AT_S) <= PERIOD_S + SLACK_S
    logged = [e for e in logs if e["event"] == case.log_event]
    assert logged
    currents = [c["command"]["output_current_a"] for c in result["commands"] if c["kind"] == "command"]
    assert 1.0 in currents  # it was charging
    if case.reason is None:
        assert result["end_reason"] is None and link.rejected_payloads == 1
        assert not logged[0]["implausible"] and "not JSON" in logged[0]["reason"]
        assert logged[0]["topic"] == telemetry_topic(station_id)
        return
    assert result["end_reason"] is case.reason
    assert result["output_a"] == 0.0
    lo_s, hi_s = case.within_s
    assert lo_s <= result["ended_at_s"] - injected_at_s <= hi_s
    assert currents[-1] == 0.0  # the last command on the wire
    stops = [c["reason"] for c in result["commands"] if c["kind"] == "stop"]
    assert stops == ([case.reason.value] if case.charger_stops else [])
    if case.reason is StopReason.IMPLAUSIBLE_DATA:
        assert logged[0]["implausible"] is True and "cell_temp_max_c" in logged[0]["reason"]
        assert result["hottest_cell_c"] < 100.0  # the 120 °C reading never reached the consumer


async def test_broker_outage_gives_0_a_at_once_and_a_bms_timeout_after_the_timeout(mosquitto: Any) -> None:
    """The broker itself dies and stays down: the link is disconnected, so 0 A at once; the watchdog keeps
    running, so the session ends with `bms_timeout` one telemetry timeout after the last message."""
    clock = LoopClock()
    endpoint = MqttEndpoint.from_url(mosquitto.url)
    node = BmsMqttNode(
        SimulatedBms(SPEC), endpoint=endpoint, station_id="OUTAGE", clock=clock, period_s=PERIOD_S
    )
    link = MqttBmsLink(endpoint, station_id="OUTAGE", clock=clock, telemetry_timeout_s=TIMEOUT_S)
    with capture_logs() as logs:
        async with asyncio.TaskGroup() as tg:
            node_task = tg.create_task(node.run(), name="bms-node")
            try:
                await link.start_session()
                telemetry = aiter(link.telemetry())
                last_rx_s = (await anext(telemetry)).monotonic_s
                await link.command(_command(1.0))
                assert link.output_current_a == 1.0
                mosquitto.stop()
                stopped_at_s = clock.monotonic()
                while link.connected:
                    await asyncio.sleep(0.01)
                assert link.output_current_a == 0.0  # at once: no broker, no output
                zero_at_s = clock.monotonic()
                async for item in telemetry:  # anything still buffered, then the end
                    last_rx_s = item.monotonic_s
                ended_at_s = clock.monotonic()
            finally:
                await link.close()
                node_task.cancel()
    assert zero_at_s - stopped_at_s <= SLACK_S
    assert link.end_reason is StopReason.BMS_TIMEOUT
    assert TIMEOUT_S <= ended_at_s - last_rx_s <= TIMEOUT_S + SLACK_S
    events = [e["event"] for e in logs]
    assert "mqtt_connection_lost" in events and events.count("bms_telemetry_timeout") == 1


def test_faults_of_the_other_transport_are_refused() -> None:
    node = BmsMqttNode(
        SimulatedBms(SPEC), endpoint=MqttEndpoint.from_url("mqtt://127.0.0.1:1"), station_id="X",
        clock=LoopClock(),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="does not exist on MQTT"):
        node.apply(Fault(FaultKind.TRUNCATED_TP))
    with pytest.raises(ConfigError, match="not 'BCL'"):
        node.apply(Fault(FaultKind.DROP, "BCL"))
