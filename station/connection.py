"""Websocket connection to the CSMS: connect with the OCPP subprotocol, reconnect forever with back-off.

Back-off follows OCPP 2.0.1 B10 / OCPPCommCtrlr.RetryBackOff*: wait the minimum, double it each attempt up
to a maximum, plus a random 0..RetryBackOffRandomRange seconds so a fleet does not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

from chargeagent.clock import Clock
from chargeagent.config import OcppSettings
from chargeagent.errors import ConfigError, ProtocolError

log = structlog.get_logger(__name__)

_CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, ProtocolError)


@dataclass(frozen=True)
class ConnectOptions:
    """What a security profile adds to the websocket handshake (built once, at start)."""

    ssl_context: ssl.SSLContext | None
    headers: dict[str, str]  # never logged: carries the Basic auth credentials


def connect_options(station_id: str, settings: OcppSettings) -> ConnectOptions:
    """Build TLS and Basic auth for the configured security profile; `ConfigError` names the bad key.

    OCPP 2.0.1 part 2 A00: profile 1 = Basic auth over ws://; 2 = TLS (server verified against the CSMS
    root certificate) + Basic auth; 3 = mutual TLS, no Basic auth. TLS 1.2 is the minimum (A00.FR.3xx).
    Basic auth user = station identity, password 16–40 characters (SecurityCtrlr.BasicAuthPassword).
    """
    profile = settings.security_profile
    headers: dict[str, str] = {}
    if profile in (1, 2):
        env = settings.password_env or ""
        password = os.environ.get(env)
        if password is None:
            raise ConfigError(f"ocpp.password_env: environment variable {env} is not set")
        if not 16 <= len(password) <= 40:
            raise ConfigError(f"ocpp.password_env: the password in {env} must be 16-40 characters")
        headers["Authorization"] = basic_auth_header(station_id, password)
    context: ssl.SSLContext | None = None
    if profile in (2, 3) or settings.csms_url.startswith("wss://"):
        try:
            context = ssl.create_default_context(cafile=settings.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if profile == 3 and settings.cert_file is not None:
                context.load_cert_chain(settings.cert_file, settings.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ocpp.ca_file/cert_file/key_file: cannot load TLS material: {exc}") from None
    return ConnectOptions(context, headers)


def basic_auth_header(station_id: str, password: str) -> str:
    """RFC 7617 Basic credentials; OCPP 2.0.1 A00: the user name is the station identity."""
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


def security_event_for(exc: BaseException) -> str | None:
    """The OCPP 2.0.1 security event (part 2, appendix 'Security events') a failed connection means."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "InvalidCsmsCertificate"
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
        return "FailedToAuthenticateAtCsms"
    return None


@dataclass(frozen=True)
class BackOff:
    """OCPPCommCtrlr.RetryBackOff*: wait the minimum, doubled `repeat_times` times, then keep that delay."""

    wait_minimum_s: float
    repeat_times: int
    random_range_s: float
    maximum_s: float = math.inf  # the configured reconnect_max_s until a CSMS sets the back-off variables

    @classmethod
    def from_settings(cls, settings: OcppSettings) -> BackOff:
        low, high = settings.reconnect_min_s, settings.reconnect_max_s
        repeat_times = max(0, math.ceil(math.log2(high / low))) if high > low else 0
        return cls(low, repeat_times, settings.reconnect_random_s, high)


# One generator for every connection in the process: a Mersenne Twister is 2.5 KiB of state, which a
# simulated fleet of thousands of agents would otherwise hold once per station for a few random draws.
_JITTER = random.Random()


def backoff_s(attempt: int, settings: OcppSettings | BackOff, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (0-based)."""
    p = settings if isinstance(settings, BackOff) else BackOff.from_settings(settings)
    base: float = min(p.wait_minimum_s * (2 ** min(attempt, p.repeat_times)), p.maximum_s)
    return base + rng.uniform(0.0, p.random_range_s)


async def connect_forever(
    station_id: str,
    settings: OcppSettings,
    clock: Clock,
    on_connected: Callable[[ClientConnection], Awaitable[None]],
    *,
    rng: random.Random | None = None,
    options: ConnectOptions | None = None,
    on_security_event: Callable[[str, str], None] | None = None,
    backoff: Callable[[], BackOff] | None = None,
) -> None:
    """Keep a connection up and run `on_connected` on each one; never returns unless cancelled.

    `backoff` gives the current back-off parameters before each wait (the device model may change them).
    """
    rng = rng or _JITTER
    options = options or connect_options(station_id, settings)
    url = f"{settings.csms_url}/{station_id}"
    attempt = 0
    while True:
        try:
            async with connect(
                url,
                subprotocols=list(settings.versions),  # type: ignore[arg-type]  # the CSMS picks one
                open_timeout=settings.response_timeout_s,
                # Liveness (OCPPCommCtrlr.WebSocketPingInterval): a CSMS that stops answering pings within
                # the interval is treated as gone, and we reconnect instead of waiting on a dead TCP link.
                ping_interval=settings.websocket_ping_interval_s or None,
                ping_timeout=settings.websocket_ping_interval_s or None,
                close_timeout=2.0,  # a dead link must not hold the reconnect for websockets' default 10 s
                max_size=2**20,
                compression="deflate" if settings.websocket_compression else None,
                additional_headers=options.headers,
                ssl=options.ssl_context,
            ) as ws:
                if ws.subprotocol not in settings.versions:
                    raise ProtocolError(
                        f"CSMS accepted none of the subprotocols {settings.versions} (got {ws.subprotocol})"
                    )
                log.info("csms_connected", url=url, ocpp_version=ws.subprotocol)
                # websockets keeps the handshake (both header sets, ~3 KiB, the Basic auth credentials
                # among them) for inspection only; nothing reads it from here on, and a fleet simulation
                # holds thousands of connections (bench/README.md, the footprint diet). The response
                # object stays: websockets tells the handshake from later frames by it being set.
                ws.request = None
                if ws.response is not None:
                    ws.response.headers.clear()
                attempt = 0
                try:
                    await on_connected(ws)
                except asyncio.CancelledError:
                    await ws.close(1001, "station shutting down")  # RFC 6455 1001 'going away'
                    raise
        except (*_CONNECTION_ERRORS, InvalidHandshake) as exc:
            log.warning("csms_connection_failed", url=url, error=f"{type(exc).__name__}: {exc}")
            event = security_event_for(exc)
            if event is not None and on_security_event is not None:
                on_security_event(event, f"{type(exc).__name__}: {exc}"[:255])
        except ExceptionGroup as group:  # from the session's TaskGroup
            connection_errors = group.split(_CONNECTION_ERRORS)[0]
            if connection_errors is None:
                raise
            first = connection_errors.exceptions[0]
            log.warning("csms_connection_lost", url=url, error=f"{type(first).__name__}: {first}")
        delay = backoff_s(attempt, backoff() if backoff is not None else settings, rng)
        attempt += 1
        log.info("csms_reconnect_wait", delay_s=round(delay, 2), attempt=attempt)
        await clock.sleep(delay)
