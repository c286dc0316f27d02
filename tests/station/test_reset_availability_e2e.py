"""Reset (B11/B12) and ChangeAvailability (G03/G04) over real loopback websockets, on virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_device_model_e2e import NEW_PASSWORD, PASSWORD, SID, running, status_of, virtual  # same directory

from chargeagent.clock import LoopClock
from simulators.csms import EmbeddedCsms


def test_reset_on_idle_restarts_the_session_and_applies_reboot_required_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESET_E2E_PASSWORD", PASSWORD)
    secure = {"security_profile": 1, "password_env": "RESET_E2E_PASSWORD"}

    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock, durable=True, ocpp=secure) as agent:
            sets = await csms.set_variables(SID, [("SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD)])
            assert status_of(sets) == ["RebootRequired"]
            csms.basic_auth = {SID: NEW_PASSWORD}  # the old password is refused from now on
            since = len(csms.received(SID))
            assert (await csms.call(SID, "Reset", {"type": "OnIdle"}))["status"] == "Accepted"
            boot = await csms.wait_for(SID, "BootNotification", since=since, timeout_s=60)
            assert boot.payload["reason"] == "RemoteReset"
            await agent.booted.wait()
            event = await csms.wait_for(
                SID, "SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot", since=since
            )
            assert "OnIdle" in event.payload["techInfo"]
            status = await csms.wait_for(SID, "StatusNotification", since=since, timeout_s=10)
            assert status.payload["connectorStatus"] == "Available"  # B01: every status after the boot
            assert SID in csms.connected_stations  # reconnected with the password the CSMS set
            single = await csms.call(SID, "Reset", {"type": "Immediate", "evseId": 1})
            assert single["status"] == "Rejected"

    virtual(scenario, basic_auth={SID: PASSWORD})


def test_change_availability_is_reported_and_survives_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock, durable=True):
            since = len(csms.received(SID))
            answer = await csms.call(SID, "ChangeAvailability", {"operationalStatus": "Inoperative"})
            assert answer["status"] == "Accepted"
            status = await csms.wait_for(SID, "StatusNotification", since=since, timeout_s=10)
            assert status.payload["connectorStatus"] == "Unavailable"
            start = await csms.request_start_transaction(SID, id_token="TAG-1", evse_id=1)
            assert start == "Rejected"  # nothing starts on an Inoperative station
            wrong = await csms.call(
                SID,
                "ChangeAvailability",
                {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 2}},
            )
            assert wrong["status"] == "Rejected"
        since = len(csms.received(SID))
        async with running(csms, clock, durable=True):  # a power cycle: the Inoperative status persisted
            status = await csms.wait_for(SID, "StatusNotification", since=since, timeout_s=10)
            assert status.payload["connectorStatus"] == "Unavailable"
            since = len(csms.received(SID))
            answer = await csms.call(
                SID, "ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}
            )
            assert answer["status"] == "Accepted"  # EVSE 1 was never Inoperative itself ...
            assert csms.received(SID, "StatusNotification")[-1].payload["connectorStatus"] == "Unavailable"
            await csms.call(SID, "ChangeAvailability", {"operationalStatus": "Operative"})
            status = await csms.wait_for(SID, "StatusNotification", since=since, timeout_s=10)
            assert status.payload["connectorStatus"] == "Available"  # ... the station was

    virtual(scenario)


def test_clear_cache_is_accepted_while_the_cache_is_enabled() -> None:
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock) as agent:
            agent.authorizer.remember({"idToken": "04AA", "type": "ISO14443"}, {"status": "Accepted"})
            assert (await csms.call(SID, "ClearCache", {}))["status"] == "Accepted"
            assert agent.authorizer.store.cache.entries == {}
            sets = await csms.set_variables(SID, [("AuthCacheCtrlr", "Enabled", "false")])
            assert status_of(sets) == ["Accepted"]
            assert (await csms.call(SID, "ClearCache", {}))["status"] == "Rejected"

    virtual(scenario)
