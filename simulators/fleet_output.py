"""Fleet simulation outputs: per-session CSV, site load at 1 and 15 min (each also as Parquet when the
[fleet] extra's pyarrow is installed: `simulators.fleet_parquet`), summary, `sim_report.html`."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from policy.forecast_io import format_utc
from policy.physics import FloatArray
from simulators import fleet_parquet
from simulators.arrivals import Sessions
from simulators.fleet import FleetResult, SessionOutcome

SESSION_FIELDS = (
    "session_id",
    "station_id",
    "vehicle",
    "chemistry",
    "connection_time",
    "disconnect_time",
    "soh",
    "soc_start",
    "soc_end",
    "kwh_delivered",
    "charge_minutes",
    "peak_cell_temp_c",
    "capacity_loss_ppm",
    "reached_target",
    "plan_source",
    "energy_cost",
    "est_soh_p10",
    "est_soh_p50",
    "est_soh_p90",
    "health_alerts",
    "est_cycles_to_80_p10",
    "est_cycles_to_80_p50",
    "est_cycles_to_80_p90",
)


def summary(sessions: Sessions, result: FleetResult) -> dict[str, float]:
    o = result.outcome
    done = _simulated_rows(sessions, result)
    charged = done & (o.charge_minutes > 0)
    return {
        "sessions": float(done.sum()),
        "energy_kwh": float(o.delivered_kwh[done].sum()),
        "peak_site_kw": float(result.site_load_kw.max(initial=0.0)),
        **({} if result.grid_cap_kw is None else {"grid_cap_kw": result.grid_cap_kw}),
        **(
            {"energy_cost": float(np.nansum(o.energy_cost[done]))} if np.isfinite(o.energy_cost).any() else {}
        ),
        "reached_target_share": float(o.reached_target[done].mean()) if done.any() else 0.0,
        "mean_charge_minutes": float(o.charge_minutes[charged].mean()) if charged.any() else 0.0,
        "mean_capacity_loss_ppm": float(o.capacity_loss[charged].mean() * 1e6) if charged.any() else 0.0,
        "rejected_arrivals": float(sessions.rejected),
        "chunks_done": float(result.chunks_done),
        "chunks_total": float(result.chunks_total),
    }


def _simulated_rows(sessions: Sessions, result: FleetResult) -> np.ndarray:
    """Sessions whose day was simulated (all of them unless the run was interrupted)."""
    day = np.floor((sessions.connection_s - result.start_s) / 86_400.0)
    days_done = np.unique(day)[: result.chunks_done]
    return np.isin(day, days_done)


def write_outputs(out_dir: Path, sessions: Sessions, result: FleetResult) -> dict[str, Path]:
    """Write every output for the days simulated so far; a partial run gives valid, shorter files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = _simulated_rows(sessions, result)
    paths = {"sessions": out_dir / "sessions.csv"}
    columns = _session_columns(sessions, result, np.flatnonzero(done))
    with paths["sessions"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SESSION_FIELDS)
        for row in zip(*(_csv_text(name, values) for name, values in columns.items()), strict=True):
            writer.writerow(row)
    if fleet_parquet.available():
        paths["sessions_parquet"] = fleet_parquet.write_sessions(out_dir / "sessions.parquet", columns)
    load = result.site_load_kw
    steps_done = _steps_done(sessions, result)
    for name, per in (("site_load_1min", 1), ("site_load_15min", 15)):
        n = steps_done // per
        values = load[: n * per].reshape(n, per).mean(axis=1)
        paths[name] = out_dir / f"{name}.csv"
        with paths[name].open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("interval_start", "load_kw"))
            for k, v in enumerate(values):
                writer.writerow((format_utc(result.start_s + k * per * result.step_s), f"{v:.3f}"))
        if fleet_parquet.available():
            path = out_dir / f"{name}.parquet"
            paths[f"{name}_parquet"] = fleet_parquet.write_load(
                path, result.start_s, per * result.step_s, values
            )
    paths["report"] = write_report(out_dir / "sim_report.html", sessions, result)
    return paths


