"""Wire-mode fleet simulation: real agents over websockets and CAN give fast mode's energies and site load.

Tolerances (fast mode = 1-min steps of the pack surrogate at the terminals; wire mode = the agent's meter
at the DC output, GB/T 0.1 A / 0.1 V / 1 °C resolution, the BMS's own current request):

* per session, |wire - fast| <= one fast-mode step at the station's power (22 kW x 1 min = 0.37 kWh)
  + 2 % of the session's energy. Fast mode starts at the first whole minute after plug-in and checks
  the target SoC and the departure once a minute, so it delivers up to one step more or less than a
  controller that starts within seconds and stops the moment the BMS reaches its target. The 2 % covers
  what the wire adds: a BMS asks for a constant current (the vehicle's power at the nominal voltage)
  where fast mode applies the power at the live voltage (a few % when the vehicle's power binds and the
  car leaves before its target), and the envelope's cold derating reads 1 °C-resolution BSM
  temperatures (a few tenths of a % of current at 13-15 °C).
* site load, per 15-min bin: |wire - fast| energy <= one fast-mode step per session plugged in during the
  bin (same reason: each session's charging may start or stop up to one step apart), and the day's total
  energy within 2 %.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from simulators.arrivals import Sessions, generate_sessions, read_sessions_csv, write_sessions_csv
from simulators.fleet import FleetResult, FleetSimulator, sample_rows
from simulators.fleet_output import write_outputs
from simulators.fleet_wire import WireResult, run_wire
from simulators.fleet_wire_ocpp import delivered_kwh, write_ocpp_log
from simulators.site_config import load_site

START_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z, a Monday
POWER_KW = 22.0
STEP_KWH = POWER_KW / 60.0  # one fast-mode step at the station's power
Runs = tuple[Sessions, FleetResult, WireResult]

# A small, quick site: short visits (some cars leave before their target), mixed packs, 22 kW stations.
SITE_TOML = """
[site]
name = "wire-check"
kind = "workplace"
stations = 2
station_max_power_kw = 22.0
[arrivals]
weekday_per_station = 2.0
weekend_per_station = 2.0
day_factor_sd = 0.0
[dwell]
median_h = 0.6
sigma = 0.5
min_h = 0.25
max_h = 2.0
[energy]
soc_arrival_mean = 0.6
soc_arrival_sd = 0.12
soc_target = 0.85
[[vehicles]]
name = "compact-nmc-40"
share = 0.4
capacity_kwh = 40.0
chemistry = "nmc"
max_charge_power_kw = 100.0
[[vehicles]]
name = "sedan-lfp-60"
share = 0.4
capacity_kwh = 60.0
chemistry = "lfp"
max_charge_power_kw = 120.0
[[vehicles]]
name = "plug-in-hybrid"
share = 0.2
capacity_kwh = 14.0
chemistry = "nmc"
max_charge_power_kw = 7.4
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(SITE_TOML)
    sessions = generate_sessions(load_site(path), START_S, 1, stations=2, seed=1)
    fast = FleetSimulator(sessions, start_s=START_S, days=1, station_power_kw=POWER_KW, policy=None).run()
    wire = run_wire(sessions, start_s=START_S, days=1, station_power_kw=POWER_KW, policy_enabled=False)
    return sessions, fast, wire


def test_wire_and_fast_agree_per_session_within_one_step_plus_two_percent(runs: Runs) -> None:
    sessions, fast, wire = runs
    assert len(sessions) >= 3 and wire.failures == []
    f, w = fast.outcome.delivered_kwh, wire.fleet.outcome.delivered_kwh
    assert np.all(w[f > 1.0] > 0.0)
    assert np.all(np.abs(w - f) <= STEP_KWH + 0.02 * f), np.round(w - f, 3)
    # The packs end where fast mode's do (a car leaving just as it finishes may differ in reached_target:
    # fast mode's last step can overshoot the target by up to one step).
    assert np.all(np.abs(wire.fleet.outcome.soc_end - fast.outcome.soc_end) <= 0.01)
    charged = f > 1.0
    assert np.all(np.abs(wire.fleet.outcome.charge_minutes - fast.outcome.charge_minutes)[charged] <= 2.0)


