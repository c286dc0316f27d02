"""Outbox contract: order, offline flag, persistence across restarts, cap policy, retries on CallError."""

import asyncio
from datetime import UTC, datetime

import pytest
from ocpp.messages import Call, _validate_payload

from chargeagent.clock import LoopClock
from chargeagent.errors import ProtocolError
from chargeagent.vtime import run_virtual
from station.outbox import Outbox
from station.protocol.station import Outbound, StationCore

CLOCK = LoopClock(datetime(2026, 1, 1, tzinfo=UTC))


def tx(seq, event_type="Updated", trigger="MeterValuePeriodic", tx_id="tx-1", energy_wh=None):
    payload = {
        "eventType": event_type,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx_id},
    }
    if energy_wh is not None:
        payload["meterValue"] = [
            {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "sampledValue": [{"value": energy_wh, "measurand": "Energy.Active.Import.Register"}],
            }
        ]
    return Outbound("TransactionEvent", payload)


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


def recorder():
    sent = []

    async def send(message):
        sent.append(message.payload)
        return {}

    return sent, send


def test_transaction_messages_queued_offline_are_flagged_offline_and_delivered_in_order():
    outbox = Outbox(CLOCK)
    outbox.put([tx(0, "Started", "RemoteStart"), status(), tx(1)])
    assert len(outbox) == 2  # the status notification was dropped: current status is sent on reconnect
    outbox.online = True
    outbox.put([tx(2)])
    sent, send = recorder()
    deliver_all(outbox, send, 3)
    assert [p["seqNo"] for p in sent] == [0, 1, 2]
    assert [p.get("offline", False) for p in sent] == [True, True, False]


def test_queued_transaction_messages_survive_a_restart_in_order(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(CLOCK, path=path)
    first.put([tx(0, "Started", "RemoteStart"), tx(1, energy_wh=1500.0), tx(2, energy_wh=2500.0)])
    first.close()  # as good as kill -9: every put was committed (fsync) before it returned

    second = Outbox(CLOCK, path=path)
    assert len(second) == 3
    assert second.energy_wh == 2500.0
    assert [e["seqNo"] for e in second.open_transactions()] == [2]
    second.online = True
    sent, send = recorder()
    deliver_all(second, send, 3)
    second.close()
    assert [p["seqNo"] for p in sent] == [0, 1, 2]

    third = Outbox(CLOCK, path=path)  # delivered messages are gone for good
    assert len(third) == 0
    third.close()


def test_ended_transactions_are_no_longer_open_and_interrupted_ones_end_with_power_loss(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(CLOCK, path=path)
    outbox.put([tx(0, "Started", "RemoteStart", tx_id="a"), tx(1, "Ended", "EVDeparted", tx_id="a")])
    outbox.put([tx(0, "Started", "RemoteStart", tx_id="b"), tx(1, tx_id="b", energy_wh=4200.0)])
    outbox.close()
    (last,) = Outbox(CLOCK, path=path).open_transactions()
    ended = StationCore.end_interrupted_transaction(last, datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert ended.payload["seqNo"] == 2
    assert ended.payload["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended.payload["meterValue"][0]["sampledValue"][0]["value"] == 4200.0
    _validate_payload(Call(unique_id="1", action="TransactionEvent", payload=ended.payload), "2.0.1")


def test_over_the_cap_periodic_meter_updates_go_first_and_start_end_never():
    outbox = Outbox(CLOCK, max_messages=3)
    outbox.put([tx(0, "Started", "RemoteStart"), tx(1), tx(2), tx(3, trigger="ChargingStateChanged")])
    outbox.put([tx(4, "Ended", "EVDeparted")])
    kept = [item.message.payload["seqNo"] for item in outbox._queue]
    assert kept == [0, 3, 4]
    assert outbox.dropped == 2


def test_a_transaction_message_rejected_by_the_csms_is_retried_then_dropped():
    outbox = Outbox(LoopClock(), message_attempts=3, attempt_interval_s=10)
    outbox.online = True
    outbox.put([tx(0, "Started", "RemoteStart"), tx(1)])
    attempts = []

    async def send(message):
        attempts.append((message.payload["seqNo"], asyncio.get_running_loop().time()))
        if message.payload["seqNo"] == 0:
            raise ProtocolError("CallError InternalError")
        return {}

    deliver_all(outbox, send, 2)
    seq0 = [t for s, t in attempts if s == 0]
    assert len(seq0) == 3
    assert seq0[1] - seq0[0] == pytest.approx(10)
    assert seq0[2] - seq0[1] == pytest.approx(20)
    assert [s for s, _ in attempts][-1] == 1  # the next message still goes out, in order
    assert outbox.dropped == 1
    assert outbox.sent == 1
