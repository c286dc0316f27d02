"""Battery health wired into the agent: sessions stored per pseudonymised VIN, the estimate feeds the next
plan, alerts reach the CSMS as NotifyEvent. Real agent ↔ embedded CSMS ↔ simulated BMS on virtual time."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import ocpp
import pytest

from bms_link.gbt import GbtTiming
from bms_link.models import BatteryType, ChargeMode, ChargeRequest, PackInfo, PackTelemetry
from chargeagent.clock import LoopClock
from chargeagent.config import HealthSettings, load_settings
from chargeagent.vtime import run_virtual
from policy.closed_loop import soh_input
from policy.health import Alert, assess_estimates
from policy.plan import PlanRequest
from simulators.csms import EmbeddedCsms
from simulators.ev import SimulatedEv, can_link_factory
from simulators.pack import PackSpec
from station.agent import StationAgent
from station.charging import SessionResult
from station.health_recorder import FILE_NAME, SessionRecorder, StationHealth, notify_event, spec_for

SCALE = 4.0
VIN = "LSIMTEST000000042"
_channels = itertools.count()


def aged_pack(vin: str | None = VIN, soh: float = 0.75) -> PackSpec:
    return PackSpec("nmc", 150.0, soh, 96, 0.20, 0.80, 25.0, 25.0, 300.0, vin=vin)


@dataclass
class Visit:
    result: SessionResult
    requests: list[PlanRequest] = field(default_factory=list)
    notify_events: list[dict[str, Any]] = field(default_factory=list)


def visit(
    spec: PackSpec, data_dir: Path | None, health: dict[str, Any], start: datetime, assumed_soh: float = 0.85
) -> Visit:
    """One EV visit to station CS-HEALTH: plug in, remote start, charge to the BMS's target, end."""

    async def main() -> Visit:
        clock = LoopClock(epoch=start)
        async with EmbeddedCsms(clock=clock) as csms:
            channel = f"health-{next(_channels)}"
            settings = load_settings(
                overrides={
                    "station": {"id": "CS-HEALTH"},
                    "ocpp": {"csms_url": csms.url, "meter_interval_s": 120.0},
                    "bms": {"can_channel": channel, "timing_scale": SCALE},
                    "health": health,
                    "policy": {"assumed_soh": assumed_soh},
                }
            )
            results: list[SessionResult] = []
            agent = StationAgent(
                settings,
                clock=clock,
                bms_factory=can_link_factory(settings, clock, poll_interval_s=None),
                on_session_end=results.append,
                outbox_path=None if data_dir is None else data_dir / "CS-HEALTH" / "outbox.sqlite3",
            )
            requests: list[PlanRequest] = []
            policy = agent.policy
            assert policy is not None
            real_plan = policy.plan

            def recording_plan(request: PlanRequest) -> Any:
                requests.append(request)
                return real_plan(request)

            policy.plan = recording_plan  # type: ignore[method-assign,assignment]
            ev = SimulatedEv(
                spec,
                interface="virtual",
                channel=channel,
                clock=clock,
                timing=GbtTiming(period_scale=SCALE),
                poll_interval_s=None,
            )
            async with asyncio.TaskGroup() as tg:
                agent_task = tg.create_task(agent.run())
                await agent.booted.wait()
                ev_task = tg.create_task(ev.run())
                agent.plug_in()
                status = await csms.request_start_transaction("CS-HEALTH", id_token="T", evse_id=1)
                assert status == "Accepted"
                await csms.wait_for(
                    "CS-HEALTH", "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=7200
                )
                await asyncio.wait_for(ev_task, timeout=60)
                await asyncio.sleep(5)  # let a NotifyEvent queued at the session's end go out
                agent_task.cancel()
            assert csms.internal_errors == []
            events = [r.payload for r in csms.received("CS-HEALTH", "NotifyEvent")]
            return Visit(results[0], requests, events)

    return run_virtual(main())


