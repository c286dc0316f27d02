"""Ordered, durable outbound queue between the station core and the CSMS connection.

Contract (OCPP 2.0.1 E04/E12, B10; modelled on EVerest libocpp's message queue):
- transaction messages (TransactionEvent) are written to SQLite (WAL, synchronous=FULL: fsync on every
  commit) BEFORE `put` returns, delivered strictly in order across disconnects and restarts, and deleted
  only after the CSMS answered with a CallResult; those generated while offline carry `offline=true`;
- a CallError is retried `message_attempts` times, `attempt_interval_s × attempt` apart, then the message
  is dropped with an error log line (the CSMS refused it; retrying forever would block every later one);
- every other message is kept in memory only and dropped while offline (current status is re-sent on
  reconnect);
- the queue is capped at `max_messages`: beyond it the oldest periodic meter update (triggerReason
  MeterValuePeriodic) is dropped first; Started, Ended and state changes are never dropped;
- delivery is at-least-once: a message in flight when the process dies is sent again after restart
  (the CSMS recognises it by transactionId + seqNo).

The store also remembers the last TransactionEvent of every open transaction and the energy register, in
the same SQLite transaction as the message itself, so that after a power cut the agent can end the open
transaction with the next seqNo (`open_transactions()`) and the meter never runs backwards.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from chargeagent.clock import Clock
from chargeagent.errors import ProtocolError
from chargeagent.lean import LeanEvent
from chargeagent.sqlite_wal import connect_wal
from station.protocol.station import Outbound

log = structlog.get_logger(__name__)

Sender = Callable[[Outbound], Awaitable[dict[str, Any]]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL,
                                   payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS open_tx (transaction_id TEXT PRIMARY KEY, last_event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meter (id INTEGER PRIMARY KEY CHECK (id = 1), energy_wh REAL NOT NULL);
"""


@dataclass
class _Item:
    message: Outbound
    row_id: int | None  # None: not persisted (non-transactional)


def _energy_register_wh(payload: dict[str, Any]) -> float | None:
    for meter in payload.get("meterValue", []):
        for value in meter.get("sampledValue", []):
            if value.get("measurand") == "Energy.Active.Import.Register":
                return float(value["value"])
    return None


