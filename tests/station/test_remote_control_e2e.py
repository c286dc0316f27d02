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


def test_get_charging_profiles_reports_every_installed_profile_after_the_response() -> None:
    profile = {
        "id": 5,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 1,
                "startSchedule": "2026-03-01T00:00:00.000Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 80.0}],
            }
        ],
    }

    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock):
            assert await csms.set_charging_profile(SID, evse_id=1, profile=profile) == "Accepted"
            since = len(csms.received(SID))
            answer = await csms.call(SID, "GetChargingProfiles", {"requestId": 7, "chargingProfile": {}})
            assert answer["status"] == "Accepted"
            report = await csms.wait_for(SID, "ReportChargingProfiles", since=since, timeout_s=10)
            assert report.payload["requestId"] == 7 and report.payload["tbc"] is False
            assert [p["id"] for p in report.payload["chargingProfile"]] == [5]
            none = await csms.call(
                SID,
                "GetChargingProfiles",
                {"requestId": 8, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}},
            )
            assert none["status"] == "NoProfiles"

    virtual(scenario)
