"""Ordered outbound queue between the station core and the CSMS connection.

Contract (OCPP 2.0.1 E04/E12, modelled on EVerest libocpp's message queue):
- transaction messages (TransactionEvent) are kept until the CSMS answered them with a CallResult, delivered
  strictly in order, across disconnects; those generated while offline carry `offline=true`;
- if the CSMS answers a transaction message with a CallError it is retried `message_attempts` times with
  `attempt_interval_s × attempt` between tries, then dropped with an error log line;
- every other message is dropped while offline (the agent sends current status on reconnect).

This queue lives in memory: it survives network outages but not a process kill. Durable SQLite storage
(persist before send, kill -9 safe) is the outbox slice of issue #4.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from chargeagent.clock import Clock
from chargeagent.errors import ProtocolError
from station.protocol.station import Outbound

log = structlog.get_logger(__name__)

Sender = Callable[[Outbound], Awaitable[dict[str, Any]]]


class Outbox:
    """FIFO of `Outbound` messages with the delivery contract in the module docstring."""

    def __init__(self, clock: Clock, *, message_attempts: int = 3, attempt_interval_s: float = 10.0) -> None:
        self._clock = clock
        self._queue: deque[Outbound] = deque()
        self._wakeup = asyncio.Event()
        self.online = False
        self.message_attempts = message_attempts
        self.attempt_interval_s = attempt_interval_s
        self.sent = 0
        self.dropped = 0
        self.responses: list[tuple[Outbound, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, messages: list[Outbound]) -> None:
        for message in messages:
            if message.transactional:
                queued = message
                if not self.online:
                    queued = Outbound(message.action, {**message.payload, "offline": True})
                self._queue.append(queued)
            elif self.online:
                self._queue.append(message)
            else:
                self.dropped += 1
                log.debug("outbox_dropped_offline", action=message.action)
        if self._queue:
            self._wakeup.set()

    async def deliver(self, send: Sender) -> None:
        """Deliver forever over one connection; returns only by raising (connection lost)."""
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            message = self._queue[0]
            response = await self._send_with_retries(send, message)
            self._queue.popleft()
            if response is not None:
                self.sent += 1
                self.responses.append((message, response))
                del self.responses[:-100]  # keep the latest only; for inspection and tests

    async def _send_with_retries(self, send: Sender, message: Outbound) -> dict[str, Any] | None:
        attempt = 1
        while True:
            try:
                return await send(message)
            except ProtocolError as exc:
                if not message.transactional or attempt >= self.message_attempts:
                    self.dropped += 1
                    log.error(
                        "outbox_message_dropped", action=message.action, attempts=attempt, error=str(exc)
                    )
                    return None
                log.warning("outbox_retry", action=message.action, attempt=attempt, error=str(exc))
                await self._clock.sleep(self.attempt_interval_s * attempt)
                attempt += 1
