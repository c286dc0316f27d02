"""Outbox contract: order, offline flag, drop of non-transactional messages offline, retries on CallError."""

import asyncio
from datetime import UTC, datetime

import pytest

from chargeagent.clock import LoopClock
from chargeagent.errors import ProtocolError
from chargeagent.vtime import run_virtual
from station.outbox import Outbox
from station.protocol.station import Outbound


def tx(seq):
    return Outbound("TransactionEvent", {"seqNo": seq})


def status():
    return Outbound("StatusNotification", {"connectorStatus": "Available"})


def deliver_all(outbox, send, n):
    """Run delivery until `n` messages were attempted to the end, on virtual time."""

    async def main():
        task = asyncio.create_task(outbox.deliver(send))
        while outbox.sent + outbox.dropped < n:
            await asyncio.sleep(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(main())


def test_transaction_messages_queued_offline_are_flagged_offline_and_delivered_in_order():
    outbox = Outbox(LoopClock(datetime(2026, 1, 1, tzinfo=UTC)))
    outbox.put([tx(0), status(), tx(1)])
    assert len(outbox) == 2  # the status notification was dropped: current status is sent on reconnect
    outbox.online = True
    outbox.put([tx(2)])
    sent = []

    async def send(message):
        sent.append(message.payload)
        return {}

    deliver_all(outbox, send, 3)
    assert [p["seqNo"] for p in sent] == [0, 1, 2]
    assert [p.get("offline", False) for p in sent] == [True, True, False]


def test_a_transaction_message_rejected_by_the_csms_is_retried_then_dropped():
    outbox = Outbox(LoopClock(), message_attempts=3, attempt_interval_s=10)
    outbox.online = True
    outbox.put([tx(0), tx(1)])
    attempts = []

    async def send(message):
        attempts.append((message.payload["seqNo"], asyncio.get_running_loop().time()))
        if message.payload["seqNo"] == 0:
            raise ProtocolError("CallError InternalError")
        return {}

    deliver_all(outbox, send, 2)
    seq0 = [t for s, t in attempts if s == 0]
    assert len(seq0) == 3
    assert seq0[1] - seq0[0] == pytest.approx(10) and seq0[2] - seq0[1] == pytest.approx(20)
    assert [s for s, _ in attempts][-1] == 1  # the next message still goes out, in order
    assert outbox.dropped == 1 and outbox.sent == 1
