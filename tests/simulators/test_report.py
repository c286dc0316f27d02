"""Tests for the self-contained HTML report: structure, chart data, escaping, odd input."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from simulators.report import (
    MAX_POINTS,
    Series,
    StationRun,
    downsample,
    format_value,
    nice_ticks,
    render_report,
    write_report,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link"}
WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_run(station_id: str = "CP1", n: int = 50, **overrides: object) -> StationRun:
    t = [i * 0.5 for i in range(n)]
    fields: dict[str, object] = {
        "station_id": station_id,
        "title": "NMC 150 Ah, SoH 0.95, 25 °C",
        "summary": {"SoH": 0.95, "energy kWh": 45.25, "minutes": 31, "binding": "thermal_derate"},
        "soc": Series(t, [0.1 + 0.7 * i / max(1, n - 1) for i in range(n)], "SoC", ""),
        "current_a": Series(t, [200.0 - i for i in range(n)], "current", "A"),
        "cell_temp_c": Series(t, [25.0 + 0.2 * i for i in range(n)], "cell temp", "°C"),
        "limit_a": Series(t, [210.0] * n, "limit", "A"),
        "binding_constraints": {"thermal_derate": 0.4, "cv_taper": 0.1},
    }
    fields.update(overrides)
    return StationRun(**fields)  # type: ignore[arg-type]


class TagBalance(HTMLParser):
    """Fails on a close tag that does not match the innermost open one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1:] == [tag], f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def charts(html: str) -> list[ET.Element]:
    return [s for s in svgs(html) if s.get("class") == "chart"]


def polylines(svg: ET.Element) -> list[ET.Element]:
    return list(svg.iter(f"{SVG_NS}polyline"))


def point_count(line: ET.Element) -> int:
    return len(line.get("points", "").split())


def test_report_is_balanced_html_with_each_station_and_its_summary_row() -> None:
    html = render_report(
        [make_run("CP1"), make_run("CP2")], title="Demo", generated_at=WHEN, notes=["fast mode"]
    )
    checker = TagBalance()
    checker.feed(html)
    checker.close()
    assert checker.stack == []
    assert html.startswith("<!DOCTYPE html>")
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    assert "<script" not in html
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert len(rows) == 2 + 1  # header + one per station
    assert "<th>energy kWh</th>" in rows[0]
    assert ">CP1<" in rows[1]
    assert '<td class="num">0.95</td><td class="num">45.2</td><td class="num">31</td>' in rows[1]
    assert html.count("<section") == 2
    assert "2026-01-01 12:00:00 UTC" in html
    assert "<li>fast mode</li>" in html


def test_each_station_gets_three_charts_with_one_polyline_point_per_sample() -> None:
    html = render_report([make_run(n=50)], title="t", generated_at=WHEN)
    soc, current, temp = charts(html)
    assert [point_count(p) for p in polylines(soc)] == [50]
    assert [point_count(p) for p in polylines(temp)] == [50]
    current_line, limit_line = polylines(current)
    assert point_count(current_line) == point_count(limit_line) == 50
    assert limit_line.get("stroke-dasharray")
    assert current_line.get("stroke-dasharray") is None
    texts = ["".join(t.itertext()) for t in current.iter(f"{SVG_NS}text")]
    assert "time (min)" in texts
    assert "current (A)" in texts
    assert "limit (A)" in texts  # legend
    assert "cell temperature (°C)" in ["".join(t.itertext()) for t in temp.iter(f"{SVG_NS}text")]


def test_soc_fraction_is_drawn_as_percent_on_a_fixed_0_to_100_axis() -> None:
    run = make_run(soc=Series([0.0, 10.0], [0.5, 1.0], "SoC", ""))
    (soc_chart, *_) = charts(render_report([run], title="t", generated_at=WHEN))
    plot = next(r for r in soc_chart.iter(f"{SVG_NS}rect") if r.get("class") == "plot")
    top, height = float(plot.get("y", "nan")), float(plot.get("height", "nan"))
    (line,) = polylines(soc_chart)
    ys = [float(p.split(",")[1]) for p in line.get("points", "").split()]
    assert ys == [round(top + height / 2, 1), round(top, 1)]


