"""The vehicle BMS as an MQTT client: a `simulators.pack.SimulatedBms` speaking the `bms_link.mqtt_protocol`.

`BmsMqttNode(bms, endpoint=..., station_id=..., clock=...)`; `await node.run()` plays one charging
session: every `period_s` it steps the pack's physics with the current the charger last commanded (0 A
while the node is disconnected from the broker or has not been commanded), then publishes `info` until
the charger's first command arrives, `telemetry` afterwards, and `stop` once the pack wants to stop. It
returns after the BMS's stop was published or the charger's stop arrived; it reconnects with back-off if
the broker goes away. Cancel it to stop early, then `close()` is not needed (the client is a context).

Fault injection (tests, demo), see `simulators.faults`: `apply(Fault)` on command, or
`schedule=FaultSchedule(...)` (seconds after the charger's first command, checked every period).
Shortcuts: `go_silent()` stops all publishing (the physics keeps running), `send_garbage()` publishes one
non-JSON payload, `send_out_of_range()` one telemetry with a 120 °C cell, `disconnect()` leaves the
broker (and stays away); `restore()` ends silence, drops and the disconnect. `injected` lists what was
applied and when (node clock).
"""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import structlog

from bms_link.models import BmsFault, ChargeCommand
from bms_link.mqtt import MqttEndpoint
from bms_link.mqtt_protocol import (
    QOS,
    CommandMessage,
    InfoMessage,
    Rejected,
    StopMessage,
    TelemetryBody,
    TelemetryMessage,
    command_topic,
    encode,
    parse_charger_message,
    telemetry_topic,
)
from chargeagent.clock import Clock
from chargeagent.errors import ConfigError
from simulators.faults import OUT_OF_RANGE_CELL_TEMP_C, Fault, FaultKind, FaultSchedule
from simulators.pack import SimulatedBms

log = structlog.get_logger(__name__)
GARBAGE_PAYLOAD = b"\x00not json{"
MESSAGE_KINDS = ("info", "telemetry", "stop")  # what `drop` can suppress


