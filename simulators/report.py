"""Self-contained HTML report of charging runs: summary table and inline SVG charts, no JS, no network.

Used by `chargeagent demo` (out/report.html) and the fleet simulator. Charts are drawn by the small
SVG code below (no plotting dependency): SoC %, current with its limit dashed, cell temperature,
all against time in minutes, plus the share of time each envelope constraint was binding.
Long series are min/max-decimated so peaks survive; NaN samples leave a gap in the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MAX_POINTS = 2000  # per series; ~25 bytes per SVG point keeps a 10-station report small

# Chart geometry in SVG user units (the SVG scales to its column width).
_W, _H = 360.0, 230.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 48.0, 12.0, 28.0, 40.0
_COLORS = {"soc": "#2563eb", "current": "#dc2626", "limit": "#111827", "temp": "#ea580c"}


@dataclass(frozen=True)
class Series:
    """One line: `values[i]` at `t_min[i]` minutes. SoC may be a 0..1 fraction (unit "") or "%"."""

    t_min: Sequence[float]
    values: Sequence[float]
    label: str
    unit: str


@dataclass(frozen=True)
class StationRun:
    """What the report shows for one station's charging session."""

    station_id: str
    title: str  # e.g. "NMC 150 Ah, SoH 0.95, 25 °C"
    summary: Mapping[str, str | float]
    soc: Series
    current_a: Series
    cell_temp_c: Series
    limit_a: Series | None = None
    binding_constraints: Mapping[str, float] = field(default_factory=dict)  # share of time 0..1


def _finite_segments(t_min: Sequence[float], values: Sequence[float]) -> list[list[tuple[float, float]]]:
    """Split a series into runs of finite (t, v) points; a non-finite sample ends a run."""
    segments: list[list[tuple[float, float]]] = [[]]
    for t, v in zip(t_min, values, strict=False):
        try:
            point = (float(t), float(v))
        except (TypeError, ValueError):  # None or junk from a caller: treat it like NaN
            point = (math.nan, math.nan)
        if math.isfinite(point[0]) and math.isfinite(point[1]):
            segments[-1].append(point)
        elif segments[-1]:
            segments.append([])
    return [s for s in segments if s]