def test_second_visit_plans_with_the_stations_estimate_and_the_file_holds_no_vin(tmp_path: Path) -> None:
    health = {"min_sessions": 1}
    # assumed_soh 1.0: without a BMS SoH the station's estimate may only lower the assumption.
    first = visit(aged_pack(), tmp_path, health, datetime(2026, 3, 1, 8, 0, tzinfo=UTC), assumed_soh=1.0)
    # GB/T 27930 carries no SoH: the first visit plans with the configured assumption.
    assert first.requests and {r.soh for r in first.requests} == {1.0}
    assert first.result.health is not None and first.result.health["stored_sessions"] == 1
    band = first.result.health["capacity_soh"]
    assert band["p10"] <= band["p50"] <= band["p90"]
    held = StationHealth(HealthSettings(min_sessions=1), tmp_path / "CS-HEALTH")
    try:
        info = PackInfo.model_validate({**_INFO, "vin": VIN.lower()})  # VINs match case-insensitively
        estimate = held.soh_for(info)
        assert held.soh_for(info.model_copy(update={"vin": "LSIMOTHER00000001"})) is None
    finally:
        held.close()
    too_few = StationHealth(HealthSettings(min_sessions=2), tmp_path / "CS-HEALTH")
    try:
        assert too_few.soh_for(info) is None  # below health.min_sessions: the assumption stays
    finally:
        too_few.close()
    assert estimate is not None and estimate == pytest.approx(band["p10"], abs=5e-4)  # the cautious end

    second = visit(aged_pack(), tmp_path, health, datetime(2026, 3, 2, 8, 0, tzinfo=UTC), assumed_soh=1.0)
    # Every plan of the second visit used the station's estimate (below the assumption) instead.
    assert estimate < 1.0
    assert {r.soh for r in second.requests} == {estimate}
    assert second.result.health is not None and second.result.health["stored_sessions"] == 2

    station_dir = tmp_path / "CS-HEALTH"
    raw = b"".join(p.read_bytes() for p in station_dir.iterdir() if p.name.startswith(FILE_NAME))
    assert raw  # the store exists (db and WAL)
    assert VIN.encode() not in raw and VIN.lower().encode() not in raw


