"""The vehicle BMS as an MQTT client: a `simulators.pack.SimulatedBms` speaking the `bms_link.mqtt_protocol`.

`BmsMqttNode(bms, endpoint=..., station_id=..., clock=...)`; `await node.run()` plays one charging
session: every `period_s` it steps the pack's physics with the current the charger last commanded (0 A
while the node is disconnected from the broker or has not been commanded), then publishes `info` until
the charger's first command arrives, `telemetry` afterwards, and `stop` once the pack wants to stop. It
returns after the BMS's stop was published or the charger's stop arrived; it reconnects with back-off if
the broker goes away. Cancel it to stop early, then `close()` is not needed (the client is a context).

Fault injection hooks (tests, demo): `go_silent()` stops all publishing (the physics keeps running),
`send_garbage()` publishes one non-JSON payload, `send_out_of_range()` publishes one telemetry with a
120 °C cell; `restore()` ends the silence.
"""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import structlog

from bms_link.models import ChargeCommand
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
from simulators.pack import SimulatedBms

log = structlog.get_logger(__name__)
GARBAGE_PAYLOAD = b"\x00not json{"
OUT_OF_RANGE_CELL_TEMP_C = 120.0  # above the models' 100 °C plausibility limit


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
        self.connections = 0
        self.published = 0

    # --- fault injection ---------------------------------------------------------------------

    def go_silent(self) -> None:
        self._silent = True

    def restore(self) -> None:
        self._silent = False

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
            client = self.endpoint.client(identifier=f"bms-{self.station_id}", keepalive_s=10)
            try:
                async with client:
                    await client.subscribe(command_topic(self.station_id), qos=QOS)
                    self._client = client
                    self.connections += 1
                    self._log.info("bms_mqtt_connected", connections=self.connections)
                    async for message in client.messages:
                        self._on_command(
                            bytes(message.payload) if isinstance(message.payload, bytes) else b""
                        )
            except aiomqtt.MqttError as exc:
                self._log.warning("bms_mqtt_connection_lost", error=str(exc))
            finally:
                self._client = None
            await self._clock.sleep(self.reconnect_s)

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
            stop = self.bms.stop_reason()
            if stop is not None and self._command is not None:
                if await self._publish(encode(StopMessage(reason=stop))):
                    self._stop_sent = True
                continue
            if self._command is None:
                await self._publish(encode(InfoMessage(info=self.bms.info())))
                continue
            body = TelemetryBody.of(self.bms.telemetry(now_s))
            while self._pending_faults:
                fault = self._pending_faults.pop(0)
                if fault == "garbage":
                    await self._publish(GARBAGE_PAYLOAD, fault=True)
                else:
                    await self._publish(_out_of_range(body), fault=True)
            await self._publish(encode(TelemetryMessage(telemetry=body)))

    async def _publish(self, payload: bytes, *, fault: bool = False) -> bool:
        client = self._client
        if client is None or (self._silent and not fault):
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
