"""Telemetry-to-command latency of the BMS link, CAN and MQTT, against raw baselines in the same run.

    .venv/bin/python bench/bench_bms_latency.py [--seconds 20]

Real time, real asyncio loop, one process. Rows:
1. raw python-can `virtual` bus: one 8-byte frame sent, received by the other bus (the baseline for CAN);
2. raw aiomqtt through a local mosquitto: publish, then receive it on a subscription (the MQTT baseline);
3. the agent over CAN: from the moment a BMS telemetry snapshot arrived at the charger (the link stamps
   `monotonic_s` on arrival) to the agent's `command()` for that step: decode, safety envelope, charge
   curve, meter and OCPP bookkeeping;
4. the agent over MQTT: the same agent-side span, and end to end from the BMS node publishing telemetry
   to the node receiving the command it caused (two trips through the broker plus the agent).
The issue's targets: p99 ≤ 5 ms over CAN on the virtual bus, ≤ 20 ms over MQTT via loopback mosquitto.
Needs mosquitto (scripts/mosquitto.sh). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import can
import numpy as np

from bms_link.base import BmsLink
from bms_link.gbt import GbtTiming
from bms_link.models import ChargeCommand
from bms_link.mqtt import MqttEndpoint
from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.logs import configure_logging
from simulators.csms import EmbeddedCsms
from simulators.ev import SimulatedEv, SimulatedMqttEv, can_link_factory, mqtt_link_factory
from simulators.pack import PackSpec
from station.agent import StationAgent

SPEC = PackSpec("nmc", 150.0, 0.95, 96, 0.30, 0.8, 25.0, 25.0, 200.0)


def _ms(samples: list[float]) -> tuple[float, float, int]:
    values = np.asarray(samples) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99)), values.size


def raw_can(n: int = 2000) -> list[float]:
    with (
        can.Bus(interface="virtual", channel="latency-raw") as tx,
        can.Bus(interface="virtual", channel="latency-raw") as rx,
    ):
        frame = can.Message(arbitration_id=0x1812F456, data=bytes(8), is_extended_id=True)
        out = []
        for _ in range(n):
            began = time.perf_counter()
            tx.send(frame)
            rx.recv(timeout=1.0)
            out.append(time.perf_counter() - began)
        return out


async def raw_mqtt(port: int, n: int = 500) -> list[float]:
    out = []
    async with (
        aiomqtt.Client("127.0.0.1", port, identifier="lat-pub") as pub,
        aiomqtt.Client("127.0.0.1", port, identifier="lat-sub") as sub,
    ):
        await sub.subscribe("latency/raw", qos=1)
        await asyncio.sleep(0.2)
        for _ in range(n):
            began = time.perf_counter()
            await pub.publish("latency/raw", b"{}", qos=1)
            await anext(aiter(sub.messages))
            out.append(time.perf_counter() - began)
    return out


class _TimedLink:
    """Wraps the charger-side link: per command, the time since the telemetry that caused it arrived."""

    def __init__(self, link: BmsLink, clock: LoopClock, spans: list[float]) -> None:
        self.link, self.clock, self.spans = link, clock, spans
        self._arrived: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    async def telemetry(self) -> Any:
        async for sample in self.link.telemetry():
            self._arrived = sample.monotonic_s
            yield sample

    async def command(self, command: ChargeCommand) -> None:
        if self._arrived is not None:
            self.spans.append(self.clock.monotonic() - self._arrived)
            self._arrived = None
        await self.link.command(command)


async def agent_run(transport: str, port: int, seconds: float) -> tuple[list[float], list[float]]:
    clock = LoopClock()
    spans: list[float] = []
    e2e: list[float] = []
    sid = f"LAT-{transport.upper()}"
    url = f"mqtt://127.0.0.1:{port}"
    async with EmbeddedCsms(clock=clock) as csms:
        bms: dict[str, Any] = {"backend": transport, "mqtt_url": url}
        if transport == "can":
            bms.update(can_interface="virtual", can_channel="latency-agent")
        settings = load_settings(
            overrides={"station": {"id": sid}, "ocpp": {"csms_url": csms.url}, "bms": bms}
        )
        factory: Callable[[], BmsLink]
        if transport == "can":
            inner = can_link_factory(settings, clock)
            ev: Any = SimulatedEv(
                SPEC,
                interface="virtual",
                channel="latency-agent",
                clock=clock,
                timing=GbtTiming(),
                poll_interval_s=0.001,
            )
        else:
            inner = mqtt_link_factory(settings, clock)
            ev = SimulatedMqttEv(SPEC, endpoint=MqttEndpoint.from_url(url), station_id=sid, clock=clock)
            ev.node.period_s = 0.05  # as often as GB/T's BCL: 20 telemetry messages per second
            _time_mqtt_round_trip(ev, clock, e2e)

        def factory() -> BmsLink:
            return _TimedLink(inner(), clock, spans)  # type: ignore[return-value]

        agent = StationAgent(settings, clock=clock, bms_factory=factory)
        async with asyncio.TaskGroup() as tg:
            agent_task = tg.create_task(agent.run())
            await agent.booted.wait()
            ev_task = tg.create_task(ev.run())
            agent.plug_in()
            await csms.request_start_transaction(sid, id_token="LAT", evse_id=1)
            await asyncio.sleep(seconds)
            ev_task.cancel()
            agent_task.cancel()
    return spans[20:], e2e[20:]  # without the session's first steps (handshake, first plan)


def _time_mqtt_round_trip(ev: Any, clock: LoopClock, out: list[float]) -> None:
    """End to end over MQTT: node publishes telemetry -> agent -> the node receives the command."""
    node = ev.node
    published: list[float] = []
    original_publish, original_command = node._publish, node._on_command

    async def publish(*args: Any, **kwargs: Any) -> Any:
        published.append(clock.monotonic())
        return await original_publish(*args, **kwargs)

    def on_command(payload: bytes) -> None:
        if published:
            out.append(clock.monotonic() - published[-1])
            published.clear()
        original_command(payload)

    node._publish, node._on_command = publish, on_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    configure_logging("console", "warning")
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise SystemExit("mosquitto not found: bash scripts/mosquitto.sh")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        # set_tcp_nodelay: the broker's side of the Nagle fix (chargeagent/mqtt_connect.py has the clients')
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
            "set_tcp_nodelay true\n"
        )
        broker = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            rows = [("raw python-can virtual bus: send -> recv", _ms(raw_can()))]
            rows.append(("raw aiomqtt via mosquitto: publish -> receive", _ms(asyncio.run(raw_mqtt(port)))))
            can_spans, _ = asyncio.run(agent_run("can", port, args.seconds))
            rows.append(("agent over CAN: telemetry arrived -> command", _ms(can_spans)))
            mqtt_spans, mqtt_e2e = asyncio.run(agent_run("mqtt", port, args.seconds))
            rows.append(("agent over MQTT: telemetry arrived -> command", _ms(mqtt_spans)))
            rows.append(("MQTT end to end: BMS publish -> BMS gets command", _ms(mqtt_e2e)))
        finally:
            broker.terminate()
            broker.wait()
    print(f"\n{'path':<52} {'p50 ms':>8} {'p99 ms':>8} {'samples':>8}")
    for name, (p50, p99, n) in rows:
        print(f"{name:<52} {p50:>8.3f} {p99:>8.3f} {n:>8}")


if __name__ == "__main__":
    main()