def test_without_a_vin_nothing_is_stored_and_the_assumption_stays(tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    anonymous = visit(aged_pack(vin=None), tmp_path, {"min_sessions": 1}, start)
    assert anonymous.result.health is not None and anonymous.result.health["stored_sessions"] == 0
    assert _sessions(tmp_path) == 0
    again = visit(aged_pack(vin=None), tmp_path, {"min_sessions": 1}, start)
    assert {r.soh for r in again.requests} == {0.85}


def _sessions(tmp_path: Path) -> int:
    store = StationHealth(HealthSettings(), tmp_path / "CS-HEALTH").store
    assert store is not None
    try:
        return len(store.batteries())
    finally:
        store.close()


# --- sans-I/O pieces ---------------------------------------------------------------------------------


def _alert(kind: str = "abnormal_heating") -> Alert:
    return Alert(kind, "tx-1", 12.0, "cells heat 1.6 x what their resistance explains", {"ratio": 1.6})


def test_notify_event_matches_the_ocpp_schema_and_names_the_alert() -> None:
    message = notify_event([_alert(), _alert("knee_onset")], datetime(2026, 3, 1, tzinfo=UTC), 7)
    assert message.action == "NotifyEvent" and not message.transactional
    data = message.payload["eventData"]
    assert [d["eventId"] for d in data] == [7, 8]
    assert [d["actualValue"] for d in data] == ["abnormal_heating", "knee_onset"]
    assert {d["component"]["name"] for d in data} == {"BatteryHealth"}
    assert {d["variable"]["name"] for d in data} == {"Problem"}
    assert {d["trigger"] for d in data} == {"Alerting"}
    schema = json.loads((Path(ocpp.__file__).parent / "v201/schemas/NotifyEventRequest.json").read_text())
    jsonschema.validate(message.payload, schema)


def test_alerts_from_a_session_reach_the_csms_as_notify_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The assessment is forced to raise an alert; the e2e path (outbox → CSMS schema check) is real."""
    real = assess_estimates

    def with_alert(*args: Any, **kwargs: Any) -> Any:
        report = real(*args, **kwargs)
        report.alerts.append(_alert())
        return report

    monkeypatch.setattr("station.health_recorder.assess_estimates", with_alert)
    result = visit(aged_pack(), None, {}, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    assert result.result.health is not None
    assert [a["type"] for a in result.result.health["alerts"]][-1] == "abnormal_heating"
    assert len(result.notify_events) == 1
    (event,) = result.notify_events[0]["eventData"]
    assert event["actualValue"] == "abnormal_heating" and event["component"]["name"] == "BatteryHealth"


def _telemetry(i: int, soh: float | None = None) -> PackTelemetry:
    return PackTelemetry(
        monotonic_s=float(i),
        pack_voltage_v=350.0 + 0.01 * i,
        pack_current_a=100.0,
        soc=0.2 + 1e-5 * i,
        soh=soh,
        cell_voltage_max_v=3.8,
        cell_temp_max_c=30.0,
        cell_temp_min_c=26.0,
        request=ChargeRequest(voltage_v=400.0, current_a=100.0, mode=ChargeMode.CC),
        max_charge_current_a=300.0,
        max_pack_voltage_v=403.2,
        max_cell_voltage_v=4.2,
        max_temp_c=55.0,
    )


def test_recorder_stays_bounded_and_keeps_the_whole_session_span() -> None:
    recorder = SessionRecorder(ambient_c=18.0, max_samples=64)
    for i in range(1000):
        recorder.add(1.7e9 + i, _telemetry(i, soh=0.9))
    session = recorder.session("s1")
    assert session is not None
    assert len(recorder) < 64
    assert session.time_s[0] == 1.7e9 and session.time_s[-1] > 1.7e9 + 900
    assert np.all(np.diff(session.time_s) > 0)
    assert np.all(session.cell_temp_c == 28.0)  # mean of the highest and lowest cell
    assert np.all(session.ambient_c == 18.0) and session.bms_soh == 0.9


def test_too_short_a_session_gives_no_data() -> None:
    recorder = SessionRecorder(ambient_c=20.0)
    for i in range(3):
        recorder.add(1.7e9 + i, _telemetry(i))
    assert recorder.session("s") is None


_INFO: dict[str, Any] = {
    "battery_type": BatteryType.NMC,
    "rated_capacity_ah": 150.0,
    "rated_voltage_v": 355.0,
    "max_cell_voltage_v": 4.2,
    "max_charge_current_a": 300.0,
    "nominal_energy_kwh": 53.3,
    "max_pack_voltage_v": 403.2,
    "max_temp_c": 55.0,
    "soc": 0.3,
    "pack_voltage_v": 360.0,
}


def test_spec_comes_from_the_handshake_and_unknown_chemistries_are_skipped() -> None:
    info = PackInfo.model_validate({**_INFO, "rated_capacity_ah": 120.0})
    spec = spec_for(info)
    assert spec is not None and spec.series_cells == 96 and spec.capacity_ah == 120.0
    assert spec_for(info.model_copy(update={"battery_type": BatteryType.LEAD_ACID})) is None


def test_the_plan_takes_the_more_conservative_soh() -> None:
    assert soh_input(0.92, 0.81, 0.85) == 0.81
    assert soh_input(0.78, 0.81, 0.85) == 0.78
    assert soh_input(None, 0.81, 0.85) == 0.81
    assert soh_input(None, 0.93, 0.85) == 0.85  # without a BMS SoH the estimate can only lower it
    assert soh_input(0.9, None, 0.85) == 0.9
    assert soh_input(None, None, 0.85) == 0.85
