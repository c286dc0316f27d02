"""The device model over real loopback websockets against the embedded CSMS, on virtual time.

GetVariables/SetVariables round trips, HeartbeatInterval driving the heartbeat, GetBaseReport paged into
NotifyReport, values surviving an agent restart, and a BasicAuthPassword that never leaves the station.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.vtime import run_virtual
from simulators.csms import EmbeddedCsms
from station.agent import StationAgent, default_outbox_path

SID = "CS-DM1"
PASSWORD = "first-password-0123456789"  # 25 characters
NEW_PASSWORD = "rotated-by-the-csms-0123456789"  # 30 characters


def _no_bms() -> Any:
    raise AssertionError("no charging session in these tests")


@asynccontextmanager
async def running(csms: EmbeddedCsms, clock: LoopClock, **overrides: Any) -> AsyncIterator[StationAgent]:
    """A booted agent connected to `csms`; cancelled (as on SIGTERM) when the block ends."""
    ocpp = {"csms_url": csms.url, "reconnect_min_s": 1, "reconnect_random_s": 0, **overrides.pop("ocpp", {})}
    durable = overrides.pop("durable", False)
    station = {"id": SID, **overrides.pop("station", {})}
    settings = load_settings(overrides={"station": station, "ocpp": ocpp, **overrides})  # e.g. api={...}
    outbox_path = default_outbox_path(settings) if durable else None
    agent = StationAgent(settings, clock=clock, bms_factory=_no_bms, outbox_path=outbox_path)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.booted.wait(), timeout=30)
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def virtual(
    scenario: Callable[[EmbeddedCsms, LoopClock], Awaitable[None]], **csms_kwargs: Any
) -> EmbeddedCsms:
    async def main() -> EmbeddedCsms:
        clock = LoopClock(epoch=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
        async with EmbeddedCsms(clock=clock, **csms_kwargs) as csms:
            await scenario(csms, clock)
        assert csms.internal_errors == []
        return csms

    return run_virtual(main())


def status_of(results: list[dict[str, Any]]) -> list[str]:
    return [r["attributeStatus"] for r in results]


def test_get_and_set_variables_round_trip_with_every_status():
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock):
            sets = await csms.set_variables(
                SID,
                [
                    ("SampledDataCtrlr", "TxUpdatedInterval", "45"),
                    ("OCPPCommCtrlr", "OfflineThreshold", "abc"),
                    ("SecurityCtrlr", "SecurityProfile", "3"),
                    ("NoSuchCtrlr", "X", "1"),
                    ("OCPPCommCtrlr", "NoSuchVariable", "1"),
                ],
            )
            assert status_of(sets) == [
                "Accepted",
                "Rejected",
                "Rejected",
                "UnknownComponent",
                "UnknownVariable",
            ]
            assert sets[1]["attributeStatusInfo"]["reasonCode"] == "InvalidValue"
            gets = await csms.get_variables(
                SID, [("SampledDataCtrlr", "TxUpdatedInterval"), ("ChargingStation", "VendorName")]
            )
            assert [(g["attributeStatus"], g.get("attributeValue")) for g in gets] == [
                ("Accepted", "45"),
                ("Accepted", "chargeagent"),
            ]
            too_many = await csms.get_variables(SID, [("OCPPCommCtrlr", "HeartbeatInterval")] * 51)
            assert status_of(too_many) == ["Accepted"] * 50 + ["Rejected"]  # ItemsPerMessage 50 (B06.FR.05)

    virtual(scenario)


def test_set_heartbeat_interval_changes_the_heartbeat_period_at_once():
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock):
            await asyncio.sleep(30)
            assert csms.received(SID, "Heartbeat") == []  # boot said 300 s
            set_at = clock.now()
            sets = await csms.set_variables(SID, [("OCPPCommCtrlr", "HeartbeatInterval", "20")])
            assert status_of(sets) == ["Accepted"]
            for n in range(3):
                await csms.wait_for(
                    SID, "Heartbeat", lambda _p, n=n: len(csms.received(SID, "Heartbeat")) > n, timeout_s=60
                )
            beats = [set_at] + [r.at for r in csms.received(SID, "Heartbeat")]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(beats)]
            assert all(19.5 <= gap <= 21.0 for gap in gaps), gaps
            got = await csms.get_variables(SID, [("OCPPCommCtrlr", "HeartbeatInterval")])
            assert got[0]["attributeValue"] == "20"

    virtual(scenario)


def test_get_base_report_sends_every_notify_report_page_in_order():
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock) as agent:
            assert await csms.get_base_report(SID, 7, "FullInventory") == "Accepted"
            pages = await csms.report_pages(SID, 7)
            total = len(agent.devices.model.definitions())
            assert [p["seqNo"] for p in pages] == list(range(-(-total // 20)))  # ItemsPerMessage[GetReport]
            assert [p["tbc"] for p in pages] == [True] * (len(pages) - 1) + [False]
            assert sum(len(p["reportData"]) for p in pages) == total
            names = {(d["component"]["name"], d["variable"]["name"]) for p in pages for d in p["reportData"]}
            assert ("SecurityCtrlr", "BasicAuthPassword") in names
            assert ("Connector", "AvailabilityState") in names

            assert await csms.get_base_report(SID, 8, "SummaryInventory") == "Accepted"
            summary = await csms.report_pages(SID, 8)
            assert {d["variable"]["name"] for p in summary for d in p["reportData"]} == {"AvailabilityState"}

    virtual(scenario)


def test_values_set_by_the_csms_survive_an_agent_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # data_dir "var" is relative: the test's own directory

    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        values = [
            ("SampledDataCtrlr", "TxUpdatedInterval", "33"),
            ("OCPPCommCtrlr", "OfflineThreshold", "240"),
            ("AuthCtrlr", "AuthorizeRemoteStart", "true"),
        ]
        async with running(csms, clock, durable=True):
            sets = await csms.set_variables(SID, values)
            sets += await csms.set_variables(SID, [("OCPPCommCtrlr", "MessageAttempts", "7")])
            assert status_of(sets) == ["Accepted"] * 3 + ["UnknownVariable"]  # MessageAttempts has instances
            attempts = {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
            }
            response = await csms.call(
                SID, "SetVariables", {"setVariableData": [{**attempts, "attributeValue": "7"}]}
            )
            assert status_of(response["setVariableResult"]) == ["Accepted"]
        assert (tmp_path / "var" / SID / "device_model.sqlite3").is_file()

        async with running(csms, clock, durable=True) as agent:
            gets = await csms.get_variables(SID, [(c, v) for c, v, _ in values])
            assert [g["attributeValue"] for g in gets] == ["33", "240", "true"]
            assert agent.core.meter_interval_s == 33.0
            assert agent.core.offline_threshold_s == 240.0
            assert agent.core.authorize_remote_start is True
            assert agent.outbox.message_attempts == 7

    virtual(scenario)


def test_basic_auth_password_is_never_logged_or_reported_and_is_used_after_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DM_E2E_PASSWORD", PASSWORD)
    secure = {"security_profile": 1, "password_env": "DM_E2E_PASSWORD"}

    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        with structlog.testing.capture_logs() as logs:
            async with running(csms, clock, durable=True, ocpp=secure):
                sets = await csms.set_variables(SID, [("SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD)])
                assert status_of(sets) == ["RebootRequired"]  # stored now, used from the next start
                event = await csms.wait_for(
                    SID, "SecurityEventNotification", lambda p: "Reconfiguration" in p["type"]
                )
                assert event.payload["type"] == "ReconfigurationOfSecurityParameters"
                gets = await csms.get_variables(SID, [("SecurityCtrlr", "BasicAuthPassword")])
                assert status_of(gets) == ["Rejected"] and "attributeValue" not in gets[0]
                assert await csms.get_base_report(SID, 1, "ConfigurationInventory") == "Accepted"
                await csms.report_pages(SID, 1)
            csms.basic_auth = {SID: NEW_PASSWORD}  # the CSMS switched too: the old password is refused now
            async with running(csms, clock, durable=True, ocpp=secure):
                assert SID in csms.connected_stations
        assert NEW_PASSWORD not in repr(logs)
        assert NEW_PASSWORD not in repr([r.payload for r in csms.received(SID)])

    virtual(scenario, basic_auth={SID: PASSWORD})


def test_get_report_sends_only_the_selected_variables():
    async def scenario(csms: EmbeddedCsms, clock: LoopClock) -> None:
        async with running(csms, clock):
            selector = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
            answer = await csms.call(SID, "GetReport", {"requestId": 9, "componentVariable": [selector]})
            assert answer["status"] == "Accepted"
            (page,) = await csms.report_pages(SID, 9)
            assert [d["variable"]["name"] for d in page["reportData"]] == ["HeartbeatInterval"]
            empty = await csms.call(SID, "GetReport", {"requestId": 10, "componentCriteria": ["Problem"]})
            assert empty["status"] == "EmptyResultSet"

    virtual(scenario)
