"""Fleet simulation outputs: per-session CSV, site load at 1 and 15 min, summary, `sim_report.html`."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import numpy as np

from policy.forecast_io import format_utc
from simulators.arrivals import Sessions
from simulators.fleet import FleetResult

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
    o, done = result.outcome, _simulated_rows(sessions, result)
    paths = {"sessions": out_dir / "sessions.csv"}
    with paths["sessions"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SESSION_FIELDS)
        for i in np.flatnonzero(done):
            writer.writerow(
                [
                    sessions.session_id[i],
                    sessions.station_id[i],
                    sessions.vehicle[i],
                    sessions.chemistry[i],
                    format_utc(float(sessions.connection_s[i])),
                    format_utc(float(sessions.disconnect_s[i])),
                    f"{sessions.soh[i]:.3f}",
                    f"{o.soc_start[i]:.4f}",
                    f"{o.soc_end[i]:.4f}",
                    f"{o.delivered_kwh[i]:.3f}",
                    f"{o.charge_minutes[i]:.0f}",
                    f"{o.peak_cell_temp_c[i]:.1f}",
                    f"{o.capacity_loss[i] * 1e6:.2f}",
                    int(o.reached_target[i]),
                    o.plan_source[i] or "cc_cv",
                ]
            )
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
    paths["report"] = write_report(out_dir / "sim_report.html", sessions, result)
    return paths


def _steps_done(sessions: Sessions, result: FleetResult) -> int:
    if result.chunks_done >= result.chunks_total:
        return int(result.site_load_kw.size)
    done = _simulated_rows(sessions, result)
    end_s = float(sessions.disconnect_s[done].max()) if done.any() else result.start_s
    return int(min(result.site_load_kw.size, max(0.0, (end_s - result.start_s) / result.step_s)))


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
        f"<h2>Binding constraints (share of charging minutes)</h2><table>{binding}</table></body></html>"
    )
    path.write_text(html, encoding="utf-8")
    return path
