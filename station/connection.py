"""Websocket connection to the CSMS: connect with the OCPP subprotocol, reconnect forever with back-off.

Back-off follows OCPP 2.0.1 B10 / OCPPCommCtrlr.RetryBackOff*: wait the minimum, double it each attempt up
to a maximum, plus a random 0..RetryBackOffRandomRange seconds so a fleet does not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from chargeagent.clock import Clock
from chargeagent.config import OcppSettings
from chargeagent.errors import ProtocolError

log = structlog.get_logger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
_CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, ProtocolError)


def backoff_s(attempt: int, settings: OcppSettings, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (0-based)."""
    base: float = min(settings.reconnect_min_s * (2**attempt), settings.reconnect_max_s)
    return base + rng.uniform(0.0, settings.reconnect_random_s)


async def connect_forever(
    station_id: str,
    settings: OcppSettings,
    clock: Clock,
    on_connected: Callable[[ClientConnection], Awaitable[None]],
    *,
    rng: random.Random | None = None,
) -> None:
    """Keep a connection up and run `on_connected` on each one; never returns unless cancelled."""
    rng = rng or random.Random()
    url = f"{settings.csms_url}/{station_id}"
    attempt = 0
    while True:
        try:
            async with connect(
                url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                open_timeout=settings.response_timeout_s,
                ping_interval=None,  # liveness comes from OCPP heartbeats in this slice
                max_size=2**20,
            ) as ws:
                if ws.subprotocol != SUBPROTOCOL:
                    raise ProtocolError(
                        f"CSMS did not accept subprotocol {SUBPROTOCOL} (got {ws.subprotocol})"
                    )
                log.info("csms_connected", url=url)
                attempt = 0
                try:
                    await on_connected(ws)
                except asyncio.CancelledError:
                    await ws.close(1001, "station shutting down")  # RFC 6455 1001 'going away'
                    raise
        except (*_CONNECTION_ERRORS, InvalidHandshake) as exc:
            log.warning("csms_connection_failed", url=url, error=f"{type(exc).__name__}: {exc}")
        except ExceptionGroup as group:  # from the session's TaskGroup
            connection_errors = group.split(_CONNECTION_ERRORS)[0]
            if connection_errors is None:
                raise
            first = connection_errors.exceptions[0]
            log.warning("csms_connection_lost", url=url, error=f"{type(first).__name__}: {first}")
        delay = backoff_s(attempt, settings, rng)
        attempt += 1
        log.info("csms_reconnect_wait", delay_s=round(delay, 2), attempt=attempt)
        await clock.sleep(delay)
