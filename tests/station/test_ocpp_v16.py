"""OCPP 1.6J on the wire against the embedded CSMS's 1.6 side: subprotocol negotiation, boot and status,
a remote-started transaction over CAN with MeterValues against the CSMS's integer transactionId, a 1.6
SetChargingProfile that caps the current, GetCompositeSchedule, and a remote stop (issue #4 item 6)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.vtime import run_virtual
from simulators.csms import EmbeddedCsms
from station.agent import StationAgent
from tests.e2e.test_charging_session import Run, charge, pack
from tests.station.test_cli import start_station
from tests.station.test_device_model_e2e import SID, _no_bms, running

SID_E2E = "CS-E2E"
CAP_A = 60.0


def _connect(csms_versions: tuple[str, ...], station_versions: list[str]) -> tuple[list[str], list[str]]:
    """(the CSMS's journal of actions, the payload keys of the BootNotification) after one boot."""

    async def main() -> tuple[list[str], list[str]]:
        clock = LoopClock(epoch=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
        async with (
            EmbeddedCsms(clock=clock, versions=csms_versions) as csms,
            running(csms, clock, ocpp={"versions": station_versions}),
        ):
            await csms.wait_for(SID, "StatusNotification", timeout_s=10)
            await csms.wait_for(SID, "SecurityEventNotification", timeout_s=10)  # StartupOfTheDevice
            boot = csms.received(SID, "BootNotification")[0]
            return [r.action for r in csms.received(SID)], sorted(boot.payload)

    return run_virtual(main())


def test_the_csms_choice_decides_the_version() -> None:
    actions, boot = _connect(("ocpp1.6",), ["ocpp2.0.1", "ocpp1.6"])
    assert boot == ["chargePointModel", "chargePointSerialNumber", "chargePointVendor", "firmwareVersion"]
    assert "SecurityEventNotification" in actions  # 1.6 security whitepaper: the startup event goes out
    actions, boot = _connect(("ocpp2.0.1", "ocpp1.6"), ["ocpp2.0.1", "ocpp1.6"])
    assert boot == ["chargingStation", "reason"]  # both offered, the CSMS prefers 2.0.1


def test_a_station_offering_only_2_0_1_is_not_served_by_a_1_6_only_csms() -> None:
    async def main() -> None:
        clock = LoopClock()
        async with EmbeddedCsms(clock=clock, versions=("ocpp1.6",)) as csms:
            settings = load_settings(
                overrides={"station": {"id": SID}, "ocpp": {"csms_url": csms.url, "versions": ["ocpp2.0.1"]}}
            )
            agent = StationAgent(settings, clock=clock, bms_factory=_no_bms)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(2)
            assert not agent.booted.is_set() and csms.received(SID) == []
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_1_6_transaction_remote_started_metered_capped_and_remote_stopped() -> None:
    seen: dict[str, object] = {}

    async def start(run: Run) -> None:
        answer = await run.csms.call(SID_E2E, "RemoteStartTransaction", {"idTag": "TAG-16", "connectorId": 1})
        assert answer == {"status": "Accepted"}

    async def operate(run: Run) -> None:
        started = await run.csms.wait_for(SID_E2E, "StartTransaction", timeout_s=120)
        assert started.payload["idTag"] == "TAG-16" and started.payload["connectorId"] == 1
        meter = await run.csms.wait_for(SID_E2E, "MeterValues", timeout_s=120)
        seen["tx_id"] = meter.payload["transactionId"]
        await asyncio.sleep(60)
        profile = {
            "chargingProfileId": 7,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-03-01T00:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": CAP_A}],
            },
        }
        answer = await run.csms.call(
            SID_E2E, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}
        )
        assert answer == {"status": "Accepted"}
        seen["capped_at"] = run.clock.monotonic()
        composite = await run.csms.call(SID_E2E, "GetCompositeSchedule", {"connectorId": 1, "duration": 600})
        seen["composite"] = composite
        await asyncio.sleep(60)
        assert await run.csms.call(SID_E2E, "ClearChargingProfile", {"id": 99}) == {"status": "Unknown"}
        assert await run.csms.call(SID_E2E, "ClearChargingProfile", {"id": 7}) == {"status": "Accepted"}
        assert run.agent.core.profiles.installed() == []
        assert await run.csms.call(SID_E2E, "RemoteStopTransaction", {"transactionId": 999_999}) == {
            "status": "Rejected"
        }
        answer = await run.csms.call(SID_E2E, "RemoteStopTransaction", {"transactionId": seen["tx_id"]})
        assert answer == {"status": "Accepted"}

    async def stopped(run: Run) -> None:
        seen["stop"] = (await run.csms.wait_for(SID_E2E, "StopTransaction", timeout_s=600)).payload
        await run.csms.wait_for(
            SID_E2E, "StatusNotification", lambda p: p["status"] == "Finishing", timeout_s=30
        )

    run = charge(pack(soc=0.2, target_soc=0.9), operate, start=start, until=stopped, versions=("ocpp1.6",))
    stop = seen["stop"]
    assert isinstance(stop, dict) and stop["transactionId"] == seen["tx_id"] and stop["reason"] == "Remote"
    assert stop["meterStop"] > 100  # Wh: it really charged
    assert all(m.payload["transactionId"] == seen["tx_id"] for m in run.csms.received(SID_E2E, "MeterValues"))
    assert run.csms.received(SID_E2E, "TransactionEvent") == []  # nothing 2.0.1 on a 1.6 connection
    statuses = [r.payload["status"] for r in run.csms.received(SID_E2E, "StatusNotification")]
    assert statuses[0] == "Available"  # booted; then the cable, the charge and its end
    assert "Charging" in statuses and statuses.index("Charging") < statuses.index("Finishing")
    capped = [s for s in run.steps if s.t_s > float(seen["capped_at"]) + 1.0]  # type: ignore[arg-type]
    assert capped and max(s.current_a for s in capped) <= CAP_A + 1e-9
    composite = seen["composite"]
    assert isinstance(composite, dict) and composite["status"] == "Accepted"
    assert composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] <= CAP_A


