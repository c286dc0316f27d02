"""`chargeagent health` and `health-sim` as users run them (subprocesses)."""

from __future__ import annotations

import json

import pytest
from test_cli import run_cli  # same directory (pytest prepend import mode)
from typer.testing import CliRunner

from chargeagent.config import load_settings
from policy.health_estimators import HealthSpec
from station.cli import app


def run_in_process(*args: str):
    """The same app without a new interpreter (the error paths; the contract runs as a subprocess)."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def charges(tmp_path_factory):
    path = tmp_path_factory.mktemp("health") / "CHARGES.csv"
    result = run_cli(
        "health-sim", "--out", str(path), "--sessions", "25", "--resistance-jump-session", "18", "--seed", "5"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 25 sessions" in result.stdout
    return path


def test_health_json_contract(charges):
    result = run_cli("health", "--history", str(charges), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "capacity_soh",
        "resistance_growth",
        "forecast",
        "cycles_to_80pct",
        "calendar",
        "knee_detected",
        "alerts",
        "sessions_used",
    }
    q = doc["capacity_soh"]
    assert 0.9 < q["p10"] <= q["p50"] <= q["p90"] <= 1.0
    assert doc["sessions_used"] == 25
    assert doc["knee_detected"] is False
    assert len(doc["forecast"]) >= 5
    assert all(p["capacity_soh"]["p10"] <= p["capacity_soh"]["p90"] for p in doc["forecast"])
    c = doc["cycles_to_80pct"]
    assert 0 < c["p10"] <= c["p50"] <= c["p90"]
    dates = doc["calendar"]["date_80pct"]  # 25 daily sessions: long enough to measure the usage rate
    assert doc["calendar"]["efc_per_day"] > 0 and dates["p10"] <= dates["p50"] <= dates["p90"]
    (alert,) = doc["alerts"]
    assert alert["type"] == "resistance_jump"
    assert {"growth_before", "growth_after", "t_stat"} <= set(alert["evidence"])


def test_health_table_without_json(charges):
    result = run_in_process("health", "--history", str(charges))
    assert result.exit_code == 0, result.output
    assert "capacity SoH" in result.stdout and "resistance_jump" in result.stdout
    assert "date of 80 % SoH" in result.stdout and "EFC/day" in result.stdout


@pytest.mark.parametrize(
    ("replace", "row", "column"),
    [
        (("2024-01-02T", "2024-01-32T"), 2, "timestamp"),
        ((",voltage_v,", ",volts,"), 1, "voltage_v"),
    ],
)
def test_malformed_history_exits_2_naming_row_and_column(charges, tmp_path, replace, row, column):
    lines = charges.read_text().splitlines()
    lines[row - 1] = lines[row - 1].replace(*replace, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = run_in_process("health", "--history", str(bad), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert str(bad) in line and f"row {row}" in line and repr(column) in line


def test_non_numeric_value_exits_2(charges, tmp_path):
    lines = charges.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = "12.5A"
    lines[5] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = run_in_process("health", "--history", str(bad))
    assert result.exit_code == 2
    assert "row 6" in result.stderr and "'current_a'" in result.stderr and "12.5A" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_options_exit_2(charges, tmp_path):
    for args in (
        ("health", "--history", str(charges), "--chemistry", "lead-acid"),
        ("health", "--history", str(charges), "--capacity-ah", "-5"),
        ("health", "--history", str(tmp_path / "missing.csv")),
        ("health-sim", "--out", str(tmp_path / "x.csv"), "--sessions", "0"),
    ):
        result = run_in_process(*args)
        assert result.exit_code == 2, args
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_defaults_match_the_simulated_pack_in_default_toml():
    sim = load_settings().sim
    spec = HealthSpec()
    assert (spec.capacity_ah, spec.chemistry, spec.series_cells) == (
        sim.capacity_ah,
        sim.chemistry,
        sim.series_cells,
    )
