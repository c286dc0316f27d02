"""The in-session planner: plans at start, re-plans on schedule, derates when cells run hotter than plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_envelope import telemetry  # same directory (pytest prepend import mode)

from bms_link.models import BatteryType, PackInfo
from policy.closed_loop import (
    FALLBACK_CURVE,
    MODEL_CURVE,
    THERMAL_TRAJECTORY,
    ControllerSettings,
    CurveController,
    chemistry_of,
)
from policy.plan import CurvePolicy

INFO = PackInfo(
    battery_type=BatteryType.NMC,
    rated_capacity_ah=150.0,
    rated_voltage_v=355.0,
    max_cell_voltage_v=4.2,
    max_charge_current_a=300.0,
    nominal_energy_kwh=53.0,
    max_pack_voltage_v=403.2,
    max_temp_c=55.0,
    soc=0.3,
    pack_voltage_v=360.0,
)


def _controller(**kw: Any) -> CurveController:
    return CurveController(CurvePolicy(), INFO, ControllerSettings(**kw))


def test_plans_at_start_and_follows_the_curve() -> None:
    ctl = _controller()
    current_a, name = ctl.propose(telemetry(soc=0.3, cell_temp_max_c=25.0, cell_temp_min_c=24.0), 0.0)
    assert name == MODEL_CURVE and ctl.plans_made == 1
    assert ctl.plan is not None and ctl.plan.source == "model"
    assert current_a == pytest.approx(ctl.plan.c_rate_at(0.3) * 150.0)
    assert 0 < current_a <= 300.0


def test_replans_every_interval_not_every_step() -> None:
    ctl = _controller(replan_interval_s=60.0)
    for second in range(0, 59, 5):
        ctl.propose(telemetry(soc=0.3, cell_temp_max_c=25.0, cell_temp_min_c=24.0), float(second))
    assert ctl.plans_made == 1
    ctl.propose(telemetry(soc=0.35, cell_temp_max_c=25.5, cell_temp_min_c=24.5), 60.0)
    assert ctl.plans_made == 2


def test_hotter_than_predicted_replans_and_derates() -> None:
    ctl = _controller(temp_margin_c=2.0)
    ctl.propose(telemetry(soc=0.3, cell_temp_max_c=25.0, cell_temp_min_c=24.0), 0.0)
    assert ctl.plan is not None
    predicted = ctl.plan.predicted_temp_at(0.5)
    assert predicted is not None
    hot = telemetry(soc=0.31, cell_temp_max_c=predicted + 6.0, cell_temp_min_c=predicted + 4.0)
    current_a, name = ctl.propose(hot, 30.0)
    assert name == THERMAL_TRAJECTORY
    assert ctl.plans_made == 2  # re-planned at once from the live temperature
    assert ctl.derate < 1.0
    assert current_a == pytest.approx(ctl.plan.c_rate_at(0.31) * 150.0 * ctl.derate)


def test_soh_from_the_bms_is_used_and_assumed_when_missing() -> None:
    young = _controller(preference="gentle")
    young.propose(telemetry(soc=0.3, soh=1.0, cell_temp_max_c=25.0, cell_temp_min_c=24.0), 0.0)
    old = _controller(preference="gentle", assumed_soh=0.7)
    old.propose(telemetry(soc=0.3, soh=None, cell_temp_max_c=25.0, cell_temp_min_c=24.0), 0.0)
    assert young.plan is not None and old.plan is not None
    assert max(s.c_rate for s in old.plan.segments) < max(s.c_rate for s in young.plan.segments)


def test_other_chemistry_or_missing_model_uses_the_cc_cv_fallback() -> None:
    lto = INFO.model_copy(update={"battery_type": BatteryType.LTO})
    assert chemistry_of(lto) == "lto"
    ctl = CurveController(CurvePolicy(), lto, ControllerSettings())
    _, name = ctl.propose(telemetry(soc=0.3), 0.0)
    assert name == FALLBACK_CURVE
    broken = CurveController(CurvePolicy(Path("/nonexistent.onnx")), INFO, ControllerSettings())
    current_a, name = broken.propose(telemetry(soc=0.3, pack_current_a=0.0), 0.0)
    assert name == FALLBACK_CURVE and current_a >= 0.0
