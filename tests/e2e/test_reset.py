"""Reset Immediate in the middle of a charge: 0 A, Ended(ImmediateReset), then a new boot (B11)."""

from __future__ import annotations

import asyncio

from test_charging_session import Run, charge, pack  # same directory

SID = "CS-E2E"


def test_immediate_reset_stops_the_charge_ends_the_transaction_and_boots_again() -> None:
    async def reset_after_a_minute(run: Run) -> None:
        await asyncio.sleep(60)
        assert run.links[0].output_current_a > 50
        since = len(run.csms.received(SID))
        answer = await run.csms.call(SID, "Reset", {"type": "Immediate"})
        assert answer["status"] == "Accepted"
        boot = await run.csms.wait_for(SID, "BootNotification", since=since, timeout_s=120)
        assert boot.payload["reason"] == "RemoteReset"
        await run.agent.booted.wait()
        # the station is back and takes a new transaction
        assert await run.csms.request_start_transaction(SID, id_token="TAG-2", evse_id=1) == "Accepted"

    run = charge(pack(soc=0.2, target_soc=0.9), reset_after_a_minute)
    received = run.csms.received(SID)
    actions = [r.action for r in received]
    ended_at = next(
        i
        for i, r in enumerate(received)
        if r.action == "TransactionEvent" and r.payload["eventType"] == "Ended"
    )
    ended = received[ended_at].payload
    assert ended["triggerReason"] == "ResetCommand"
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert run.links[0].output_current_a == 0.0
    assert actions.count("BootNotification") == 2
    assert ended_at < max(
        i for i, a in enumerate(actions) if a == "BootNotification"
    )  # sent before the reboot
    assert run.results[0].reason.value == "immediate_reset"