class Outbox:
    """FIFO of `Outbound` messages with the delivery contract in the module docstring.

    `path=None` keeps everything in memory (simulations that do not need power-cut safety).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        path: Path | None = None,
        message_attempts: int = 3,
        attempt_interval_s: float = 10.0,
        max_messages: int = 10_000,
    ) -> None:
        self._clock = clock
        self._queue: deque[_Item] = deque()
        self._wakeup = LeanEvent()
        self.online = False
        self.message_attempts = message_attempts
        self.attempt_interval_s = attempt_interval_s
        self.max_messages = max_messages
        self.sent = 0
        self.queued = 0  # messages accepted into the queue (metrics)
        self.dropped = 0
        self.retried = 0  # CallErrors answered by a retry (metrics)
        self._db: sqlite3.Connection | None = None
        self._energy_wh = 0.0
        self._open: dict[str, dict[str, Any]] = {}
        if path is not None:
            self._open_db(path)

    # --- persistence -------------------------------------------------------------------------
    def _open_db(self, path: Path) -> None:
        # Autocommit with explicit BEGIN/COMMIT below; the WAL is fsynced on every commit (power cuts).
        db = connect_wal(path, _SCHEMA, fsync_each_commit=True)
        for row_id, action, payload in db.execute("SELECT id, action, payload FROM outbox ORDER BY id"):
            self._queue.append(_Item(Outbound(action, json.loads(payload)), row_id))
        for tx_id, last in db.execute("SELECT transaction_id, last_event FROM open_tx"):
            self._open[tx_id] = json.loads(last)
        row = db.execute("SELECT energy_wh FROM meter WHERE id = 1").fetchone()
        self._energy_wh = float(row[0]) if row else 0.0
        self._db = db
        if self._queue:
            log.info("outbox_restored", messages=len(self._queue), open_transactions=len(self._open))

    def _persist(self, message: Outbound) -> int | None:
        """Write the message, the open-transaction record and the meter register in one commit."""
        payload = message.payload
        tx_id = payload["transactionInfo"]["transactionId"]
        if payload["eventType"] == "Ended":
            self._open.pop(tx_id, None)
        else:
            self._open[tx_id] = payload
        energy = _energy_register_wh(payload)
        if energy is not None:
            self._energy_wh = max(self._energy_wh, energy)
        db = self._db
        if db is None:
            return None
        db.execute("BEGIN IMMEDIATE")
        cursor = db.execute(
            "INSERT INTO outbox (action, payload) VALUES (?, ?)", (message.action, json.dumps(payload))
        )
        if payload["eventType"] == "Ended":
            db.execute("DELETE FROM open_tx WHERE transaction_id = ?", (tx_id,))
        else:
            db.execute("INSERT OR REPLACE INTO open_tx VALUES (?, ?)", (tx_id, json.dumps(payload)))
        db.execute("INSERT OR REPLACE INTO meter VALUES (1, ?)", (self._energy_wh,))
        db.execute("COMMIT")
        return cursor.lastrowid

    def _forget(self, item: _Item) -> None:
        if self._db is not None and item.row_id is not None:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (item.row_id,))

    def open_transactions(self) -> list[dict[str, Any]]:
        """The last TransactionEvent of every transaction not yet Ended (after a restart: to end them)."""
        return list(self._open.values())

    @property
    def energy_wh(self) -> float:
        """The highest energy register ever queued: the meter resumes from here after a restart."""
        return self._energy_wh

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- queue -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._queue)

    def put(self, messages: list[Outbound]) -> None:
        for message in messages:
            if message.transactional:
                queued = message
                if not self.online:
                    queued = Outbound(message.action, {**message.payload, "offline": True})
                self._queue.append(_Item(queued, self._persist(queued)))
                self.queued += 1
                self._enforce_cap()
            elif self.online:
                self._queue.append(_Item(message, None))
                self.queued += 1
            else:
                self.dropped += 1
                log.debug("outbox_dropped_offline", action=message.action)
        if self._queue:
            self._wakeup.set()

    def _enforce_cap(self) -> None:
        while len(self._queue) > self.max_messages:
            # Never the head (it may be in flight) and never Started/Ended/state changes.
            victim = next(
                (
                    item
                    for item in list(self._queue)[1:]
                    if item.message.payload.get("triggerReason") == "MeterValuePeriodic"
                ),
                None,
            )
            if victim is None:
                log.error("outbox_over_cap_nothing_droppable", messages=len(self._queue))
                return
            self._queue.remove(victim)
            self._forget(victim)
            self.dropped += 1
            log.warning("outbox_cap_dropped_meter_update", seq_no=victim.message.payload.get("seqNo"))

    async def deliver(self, send: Sender) -> None:
        """Deliver forever over one connection; returns only by raising (connection lost)."""
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._queue[0]
            delivered = await self._send_with_retries(send, item.message)
            if self._queue and self._queue[0] is item:
                self._queue.popleft()
            self._forget(item)
            if delivered:
                self.sent += 1

    async def _send_with_retries(self, send: Sender, message: Outbound) -> bool:
        attempt = 1
        while True:
            try:
                await send(message)
                return True
            except ProtocolError as exc:
                if not message.transactional or attempt >= self.message_attempts:
                    self.dropped += 1
                    log.error(
                        "outbox_message_dropped", action=message.action, attempts=attempt, error=str(exc)
                    )
                    return False
                log.warning("outbox_retry", action=message.action, attempt=attempt, error=str(exc))
                self.retried += 1
                await self._clock.sleep(self.attempt_interval_s * attempt)
                attempt += 1
