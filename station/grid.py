"""Upstream grid reporting: publish the site load forecast over MQTT (`chargeagent/{site_id}/forecast`).

Contract (DESIGN.md "Upstream forecast message", docs/forecast.md "Upstream over MQTT"):
- The payload is `policy.forecast.forecast_message()` as JSON, validated against
  `config/schemas/forecast.schema.json` before it is sent; a message that fails is logged
  (`forecast_message_invalid`) and never sent.
- QoS 1, retain=true: the broker keeps the latest forecast, so a late subscriber gets it at once.
- When: `PublishRule` (sans-I/O) says publish the first forecast, any forecast whose p50 energy over the
  horizon moved by more than `change_threshold` (fraction) from the last published one, and otherwise
  re-publish at least every `interval_s`.
- Broker loss: `ForecastPublisher` reconnects with exponential back-off and, once connected again, publishes
  the latest forecast again (a restarted broker without persistence has lost the retained copy).
- The password comes from the env var named in `[grid] mqtt_password_env` and never reaches a log line.
aiomqtt errors never leave this module: they become log lines (reconnect) or `UpstreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import aiomqtt
import jsonschema  # type: ignore[import-untyped]  # no stubs in the venv; ocpp depends on it
import structlog

from chargeagent.clock import Clock
from chargeagent.config import GridSettings, config_dir
from chargeagent.errors import ChargeAgentError
from chargeagent.mqtt_connect import MqttEndpoint, stay_connected

log = structlog.get_logger(__name__)
QOS = 1  # at least once: a forecast is idempotent, a duplicate costs nothing


class UpstreamError(ChargeAgentError):
    """The upstream broker could not be reached or did not acknowledge a publish."""


class GridEndpoint(MqttEndpoint):
    """The broker endpoint from the `[grid]` settings (errors name `grid.mqtt_url` etc.)."""

    config_section = "grid"

    @classmethod
    def from_settings(cls, grid: GridSettings) -> GridEndpoint:
        return cls.from_url(
            grid.mqtt_url,
            username=grid.mqtt_username,
            password_env=grid.mqtt_password_env,
            ca_file=grid.mqtt_ca_file,
        )


def forecast_topic(site_id: str) -> str:
    return f"chargeagent/{site_id}/forecast"  # DESIGN.md


@cache
def _validator() -> Any:
    """The schema's own draft validator (2020-12), built once."""
    schema = json.loads((config_dir() / "schemas" / "forecast.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(message: dict[str, Any]) -> str | None:
    """None if `message` matches config/schemas/forecast.schema.json, else the first problem in one line."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(message))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"[:300]


def p50_energy_kwh(message: dict[str, Any]) -> float:
    """Median energy over the horizon: sum of p50 kW × interval length."""
    hours = float(message["interval_minutes"]) / 60.0
    return sum(float(interval["p50"]) for interval in message["intervals"]) * hours


@dataclass
class PublishRule:
    """When to publish (sans-I/O): first time, on significant change, or when the schedule is due.

    `reason()` is pure; call `published()` once the broker acknowledged, so a failed send is retried.
    """

    interval_s: float
    change_threshold: float  # fraction of the last published p50 energy
    last_published_s: float | None = None
    last_energy_kwh: float | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0 or not self.change_threshold > 0:
            raise ValueError("interval_s and change_threshold must be > 0")

    def changed(self, energy_kwh: float) -> bool:
        last = self.last_energy_kwh
        if last is None:
            return True
        if last <= 0.0:
            return energy_kwh > 0.0  # from nothing to something is an unbounded relative change
        return abs(energy_kwh - last) / last > self.change_threshold

    def reason(self, now_s: float, energy_kwh: float) -> str | None:
        """'first', 'change', 'schedule' or None (nothing to publish)."""
        if self.last_published_s is None:
            return "first"
        if self.changed(energy_kwh):
            return "change"
        if now_s - self.last_published_s >= self.interval_s:
            return "schedule"
        return None

    def published(self, now_s: float, energy_kwh: float) -> None:
        self.last_published_s, self.last_energy_kwh = now_s, energy_kwh

    def next_due_s(self) -> float | None:
        """When the schedule next asks for a publish (None before the first one)."""
        return None if self.last_published_s is None else self.last_published_s + self.interval_s


def encode(message: dict[str, Any]) -> bytes | None:
    """The wire payload, or None (and one log line) when the message does not match the schema."""
    problem = schema_problem(message)
    if problem is not None:
        log.warning("forecast_message_invalid", site_id=message.get("site_id"), problem=problem)
        return None
    return json.dumps(message, separators=(",", ":")).encode()


async def publish_once(endpoint: MqttEndpoint, message: dict[str, Any], *, timeout_s: float = 10.0) -> None:
    """Connect, publish one forecast (QoS 1, retained), disconnect. `UpstreamError` if it did not get through;
    `ChargeAgentError` if the message fails the schema (nothing is sent)."""
    payload = encode(message)
    if payload is None:
        raise ChargeAgentError(f"forecast message does not match the schema: {schema_problem(message)}")
    topic = forecast_topic(str(message["site_id"]))
    client = endpoint.client(identifier=f"chargeagent-forecast-{message['site_id']}", keepalive_s=30)
    try:
        async with asyncio.timeout(timeout_s), client:
            await client.publish(topic, payload, qos=QOS, retain=True, timeout=timeout_s)
    except (aiomqtt.MqttError, TimeoutError) as exc:
        raise UpstreamError(f"MQTT broker {endpoint.url}: {exc or 'timed out'}") from None
    log.info("forecast_published", topic=topic, broker=endpoint.url, bytes=len(payload), reason="once")


class ForecastPublisher:
    """Keeps a connection to the broker and publishes forecasts per `PublishRule` (module docstring).

    Use as `async with ForecastPublisher(...) as pub: pub.submit(message)`. One runner task (named
    `grid-forecast-publisher`) owns the connection; leaving the context cancels it.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        site_id: str,
        clock: Clock,
        interval_s: float = 900.0,
        change_threshold: float = 0.1,
        reconnect_min_s: float = 0.25,
        reconnect_max_s: float = 30.0,
        keepalive_s: int = 30,
    ) -> None:
        self.endpoint, self.site_id, self.topic = endpoint, site_id, forecast_topic(site_id)
        self.rule = PublishRule(interval_s, change_threshold)
        self._clock = clock
        self._reconnect_min_s, self._reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._keepalive_s = keepalive_s
        self._log = log.bind(site_id=site_id, broker=endpoint.url)
        self._latest: tuple[bytes, float] | None = None  # (payload, p50 energy) of the newest valid forecast
        self._dirty = False  # `_latest` still has to go out
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.connections = 0  # successful connects (1 + reconnects)
        self.published = 0  # acknowledged publishes
        self.rejected = 0  # messages that failed the schema

    @classmethod
    def from_settings(cls, grid: GridSettings, *, clock: Clock) -> ForecastPublisher:
        return cls(
            GridEndpoint.from_settings(grid),
            site_id=grid.site_id,
            clock=clock,
            interval_s=grid.publish_interval_s,
            change_threshold=grid.change_threshold,
        )

    async def __aenter__(self) -> ForecastPublisher:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="grid-forecast-publisher")
        return self

    async def __aexit__(self, *_: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def submit(self, message: dict[str, Any]) -> bool:
        """Offer a new forecast; True if it will be published (first, changed, or schedule due)."""
        if message.get("site_id") != self.site_id:
            self.rejected += 1
            self._log.warning("forecast_message_invalid", problem=f"site_id {message.get('site_id')!r}")
            return False
        payload = encode(message)
        if payload is None:
            self.rejected += 1
            return False
        energy_kwh = p50_energy_kwh(message)
        self._latest = (payload, energy_kwh)
        reason = self.rule.reason(self._clock.monotonic(), energy_kwh)
        if reason is None:
            return False
        self._log.info("forecast_publish_due", reason=reason, p50_energy_kwh=round(energy_kwh, 1))
        self._dirty = True
        self._wake.set()
        return True

    async def _run(self) -> None:
        identifier = f"chargeagent-grid-{self.site_id}"
        await stay_connected(
            lambda: self.endpoint.client(identifier=identifier, keepalive_s=self._keepalive_s),
            self._publish_loop,
            connected=self._connected,
            clock=self._clock,
            log=self._log,
            event_prefix="grid_mqtt",
            reconnect_min_s=self._reconnect_min_s,
            reconnect_max_s=self._reconnect_max_s,
        )

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        self._connected.set()
        self.connections += 1
        self._log.info("grid_mqtt_connected", connections=self.connections)
        if self.connections > 1 and self._latest is not None:
            self._dirty = True  # the broker may have lost the retained copy
        while True:
            self._wake.clear()
            latest = self._latest
            if latest is not None and (self._dirty or self._schedule_due()):
                payload, energy_kwh = latest
                self._dirty = False
                try:
                    await client.publish(self.topic, payload, qos=QOS, retain=True, timeout=10.0)
                except aiomqtt.MqttError:
                    self._dirty = True  # send it again after the reconnect
                    raise
                self.rule.published(self._clock.monotonic(), energy_kwh)
                self.published += 1
                self._log.info("forecast_published", topic=self.topic, bytes=len(payload))
                continue
            await self._wait_for_work(client)

    def _schedule_due(self) -> bool:
        due_s = self.rule.next_due_s()
        return due_s is not None and self._clock.monotonic() >= due_s

    async def _wait_for_work(self, client: aiomqtt.Client) -> None:
        """Until a submit, the schedule, or the connection drops (the reader raises MqttError)."""
        due_s = self.rule.next_due_s()
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(_drain(client)),
        }
        if due_s is not None:
            waiters.add(asyncio.ensure_future(self._clock.sleep(max(0.0, due_s - self._clock.monotonic()))))
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waiters:
                future.cancel()
        for future in done:
            future.result()  # re-raise a lost connection


async def _drain(client: aiomqtt.Client) -> None:
    """Read (and ignore) incoming messages: this is where aiomqtt reports a lost connection."""
    async for _ in client.messages:
        pass
