"""`chargeagent simulate` as users run it."""

from __future__ import annotations

import csv
from pathlib import Path

from test_cli import run_cli  # same directory (pytest prepend import mode)


def test_simulate_writes_outputs_and_is_reproducible(tmp_path: Path) -> None:
    args = ["simulate", "--stations", "4", "--days", "2", "--seed", "5", "--policy", "cc-cv"]
    first = run_cli(*args, "--out", str(tmp_path / "a"))
    second = run_cli(*args, "--out", str(tmp_path / "b"))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "station-steps per second" in first.stdout
    for name in ("sessions.csv", "site_load_1min.csv", "site_load_15min.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    with (tmp_path / "a" / "site_load_15min.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 96
    assert (tmp_path / "a" / "sim_report.html").stat().st_size > 1000


def test_simulate_bad_site_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "site.toml"
    bad.write_text(
        '[site]\nname = "x"\nkind = "workplace"\nstations = -3\n[arrivals]\nweekday_per_station = 1\n'
        'weekend_per_station = 0\n[dwell]\nmedian_h = 2\n[[vehicles]]\nname = "a"\nshare = 1\n'
        'capacity_kwh = 50\nchemistry = "nmc"\nmax_charge_power_kw = 50\n'
    )
    result = run_cli("simulate", "--site", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "stations" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    bogus = run_cli("simulate", "--mode", "bogus", "--out", str(tmp_path / "o"))
    assert bogus.returncode == 2 and "--mode" in bogus.stderr


QUICK_SITE = """
[site]
name = "quick"
kind = "workplace"
station_max_power_kw = 22.0
[arrivals]
weekday_per_station = 1.0
weekend_per_station = 1.0
[dwell]
median_h = 0.5
min_h = 0.25
max_h = 1.0
[energy]
soc_arrival_mean = 0.7
soc_target = 0.85
[[vehicles]]
name = "compact"
share = 1
capacity_kwh = 40
chemistry = "nmc"
max_charge_power_kw = 100
"""


def test_simulate_wire_mode_writes_outputs_and_the_ocpp_log(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(QUICK_SITE)
    out = tmp_path / "out"
    args = ["--stations", "2", "--days", "1", "--seed", "1", "--site", str(site), "--policy", "cc-cv"]
    result = run_cli("simulate", "--mode", "wire", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "failed calls" in result.stdout and "sessions per second" in result.stdout
    with (out / "site_load_15min.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 96
    with (out / "sessions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(r["kwh_delivered"]) > 0 for r in rows)
    log = (out / "ocpp_log.jsonl").read_text().splitlines()
    assert any('"action":"TransactionEvent"' in line for line in log)
    assert (out / "sim_report.html").stat().st_size > 1000


def test_simulate_with_a_grid_cap_keeps_the_site_under_it_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "capped"
    result = run_cli(
        "simulate", "--site", "config/sites/depot.toml", "--stations", "12", "--days", "2",
        "--policy", "cc-cv", "--grid-cap-kw", "120", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "grid_cap_kw" in result.stdout
    with (out / "site_load_1min.csv").open() as handle:
        loads = [float(row["load_kw"]) for row in csv.DictReader(handle)]
    assert max(loads) <= 120.0 + 1e-6 and max(loads) > 100.0  # the cap binds, and is used
    report = (out / "sim_report.html").read_text()
    assert "grid cap (kW)" in report and "site_cap" in report
    bad = run_cli("simulate", "--grid-cap-kw", "-5", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "--grid-cap-kw must be > 0" in bad.stderr
    wire = run_cli("simulate", "--mode", "wire", "--grid-cap-kw", "50", "--out", str(tmp_path / "o"))
    assert wire.returncode == 2 and "--mode fast only" in wire.stderr


def test_simulate_price_aware_reports_the_cost_and_needs_a_tariff(tmp_path: Path) -> None:
    out = tmp_path / "priced"
    result = run_cli(
        "simulate", "--site", "config/sites/depot.toml", "--stations", "6", "--days", "1",
        "--policy", "cc-cv", "--price-aware", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "energy_cost" in result.stdout
    with (out / "sessions.csv").open() as handle:
        costs = [float(row["energy_cost"]) for row in csv.DictReader(handle)]
    assert costs and all(c >= 0.0 for c in costs)
    no_tariff = run_cli("simulate", "--price-aware", "--out", str(tmp_path / "o"))  # workplace: no [tariff]
    assert no_tariff.returncode == 2 and "--price-aware needs a [tariff]" in no_tariff.stderr
    fast_api = run_cli("simulate", "--api-port", "0", "--out", str(tmp_path / "o"))
    assert fast_api.returncode == 2 and "--api-port needs --mode wire" in fast_api.stderr


def test_simulate_csms_url_needs_wire_mode_and_a_websocket_url(tmp_path: Path) -> None:
    fast = run_cli("simulate", "--csms-url", "ws://127.0.0.1:9/ocpp", "--out", str(tmp_path / "o"))
    assert fast.returncode == 2 and "--csms-url needs --mode wire" in fast.stderr
    http = run_cli("simulate", "--mode", "wire", "--csms-url", "http://x/ocpp", "--out", str(tmp_path / "o"))
    assert http.returncode == 2 and "ws:// or wss://" in http.stderr


def test_simulate_on_a_local_ray_runtime_writes_what_one_machine_writes(tmp_path: Path) -> None:
    args = ["simulate", "--stations", "4", "--days", "1", "--seed", "2", "--policy", "cc-cv"]
    here = run_cli(*args, "--out", str(tmp_path / "here"))
    ray = run_cli(
        *args, "--ray-address", "local", "--workers", "2", "--out", str(tmp_path / "ray"), timeout=240
    )
    assert here.returncode == 0, here.stderr
    assert ray.returncode == 0, ray.stderr[-2000:]
    assert "ray: connected in" in ray.stdout
    assert (tmp_path / "ray" / "sessions.csv").read_text() == (tmp_path / "here" / "sessions.csv").read_text()
    capped = run_cli(*args, "--ray-address", "local", "--grid-cap-kw", "50", "--out", str(tmp_path / "c"))
    assert capped.returncode == 2 and "site grid cap" in capped.stderr


def test_simulate_wire_mode_over_two_processes_matches_one(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(QUICK_SITE)
    args = ["simulate", "--mode", "wire", "--stations", "2", "--days", "1", "--seed", "1",
            "--site", str(site), "--policy", "cc-cv"]  # fmt: skip
    one = run_cli(*args, "--out", str(tmp_path / "one"), timeout=240)
    two = run_cli(*args, "--processes", "2", "--out", str(tmp_path / "two"), timeout=240)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "failed calls" in two.stdout and "wire mode" in two.stdout
    assert (tmp_path / "two" / "sessions.csv").read_text() == (tmp_path / "one" / "sessions.csv").read_text()
    assert (tmp_path / "two" / "ocpp_log.jsonl").stat().st_size > 0
    bad = run_cli("simulate", "--processes", "2", "--out", str(tmp_path / "b"))
    assert bad.returncode == 2 and "--processes" in bad.stderr