class BmsMqttNode:
    """A simulated vehicle BMS on an MQTT broker (see the module docstring)."""

    def __init__(
        self,
        bms: SimulatedBms,
        *,
        endpoint: MqttEndpoint,
        station_id: str,
        clock: Clock,
        period_s: float = 0.25,
        reconnect_s: float = 0.25,
        schedule: FaultSchedule | None = None,
    ) -> None:
        self.bms, self.endpoint, self.station_id = bms, endpoint, station_id
        self.period_s, self.reconnect_s = period_s, reconnect_s
        self._clock = clock
        self._log = log.bind(station_id=station_id, node="bms")
        self._client: aiomqtt.Client | None = None
        self._command: ChargeCommand | None = None
        self._charger_stopped = False
        self._stop_sent = False
        self._silent = False
        self._pending_faults: list[str] = []
        self._dropped: set[str] = set()
        self._online = asyncio.Event()
        self._online.set()
        self._session: asyncio.Task[None] | None = None
        self.schedule = schedule or FaultSchedule()
        self.injected: list[tuple[float, Fault]] = []
        self.charging_since_s: float | None = None
        self.connections = 0
        self.published = 0

    # --- fault injection ---------------------------------------------------------------------

    def go_silent(self) -> None:
        self._silent = True

    def restore(self) -> None:
        self._silent = False
        self._dropped.clear()
        self._online.set()

    def drop(self, kind: str) -> None:
        """Stop publishing one message kind (`info`, `telemetry` or `stop`)."""
        if kind.lower() not in MESSAGE_KINDS:
            raise ConfigError(f"MQTT BMS messages are {', '.join(MESSAGE_KINDS)}, not {kind!r}")
        self._dropped.add(kind.lower())

    def disconnect(self) -> None:
        """Leave the broker now and stay away until `restore()` (the charger's watchdog should fire)."""
        self._online.clear()
        if self._session is not None:
            self._session.cancel()

    def apply(self, fault: Fault) -> None:
        """Carry out `fault` now (table in `simulators.faults`); a CAN-only fault is a `ConfigError`."""
        kind = fault.kind
        actions = {
            FaultKind.SILENT: self.go_silent,
            FaultKind.OUT_OF_RANGE: self.send_out_of_range,
            FaultKind.CORRUPT: self.send_garbage,
            FaultKind.BROKER_DISCONNECT: self.disconnect,
            FaultKind.RESTORE: self.restore,
        }
        if kind is FaultKind.DROP:
            self.drop(fault.message or "")
        elif kind in (FaultKind.OVERTEMPERATURE, FaultKind.INSULATION):
            self.bms.inject_fault(BmsFault(kind.value))
        elif kind in actions:
            actions[kind]()
        else:
            raise ConfigError(f"fault {fault} does not exist on MQTT")
        now_s = self._clock.monotonic()
        self.injected.append((now_s, fault))
        self._log.warning("bms_sim_fault_injected", fault=str(fault), at_s=round(now_s, 3))

    def send_garbage(self) -> None:
        self._pending_faults.append("garbage")

    def send_out_of_range(self) -> None:
        self._pending_faults.append("out_of_range")

    # --- state -------------------------------------------------------------------------------

    @property
    def commanded_current_a(self) -> float:
        """What the charger delivers into the pack now (0 A when not connected or not permitted)."""
        cmd = self._command
        if self._client is None or cmd is None or not cmd.charging_permitted or self._charger_stopped:
            return 0.0
        return cmd.output_current_a

    @property
    def done(self) -> bool:
        return self._stop_sent or self._charger_stopped

    # --- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Play one session (see the module docstring)."""
        async with asyncio.TaskGroup() as tg:
            connection = tg.create_task(self._connection(), name="bms-mqtt-connection")
            try:
                await self._publisher()
            finally:
                connection.cancel()

    async def _connection(self) -> None:
        while True:
            await self._online.wait()
            async with asyncio.TaskGroup() as tg:  # one task per connection: `disconnect()` cancels it
                self._session = tg.create_task(self._connect_once(), name="bms-mqtt-session")
            self._session = None
            if self._online.is_set():
                await self._clock.sleep(self.reconnect_s)

    async def _connect_once(self) -> None:
        client = self.endpoint.client(identifier=f"bms-{self.station_id}", keepalive_s=10)
        try:
            async with client:
                await client.subscribe(command_topic(self.station_id), qos=QOS)
                self._client = client
                self.connections += 1
                self._log.info("bms_mqtt_connected", connections=self.connections)
                async for message in client.messages:
                    self._on_command(bytes(message.payload) if isinstance(message.payload, bytes) else b"")
        except aiomqtt.MqttError as exc:
            self._log.warning("bms_mqtt_connection_lost", error=str(exc))
        finally:
            self._client = None

    def _on_command(self, payload: bytes) -> None:
        message = parse_charger_message(payload)
        if isinstance(message, Rejected):
            self._log.warning(
                "mqtt_payload_rejected", topic=command_topic(self.station_id), reason=message.reason
            )
        elif isinstance(message, CommandMessage):
            self._command = message.command
        else:
            self._log.info("bms_mqtt_charger_stop", reason=message.reason.value)
            self._charger_stopped = True

    async def _publisher(self) -> None:
        last_s = self._clock.monotonic()
        while not self.done:
            await self._clock.sleep(self.period_s)
            now_s = self._clock.monotonic()
            self.bms.step(self.commanded_current_a, now_s - last_s)
            last_s = now_s
            if self.done:
                break
            self._apply_scheduled(now_s)
            stop = self.bms.stop_reason()
            if stop is not None and self._command is not None:
                if await self._publish(encode(StopMessage(reason=stop)), kind="stop"):
                    self._stop_sent = True
                continue
            if self._command is None:
                await self._publish(encode(InfoMessage(info=self.bms.info())), kind="info")
                continue
            body = TelemetryBody.of(self.bms.telemetry(now_s))
            while self._pending_faults:
                fault = self._pending_faults.pop(0)
                if fault == "garbage":
                    await self._publish(GARBAGE_PAYLOAD, fault=True)
                else:
                    await self._publish(_out_of_range(body), fault=True)
            await self._publish(encode(TelemetryMessage(telemetry=body)), kind="telemetry")

    def _apply_scheduled(self, now_s: float) -> None:
        if self.charging_since_s is None:
            if self._command is None:
                return
            self.charging_since_s = now_s
        for fault in self.schedule.due(now_s - self.charging_since_s):
            self.apply(fault)

    async def _publish(self, payload: bytes, *, fault: bool = False, kind: str = "") -> bool:
        client = self._client
        if client is None or (not fault and (self._silent or kind in self._dropped)):
            return False
        try:
            await client.publish(telemetry_topic(self.station_id), payload, qos=QOS, timeout=2.0)
        except aiomqtt.MqttError as exc:
            self._log.warning("bms_mqtt_publish_failed", error=str(exc))
            return False
        self.published += 1
        return True

    async def close(self) -> None:
        """Nothing to release outside `run()` (its client is a context); symmetric with `BmsCanNode`."""


def _out_of_range(body: TelemetryBody) -> bytes:
    """A telemetry message of the right shape whose hottest cell reads an impossible 120 °C."""
    data = json.loads(encode(TelemetryMessage(telemetry=body)))
    data["telemetry"]["cell_temp_max_c"] = OUT_OF_RANGE_CELL_TEMP_C
    return json.dumps(data).encode()