def test_wire_and_fast_site_load_agree_per_15_min(runs: Runs) -> None:
    sessions, fast, wire = runs
    f15 = fast.site_load_kw.reshape(-1, 15).sum(axis=1) / 60.0  # kWh per 15-min bin
    w15 = wire.fleet.site_load_kw.reshape(-1, 15).sum(axis=1) / 60.0
    starts = START_S + 900.0 * np.arange(f15.size)
    plugged = [int(np.sum((sessions.connection_s < t + 900.0) & (sessions.disconnect_s > t))) for t in starts]
    assert np.all(np.abs(w15 - f15) <= STEP_KWH * np.asarray(plugged) + 1e-9)
    assert w15.sum() == pytest.approx(f15.sum(), rel=0.02)
    # The wire site meter is the sum of what the CSMS billed per transaction.
    assert w15.sum() == pytest.approx(wire.fleet.outcome.delivered_kwh.sum(), abs=0.01)


def test_power_limit_comes_over_ocpp_and_departures_end_transactions(runs: Runs) -> None:
    sessions, _, wire = runs
    stations = set(sessions.station_id)
    profiles = [s for s in wire.sent if s["action"] == "SetChargingProfile"]
    assert {p["station_id"] for p in profiles} == stations
    assert all(p["response"]["status"] == "Accepted" for p in profiles)
    assert all(
        p["payload"]["chargingProfile"]["chargingProfilePurpose"] == "ChargingStationMaxProfile"
        for p in profiles
    )
    assert wire.fleet.binding["csms_limit"] > 0  # the only source of the 22 kW in wire mode
    ended = [
        r.payload
        for r in wire.received
        if r.action == "TransactionEvent" and r.payload["eventType"] == "Ended"
    ]
    assert len(ended) == len(sessions)
    reasons = {e["transactionInfo"]["stoppedReason"] for e in ended}
    assert {"EVDisconnected", "SOCLimitReached"} <= reasons
    assert delivered_kwh(wire.received).keys() == set(range(len(sessions)))


def test_wire_outputs_and_ocpp_log(runs: Runs, tmp_path: Path) -> None:
    sessions, _, wire = runs
    paths = write_outputs(tmp_path, sessions, wire.fleet)
    assert len(paths["sessions"].read_text().splitlines()) == len(sessions) + 1
    log = write_ocpp_log(tmp_path / "ocpp_log.jsonl", wire.received, wire.sent)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(wire.received) + len(wire.sent)
    assert [x["at"] for x in lines] == sorted(x["at"] for x in lines)
    actions = {x["action"] for x in lines}
    assert {
        "BootNotification",
        "TransactionEvent",
        "RequestStartTransaction",
        "SetChargingProfile",
    } <= actions


def test_replayed_sessions_are_stopped_from_the_csms_at_their_logged_energy(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE_TOML)
    csv_path = tmp_path / "SESSIONS.csv"
    write_sessions_csv(csv_path, generate_sessions(load_site(site), START_S, 1, stations=2, seed=3))
    replay = read_sessions_csv(csv_path, station_power_kw=POWER_KW)
    wire = run_wire(replay, start_s=START_S, days=1, station_power_kw=POWER_KW, policy_enabled=False)
    assert wire.failures == []
    # Logged energies are written to 1 Wh; the stop lands within a control step or two of the register.
    assert np.all(np.abs(wire.fleet.outcome.delivered_kwh - replay.energy_kwh) <= 0.02)
    assert wire.fleet.outcome.reached_target.all()
    stops = [s for s in wire.sent if s["action"] == "RequestStopTransaction"]
    assert len(stops) == len(replay) and all(s["response"]["status"] == "Accepted" for s in stops)


