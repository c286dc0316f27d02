"""`chargeagent health` (battery health from CHARGES.csv) and `health-sim` (example data with known truth)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from chargeagent.errors import ChargeAgentError
from policy.health_estimators import HealthSpec
from policy.physics_params import Chemistry

console = Console()
# Defaults = config/default.toml [sim] (the simulated pack); tests/station/test_cli_health.py checks it.
_DEFAULT = HealthSpec()


def _spec(capacity_ah: float, chemistry: str, series_cells: int) -> HealthSpec:
    if chemistry not in ("nmc", "lfp"):
        _fail(f"--chemistry must be nmc or lfp (got {chemistry!r})")
    if not (math.isfinite(capacity_ah) and capacity_ah > 0.0):
        _fail(f"--capacity-ah must be a positive number (got {capacity_ah})")
    if series_cells < 1:
        _fail(f"--series-cells must be >= 1 (got {series_cells})")
    return HealthSpec(
        capacity_ah=capacity_ah, chemistry=cast(Chemistry, chemistry), series_cells=series_cells
    )


def _fail(message: str) -> None:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(2)


def health(
    history: Annotated[Path, typer.Option(help="CHARGES.csv: one battery's charging sessions.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    capacity_ah: Annotated[float, typer.Option(help="Rated pack capacity, Ah.")] = _DEFAULT.capacity_ah,
    chemistry: Annotated[str, typer.Option(help="nmc | lfp")] = _DEFAULT.chemistry,
    series_cells: Annotated[int, typer.Option(help="Cells in series in the pack.")] = _DEFAULT.series_cells,
) -> None:
    """Capacity SoH and resistance growth (p10/p50/p90), degradation forecast, knee and alerts."""
    from policy.health import assess, read_charges  # noqa: PLC0415 - numpy work only when asked

    spec = _spec(capacity_ah, chemistry, series_cells)
    try:
        report = assess(read_charges(history), spec)
    except ChargeAgentError as exc:
        _fail(str(exc))
        return
    doc = report.to_json()
    if json_out:
        typer.echo(json.dumps(doc))
        return
    table = Table(title=f"battery health: {history.name} ({doc['sessions_used']} sessions)")
    for col in ("", "p10", "p50", "p90"):
        table.add_column(col, justify="right")
    table.add_row("capacity SoH", *(f"{doc['capacity_soh'][k]:.3f}" for k in ("p10", "p50", "p90")))
    table.add_row("resistance x new", *(f"{doc['resistance_growth'][k]:.3f}" for k in ("p10", "p50", "p90")))
    table.add_row("EFC to 80 % SoH", *(str(doc["cycles_to_80pct"][k]) for k in ("p10", "p50", "p90")))
    if doc["calendar"] is not None:
        dates = doc["calendar"]["date_80pct"]
        table.add_row("date of 80 % SoH", *(dates[k] for k in ("p10", "p50", "p90")))
    for point in doc["forecast"][:5]:
        soh = point["capacity_soh"]
        table.add_row(
            f"SoH at {point['equivalent_full_cycles']} EFC", *(f"{soh[k]:.3f}" for k in ("p10", "p50", "p90"))
        )
    console.print(table)
    if doc["calendar"] is not None:
        cal = doc["calendar"]
        console.print(
            f"usage: {cal['efc_per_day']} EFC/day over {cal['observed_days']} days (dates assume it goes on)"
        )
    console.print(f"knee detected: {'yes' if doc['knee_detected'] else 'no'}")
    for alert in doc["alerts"]:
        console.print(f"[bold yellow]{alert['type']}[/]: {alert['message']} (from {alert['session_id']})")


def health_sim(
    out: Annotated[Path, typer.Option(help="Where to write CHARGES.csv.")],
    sessions: Annotated[int, typer.Option(help="Charging sessions to simulate.")] = 50,
    knee_efc: Annotated[float | None, typer.Option(help="Inject a capacity knee at this EFC.")] = None,
    resistance_jump_session: Annotated[
        int | None, typer.Option(help="Resistance x1.3 from this session on.")
    ] = None,
    cooling_fault_session: Annotated[
        int | None, typer.Option(help="Cooling fails (abnormal heating) from this session on.")
    ] = None,
    bms_soh_error: Annotated[
        float | None, typer.Option(help="BMS SoH error (adds the bms_soh column).")
    ] = None,
    start_efc: Annotated[float, typer.Option(help="The battery's EFC at the first session.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Same seed, same battery and data.")] = 0,
    capacity_ah: Annotated[float, typer.Option(help="Rated pack capacity, Ah.")] = _DEFAULT.capacity_ah,
    chemistry: Annotated[str, typer.Option(help="nmc | lfp")] = _DEFAULT.chemistry,
    series_cells: Annotated[int, typer.Option(help="Cells in series in the pack.")] = _DEFAULT.series_cells,
) -> None:
    """Simulate one battery's charging history with a known SoH path and write CHARGES.csv."""
    from policy.health_csv import write_charges  # noqa: PLC0415
    from simulators.battery_history import HistoryConfig, simulate_history  # noqa: PLC0415

    spec = _spec(capacity_ah, chemistry, series_cells)
    if not 1 <= sessions <= 100_000:
        _fail(f"--sessions must be within 1..100000 (got {sessions})")
    if not (math.isfinite(start_efc) and start_efc >= 0.0):
        _fail(f"--start-efc must be >= 0 (got {start_efc})")
    if knee_efc is not None and not (math.isfinite(knee_efc) and knee_efc >= 0.0):
        _fail(f"--knee-efc must be >= 0 (got {knee_efc})")
    if bms_soh_error is not None and not (math.isfinite(bms_soh_error) and abs(bms_soh_error) < 0.5):
        _fail(f"--bms-soh-error must be within (-0.5, 0.5) (got {bms_soh_error})")
    config = HistoryConfig(
        sessions=sessions,
        chemistry=spec.chemistry,
        capacity_ah=spec.capacity_ah,
        series_cells=spec.series_cells,
        start_efc=start_efc,
        knee_efc=knee_efc,
        resistance_jump_session=resistance_jump_session,
        cooling_fault_session=cooling_fault_session,
        bms_soh_error=bms_soh_error,
        write_bms_soh=bms_soh_error is not None,
        seed=seed,
    )
    result = simulate_history(config)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_charges(out, result.sessions)
    except OSError as exc:
        _fail(f"{out}: cannot write: {exc.strerror or exc}")
    rows = sum(s.time_s.size for s in result.sessions)
    console.print(
        f"wrote {len(result.sessions)} sessions ({rows} rows) to {out}; truth: capacity SoH "
        f"{result.capacity_soh[0]:.3f} -> {result.capacity_soh[-1]:.3f}, resistance x "
        f"{result.resistance_growth[0]:.2f} -> {result.resistance_growth[-1]:.2f} over "
        f"{result.efc[0]:.0f}-{result.efc[-1]:.0f} EFC"
    )


def register(app: typer.Typer) -> None:
    app.command(name="health")(health)
    app.command(name="health-sim")(health_sim)
