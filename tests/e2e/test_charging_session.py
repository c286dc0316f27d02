"""End to end: station agent ↔ embedded CSMS (loopback websockets) ↔ simulated BMS (virtual CAN bus).

Everything is real except time (a VirtualTimeLoop), so a 10-minute session runs in about a second.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bms_link.base import BmsLink
from bms_link.gbt import GbtTiming
from bms_link.models import BmsFault, StopReason
from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.vtime import run_virtual
from simulators.csms import EmbeddedCsms
from simulators.ev import SimulatedEv, can_link_factory
from simulators.pack import PackSpec
from station.agent import StationAgent
from station.charging import SessionResult, StepRecord

SCALE = 4.0  # GB/T periods ×4 (BCL every 200 ms), well inside the 1 s / 5 s timeouts
_channels = itertools.count()


def pack(soc: float = 0.60, target_soc: float = 0.70, **kw: Any) -> PackSpec:
    spec: dict[str, Any] = {
        "chemistry": "nmc",
        "capacity_ah": 150.0,
        "soh": 0.95,
        "series_cells": 96,
        "soc": soc,
        "target_soc": target_soc,
        "cell_temp_c": 25.0,
        "ambient_c": 25.0,
        "max_charge_current_a": 300.0,
    }
    return PackSpec(**{**spec, **kw})


@dataclass
class Run:
    csms: EmbeddedCsms
    agent: StationAgent
    ev: SimulatedEv
    clock: LoopClock
    links: list[BmsLink]
    steps: list[StepRecord] = field(default_factory=list)
    results: list[SessionResult] = field(default_factory=list)

    def tx_events(self) -> list[dict[str, Any]]:
        return [r.payload for r in self.csms.received("CS-E2E", "TransactionEvent")]


Script = Callable[[Run], Awaitable[None]]


def charge(
    spec: PackSpec,
    script: Script | None = None,
    start: Script | None = None,
    *,
    realtime: bool = False,
    settings_overrides: dict[str, Any] | None = None,
    until: Script | None = None,
    epoch: datetime = datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
    **csms_kwargs: Any,
) -> Run:
    """Plug in, start (remotely, or by `start`), run `script` while charging, wait for Ended; return what
    everyone saw. On virtual time unless `realtime` (for peers that keep wall-clock time); `until` replaces
    the wait for TransactionEvent Ended."""

    async def main() -> Run:
        clock = LoopClock() if realtime else LoopClock(epoch=epoch)
        async with EmbeddedCsms(clock=clock, **csms_kwargs) as csms:
            channel = f"e2e-{next(_channels)}"
            settings = load_settings(
                overrides={
                    "station": {"id": "CS-E2E"},
                    "ocpp": {"csms_url": csms.url, "meter_interval_s": 30.0, "authorize_remote_start": True},
                    "bms": {"can_channel": channel, "timing_scale": SCALE},
                    **(settings_overrides or {}),
                }
            )
            links: list[BmsLink] = []
            factory = can_link_factory(settings, clock, poll_interval_s=None)

            def tracking_factory() -> BmsLink:
                links.append(factory())
                return links[-1]

            ev = SimulatedEv(
                spec,
                interface="virtual",
                channel=channel,
                clock=clock,
                timing=GbtTiming(period_scale=SCALE),
                poll_interval_s=None,
            )
            run = Run(csms, None, ev, clock, links)  # type: ignore[arg-type]
            run.agent = StationAgent(
                settings,
                clock=clock,
                bms_factory=tracking_factory,
                on_step=run.steps.append,
                on_session_end=run.results.append,
            )
            async with asyncio.TaskGroup() as tg:
                agent_task = tg.create_task(run.agent.run())
                await run.agent.booted.wait()
                ev_task = tg.create_task(ev.run())
                run.agent.plug_in()
                if start is None:
                    status = await csms.request_start_transaction("CS-E2E", id_token="TAG-1", evse_id=1)
                    assert status == "Accepted"
                else:
                    await start(run)
                if script is not None:
                    await script(run)
                if until is not None:  # e.g. OCPP 1.6: StopTransaction instead of TransactionEvent Ended
                    await until(run)
                else:
                    await csms.wait_for(
                        "CS-E2E", "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=7200
                    )
                await asyncio.wait_for(ev_task, timeout=60)
                agent_task.cancel()
            assert csms.internal_errors == []
            return run

    return asyncio.run(main()) if realtime else run_virtual(main())


def energy_wh(event: dict[str, Any]) -> float:
    values = event["meterValue"][0]["sampledValue"]
    return next(v["value"] for v in values if v["measurand"] == "Energy.Active.Import.Register")


def test_full_transaction_reaches_the_csms_in_order_with_energy_matching_the_pack():
    run = charge(pack())
    events = run.tx_events()
    kinds = [e["eventType"] for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Ended"
    assert kinds.count("Updated") >= 3 and set(kinds[1:-1]) == {"Updated"}
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert events[-1]["transactionInfo"]["stoppedReason"] == "SOCLimitReached"
    assert run.csms.received("CS-E2E", "Authorize")  # AuthorizeRemoteStart=true asks first
    delivered_kwh = (energy_wh(events[-1]) - energy_wh(events[1])) / 1000
    assert delivered_kwh > 4.0  # 10 % of a 150 Ah × ~360 V pack is ~5.4 kWh
    # The station's meter integrates V·I at its output; the pack counts energy at its terminals.
    assert abs(delivered_kwh - run.ev.bms.energy_in_kwh) / run.ev.bms.energy_in_kwh < 0.03
    registers = [energy_wh(e) for e in events if "meterValue" in e]
    assert registers == sorted(registers)
    last_soc = next(
        v["value"] for v in events[-1]["meterValue"][0]["sampledValue"] if v["measurand"] == "SoC"
    )
    assert 69.0 <= last_soc <= 71.0


def test_remote_stop_ends_the_transaction_with_remote_reason_and_zero_current():
    async def stop_after_two_minutes(run: Run) -> None:
        await asyncio.sleep(120)
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        assert await run.csms.request_stop_transaction("CS-E2E", tx_id) == "Accepted"

    run = charge(pack(soc=0.2, target_soc=0.9), stop_after_two_minutes)
    ended = run.tx_events()[-1]
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert run.links[0].output_current_a == 0.0
    assert run.ev.bms.soc < 0.3


def test_bms_that_stops_sending_bcl_gets_zero_current_within_one_second_and_a_timeout_stop():
    seen: dict[str, float] = {}

    async def silence_bcl(run: Run) -> None:
        await asyncio.sleep(60)
        link = run.links[0]
        assert link.output_current_a > 50
        run.ev.node.drop("BCL")
        seen["dropped_at"] = run.clock.monotonic()
        while link.output_current_a > 0:
            await asyncio.sleep(0.01)
        seen["zero_at"] = run.clock.monotonic()

    run = charge(pack(soc=0.2, target_soc=0.9), silence_bcl)
    # GB/T 27930: BCL missing for 1 s ends charging; the last BCL came at most one period before the drop.
    assert seen["zero_at"] - seen["dropped_at"] <= 1.0 + 1e-6
    ended = run.tx_events()[-1]
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["stoppedReason"] == "Timeout"


def test_an_insulation_fault_from_the_bms_ends_the_transaction_as_a_ground_fault_at_0_a():
    seen: dict[str, float] = {}

    async def insulation_fault(run: Run) -> None:
        await asyncio.sleep(60)
        link = run.links[0]
        assert link.output_current_a > 50
        run.ev.bms.inject_fault(BmsFault.INSULATION)
        seen["at"] = run.clock.monotonic()
        while link.output_current_a > 0:
            await asyncio.sleep(0.01)
        seen["zero_at"] = run.clock.monotonic()

    run = charge(pack(soc=0.2, target_soc=0.9), insulation_fault)
    assert seen["zero_at"] - seen["at"] <= 1.0  # BSM/BST carry it at once (virtual time)
    ended = run.tx_events()[-1]
    assert ended["triggerReason"] == "AbnormalCondition"
    assert ended["transactionInfo"]["stoppedReason"] == "GroundFault"
    assert run.results[-1].reason is StopReason.INSULATION_FAULT


def test_tx_profile_from_the_csms_caps_the_output_current():
    async def cap_at_40_a(run: Run) -> None:
        await asyncio.sleep(30)
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        profile = {
            "id": 11,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": tx_id,
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 40.0}],
                }
            ],
        }
        assert await run.csms.set_charging_profile("CS-E2E", evse_id=1, profile=profile) == "Accepted"
        run.steps.clear()
        composite = await run.csms.get_composite_schedule("CS-E2E", evse_id=1, duration_s=600)
        assert composite["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 40.0}]

    run = charge(pack(soc=0.5, target_soc=0.6), cap_at_40_a)
    assert run.steps
    assert max(s.current_a for s in run.steps) <= 40.0
    assert any(s.binding_constraint == "csms_limit" for s in run.steps)


def test_pending_boot_is_retried_after_the_interval_before_charging():
    run = charge(pack(soc=0.68), boot_statuses=("Pending", "Accepted"), boot_retry_interval_s=10)
    boots = run.csms.received("CS-E2E", "BootNotification")
    assert len(boots) == 2
    assert (boots[1].at - boots[0].at).total_seconds() >= 10
    first_status = run.csms.received("CS-E2E", "StatusNotification")[0]
    assert first_status.at >= boots[1].at


def test_transaction_events_survive_a_csms_outage_in_order_and_flagged_offline():
    async def outage(run: Run) -> None:
        await asyncio.sleep(60)
        await run.csms.stop()
        await asyncio.sleep(150)  # > meter interval: Updated events are generated while offline
        await run.csms.start()  # back on the same address

    run = charge(pack(soc=0.3, target_soc=0.5), outage)
    events = run.tx_events()
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    offline = [e for e in events if e.get("offline")]
    assert len(offline) >= 3
    assert events[-1]["eventType"] == "Ended"
    # A reconnect is not a reboot: no second BootNotification (B01), but current status is sent again.
    assert len(run.csms.received("CS-E2E", "BootNotification")) == 1
    back_at = min(r.at for r in run.csms.received("CS-E2E", "TransactionEvent") if r.payload.get("offline"))
    statuses = run.csms.received("CS-E2E", "StatusNotification")
    assert any(s.at >= back_at and s.payload["connectorStatus"] == "Occupied" for s in statuses)