def test_the_site_api_serves_every_agent_while_the_wire_fleet_runs(tmp_path: Path) -> None:
    import asyncio

    import aiohttp

    from chargeagent.vtime import run_virtual
    from simulators.fleet_wire import WireFleet
    from station.status import Status

    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML)
    sessions = generate_sessions(load_site(path), START_S, 1, stations=2, seed=1)
    fleet = WireFleet(
        sessions, start_s=START_S, days=1, station_power_kw=POWER_KW, policy_enabled=False, api_port=0
    )
    seen: list[list[Status]] = []

    async def main() -> None:
        run = asyncio.create_task(fleet.run())
        assert fleet.api is not None
        await asyncio.wait_for(fleet.api.ready.wait(), 60)
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{fleet.api.port}"
            while not run.done():  # sample the site as the day goes by (virtual time)
                async with http.get(f"{base}/api/stations") as response:
                    seen.append([Status.model_validate(s) for s in await response.json()])
                if any(e.transaction_id for snap in seen[-1:] for s in snap for e in s.evses):
                    async with http.get(f"{base}/api/stations/{seen[-1][0].station_id}") as one:
                        assert one.status == 200
                    async with http.get(f"{base}/api/stations/nope") as missing:
                        assert missing.status == 404
                    async with http.get(f"{base}/") as page:
                        assert "chargeagent site" in await page.text()
                    break
                await asyncio.sleep(60)
        await run

    run_virtual(main())
    assert seen and {s.station_id for s in seen[-1]} == set(sessions.station_id)
    assert any(e.transaction_id for s in seen[-1] for e in s.evses)  # caught one charging