def _session_columns(sessions: Sessions, result: FleetResult, rows: np.ndarray) -> dict[str, Any]:
    """The per-session outputs, one list or array per SESSION_FIELDS column (times in epoch seconds)."""
    o = result.outcome
    return {
        "session_id": [sessions.session_id[i] for i in rows],
        "station_id": [sessions.station_id[i] for i in rows],
        "vehicle": [sessions.vehicle[i] for i in rows],
        "chemistry": [sessions.chemistry[i] for i in rows],
        "connection_time": np.asarray(sessions.connection_s, dtype=np.float64)[rows],
        "disconnect_time": np.asarray(sessions.disconnect_s, dtype=np.float64)[rows],
        "soh": np.round(np.asarray(sessions.soh, dtype=np.float64)[rows], 3),
        "soc_start": np.round(o.soc_start[rows], 4),
        "soc_end": np.round(o.soc_end[rows], 4),
        "kwh_delivered": np.round(o.delivered_kwh[rows], 3),
        "charge_minutes": np.round(o.charge_minutes[rows]),
        "peak_cell_temp_c": np.round(o.peak_cell_temp_c[rows], 1),
        "capacity_loss_ppm": np.round(o.capacity_loss[rows] * 1e6, 2),
        "reached_target": o.reached_target[rows].astype(bool),
        "plan_source": [o.plan_source[i] or "cc_cv" for i in rows],
        "energy_cost": np.round(o.energy_cost[rows], 4),  # NaN (empty in the CSV) without a tariff
        # The agents' own estimate (wire mode; empty in fast mode, which runs no agents).
        "est_soh_p10": np.round(o.est_soh[rows, 0], 4),
        "est_soh_p50": np.round(o.est_soh[rows, 1], 4),
        "est_soh_p90": np.round(o.est_soh[rows, 2], 4),
        "health_alerts": [o.health_alerts[i] for i in rows],
        "est_cycles_to_80_p10": o.est_cycles_80[rows, 0],
        "est_cycles_to_80_p50": o.est_cycles_80[rows, 1],
        "est_cycles_to_80_p90": o.est_cycles_80[rows, 2],
    }


_FORMATS = {
    "soh": "{:.3f}",
    "soc_start": "{:.4f}",
    "soc_end": "{:.4f}",
    "kwh_delivered": "{:.3f}",
    "charge_minutes": "{:.0f}",
    "peak_cell_temp_c": "{:.1f}",
    "capacity_loss_ppm": "{:.2f}",
}


def _csv_text(name: str, values: Any) -> list[str]:
    if name.endswith("_time"):
        return [format_utc(float(v)) for v in values]
    if name == "reached_target":
        return [str(int(v)) for v in values]
    if name == "energy_cost" or name.startswith("est_soh"):
        return ["" if not np.isfinite(v) else f"{float(v):.4f}" for v in values]
    if name.startswith("est_cycles"):
        return ["" if not np.isfinite(v) else str(round(float(v))) for v in values]
    fmt = _FORMATS.get(name)
    return [fmt.format(float(v)) if fmt else str(v) for v in values]


def _steps_done(sessions: Sessions, result: FleetResult) -> int:
    if result.chunks_done >= result.chunks_total:
        return int(result.site_load_kw.size)
    done = _simulated_rows(sessions, result)
    end_s = float(sessions.disconnect_s[done].max()) if done.any() else result.start_s
    return int(min(result.site_load_kw.size, max(0.0, (end_s - result.start_s) / result.step_s)))