def test_long_series_are_downsampled_and_keep_their_peaks() -> None:
    n = 10_000
    t = [i / 60 for i in range(n)]
    temp = [30.0 + math.sin(i / 300) for i in range(n)]
    temp[7_777] = 58.0  # one hot spike must stay visible
    segments = downsample(t, temp)
    (segment,) = segments
    assert len(segment) <= MAX_POINTS
    assert (t[7_777], 58.0) in segment
    assert (t[temp.index(min(temp))], min(temp)) in segment
    assert [p[0] for p in segment] == sorted(p[0] for p in segment)
    run = make_run(n=10, cell_temp_c=Series(t, temp, "cell temp", "°C"))
    (line,) = polylines(charts(render_report([run], title="t", generated_at=WHEN))[2])
    assert point_count(line) == len(segment)


def test_station_id_and_every_caller_text_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    run = make_run(
        evil,
        title=f"{evil} & co",
        summary={evil: evil},
        soc=Series([0.0], [0.5], evil, ""),
        binding_constraints={evil: 0.5},
    )
    html = render_report([run], title=evil, generated_at=WHEN, notes=[evil])
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; co" in html
    for svg in svgs(html):  # still well-formed XML after escaping
        assert svg.tag == f"{SVG_NS}svg"


def test_empty_single_point_and_nan_series_render_gracefully() -> None:
    nan = math.nan
    run = make_run(
        summary={"SoH": nan},
        soc=Series([], [], "SoC", ""),
        current_a=Series([3.0], [10.0], "current", "A"),
        cell_temp_c=Series([0, 1, 2, 3, 4, 5], [20, 21, nan, 23, 24, 25], "cell temp", "°C"),
        limit_a=None,
        binding_constraints={},
    )
    html = render_report([run], title="t", generated_at=WHEN)
    soc, current, temp = charts(html)
    assert polylines(soc) == []
    assert "no data" in "".join(soc.itertext())
    assert [point_count(p) for p in polylines(current)] == [1]
    assert len(list(current.iter(f"{SVG_NS}circle"))) == 1  # a lone sample gets a dot
    assert [point_count(p) for p in polylines(temp)] == [2, 3]  # the NaN leaves a gap
    assert '<td class="num">—</td>' in html
    assert "No binding-constraint data." in html


def test_report_without_runs_still_renders() -> None:
    html = render_report([], title="nothing", generated_at=WHEN)
    assert "No stations ran." in html
    assert charts(html) == []


def test_binding_constraints_are_bars_sorted_by_share() -> None:
    run = make_run(binding_constraints={"cv_taper": 0.1, "thermal_derate": 0.4, "bogus": nan_share()})
    (bars,) = [
        s for s in svgs(render_report([run], title="t", generated_at=WHEN)) if s.get("class") == "bars"
    ]
    labels = ["".join(t.itertext()) for t in bars.iter(f"{SVG_NS}text")]
    assert labels == ["thermal_derate", "40 %", "cv_taper", "10 %", "bogus", "0 %"]


def nan_share() -> float:
    return math.nan


def test_write_report_creates_directories_and_writes_utf8(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    assert write_report(target, [make_run()], title="Demo", generated_at=WHEN) == target
    text = target.read_text(encoding="utf-8")
    assert "25 °C" in text
    assert text == render_report([make_run()], title="Demo", generated_at=WHEN)


def test_format_value_gives_about_three_significant_digits() -> None:
    assert [format_value(v) for v in (0.953, 45.25, 123.4, 12, "x", math.inf)] == [
        "0.95",
        "45.2",
        "123",
        "12",
        "x",
        "—",
    ]


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(1e-3, 1e6, allow_nan=False),
    st.integers(2, 10),
)
def test_nice_ticks_cover_the_range_evenly_within_budget(lo: float, span: float, max_ticks: int) -> None:
    hi = lo + span
    ticks = nice_ticks(lo, hi, max_ticks)
    assert 2 <= len(ticks) <= max_ticks + 1
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    slack = 1e-8 * steps[0]  # float noise, far below one pixel
    assert ticks[0] <= lo + slack
    assert ticks[-1] >= hi - slack
    assert max(steps) - min(steps) <= 1e-6 * max(steps)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=300), st.integers(2, 50))
def test_downsample_keeps_time_order_and_stays_near_budget(values: list[float], budget: int) -> None:
    t = [float(i) for i in range(len(values))]
    segments = downsample(t, values, max_points=budget)
    flat = [p for seg in segments for p in seg]
    assert all(math.isfinite(x) and math.isfinite(y) for x, y in flat)
    assert [x for x, _ in flat] == sorted(x for x, _ in flat)
    finite = sum(math.isfinite(v) for v in values)
    assert len(flat) <= (finite if finite <= budget else budget + 2 * len(segments))