def test_wire_mode_charges_against_an_external_csms_in_real_time(tmp_path: Path) -> None:
    """`--csms-url`: the CSMS is another process (`chargeagent csms`), time is real, sessions start and
    stop with the driver's idToken at the station, the power limit is the station's own rating."""
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import _free_port

    port = _free_port()
    csms = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "csms", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and csms.poll() is None, "the CSMS did not come up"
            time.sleep(0.1)
        start_s = float(math.floor(time.time()))
        stamp = lambda s: datetime.fromtimestamp(start_s + s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        csv_path = tmp_path / "SESSIONS.csv"
        csv_path.write_text(
            "session_id,station_id,connection_time,disconnect_time,kwh_delivered\n"
            f"a,EXT-1,{stamp(2)},{stamp(30)},0.040\n"
            f"b,EXT-2,{stamp(3)},{stamp(30)},0.030\n"
        )
        replay = read_sessions_csv(csv_path, station_power_kw=POWER_KW)
        wire = run_wire(
            replay, start_s=start_s, days=1, station_power_kw=POWER_KW, policy_enabled=False,
            csms_url=f"ws://127.0.0.1:{port}/ocpp",
        )  # fmt: skip
    finally:
        csms.terminate()
        journal, _ = csms.communicate(timeout=30)
    assert wire.failures == []
    assert wire.received == []  # the external CSMS keeps its own journal
    assert np.allclose(wire.fleet.outcome.delivered_kwh, [0.040, 0.030], atol=0.01)
    assert wire.fleet.outcome.reached_target.all()
    for station in ("EXT-1", "EXT-2"):  # what the CSMS process saw
        lines = [line for line in journal.splitlines() if station in line]
        assert any("Authorize" in line for line in lines), journal[-2000:]
        assert any("TransactionEvent" in line and "Started" in line for line in lines)
        assert any("TransactionEvent" in line and "Ended" in line for line in lines)


def test_two_processes_give_the_one_process_result(runs: Runs) -> None:
    """`run_wire_processes`: stations split over 2 spawned processes, each with its own embedded CSMS
    on its own virtual clock; stations never interact without a site cap, so the merged result is the
    one-process run's, and the OCPP journals keep the site's session numbers."""
    from simulators.fleet_wire import run_wire_processes

    sessions, _, one = runs
    two = run_wire_processes(
        sessions, 2, start_s=START_S, days=1, station_power_kw=POWER_KW, policy_enabled=False
    )
    assert two.failures == []
    assert np.allclose(two.fleet.outcome.delivered_kwh, one.fleet.outcome.delivered_kwh, atol=1e-6)
    assert np.allclose(two.fleet.site_load_kw, one.fleet.site_load_kw, atol=1e-6)
    assert two.sessions_done == one.sessions_done

    # Each process stops when its own stations are done, so stations idle less there: fewer Heartbeats.
    def calls(result: WireResult) -> list[tuple[str, str]]:
        return sorted((r.station_id, r.action) for r in result.received if r.action != "Heartbeat")

    assert calls(two) == calls(one) and len(two.sent) == len(one.sent)
    starts = sorted(
        s["payload"]["remoteStartId"] for s in two.sent if s["action"] == "RequestStartTransaction"
    )
    assert starts == sorted(
        s["payload"]["remoteStartId"] for s in one.sent if s["action"] == "RequestStartTransaction"
    )


def test_each_battery_carries_the_agents_health_estimate_into_the_outputs(runs: Runs, tmp_path: Path) -> None:
    """Wire mode: every charged session has the agent's capacity-SoH band (issue #10) in sessions.csv and a
    'Battery health' section in sim_report.html; fast mode, which runs no agents, leaves them empty."""
    sessions, fast, wire = runs
    o = wire.fleet.outcome
    charged = o.charge_minutes > 0
    assert charged.any()
    band = o.est_soh[charged]
    assert np.all(np.isfinite(band)) and np.all(band[:, 0] <= band[:, 1]) and np.all(band[:, 1] <= band[:, 2])
    # The station does not know these packs' age: its band must not exclude the truth it cannot see.
    inside = (band[:, 0] <= sessions.soh[charged]) & (sessions.soh[charged] <= band[:, 2])
    assert inside.mean() >= 0.75
    # The forecast band: remaining EFC to 80 %, ordered, and shorter for the lower estimates.
    cycles = o.est_cycles_80[charged]
    assert (
        np.all(np.isfinite(cycles))
        and np.all(cycles[:, 0] <= cycles[:, 1])
        and np.all(cycles[:, 1] <= cycles[:, 2])
    )
    low, high = np.argmin(band[:, 1]), np.argmax(band[:, 1])
    assert cycles[low, 1] < cycles[high, 1]
    paths = write_outputs(tmp_path / "wire", sessions, wire.fleet)
    with paths["sessions"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(
        r["est_soh_p50"] and r["est_cycles_to_80_p50"] for r, c in zip(rows, charged, strict=True) if c
    )
    report = paths["report"].read_text()
    assert "Battery health (the agents' own estimates)" in report and "EFC to 80 %" in report
    lowest = sessions.session_id[int(np.flatnonzero(charged)[low])]
    assert f"<td>{lowest}</td>" in report  # the lowest estimate is listed in the table
    fast_paths = write_outputs(tmp_path / "fast", sessions, fast)
    with fast_paths["sessions"].open() as handle:
        assert all(r["est_soh_p50"] == "" for r in csv.DictReader(handle))
    assert "Battery health" not in fast_paths["report"].read_text()


def test_the_same_sample_of_evs_is_followed_in_both_modes_for_the_report(runs: Runs, tmp_path: Path) -> None:
    """sim_report's per-EV SoC / current / temperature: the same sampled sessions in fast and wire mode,
    each series inside its session's plug-in time, SoC rising while current flows."""
    sessions, fast, wire = runs
    sample = sample_rows(len(sessions))
    assert set(fast.traces) == sample == set(wire.fleet.traces)  # every sampled car charged that day
    for result in (fast, wire.fleet):
        for row, series in result.traces.items():
            t = [p[0] for p in series]
            assert sessions.connection_s[row] <= t[0] and t[-1] <= sessions.disconnect_s[row] + 60.0
            assert series[-1][1] >= series[0][1] - 1e-9  # SoC never falls while plugged in
            assert max(p[2] for p in series) > 0.0
    html = write_outputs(tmp_path, sessions, wire.fleet)["report"].read_text()
    assert "Sample EVs (SoC, current, temperature)" in html
