"""Charge plans from the shipped model: envelope rules, fallback on bad input, trends, the JSON contract."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.envelope import EnvelopeLimits
from policy.plan import CurvePolicy, PlanRequest

POLICY = CurvePolicy()
LIMITS = POLICY.limits


def _req(**kw: float | str) -> PlanRequest:
    base: dict[str, float | str] = {
        "soc": 0.1,
        "target_soc": 0.8,
        "soh": 0.9,
        "cell_temp_c": 25.0,
        "ambient_c": 25.0,
        "max_c_rate": 3.0,
    }
    base.update(kw)
    return PlanRequest(**base)  # type: ignore[arg-type]


def test_shipped_model_answers_in_range_requests() -> None:
    plan = POLICY.plan(_req())
    assert plan.source == "model"
    assert plan.model_sha256 is not None and len(plan.model_sha256) == 64
    assert len(plan.predicted_temp_c) == len(plan.segments)
    assert plan.expected_minutes is not None and 10 < plan.expected_minutes < 200


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-50, 80))


@settings(max_examples=300, deadline=None)
@given(
    soc=floats,
    target=floats,
    soh=floats,
    temp=floats,
    ambient=floats,
    max_c=floats,
    grid=st.one_of(st.none(), floats),
    chem=st.sampled_from(["nmc", "lfp", "lead_acid"]),
    pref=st.sampled_from(["fast", "balanced", "gentle", "bogus"]),
)
def test_any_input_gives_a_safe_contiguous_plan(
    soc: float,
    target: float,
    soh: float,
    temp: float,
    ambient: float,
    max_c: float,
    grid: float | None,
    chem: str,
    pref: str,
) -> None:
    req = PlanRequest(soc, target, soh, temp, ambient, chem, max_c, pref, None, grid)
    plan = POLICY.plan(req)
    assert plan.segments
    json.dumps(plan.to_json(), allow_nan=False)  # the --json output is valid JSON whatever the input
    for a, b in zip(plan.segments, plan.segments[1:], strict=False):
        assert a.soc_end == pytest.approx(b.soc_start)  # contiguous
    for seg in plan.segments:
        assert math.isfinite(seg.c_rate) and seg.c_rate >= 0.0  # never negative, never NaN
        if math.isfinite(max_c) and max_c > 0:
            assert seg.c_rate <= max_c + 1e-9  # never above the BMS maximum
        if grid is not None and math.isfinite(grid) and grid >= 0:
            assert seg.c_rate <= grid + 1e-9
        if not (math.isfinite(temp) and LIMITS.cold_block_below_c <= temp < LIMITS.stop_temp_c):
            assert seg.c_rate == 0.0  # outside the temperature window nothing is planned
    valid = all(math.isfinite(v) for v in (soc, target, soh, temp, ambient, max_c))
    in_range = (
        valid
        and 0 <= soc <= 0.9
        and soc + 0.01 < target <= 1
        and target >= 0.1
        and 0.6 <= soh <= 1
        and 0 <= temp <= 50
    )
    in_range = in_range and -20 <= ambient <= 45 and 0.3 <= max_c <= 4 and chem != "lead_acid"
    in_range = in_range and pref != "bogus" and (grid is None or (math.isfinite(grid) and grid >= 0))
    assert (plan.source == "model") == in_range  # fallback engages on every invalid input
    if plan.source == "model":
        assert plan.segments[0].soc_start == pytest.approx(soc)
        assert plan.segments[-1].soc_end == pytest.approx(target)


def test_lower_soh_gives_lower_peak_c_rate() -> None:
    peaks = [
        max(s.c_rate for s in POLICY.plan(_req(soh=soh, preference="gentle")).segments)
        for soh in (1.0, 0.85, 0.7)
    ]
    assert peaks[0] > peaks[2]
    assert peaks == sorted(peaks, reverse=True)


def test_colder_cell_gives_lower_peak_c_rate() -> None:
    peaks = [
        max(s.c_rate for s in POLICY.plan(_req(cell_temp_c=t, ambient_c=t)).segments)
        for t in (25.0, 10.0, 3.0)
    ]
    assert peaks[0] > peaks[1] > peaks[2]


def test_below_zero_no_current_and_hot_is_derated() -> None:
    cold = POLICY.plan(_req(cell_temp_c=-2.0))
    assert all(s.c_rate == 0.0 for s in cold.segments)
    assert "cold_block" in cold.binding_constraints
    hot = POLICY.plan(_req(cell_temp_c=50.0, ambient_c=40.0))
    limit = EnvelopeLimits(1e9, 1e9)
    fraction_at_50 = 1.0 - (1.0 - limit.hot_derate_floor_fraction) * (50.0 - 45.0) / (55.0 - 45.0)
    assert hot.segments[0].c_rate <= fraction_at_50 * 3.0 + 1e-9
    assert "thermal_derate" in hot.binding_constraints


def test_gentle_is_slower_and_gentler_than_fast() -> None:
    fast, gentle = POLICY.plan(_req(preference="fast")), POLICY.plan(_req(preference="gentle"))
    assert max(s.c_rate for s in fast.segments) > max(s.c_rate for s in gentle.segments)
    assert fast.expected_minutes is not None and gentle.expected_minutes is not None
    assert fast.expected_minutes < gentle.expected_minutes


def test_nan_and_missing_model_fall_back(tmp_path: object) -> None:
    plan = POLICY.plan(_req(cell_temp_c=math.nan))
    assert plan.source == "fallback" and "nan_input:cell_temp_c" in plan.binding_constraints
    assert all(s.c_rate == 0.0 for s in plan.segments)  # unknown temperature: nothing planned
    broken = CurvePolicy(model_path=__import__("pathlib").Path("/nonexistent/model.onnx"))
    plan = broken.plan(_req())
    assert plan.source == "fallback" and "model_unavailable" in plan.binding_constraints
    assert plan.segments[0].c_rate == pytest.approx(1.0)  # 1C CC-CV


def test_json_contract() -> None:
    doc = POLICY.plan(_req()).to_json()
    assert set(doc) >= {
        "segments",
        "predicted_temp_c",
        "expected_minutes",
        "source",
        "binding_constraints",
        "model_sha256",
    }
    assert set(doc["segments"][0]) == {"soc_start", "soc_end", "c_rate"}


def test_current_schedule_runs_each_remaining_segment_for_its_soc_window() -> None:
    from policy.plan import Plan, Segment

    plan = Plan(
        segments=(Segment(0.2, 0.5, 1.0), Segment(0.5, 0.8, 0.5)),
        predicted_temp_c=(),
        expected_minutes=None,
        source="model",
        binding_constraints=(),
        model_sha256=None,
    )
    # From 30 % on a 100 Ah pack at SoH 0.9: 0.2 × 0.9 h at 100 A, then 0.3 × 0.9 / 0.5 h at 50 A, then 0 A.
    got = plan.current_schedule(0.3, 100.0, 0.9)
    want = [(0.0, 100.0), (648.0, 50.0), (648.0 + 1944.0, 0.0)]
    assert [x for pair in got for x in pair] == pytest.approx([x for pair in want for x in pair])
    assert plan.current_schedule(0.85, 100.0, 0.9) == []  # past the target: nothing planned