def _ev_section(sessions: Sessions, result: FleetResult) -> str:
    """SoC, current and hottest-cell temperature of the sampled sessions, minute by minute."""
    from simulators.report import xy_chart  # noqa: PLC0415

    parts = []
    for row, series in sorted(result.traces.items()):
        if len(series) < 2:
            continue
        t0 = float(sessions.connection_s[row])
        minutes = [(t - t0) / 60.0 for t, _, _, _ in series]
        panels = (("SoC", 1, 100.0, "%", False), ("pack current", 2, 1.0, "A", True),
                  ("hottest cell", 3, 1.0, "°C", False))  # fmt: skip
        charts = [
            xy_chart([(name, minutes, [point[k] * scale for point in series], False)],
                     x_title="minutes since plug-in", y_title=unit, include_zero=zero)
            for name, k, scale, unit, zero in panels
        ]  # fmt: skip
        title = (
            f"{escape(sessions.session_id[row])} at {escape(sessions.station_id[row])}: "
            f"{escape(sessions.vehicle[row] or 'replayed session')}, SoH {float(sessions.soh[row]):.2f}"
        )
        parts.append(f"<h3>{title}</h3>{''.join(charts)}")
    if not parts:
        return ""
    return "<h2>Sample EVs (SoC, current, temperature)</h2>" + "".join(parts)


def _health_section(sessions: Sessions, o: SessionOutcome, rows: np.ndarray) -> str:
    """Each battery's health as the station estimated it (wire mode) against the simulated truth."""
    from simulators.report import xy_chart  # noqa: PLC0415

    rows = rows[np.isfinite(o.est_soh[rows, 1])]
    if rows.size == 0:
        return ""
    truth = np.asarray(sessions.soh, dtype=np.float64)[rows]
    order = rows[np.argsort(truth, kind="stable")]
    x = list(range(1, order.size + 1))
    soh = np.asarray(sessions.soh, dtype=np.float64)
    chart = xy_chart(
        [
            ("true SoH (simulated pack)", x, list(soh[order]), False),
            ("station estimate p50", x, list(o.est_soh[order, 1]), False),
            ("p10", x, list(o.est_soh[order, 0]), True),
            ("p90", x, list(o.est_soh[order, 2]), True),
        ],
        x_title="battery (sorted by true SoH)",
        y_title="capacity SoH",
    )
    inside = float(np.mean((o.est_soh[rows, 0] <= soh[rows]) & (soh[rows] <= o.est_soh[rows, 2])))
    error = o.est_soh[rows, 1] - soh[rows]
    alerts = Counter(a for i in rows for a in o.health_alerts[i].split(",") if a)
    alert_rows = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in alerts.most_common())
    return (
        "<h2>Battery health (the agents' own estimates)</h2>"
        f"<p>{rows.size} batteries, one charging session each: estimate p50 − truth mean "
        f"{error.mean():+.3f}, max |error| {np.abs(error).max():.3f}; the p10–p90 band holds the truth for "
        f"{inside:.0%}. The station does not know a pack's age, so one session sets the level; a session "
        "too short to measure capacity leaves the wide prior band (docs/health.md).</p>"
        f"{chart}<table><tr><td>alerts</td><td>{sum(alerts.values())}</td></tr>{alert_rows}</table>"
        + _health_table(sessions, o, rows)
    )


_HEALTH_TABLE_ROWS = 25


