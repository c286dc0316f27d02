"""Policy vs plain CC-CV on the surrogate, at equal charge time, over a grid of battery situations.

For every scenario (SoH x cell temperature x start SoC, charging to 80 %) and every CC-CV rate (0.5, 1,
2, 3C): charge with CC-CV, note its time T and capacity loss; ask the policy for a curve with time budget
T; charge with that curve on the same surrogate (same envelope rules); compare loss and time. Writes a
table and `policy_report.html` (curves of a few scenarios, loss vs time points: the Pareto view).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import numpy as np

from policy.charge_sim import N_STAGES, ChargeStates, constant_fractions, simulate
from policy.physics_params import Chemistry
from policy.plan import CurvePolicy, PlanRequest
from policy.teacher import solve

CC_RATES = (0.5, 1.0, 2.0, 3.0)
GRID_SOH = (1.0, 0.9, 0.8, 0.7)
GRID_TEMP_C = (5.0, 15.0, 25.0, 35.0)
GRID_SOC = (0.1, 0.3, 0.5)
TARGET_SOC = 0.8
MAX_C_RATE = 3.0


@dataclass(frozen=True)
class Row:
    soh: float
    temp_c: float
    soc: float
    cc_rate: float
    cc_minutes: float
    cc_loss: float
    policy_minutes: float
    policy_loss: float
    policy_source: str
    policy_peak_c_rate: float
    teacher_loss: float = float("nan")  # the teacher's curve for the same budget (when asked for)
    teacher_minutes: float = float("nan")

    @property
    def loss_reduction(self) -> float:
        return 1.0 - self.policy_loss / self.cc_loss

    @property
    def time_ratio(self) -> float:
        return self.policy_minutes / self.cc_minutes


def evaluate(policy: CurvePolicy, chemistry: Chemistry = "nmc", *, with_teacher: bool = False) -> list[Row]:
    """Every (scenario, rate) pair, simulated in two vectorised batches (CC-CV, then the policy)."""
    combos = list(itertools.product(GRID_SOH, GRID_TEMP_C, GRID_SOC, CC_RATES))
    arr = np.asarray(combos, dtype=np.float64)
    states = ChargeStates(
        chemistry,
        soc=arr[:, 2],
        target_soc=np.full(len(combos), TARGET_SOC),
        soh=arr[:, 0],
        cell_temp_c=arr[:, 1],
        ambient_c=arr[:, 1],
        max_c_rate=np.full(len(combos), MAX_C_RATE),
    )
    cc = simulate(states, np.vstack([constant_fractions(states, r)[i] for i, r in enumerate(arr[:, 3])]))
    plans = [
        policy.plan(
            PlanRequest(
                soc=soc,
                target_soc=TARGET_SOC,
                soh=soh,
                cell_temp_c=temp,
                ambient_c=temp,
                chemistry=chemistry,
                max_c_rate=MAX_C_RATE,
                budget_minutes=float(cc.minutes[i]),
            )
        )
        for i, (soh, temp, soc, _) in enumerate(combos)
    ]
    fractions = np.asarray([[s.c_rate / MAX_C_RATE for s in p.segments] for p in plans])
    pol = simulate(states, fractions.reshape(len(combos), N_STAGES))
    teacher_loss = np.full(len(combos), np.nan)
    teacher_min = np.full(len(combos), np.nan)
    if with_teacher:  # the ceiling the student is distilled from (minutes of CPU)
        teacher = solve(states, cc.minutes, seed=0).sim
        teacher_loss, teacher_min = teacher.loss, teacher.minutes
    return [
        Row(
            soh,
            temp,
            soc,
            rate,
            float(cc.minutes[i]),
            float(cc.loss[i]),
            float(pol.minutes[i]),
            float(pol.loss[i]),
            plans[i].source,
            float(fractions[i].max() * MAX_C_RATE),
            float(teacher_loss[i]),
            float(teacher_min[i]),
        )
        for i, (soh, temp, soc, rate) in enumerate(combos)
    ]


def summary(rows: list[Row]) -> dict[str, float]:
    red = np.asarray([r.loss_reduction for r in rows])
    ratio = np.asarray([r.time_ratio for r in rows])
    return {
        "scenarios": float(len(rows)),
        "mean_loss_reduction": float(red.mean()),
        "median_loss_reduction": float(np.median(red)),
        "worst_loss_reduction": float(red.min()),
        "mean_time_ratio": float(ratio.mean()),
        "max_time_ratio": float(ratio.max()),
        "fallback_share": float(np.mean([r.policy_source != "model" for r in rows])),
        "teacher_mean_loss_reduction": float(np.mean([1.0 - r.teacher_loss / r.cc_loss for r in rows])),
    }


def by_rate(rows: list[Row]) -> dict[float, float]:
    return {r: float(np.mean([x.loss_reduction for x in rows if x.cc_rate == r])) for r in CC_RATES}


def by_temp(rows: list[Row]) -> dict[float, float]:
    return {t: float(np.mean([x.loss_reduction for x in rows if x.temp_c == t])) for t in GRID_TEMP_C}


def write_report(path: Path, rows: list[Row], policy: CurvePolicy) -> Path:
    """`policy_report.html`: summary, per-rate/temperature tables, curves and loss-vs-time charts."""
    from simulators.report import xy_chart  # noqa: PLC0415 - the report is optional for the library

    s = summary(rows)
    charts = []
    for soh, temp in ((1.0, 25.0), (0.8, 5.0), (0.9, 15.0)):
        subset = [r for r in rows if r.soh == soh and r.temp_c == temp and r.soc == GRID_SOC[0]]
        lines = [
            ("CC-CV", [r.cc_minutes for r in subset], [r.cc_loss * 1e5 for r in subset], True),
            ("policy", [r.policy_minutes for r in subset], [r.policy_loss * 1e5 for r in subset], False),
        ]
        if all(np.isfinite(r.teacher_loss) for r in subset):
            lines.append(
                (
                    "teacher",
                    [r.teacher_minutes for r in subset],
                    [r.teacher_loss * 1e5 for r in subset],
                    False,
                )
            )
        charts.append(
            f"<figure>{xy_chart(lines, x_title='charge time (min)', y_title='loss (1e-5 of capacity)')}"
            f"<figcaption>SoH {soh}, {temp:g} °C, {GRID_SOC[0]:.0%} → {TARGET_SOC:.0%}: "
            "capacity loss vs charge time (lower-left is better)</figcaption></figure>"
        )
        curve_lines = []
        for r in subset:
            plan = policy.plan(
                PlanRequest(
                    soc=r.soc,
                    target_soc=TARGET_SOC,
                    soh=soh,
                    cell_temp_c=temp,
                    ambient_c=temp,
                    max_c_rate=MAX_C_RATE,
                    budget_minutes=r.cc_minutes,
                )
            )
            xs = [v for seg in plan.segments for v in (seg.soc_start * 100, seg.soc_end * 100)]
            ys = [seg.c_rate for seg in plan.segments for _ in (0, 1)]
            curve_lines.append((f"{r.cc_minutes:.0f} min", xs, ys, False))
        charts.append(
            f"<figure>{xy_chart(curve_lines, x_title='SoC (%)', y_title='C-rate', include_zero=True)}"
            f"<figcaption>Policy curves for the same scenario at each CC-CV time budget</figcaption></figure>"
        )
    table = "".join(f"<tr><td>{r:g}C</td><td>{v:.1%}</td></tr>" for r, v in by_rate(rows).items()) + "".join(
        f"<tr><td>{t:g} °C</td><td>{v:.1%}</td></tr>" for t, v in by_temp(rows).items()
    )
    detail = "".join(
        f"<tr><td>{r.soh:g}</td><td>{r.temp_c:g}</td><td>{r.soc:.0%}</td><td>{r.cc_rate:g}C</td>"
        f"<td>{r.cc_minutes:.1f}</td><td>{r.policy_minutes:.1f}</td><td>{r.cc_loss * 1e5:.2f}</td>"
        f"<td>{r.policy_loss * 1e5:.2f}</td><td>{r.loss_reduction:.1%}</td>"
        f"<td>{escape(r.policy_source)}</td></tr>"
        for r in rows
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    teacher_text = (
        f"; the teacher it is distilled from: {s['teacher_mean_loss_reduction']:.1%}."
        if np.isfinite(s["teacher_mean_loss_reduction"])
        else "."
    )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>chargeagent policy report</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111827}"
        "table{border-collapse:collapse}td,th{border:1px solid #d1d5db;padding:2px 8px;text-align:right}"
        "figure{display:inline-block;margin:.5rem}"
        ".chart{width:380px}.grid{stroke:#e5e7eb}.plot{fill:#fff;stroke:#9ca3af}.tick,.legend,.axis-title"
        "{font-size:11px;fill:#374151}.axis{stroke:#9ca3af}</style></head><body>"
        f"<h1>Charge-curve policy vs CC-CV at equal charge time</h1><p>Generated {stamp} · model "
        f"<code>{escape(str(policy.model.sha256 if policy.model else 'none'))}</code></p>"
        f"<p>Mean capacity-loss reduction over {int(s['scenarios'])} scenario×rate pairs: "
        f"<b>{s['mean_loss_reduction']:.1%}</b> (median {s['median_loss_reduction']:.1%}, worst "
        f"{s['worst_loss_reduction']:.1%}); mean time ratio {s['mean_time_ratio']:.3f}{teacher_text}</p>"
        f"<h2>By CC-CV rate and by temperature</h2><table>{table}</table>"
        f"<h2>Curves and Pareto view</h2>{''.join(charts)}"
        "<h2>Every scenario</h2><table><tr><th>SoH</th><th>°C</th><th>start</th><th>CC-CV</th>"
        "<th>CC min</th><th>policy min</th><th>CC loss e-5</th><th>policy loss e-5</th><th>reduction</th>"
        "<th>source</th></tr>"
        f"{detail}</table></body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
