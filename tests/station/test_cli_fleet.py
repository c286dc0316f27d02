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
    wire = run_cli("simulate", "--mode", "wire", "--out", str(tmp_path / "o"))
    assert wire.returncode == 2 and "not implemented" in wire.stderr
