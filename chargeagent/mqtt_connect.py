"""MQTT broker endpoint shared by every aiomqtt user (BMS link, upstream grid reporting): URL, auth, TLS.

`MqttEndpoint.from_url` reads `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`; the password comes from the
environment variable NAMED in the config (never from a file) and stays out of repr and logs.
`config_section` names the config section in error messages (`bms.mqtt_url: ...`, `grid.mqtt_url: ...`).
`stay_connected` is the one reconnect loop (exponential back-off) every long-lived client runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import urlsplit

import aiomqtt

from chargeagent.clock import Clock
from chargeagent.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}  # IANA registrations for MQTT and MQTT over TLS


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to connect to the broker (built from config; the password is never in repr/logs)."""

    config_section: ClassVar[str] = "mqtt"

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password_env: str | None = None,
        ca_file: Path | None = None,
    ) -> Self:
        section = cls.config_section
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(
                f"{section}.mqtt_url: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}"
            )
        password: str | None = None
        if password_env:
            password = os.environ.get(password_env)
            if password is None:
                raise ConfigError(
                    f"{section}.mqtt_password_env: environment variable {password_env} is not set"
                )
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ConfigError(f"{section}.mqtt_url: {exc}") from None
        return cls(parts.hostname, port, parts.scheme == "mqtts", username, password, ca_file)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def client(
        self, *, identifier: str, keepalive_s: int, will: aiomqtt.Will | None = None
    ) -> aiomqtt.Client:
        tls = (
            aiomqtt.TLSParameters(ca_certs=str(self.ca_file) if self.ca_file else None) if self.tls else None
        )
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            will=will,
            keepalive=keepalive_s,
            tls_params=tls,
            timeout=10.0,
            # Telemetry and commands are small messages answered by small messages: with Nagle's algorithm
            # a write waits for the ACK of the previous one, which the peer delays (~40 ms on Linux), so
            # every hop took ~37 ms (bench/bench_bms_latency.py). Send at once.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )


async def stay_connected(
    client_factory: Callable[[], aiomqtt.Client],
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    *,
    connected: asyncio.Event,
    clock: Clock,
    log: Any,  # a structlog bound logger
    event_prefix: str,
    reconnect_min_s: float,
    reconnect_max_s: float,
) -> NoReturn:
    """Connect, run `session(client)` (which sets `connected` once its setup is done), reconnect forever.

    A lost connection retries after `reconnect_min_s`; failed connects double the wait up to
    `reconnect_max_s`. Broker errors become one log line each (`<prefix>_connection_lost` /
    `<prefix>_connect_failed`); `connected` is cleared whenever the connection is gone.
    """
    backoff_s = reconnect_min_s
    while True:
        client = client_factory()
        try:
            async with client:
                await session(client)
        except aiomqtt.MqttError as exc:
            was_connected = connected.is_set()
            if was_connected:
                backoff_s = reconnect_min_s
            event = f"{event_prefix}_connection_lost" if was_connected else f"{event_prefix}_connect_failed"
            log.warning(event, error=str(exc), retry_in_s=backoff_s)
        finally:
            connected.clear()
        await clock.sleep(backoff_s)
        backoff_s = min(backoff_s * 2.0, reconnect_max_s)