def _decimate(points: list[tuple[float, float]], budget: int) -> list[tuple[float, float]]:
    """Keep the min and the max of each of budget/2 buckets, in time order (peaks survive)."""
    if len(points) <= budget:
        return points
    buckets = max(1, budget // 2)
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        chunk = points[b * len(points) // buckets : (b + 1) * len(points) // buckets]
        lo = min(range(len(chunk)), key=lambda i: chunk[i][1])
        hi = max(range(len(chunk)), key=lambda i: chunk[i][1])
        out.extend(chunk[i] for i in sorted({lo, hi}))
    return out


def downsample(
    t_min: Sequence[float], values: Sequence[float], max_points: int = MAX_POINTS
) -> list[list[tuple[float, float]]]:
    """The finite segments of a series, decimated to about `max_points` points in total."""
    if len(t_min) != len(values):
        log.warning("report_series_length_mismatch", t_points=len(t_min), value_points=len(values))
    segments = _finite_segments(t_min, values)
    total = sum(len(s) for s in segments)
    if total <= max_points:
        return segments
    return [_decimate(s, max(2, max_points * len(s) // total)) for s in segments]


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times 10^k) from <= lo to >= hi, at most
    `max_ticks + 1` of them, choosing the finest such step."""
    if not math.isfinite(hi - lo) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    magnitude = 10 ** math.floor(math.log10((hi - lo) / max(1, max_ticks - 1)))
    for step in (m * magnitude * k for k in (1, 10, 100) for m in (1, 2, 5)):
        first = math.floor(lo / step + 1e-9) * step
        count = math.ceil((hi - first) / step - 1e-9) + 1
        if count <= max_ticks + 1:
            return [float(f"{first + i * step:.12g}") for i in range(count)]
    return [lo, hi]  # unreachable for finite input: the coarsest step gives 2-3 ticks


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    """As many decimals as the tick step needs (step 0.2 -> 1 decimal, step 5 -> none)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    if not 0 < step < 1e15:
        return f"{value:.6g}"
    scaled = [step * 10**d for d in range(10)]
    decimals = next((d for d, x in enumerate(scaled) if round(x) and abs(x - round(x)) < 1e-6 * x), 9)
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class _Line:
    segments: list[list[tuple[float, float]]]
    label: str
    color: str
    dashed: bool = False


def _axis_range(
    values: Sequence[float], fixed: tuple[float, float] | None, include_zero: bool
) -> list[float]:
    if fixed is not None:
        return nice_ticks(*fixed)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-9:  # a flat line still needs a visible axis
        lo, hi = lo - 1.0, hi + 1.0
    ticks = nice_ticks(lo, hi)
    return ticks if len(ticks) > 1 and ticks[-1] > ticks[0] else [ticks[0], ticks[0] + 1.0]


def _line_chart(
    lines: Sequence[_Line],
    *,
    y_title: str,
    y_fixed: tuple[float, float] | None = None,
    include_zero: bool = False,
    x_title: str = "time (min)",
    x_from_zero: bool = True,
) -> str:
    points = [p for line in lines for seg in line.segments for p in seg]
    x_ticks = _axis_range([p[0] for p in points], None, include_zero=x_from_zero)
    y_ticks = _axis_range([p[1] for p in points], y_fixed, include_zero)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return _TOP + plot_h - (min(max(y, y0), y1) - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W:.0f} {_H:.0f}" role="img" '
        f'aria-label="{escape(y_title)} vs time" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="plot" x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for y in y_ticks:
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 5}" y="{sy(y) + 3.5:.1f}" text-anchor="end">'
            f"{_tick_label(y, y_ticks)}</text>"
        )
    for x in x_ticks:
        parts.append(
            f'<line class="axis" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_TOP + plot_h}" '
            f'y2="{_TOP + plot_h + 4}"/><text class="tick" x="{sx(x):.1f}" y="{_TOP + plot_h + 15}" '
            f'text-anchor="middle">{_tick_label(x, x_ticks)}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" '
        f'text-anchor="middle">{escape(x_title)}</text>'
        f'<text class="axis-title" transform="translate(12 {_TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_title)}</text>'
    )
    for line in lines:
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        for seg in line.segments:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in seg)
            parts.append(
                f'<polyline fill="none" stroke="{line.color}" stroke-width="1.8"{dash} '
                f'data-series="{escape(line.label)}" points="{coords}"/>'
            )
            if len(seg) == 1:  # a lone sample would be invisible as a line
                cx, cy = sx(seg[0][0]), sy(seg[0][1])
                parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{line.color}"/>')
    if not points:
        parts.append(
            f'<text class="empty" x="{_LEFT + plot_w / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" '
            f'text-anchor="middle">no data</text>'
        )
    legend_x = _LEFT
    for line in lines:  # legend above the plot, left to right
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        parts.append(
            f'<line x1="{legend_x}" x2="{legend_x + 22}" y1="14" y2="14" stroke="{line.color}" '
            f'stroke-width="2"{dash}/><text class="legend" x="{legend_x + 27}" y="18">'
            f"{escape(line.label)}</text>"
        )
        legend_x += 36 + 6.8 * len(line.label)  # ~average glyph width at 12px
    parts.append("</svg>")
    return "".join(parts)


def xy_chart(
    lines: Sequence[tuple[str, Sequence[float], Sequence[float], bool]],
    *,
    x_title: str,
    y_title: str,
    include_zero: bool = False,
) -> str:
    """A small SVG line chart of (label, xs, ys, dashed) lines: for reports other than the station one."""
    palette = ("#2563eb", "#dc2626", "#16a34a", "#ea580c", "#7c3aed", "#111827")
    chart_lines = [
        _Line(_finite_segments(xs, ys), label, palette[i % len(palette)], dashed)
        for i, (label, xs, ys, dashed) in enumerate(lines)
    ]
    return _line_chart(
        chart_lines, y_title=y_title, include_zero=include_zero, x_title=x_title, x_from_zero=False
    )


def _with_unit(series: Series, default_unit: str) -> str:
    unit = series.unit or default_unit
    return f"{series.label} ({unit})" if unit else series.label


def _line(series: Series, default_unit: str, color: str, *, dashed: bool = False) -> _Line:
    return _Line(downsample(series.t_min, series.values), _with_unit(series, default_unit), color, dashed)


def _station_charts(run: StationRun) -> list[str]:
    soc_scale = 1.0 if run.soc.unit == "%" else 100.0  # house style: soc is a 0..1 fraction
    soc = Series(run.soc.t_min, [v * soc_scale for v in run.soc.values], run.soc.label, "%")
    current = [_line(run.current_a, "A", _COLORS["current"])]
    if run.limit_a is not None:
        current.append(_line(run.limit_a, "A", _COLORS["limit"], dashed=True))
    return [
        _line_chart([_line(soc, "%", _COLORS["soc"])], y_title="SoC (%)", y_fixed=(0.0, 100.0)),
        _line_chart(current, y_title="current (A)", include_zero=True),
        _line_chart([_line(run.cell_temp_c, "°C", _COLORS["temp"])], y_title="cell temperature (°C)"),
    ]


def _constraint_bars(shares: Mapping[str, float]) -> str:
    if not shares:
        return '<p class="muted">No binding-constraint data.</p>'
    rows = sorted(shares.items(), key=lambda kv: (-_clean_share(kv[1]), kv[0]))
    bar_w, row_h, label_w = 160.0, 20.0, 150.0
    height = row_h * len(rows) + 4
    parts = [
        f'<svg class="bars" viewBox="0 0 {label_w + bar_w + 50:.0f} {height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="binding constraints">'
    ]
    for i, (name, share) in enumerate(rows):
        y, value = i * row_h + 2, _clean_share(share)
        parts.append(
            f'<text class="legend" x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
            f'<rect class="track" x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 7}"/>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w * value:.1f}" height="{row_h - 7}"/>'
            f'<text class="tick" x="{label_w + bar_w + 5}" y="{y + 13}">{value * 100:.0f} %</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _clean_share(share: float) -> float:
    return min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0


def format_value(value: str | float) -> str:
    """Summary cell text: ints as is, floats to about 3 significant digits, NaN as a dash."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    return f"{value:.0f}" if magnitude >= 100 else f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def _summary_table(runs: Sequence[StationRun]) -> str:
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.summary if k not in keys)
    head = "".join(f"<th>{escape(k)}</th>" for k in ["station", "battery", *keys])
    body = []
    for run in runs:
        cells = [
            f'<td class="text">{escape(run.station_id)}</td>',
            f'<td class="text">{escape(run.title)}</td>',
        ]
        for k in keys:
            value = run.summary.get(k)
            numeric = value is not None and not isinstance(value, str)
            text = "" if value is None else format_value(value)
            cells.append(f'<td class="{"num" if numeric else "text"}">{escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:24px auto;
max-width:1200px;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}h3{font-size:13px;margin:10px 0 4px;
color:#374151}.muted{color:#6b7280}.notes{margin:8px 0 16px;padding-left:20px;color:#374151}
table{border-collapse:collapse;width:100%;margin:12px 0 24px;font-size:13px}
.table-wrap{overflow-x:auto}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px}th{text-align:left;background:#f9fafb;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
section{border:1px solid #e5e7eb;border-radius:8px;padding:14px 16px;margin:0 0 18px;break-inside:avoid}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
svg.chart{width:100%;height:auto}svg.bars{width:100%;max-width:420px;height:auto}
.plot{fill:#fff;stroke:#9ca3af;stroke-width:1}.grid{stroke:#e5e7eb;stroke-width:1}.axis{stroke:#6b7280}
.tick{font-size:11px;fill:#4b5563}.axis-title{font-size:12px;fill:#374151}.legend{font-size:12px;fill:#111827}
.empty{font-size:13px;fill:#9ca3af}.track{fill:#f3f4f6}.bar{fill:#7c3aed}
@media print{body{margin:0;max-width:none}section{border-color:#d1d5db}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def render_report(
    runs: Sequence[StationRun], *, title: str, generated_at: datetime, notes: Sequence[str] = ()
) -> str:
    """The whole report as one HTML string; every piece of caller text is escaped."""
    stamp = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{escape(title)}</h1><p class="muted">Generated {stamp} · {len(runs)} station(s)</p>',
    ]
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    summary = f'<div class="table-wrap">{_summary_table(runs)}</div>'
    out.append(summary if runs else '<p class="muted">No stations ran.</p>')
    for index, run in enumerate(runs):
        charts = "".join(f"<div>{svg}</div>" for svg in _station_charts(run))
        out.append(
            f'<section id="station-{index}"><h2>{escape(run.station_id)} '
            f'<span class="muted">— {escape(run.title)}</span></h2><div class="charts">{charts}</div>'
            f"<h3>Binding constraints (share of time)</h3>{_constraint_bars(run.binding_constraints)}"
            "</section>"
        )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    path: Path,
    runs: Sequence[StationRun],
    *,
    title: str = "chargeagent report",
    generated_at: datetime | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Render and write the report (UTF-8), creating parent directories; returns `path`."""
    html = render_report(runs, title=title, generated_at=generated_at or datetime.now(UTC), notes=notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    log.info("report_written", path=str(path), stations=len(runs), size_bytes=len(html.encode()))
    return path
