"""MQTT backend: `MqttBmsLink`, the asyncio shell (aiomqtt) around `bms_link.mqtt_protocol.MqttChargerCore`.

Wire protocol (topics, JSON payloads, handshake, garbage vs implausible data): see
`bms_link.mqtt_protocol` and the published schemas `config/schemas/bms_telemetry.schema.json` and
`config/schemas/bms_command.schema.json`.

The link owns one runner task holding a TaskGroup of two tasks, all cancelled by `close()`:
- `mqtt-connection`: connect (TLS for `mqtts://`, username/password from config; the password comes from
  the env var NAMED by `mqtt_password_env` and is never logged), subscribe to the telemetry topic, publish
  the retained `online` status (last will: retained `offline`), feed every message to the core. A lost
  broker is logged (`mqtt_connection_lost`) and retried with exponential back-off; while disconnected the
  output is 0 A (`output_current_a`) and the watchdog keeps running, so an outage longer than
  `telemetry_timeout_s` ends the session with `StopReason.BMS_TIMEOUT`.
- `mqtt-watchdog`: sleeps on the `Clock` until the core's deadline and ticks it (BMS timeout → 0 A
  command, stop message, log line `bms_telemetry_timeout`).
aiomqtt errors never leave this module: they become log lines (reconnect) or `BmsLinkError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiomqtt
import structlog

from bms_link.base import BmsLink
from bms_link.models import ChargeCommand, PackInfo, PackTelemetry, StopReason
from bms_link.mqtt_protocol import (
    OFFLINE,
    ONLINE,
    QOS,
    LinkPhase,
    MqttChargerCore,
    Output,
    Publish,
    Rejected,
    SessionEnded,
    SessionStarted,
    command_topic,
    status_topic,
    telemetry_topic,
)
from chargeagent import mqtt_connect
from chargeagent.clock import Clock
from chargeagent.config import BmsSettings
from chargeagent.errors import BmsLinkError

log = structlog.get_logger(__name__)
TELEMETRY_BUFFER = 64  # snapshots kept for a slow consumer; the oldest are dropped first


class MqttEndpoint(mqtt_connect.MqttEndpoint):
    """The shared broker endpoint (`chargeagent.mqtt_connect`), built from the `[bms]` settings."""

    config_section = "bms"

    @classmethod
    def from_settings(cls, bms: BmsSettings) -> MqttEndpoint:
        return cls.from_url(
            bms.mqtt_url,
            username=bms.mqtt_username,
            password_env=bms.mqtt_password_env,
            ca_file=bms.mqtt_ca_file,
        )


class MqttBmsLink(BmsLink):
    """Charger side of a BMS over MQTT (see the module docstring)."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        station_id: str,
        clock: Clock,
        telemetry_timeout_s: float = 2.0,
        info_timeout_s: float = 30.0,
        reconnect_min_s: float = 0.25,
        reconnect_max_s: float = 10.0,
        keepalive_s: int = 10,
    ) -> None:
        self.endpoint, self.station_id = endpoint, station_id
        self.core = MqttChargerCore(telemetry_timeout_s=telemetry_timeout_s, info_timeout_s=info_timeout_s)
        self._clock = clock
        self._reconnect_min_s, self._reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._keepalive_s = keepalive_s
        self._log = log.bind(station_id=station_id, broker=endpoint.url)
        self._runner: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._progress = asyncio.Event()
        self._rearm = asyncio.Event()
        self._sleeping_until_s: float | None = None
        self._telemetry: deque[PackTelemetry] = deque(maxlen=TELEMETRY_BUFFER)
        self._failure: BaseException | None = None
        self._closed = False
        self.connections = 0  # successful connects (1 + reconnects)
        self.rejected_payloads = 0

    @classmethod
    def from_settings(cls, bms: BmsSettings, *, station_id: str, clock: Clock) -> MqttBmsLink:
        return cls(
            MqttEndpoint.from_settings(bms),
            station_id=station_id,
            clock=clock,
            telemetry_timeout_s=bms.mqtt_telemetry_timeout_s,
        )

    # --- BmsLink -----------------------------------------------------------------------------

    async def start_session(self) -> PackInfo:
        self._ensure_running()
        self._telemetry.clear()
        self.core.start(self._clock.monotonic())
        self._rearm_watchdog()
        await self._until(lambda: self.core.phase is not LinkPhase.WAITING_INFO)
        if self.core.pack is None:
            raise BmsLinkError(f"MQTT BMS session did not start: {self.core.end_reason}")
        return self.core.pack

    async def telemetry(self) -> AsyncIterator[PackTelemetry]:
        while True:
            while self._telemetry:
                yield self._telemetry.popleft()
            if self.core.phase is not LinkPhase.CHARGING or self._failure is not None or self._closed:
                return
            self._progress.clear()
            await self._progress.wait()

    async def command(self, command: ChargeCommand) -> None:
        await self._handle(self.core.command(command))

    async def stop_session(self, reason: StopReason) -> None:
        await self._handle(self.core.stop(reason))

    @property
    def end_reason(self) -> StopReason | None:
        return self.core.end_reason

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def output_current_a(self) -> float:
        """What the power stage may deliver now: 0 A unless charging, connected and commanded."""
        if not self.connected or self.core.phase is not LinkPhase.CHARGING:
            return 0.0
        return self.core.output.output_current_a if self.core.output.charging_permitted else 0.0

    async def connect(self) -> None:
        """Start the connection (if not yet) and wait until the broker accepted us."""
        self._ensure_running()
        await self._until(self._connected.is_set)

    async def close(self) -> None:
        if self._closed:
            return
        await self._handle(self.core.stop(StopReason.LOCAL))  # closing mid-session: 0 A and tell the BMS
        client = self._client
        if client is not None:  # a clean goodbye; the will covers the unclean ones
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(
                    status_topic(self.station_id), OFFLINE, qos=QOS, retain=True, timeout=2.0
                )
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._progress.set()

    # --- plumbing ----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._failure is not None:
            raise BmsLinkError(f"MQTT link failed: {self._failure}") from self._failure
        if self._closed:
            raise BmsLinkError("MQTT link is closed")
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="mqtt-bms-link")

    async def _until(self, condition: Any) -> None:
        while not condition():
            if self._failure is not None:
                raise BmsLinkError(f"MQTT link failed: {self._failure}") from self._failure
            if self._closed:
                raise BmsLinkError("MQTT link is closed")
            self._progress.clear()
            await self._progress.wait()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection(), name="mqtt-connection")
                tg.create_task(self._watchdog(), name="mqtt-watchdog")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: fail the waiters instead of hanging them
            self._failure = exc
            self._log.error("mqtt_link_failed", error=repr(exc))
            self._progress.set()

    async def _connection(self) -> None:
        will = aiomqtt.Will(status_topic(self.station_id), OFFLINE, qos=QOS, retain=True)
        await mqtt_connect.stay_connected(
            lambda: self.endpoint.client(
                identifier=f"chargeagent-{self.station_id}", keepalive_s=self._keepalive_s, will=will
            ),
            self._session,
            connected=self._connected,
            clock=self._clock,
            log=self._log,
            event_prefix="mqtt",
            reconnect_min_s=self._reconnect_min_s,
            reconnect_max_s=self._reconnect_max_s,
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        try:
            await client.subscribe(telemetry_topic(self.station_id), qos=QOS)
            await client.publish(status_topic(self.station_id), ONLINE, qos=QOS, retain=True)
            self._client = client
            self._connected.set()
            self._progress.set()
            self.connections += 1
            self._log.info("mqtt_connected", connections=self.connections)
            async for message in client.messages:
                await self._on_message(message)
        finally:
            self._client = None

    async def _watchdog(self) -> None:
        while True:
            self._rearm.clear()
            deadline_s = self.core.next_deadline_s()
            now_s = self._clock.monotonic()
            if deadline_s is not None and now_s >= deadline_s:
                await self._handle(self.core.tick(now_s))
                continue
            self._sleeping_until_s = deadline_s
            # Sleep on the Clock until the deadline, unless it moves earlier (`_rearm`), e.g. from the
            # long info timeout to the short telemetry timeout when the session starts.
            rearmed = asyncio.ensure_future(self._rearm.wait())
            sleeper = (
                None if deadline_s is None else asyncio.ensure_future(self._clock.sleep(deadline_s - now_s))
            )
            waiting = {rearmed} if sleeper is None else {rearmed, sleeper}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for future in waiting:
                    future.cancel()

    def _rearm_watchdog(self) -> None:
        deadline_s, sleeping_until_s = self.core.next_deadline_s(), self._sleeping_until_s
        if deadline_s is not None and (sleeping_until_s is None or deadline_s < sleeping_until_s):
            self._rearm.set()

    async def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        await self._handle(self.core.on_payload(data, self._clock.monotonic()), topic=str(message.topic))

    async def _handle(self, outputs: Iterable[Output], topic: str = "") -> None:
        for out in outputs:
            if isinstance(out, Publish):
                await self._publish(out.payload)
            elif isinstance(out, PackTelemetry):
                self._telemetry.append(out)
            elif isinstance(out, Rejected):
                self.rejected_payloads += 1
                self._log.warning(
                    "mqtt_payload_rejected", topic=topic, reason=out.reason, implausible=out.implausible
                )
            elif isinstance(out, SessionStarted):
                self._log.info("mqtt_bms_session_started", battery=out.pack.battery_type, soc=out.pack.soc)
            elif isinstance(out, SessionEnded):
                if out.reason is StopReason.BMS_TIMEOUT:
                    self._log.warning("bms_telemetry_timeout", reason=out.reason.value, detail=out.detail)
                else:
                    self._log.info("mqtt_bms_session_ended", reason=out.reason.value, detail=out.detail)
        self._rearm_watchdog()
        self._progress.set()

    async def _publish(self, payload: bytes) -> None:
        client = self._client
        if client is None:
            self._log.warning(
                "mqtt_publish_dropped", reason="not connected", topic=command_topic(self.station_id)
            )
            return
        try:
            await client.publish(
                command_topic(self.station_id), payload, qos=QOS, timeout=self.core.telemetry_timeout_s
            )
        except aiomqtt.MqttError as exc:  # the connection task notices and reconnects
            self._log.warning("mqtt_publish_dropped", reason=str(exc), topic=command_topic(self.station_id))