async def test_kill_9_mid_transaction_then_stop_transaction_carries_the_csms_id(tmp_path) -> None:
    """A power cut under 1.6: after the restart the open transaction ends with StopTransaction, reason
    PowerLoss, and the integer id the CSMS gave it before the kill (persisted next to the outbox)."""
    async with EmbeddedCsms(versions=("ocpp1.6",)) as csms:
        proc = await start_station(csms.url, "CLI-16", tmp_path)
        try:
            await csms.wait_for(
                "CLI-16", "StatusNotification", lambda p: p["status"] == "Preparing", timeout_s=30
            )
            answer = await csms.call("CLI-16", "RemoteStartTransaction", {"idTag": "OP-16", "connectorId": 1})
            assert answer == {"status": "Accepted"}
            meter = await csms.wait_for("CLI-16", "MeterValues", timeout_s=30)
            tx_id = meter.payload["transactionId"]
        finally:
            proc.kill()  # power cut
            await proc.wait()
        restarted = await start_station(csms.url, "CLI-16", tmp_path)
        try:
            stop = await csms.wait_for("CLI-16", "StopTransaction", timeout_s=30)
        finally:
            restarted.send_signal(signal.SIGTERM)
            await asyncio.wait_for(restarted.communicate(), timeout=30)
    assert stop.payload["transactionId"] == tx_id and stop.payload["reason"] == "PowerLoss"
    assert stop.payload["meterStop"] >= int(meter.payload["meterValue"][0]["sampledValue"][0]["value"]) - 1
    assert len(csms.received("CLI-16", "StartTransaction")) == 1  # the restart did not start it again


def test_1_6_configuration_keys_read_and_change_the_device_model() -> None:
    async def main() -> None:
        clock = LoopClock(epoch=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
        async with (
            EmbeddedCsms(clock=clock, versions=("ocpp1.6",)) as csms,
            running(csms, clock, ocpp={"versions": ["ocpp1.6"]}) as agent,
        ):
            got = await csms.call(SID, "GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]})
            assert got["configurationKey"] == [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
            ]
            assert got["unknownKey"] == ["Nope"]
            assert await csms.call(
                SID, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "20"}
            ) == {"status": "Accepted"}
            assert await csms.call(
                SID, "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"}
            ) == {"status": "Rejected"}
            assert await csms.call(SID, "ChangeConfiguration", {"key": "Nope", "value": "1"}) == {
                "status": "NotSupported"
            }
            since = len(csms.received(SID))
            began = clock.monotonic()
            await csms.wait_for(SID, "Heartbeat", since=since, timeout_s=60)
            assert clock.monotonic() - began <= 21.0  # the new interval drives the heartbeat
            assert agent.core.heartbeat_interval_s == 20.0

    run_virtual(main())


def test_1_6_remote_trigger_availability_unlock_and_reset() -> None:
    async def main() -> None:
        clock = LoopClock(epoch=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
        async with (
            EmbeddedCsms(clock=clock, versions=("ocpp1.6",)) as csms,
            running(csms, clock, ocpp={"versions": ["ocpp1.6"]}),
        ):
            await csms.wait_for(SID, "StatusNotification", timeout_s=10)
            since = len(csms.received(SID))
            trigger = {"requestedMessage": "Heartbeat"}
            assert await csms.call(SID, "TriggerMessage", trigger) == {"status": "Accepted"}
            await csms.wait_for(SID, "Heartbeat", since=since, timeout_s=10)
            unlock = await csms.call(SID, "UnlockConnector", {"connectorId": 1})
            assert unlock == {"status": "Unlocked"}
            assert await csms.call(SID, "UnlockConnector", {"connectorId": 9}) == {"status": "NotSupported"}
            change = {"connectorId": 1, "type": "Inoperative"}
            assert await csms.call(SID, "ChangeAvailability", change) == {"status": "Accepted"}
            await csms.wait_for(
                SID, "StatusNotification", lambda p: p["status"] == "Unavailable", timeout_s=10
            )
            assert await csms.call(SID, "Reset", {"type": "Soft"}) == {"status": "Accepted"}
            await csms.wait_for(SID, "BootNotification", since=since, timeout_s=30)  # booted again
            vendor = await csms.call(SID, "DataTransfer", {"vendorId": "com.example"})
            assert vendor == {"status": "UnknownVendorId"}
            assert len(csms.received(SID, "BootNotification")) == 2

    run_virtual(main())
