"""An idToken presented at the station: authorized online, cached, then charging offline on the cache (C01,
C10, C12), with the offline transaction delivered once the CSMS is back."""

from __future__ import annotations

import asyncio

from test_charging_session import SCALE, Run, charge, pack  # same directory

from bms_link.gbt import GbtTiming
from simulators.ev import SimulatedEv

SID = "CS-E2E"
CARD = {"idToken": "04A1B2C3D4", "type": "ISO14443"}
STRANGER = {"idToken": "0499887766", "type": "ISO14443"}


def ended(run: Run) -> list[dict]:
    return [e for e in run.tx_events() if e["eventType"] == "Ended"]


def test_a_cached_card_charges_offline_and_the_same_card_stops_it() -> None:
    async def tap_card(run: Run) -> None:
        run.agent.present_id_token(CARD)
        started = await run.csms.wait_for(SID, "TransactionEvent", lambda p: p["eventType"] == "Started")
        assert started.payload["triggerReason"] == "Authorized"
        assert "remoteStartId" not in started.payload["transactionInfo"]

    async def offline_session(run: Run) -> None:
        await asyncio.sleep(30)
        run.agent.present_id_token(CARD)  # the same card again: local stop
        await run.csms.wait_for(SID, "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=60)
        await run.csms.stop()
        run.agent.present_id_token(STRANGER)  # offline and never seen: not authorized
        await asyncio.sleep(5)
        assert run.agent.core.transaction(1) is None
        second = SimulatedEv(
            pack(soc=0.3, target_soc=0.9),
            interface="virtual",
            channel=run.agent.settings.bms.can_channel,
            clock=run.clock,
            timing=GbtTiming(period_scale=SCALE),
            poll_interval_s=None,
        )
        ev_task = asyncio.create_task(second.run())
        run.agent.present_id_token(CARD)  # offline, cached Accepted: LocalAuthorizeOffline starts it
        await asyncio.sleep(90)
        assert run.agent.core.transaction(1) is not None and run.links[-1].output_current_a > 0
        await run.csms.start()
        await run.csms.wait_connected(SID, timeout_s=300)  # after the reconnect back-off
        since = len(run.csms.received(SID))
        run.agent.present_id_token(CARD)
        await run.csms.wait_for(
            SID, "TransactionEvent", lambda p: p["eventType"] == "Ended", since=since, timeout_s=120
        )
        await asyncio.wait_for(ev_task, timeout=60)

    run = charge(pack(soc=0.2, target_soc=0.9), offline_session, start=tap_card)
    authorizes = run.csms.received(SID, "Authorize")
    assert len(authorizes) == 1  # online once; offline the cache answered
    starts = [e for e in run.tx_events() if e["eventType"] == "Started"]
    assert len(starts) == 2 and starts[1].get("offline") is True
    assert all(e["transactionInfo"]["stoppedReason"] == "Local" for e in ended(run))
    assert len(ended(run)) == 2
    second_tx = starts[1]["transactionInfo"]["transactionId"]
    second = [e for e in run.tx_events() if e["transactionInfo"]["transactionId"] == second_tx]
    assert [e["seqNo"] for e in second] == list(range(len(second)))
    assert second[-1]["eventType"] == "Ended" and not second[-1].get("offline")  # stopped once back online
