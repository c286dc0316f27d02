"""`chargeagent forecast`, `backtest-forecast` and `site-load`: the load forecaster on the command line.

Contract (DESIGN.md): HISTORY.csv `interval_start,load_kw` (15-min, strictly before --start), optional
SESSIONS.csv `session_id,station_id,connection_time,disconnect_time,kwh_delivered`, FORECAST.csv
`interval_start,p10_kw,p50_kw,p90_kw` over [start, start+horizon). Bad input exits 2 with one line on
stderr naming the file, row and column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from chargeagent.errors import ChargeAgentError
from policy.forecast_features import ChargingIntervals
from policy.forecast_io import LoadHistory, format_utc, parse_utc, read_history_csv

console = Console()
if not console.is_terminal:  # piped or in CI: don't wrap the summary lines and tables at 80 columns
    console = Console(width=140)
HISTORY_STEP_S = 900  # DESIGN.md: HISTORY.csv is 15-min
_MAX_LEAD_S = 7 * 86_400  # the weekly lag must be observed for every forecast interval


def _fail(message: str) -> NoReturn:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(2)


def _time_option(name: str, text: str) -> int:
    try:
        stamp = parse_utc(text)
    except ValueError:
        _fail(f"{name}: not an ISO 8601 time: {text!r}")
    if stamp % HISTORY_STEP_S:
        _fail(f"{name}: {text} is not on the 15-min grid")
    return int(stamp)


def _sessions(path: Path | None, station_power_kw: float) -> ChargingIntervals | None:
    if path is None:
        return None
    from simulators.arrivals import read_sessions_csv  # noqa: PLC0415

    if not (math.isfinite(station_power_kw) and station_power_kw > 0):
        _fail(f"--station-power-kw must be > 0 (got {station_power_kw})")
    replay = read_sessions_csv(path, station_power_kw)
    return ChargingIntervals(replay.connection_s, replay.charge_end_s, replay.power_kw)


HistoryOpt = Annotated[Path, typer.Option(help="HISTORY.csv: interval_start,load_kw (15-min, UTC).")]
SessionsOpt = Annotated[
    Path | None,
    typer.Option(help="SESSIONS.csv: session_id,station_id,connection_time,disconnect_time,kwh_delivered."),
]
PowerOpt = Annotated[
    float, typer.Option(help="Charging power assumed for SESSIONS.csv rows (at least kWh/dwell).")
]


def forecast(
    history: HistoryOpt,
    start: Annotated[str, typer.Option(help="First forecast interval, ISO 8601 UTC.")],
    out: Annotated[Path, typer.Option(help="FORECAST.csv to write.")],
    sessions: SessionsOpt = None,
    horizon_h: Annotated[float, typer.Option(help="Hours to forecast.")] = 36.0,
    interval_min: Annotated[int, typer.Option(help="Output interval, a multiple of 15 min.")] = 15,
    station_power_kw: PowerOpt = 22.0,
    site_id: Annotated[str, typer.Option(help="Site id for --message-out.")] = "site",
    message_out: Annotated[
        Path | None, typer.Option(help="Also write the upstream JSON message (config/schemas/forecast).")
    ] = None,
) -> None:
    """Forecast the site load (p10/p50/p90) from its history and the EVs plugged in at --start."""
    from policy.forecast import ForecastConfig, LoadForecaster, forecast_message  # noqa: PLC0415
    from policy.forecast_io import write_forecast_csv  # noqa: PLC0415

    start_s = _time_option("--start", start)
    if interval_min <= 0 or (interval_min * 60) % HISTORY_STEP_S:
        _fail(f"--interval-min must be a positive multiple of 15 (got {interval_min})")
    interval_s = interval_min * 60
    horizon_s = horizon_h * 3600
    if not (math.isfinite(horizon_s) and horizon_s > 0) or horizon_s % interval_s:
        _fail(f"--horizon-h must be > 0 and a whole number of {interval_min}-min intervals (got {horizon_h})")
    steps = int(horizon_s) // HISTORY_STEP_S
    try:
        hist = read_history_csv(history, HISTORY_STEP_S, before_s=start_s)
        known = _sessions(sessions, station_power_kw)
        lead_steps = (start_s - hist.end_s) // HISTORY_STEP_S + steps
        if lead_steps * HISTORY_STEP_S > _MAX_LEAD_S:
            _fail(f"{history}: ends {format_utc(hist.end_s)}; the forecast must end within 7 days of it")
        config = ForecastConfig(max_horizon_steps=max(144, int(lead_steps)))
        model = LoadForecaster(config).fit(hist, known)
        result = model.predict(start_s, steps).resampled(interval_s)
    except ChargeAgentError as exc:
        _fail(str(exc))
    write_forecast_csv(out, result.start_s, result.step_s, result.p10_kw, result.p50_kw, result.p90_kw)
    if message_out is not None:
        doc = forecast_message(result, site_id, generated_at_s=hist.end_s)
        message_out.write_text(json.dumps(doc, indent=1) + "\n")
    if result.method != "quantile_gbm":
        typer.echo(
            f"chargeagent: note: {hist.days():.1f} days of history (< {config.min_history_days:g}): "
            f"{result.method} forecast (cold start)",
            err=True,
        )
    known_kwh = float(result.committed_kw.sum()) * result.step_s / 3600
    console.print(
        f"wrote {out}: {len(result.p50_kw)} intervals from {format_utc(result.start_s)}, "
        f"method {result.method}, plugged-in energy {known_kwh:.1f} kWh, "
        f"p50 energy {float(result.p50_kw.sum()) * result.step_s / 3600:.1f} kWh"
    )


def backtest_forecast(
    history: HistoryOpt,
    sessions: SessionsOpt = None,
    origins: Annotated[int, typer.Option(help="Rolling origins (midnights, one day apart).")] = 14,
    horizon_h: Annotated[float, typer.Option(help="Hours forecast from each origin.")] = 36.0,
    station_power_kw: PowerOpt = 22.0,
) -> None:
    """WAPE, MASE, pinball loss and p10-p90 coverage: our model vs three baselines, same origins."""
    from policy.forecast import ForecastConfig  # noqa: PLC0415
    from policy.forecast_backtest import run_backtest, wape_gain  # noqa: PLC0415

    if origins < 1:
        _fail(f"--origins must be >= 1 (got {origins})")
    horizon_s = horizon_h * 3600
    if not (math.isfinite(horizon_s) and horizon_s > 0) or horizon_s % HISTORY_STEP_S:
        _fail(f"--horizon-h must be > 0 and a whole number of 15-min intervals (got {horizon_h})")
    try:
        hist = read_history_csv(history, HISTORY_STEP_S)
        known = _sessions(sessions, station_power_kw)
        config = ForecastConfig(max_horizon_steps=int(horizon_s) // HISTORY_STEP_S)
        scores = run_backtest(hist, origins, config, known)
    except ChargeAgentError as exc:
        _fail(str(exc))
    table = Table(title=f"backtest: {origins} origins × {horizon_h:g} h, {hist.days():.0f} days of history")
    for column in ("method", "WAPE", "MASE", "pinball kW", "p10-p90 coverage"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for s in scores:
        coverage = "—" if s.coverage is None else f"{s.coverage:.3f}"
        table.add_row(s.method, f"{s.wape:.3f}", f"{s.mase:.3f}", f"{s.pinball_kw:.2f}", coverage)
    console.print(table)
    console.print(f"p50 WAPE vs best baseline: {wape_gain(scores):+.1%} better")


def site_load(
    site: Annotated[Path, typer.Option(help="Site TOML (config/sites/*.toml).")],
    out: Annotated[Path, typer.Option(help="HISTORY.csv to write (15-min site load).")],
    days: Annotated[int, typer.Option(help="Days to generate.")] = 56,
    stations: Annotated[int | None, typer.Option(help="Stations (default: the site file's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 1,
    start: Annotated[str, typer.Option(help="First day, ISO 8601 UTC.")] = "2024-01-01T00:00:00Z",
    sessions_out: Annotated[Path | None, typer.Option(help="Also write SESSIONS.csv.")] = None,
) -> None:
    """Synthetic site load history from the EV arrival generator (uncontrolled charging)."""
    from policy.forecast_io import write_history_csv  # noqa: PLC0415
    from simulators.arrivals import generate_sessions, site_load_kw, write_sessions_csv  # noqa: PLC0415
    from simulators.site_config import load_site  # noqa: PLC0415

    start_s = _time_option("--start", start)
    if not 1 <= days <= 3660:
        _fail(f"--days must be 1..3660 (got {days})")
    if stations is not None and stations < 1:
        _fail(f"--stations must be >= 1 (got {stations})")
    try:
        config = load_site(site)
    except ChargeAgentError as exc:
        _fail(str(exc))
    generated = generate_sessions(config, start_s, days, stations, seed)
    load_kw = site_load_kw(generated, start_s, days * 96, HISTORY_STEP_S)
    write_history_csv(out, LoadHistory(start_s, HISTORY_STEP_S, load_kw))
    if sessions_out is not None:
        write_sessions_csv(sessions_out, generated)
    console.print(
        f"wrote {out}: {days} days of {config.site.name}, {len(generated)} sessions "
        f"({generated.rejected} turned away), {float(np.sum(generated.delivered_kwh)):.0f} kWh, "
        f"peak {float(load_kw.max(initial=0.0)):.1f} kW (15-min mean)"
    )


def register(app: typer.Typer) -> None:
    app.command(name="forecast")(forecast)
    app.command(name="backtest-forecast")(backtest_forecast)
    app.command(name="site-load")(site_load)
