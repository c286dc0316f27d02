"""Fast-mode fleet simulation: reproducible, energy balanced, replayable, gentler with the learned curve."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from policy.plan import CurvePolicy
from simulators.arrivals import generate_sessions, read_sessions_csv, write_sessions_csv
from simulators.fleet import FleetSimulator
from simulators.fleet_output import summary, write_outputs
from simulators.site_config import load_site

SITE = load_site(Path(__file__).resolve().parents[2] / "config" / "sites" / "workplace.toml")
START_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z, a Monday


def _run(stations: int = 6, days: int = 2, seed: int = 4, policy: CurvePolicy | None = None):  # type: ignore[no-untyped-def]
    sessions = generate_sessions(SITE, START_S, days, stations=stations, seed=seed)
    sim = FleetSimulator(sessions, start_s=START_S, days=days, station_power_kw=22.0, policy=policy)
    return sessions, sim.run()


def test_same_seed_same_results_and_energy_balances() -> None:
    sessions, a = _run()
    _, b = _run()
    assert np.array_equal(a.site_load_kw, b.site_load_kw)
    assert np.array_equal(a.outcome.capacity_loss, b.outcome.capacity_loss)
    # The site meter (1-min mean kW) integrates to the energy the packs took in.
    assert a.site_load_kw.sum() / 60.0 == pytest.approx(a.outcome.delivered_kwh.sum(), rel=1e-9)
    assert len(sessions) > 5 and a.outcome.reached_target.mean() > 0.9
    assert a.site_load_kw.max() <= 6 * 22.0 + 1e-6  # never above the stations' power


def test_learned_curve_ages_batteries_less_than_plain_cc_cv_before_departure() -> None:
    _, plain = _run(stations=8, days=2)
    _, learned = _run(stations=8, days=2, policy=CurvePolicy())
    charged = plain.outcome.charge_minutes > 0
    assert learned.outcome.reached_target[charged].mean() >= 0.95  # departure-aware: still done in time
    assert learned.outcome.capacity_loss[charged].mean() < 0.9 * plain.outcome.capacity_loss[charged].mean()
    assert set(learned.outcome.plan_source) <= {"model", "fallback"}


def test_replayed_sessions_reproduce_their_energy(tmp_path: Path) -> None:
    sessions, _ = _run(stations=4, days=2)
    path = tmp_path / "SESSIONS.csv"
    write_sessions_csv(path, sessions)
    replay = read_sessions_csv(path, station_power_kw=22.0)
    # Replayed rows carry no vehicle model: energies are the logged kWh, delivered at the station's power.
    result = FleetSimulator(replay, start_s=START_S, days=2, station_power_kw=22.0, policy=None).run()
    wanted = replay.energy_kwh
    done = result.outcome.reached_target
    assert done.mean() > 0.8
    # Within one 1-min step of power (22 kW x 1 min = 0.37 kWh) of the logged energy.
    assert np.all(np.abs(result.outcome.delivered_kwh[done] - wanted[done]) <= 22.0 / 60.0 + 1e-9)


def test_outputs_are_written_and_a_partial_run_is_valid(tmp_path: Path) -> None:
    sessions = generate_sessions(SITE, START_S, 3, stations=5, seed=9)
    sim = FleetSimulator(sessions, start_s=START_S, days=3, station_power_kw=22.0, policy=None)

    def stop_after_first(done: int, _total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sim.run(on_chunk=stop_after_first)
    paths = write_outputs(tmp_path, sessions, sim.result)
    rows = paths["sessions"].read_text().strip().splitlines()
    assert rows[0].startswith("session_id,station_id")
    day0 = np.floor((sessions.connection_s - START_S) / 86_400) == 0
    assert len(rows) - 1 == int(day0.sum())  # only the simulated day
    assert summary(sessions, sim.result)["chunks_done"] == 1
    assert "<svg" in paths["report"].read_text()
    load15 = paths["site_load_15min"].read_text().strip().splitlines()
    assert load15[0] == "interval_start,load_kw" and len(load15) > 1


DEPOT = load_site(Path(__file__).resolve().parents[2] / "config" / "sites" / "depot.toml")


def _depot(cap_kw: float | None, days: int = 3):  # type: ignore[no-untyped-def]
    sessions = generate_sessions(DEPOT, START_S, days, stations=20, seed=7)
    sim = FleetSimulator(
        sessions, start_s=START_S, days=days, station_power_kw=50.0, policy=None, grid_cap_kw=cap_kw
    )
    return sessions, sim.run()


def test_a_site_grid_cap_is_never_exceeded_and_overnight_deadlines_are_still_met() -> None:
    _, free = _depot(None)
    _, capped = _depot(150.0)
    assert free.site_load_kw.max() > 300.0  # uncontrolled, the evening return peaks far above the cap
    assert capped.site_load_kw.max() <= 150.0 + 1e-6  # every 1-min step, across plug-in days too
    assert capped.binding["site_cap"] > 0
    # Same energy in overall (the packs take what they need, later), and the long dwells still finish.
    assert capped.site_load_kw.sum() / 60.0 == pytest.approx(capped.outcome.delivered_kwh.sum(), rel=1e-9)
    assert capped.outcome.reached_target.mean() >= free.outcome.reached_target.mean() - 0.02
    assert capped.outcome.delivered_kwh.sum() >= 0.98 * free.outcome.delivered_kwh.sum()


def test_a_cap_too_small_for_everyone_is_still_obeyed() -> None:
    _, capped = _depot(40.0, days=2)
    assert capped.site_load_kw.max() <= 40.0 + 1e-6
    assert capped.outcome.reached_target.mean() < 1.0  # not everyone can finish on 40 kW: honest misses


def test_parquet_outputs_hold_the_same_rows_as_the_csvs(tmp_path: Path) -> None:
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    sessions, result = _run(stations=4, days=2)
    paths = write_outputs(tmp_path, sessions, result)
    table = pq.read_table(paths["sessions_parquet"])
    with paths["sessions"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert table.column_names == list(rows[0])
    assert table.num_rows == len(rows) > 5
    time_type = table.schema.field("connection_time").type  # Parquet stores seconds as milliseconds
    assert pa.types.is_timestamp(time_type) and time_type.tz == "UTC"
    first = table.slice(0, 1).to_pylist()[0]
    assert first["session_id"] == rows[0]["session_id"]
    assert first["connection_time"].strftime("%Y-%m-%dT%H:%M:%SZ") == rows[0]["connection_time"]
    assert first["kwh_delivered"] == pytest.approx(float(rows[0]["kwh_delivered"]))
    assert first["reached_target"] is bool(int(rows[0]["reached_target"]))
    load = pq.read_table(paths["site_load_15min_parquet"])
    with paths["site_load_15min"].open() as handle:
        csv_load = [float(r["load_kw"]) for r in csv.DictReader(handle)]
    assert load.column("load_kw").to_pylist() == pytest.approx(csv_load, abs=1e-3)


def _depot_priced(price_aware: bool, cap_kw: float | None = None):  # type: ignore[no-untyped-def]
    assert DEPOT.tariff is not None
    sessions = generate_sessions(DEPOT, START_S, 3, stations=20, seed=7)
    return FleetSimulator(
        sessions,
        start_s=START_S,
        days=3,
        station_power_kw=50.0,
        policy=None,
        grid_cap_kw=cap_kw,
        tariff=DEPOT.tariff.tariff(),
        price_aware=price_aware,
    ).run()


def test_price_aware_charging_costs_less_and_still_meets_the_departures() -> None:
    on_arrival, priced = _depot_priced(False), _depot_priced(True)
    cost = np.nansum(priced.outcome.energy_cost)
    assert cost < 0.7 * np.nansum(on_arrival.outcome.energy_cost)  # the depot's nights are off-peak
    assert priced.outcome.reached_target.mean() >= on_arrival.outcome.reached_target.mean()
    assert priced.outcome.delivered_kwh.sum() == pytest.approx(
        on_arrival.outcome.delivered_kwh.sum(), rel=0.01
    )
    assert priced.binding["price_plan"] > 0
    # Under a site cap as well: the cap holds, the price plan still saves, the deadlines barely move.
    capped = _depot_priced(True, cap_kw=300.0)
    assert capped.site_load_kw.max() <= 300.0 + 1e-6
    assert np.nansum(capped.outcome.energy_cost) < 0.8 * np.nansum(on_arrival.outcome.energy_cost)
    assert capped.outcome.reached_target.mean() >= on_arrival.outcome.reached_target.mean() - 0.03


def test_price_aware_needs_a_tariff() -> None:
    sessions = generate_sessions(DEPOT, START_S, 1, stations=2, seed=7)
    with pytest.raises(ValueError, match="needs a tariff"):
        FleetSimulator(
            sessions, start_s=START_S, days=1, station_power_kw=50.0, policy=None, price_aware=True
        )


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (scripts/test.sh installs it as root)"
)
def test_sim_report_renders_in_headless_chromium_with_the_grid_cap(tmp_path: Path) -> None:
    sessions, result = _depot(150.0, days=2)
    paths = write_outputs(tmp_path, sessions, result)
    shot = tmp_path / "report.png"
    args = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    url = paths["report"].resolve().as_uri()
    dom = subprocess.run(
        [*args, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1300,1100", url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert dom.count("<svg") >= 3 and "grid cap (kW)" in dom and "site_cap" in dom
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
