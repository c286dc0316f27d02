"""TriggerMessage, UnlockConnector and DataTransfer from the embedded CSMS over real loopback websockets."""

from __future__ import annotations

import asyncio

from test_device_model_e2e import SID, running, virtual  # same directory (pytest prepend import mode)

from chargeagent.clock import LoopClock
from simulators.csms import EmbeddedCsms


def test_csms_triggers_messages_and_gets_polite_answers() -> None:
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock):
            since = len(csms.received(SID))
            assert await csms.trigger_message(SID, "Heartbeat") == "Accepted"
            await csms.wait_for(SID, "Heartbeat", since=since, timeout_s=10)
            assert await csms.trigger_message(SID, "StatusNotification", evse_id=1) == "Accepted"
            status = await csms.wait_for(SID, "StatusNotification", since=since, timeout_s=10)
            assert status.payload["evseId"] == 1 and status.payload["connectorStatus"] == "Available"
            assert await csms.trigger_message(SID, "BootNotification") == "Rejected"  # already accepted
            assert await csms.trigger_message(SID, "MeterValues") == "Rejected"  # nothing measured yet
            assert await csms.trigger_message(SID, "LogStatusNotification") == "NotImplemented"
            unlock = await csms.call(SID, "UnlockConnector", {"evseId": 1, "connectorId": 1})
            assert unlock["status"] == "Unlocked"
            unknown = await csms.call(SID, "UnlockConnector", {"evseId": 7, "connectorId": 1})
            assert unknown["status"] == "UnknownConnector"
            vendor = await csms.call(
                SID, "DataTransfer", {"vendorId": "com.example.unknown", "messageId": "x"}
            )
            assert vendor["status"] == "UnknownVendorId"
            await asyncio.sleep(1)
            assert len(csms.received(SID, "BootNotification")) == 1  # the rejected trigger sent nothing

    virtual(scenario)