def _health_table(sessions: Sessions, o: SessionOutcome, rows: np.ndarray) -> str:
    """The batteries with the lowest estimates: SoH band, forecast band (EFC to 80 %), alerts."""
    order = rows[np.argsort(o.est_soh[rows, 1], kind="stable")][:_HEALTH_TABLE_ROWS]
    soh = np.asarray(sessions.soh, dtype=np.float64)

    def band(values: FloatArray, fmt: str) -> str:
        if not np.all(np.isfinite(values)):
            return "—"
        return " · ".join(fmt.format(float(v)) for v in values)

    body = "".join(
        f"<tr><td>{escape(sessions.session_id[i])}</td><td>{escape(sessions.vehicle[i])}</td>"
        f"<td>{soh[i]:.3f}</td><td>{band(o.est_soh[i], '{:.3f}')}</td>"
        f"<td>{band(o.est_cycles_80[i], '{:.0f}')}</td><td>{escape(o.health_alerts[i]) or '—'}</td></tr>"
        for i in order
    )
    cycles = o.est_cycles_80[rows, 1]
    cycles = cycles[np.isfinite(cycles)]
    median = f"; median forecast p50 {np.median(cycles):.0f} EFC to 80 %" if cycles.size else ""
    return (
        f"<h3>Lowest estimates ({order.size} of {rows.size} batteries{median})</h3>"
        "<p>Estimate and forecast bands are p10 · p50 · p90. EFC to 80 %: equivalent full cycles left before "
        "capacity falls below 80 % (a one-session history: the population's trend from the estimated "
        "level). Every battery is in sessions.csv (est_soh_*, est_cycles_to_80_*, health_alerts).</p>"
        "<table><tr><th>session</th><th>vehicle</th><th>true SoH</th><th>est. SoH</th>"
        f"<th>EFC to 80 %</th><th>alerts</th></tr>{body}</table>"
    )


def write_report(path: Path, sessions: Sessions, result: FleetResult) -> Path:
    from simulators.report import xy_chart  # noqa: PLC0415

    s = summary(sessions, result)
    o, done = result.outcome, _simulated_rows(sessions, result)
    n15 = _steps_done(sessions, result) // 15
    load15 = result.site_load_kw[: n15 * 15].reshape(n15, 15).mean(axis=1)
    hours = [k / 4.0 for k in range(n15)]
    lines = [("site load (kW)", hours, list(load15), False)]
    if result.grid_cap_kw is not None and hours:
        lines.append(("grid cap (kW)", [hours[0], hours[-1]], [result.grid_cap_kw] * 2, True))
    charts = [xy_chart(lines, x_title="hours", y_title="kW", include_zero=True)]
    charged = np.flatnonzero(done & (o.charge_minutes > 0))
    if charged.size:
        order = charged[np.argsort(o.charge_minutes[charged])]
        share = [(k + 1) / order.size for k in range(order.size)]
        charts.append(
            xy_chart(
                [("sessions", list(o.charge_minutes[order]), share, False)],
                x_title="charge minutes",
                y_title="share of sessions (CDF)",
            )
        )
        order = charged[np.argsort(o.capacity_loss[charged])]
        charts.append(
            xy_chart(
                [("sessions", list(o.capacity_loss[order] * 1e6), share, False)],
                x_title="capacity loss per charge (ppm)",
                y_title="share of sessions (CDF)",
            )
        )
    health = _ev_section(sessions, result) + _health_section(sessions, o, np.flatnonzero(done))
    total = sum(result.binding.values()) or 1
    binding = "".join(
        f"<tr><td>{escape(k)}</td><td>{v / total:.1%}</td></tr>" for k, v in result.binding.most_common()
    )
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v:,.2f}</td></tr>" for k, v in s.items())
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>chargeagent fleet simulation</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111827}table{border-collapse:"
        "collapse}td{border:1px solid #d1d5db;padding:2px 8px}.chart{width:420px}.grid{stroke:#e5e7eb}"
        ".plot{fill:#fff;stroke:#9ca3af}.tick,.legend,.axis-title{font-size:11px;fill:#374151}"
        ".axis{stroke:#9ca3af}</style></head><body><h1>Fleet simulation</h1>"
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} · "
        f"start {escape(format_utc(result.start_s))}</p>"
        f"<h2>Summary</h2><table>{rows}</table><h2>Site load, sessions</h2>{''.join(charts)}"
        f"<h2>Binding constraints (share of charging minutes)</h2><table>{binding}</table>{health}"
        "</body></html>"
    )
    path.write_text(html, encoding="utf-8")
    return path
