"""Closed-loop use of charge plans during a session: plan, follow, re-plan, derate before a limit is hit.

`CurveController.propose(telemetry, now_s)` returns the current the curve asks for now, and the name of
what shaped it. It plans at the first sample, re-plans every `replan_interval_s` from live telemetry, and
compares the hottest cell with the temperature the plan predicted for this moment: when the cell runs
more than `temp_margin_c` above it, it re-plans at once and derates the proposal (10 % per °C of excess,
down to half) until the next plan catches up. A fallback plan proposes the CC-CV fallback curve
(`envelope.cc_cv_current_a`). Either way the proposal is only an upper bound: `envelope.decide` clamps it.
Sans-I/O: fed telemetry and a monotonic time, returns numbers; the agent logs the plan it made.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog

from bms_link.models import BatteryType, PackInfo, PackTelemetry
from policy.envelope import cc_cv_current_a
from policy.plan import CurvePolicy, Plan, PlanRequest
from policy.teacher import STATE_RANGES

log = structlog.get_logger(__name__)

MODEL_CURVE = "model_curve"
FALLBACK_CURVE = "fallback_cc_cv"
THERMAL_TRAJECTORY = "thermal_trajectory"
_DERATE_PER_C = 0.1
_DERATE_FLOOR = 0.5


@dataclass(frozen=True)
class ControllerSettings:
    preference: str = "balanced"
    target_soc: float = 0.8  # plan to here; past it, 10 % further at a time (the BMS ends at its target)
    ambient_c: float = 20.0
    assumed_soh: float = 0.85  # when the BMS does not report SoH (GB/T does not): a cautious guess
    # The station's own capacity estimate for this battery (station.health_recorder), None until it has
    # enough sessions; the plan takes the more conservative of it and the BMS's SoH.
    station_soh: float | None = None
    replan_interval_s: float = 60.0
    temp_margin_c: float = 2.0


def chemistry_of(info: PackInfo) -> str:
    """Surrogate chemistry for the model; other chemistries (lead-acid, LTO, ...) get the CC-CV fallback."""
    return {BatteryType.LFP: "lfp", BatteryType.NMC: "nmc"}.get(
        info.battery_type, str(info.battery_type.value)
    )


def soh_input(bms_soh: float | None, station_soh: float | None, assumed_soh: float) -> float:
    """The model's SoH: the most conservative belief. With a BMS SoH: the lower of it and the station's
    estimate. Without one: the station's estimate may only LOWER `assumed_soh`, never raise it. (From a
    few sessions with no cycle count, the estimate leans on its population prior and reads high on aged
    packs; a pack believed healthier than it is would get a faster plan.)"""
    if bms_soh is not None:
        return min(bms_soh, station_soh) if station_soh is not None else bms_soh
    return min(assumed_soh, station_soh) if station_soh is not None else assumed_soh


class CurveController:
    """One charging session's planner (create one per session)."""

    def __init__(self, policy: CurvePolicy, info: PackInfo, settings: ControllerSettings) -> None:
        self.policy = policy
        self.info = info
        self.settings = settings
        self.capacity_ah = info.rated_capacity_ah
        lo, hi = STATE_RANGES["max_c_rate"]
        self.max_c_rate = min(max(info.max_charge_current_a / info.rated_capacity_ah, lo), hi)
        self.plan: Plan | None = None
        self.planned_at_s = -math.inf
        self.plans_made = 0
        self.last_plan_s = 0.0  # how long the last plan took (s)
        self.derate = 1.0

    def _request(self, t: PackTelemetry) -> PlanRequest:
        s = self.settings
        return PlanRequest(
            soc=t.soc,
            target_soc=max(s.target_soc, min(t.soc + 0.1, 1.0)),
            soh=soh_input(t.soh, s.station_soh, s.assumed_soh),
            cell_temp_c=t.cell_temp_max_c,
            ambient_c=s.ambient_c,
            chemistry=chemistry_of(self.info),
            max_c_rate=self.max_c_rate,
            preference=s.preference,
        )

    def _replan(self, t: PackTelemetry, now_s: float, why: str) -> Plan:
        began = time.perf_counter()  # wall time of the inference (the metrics' model latency), not sim time
        plan = self.policy.plan(self._request(t))
        self.last_plan_s = time.perf_counter() - began
        self.plan, self.planned_at_s = plan, now_s
        self.plans_made += 1
        log.info(
            "charge_plan",
            why=why,
            source=plan.source,
            segments=[
                (round(s.soc_start, 3), round(s.soc_end, 3), round(s.c_rate, 2)) for s in plan.segments
            ],
            expected_minutes=None if plan.expected_minutes is None else round(plan.expected_minutes, 1),
            binding_constraints=list(plan.binding_constraints),
            explanation=plan.explanation,
        )
        return plan

    def propose(self, t: PackTelemetry, now_s: float) -> tuple[float, str]:
        """(proposed current A, name of what shaped it) for this control step."""
        plan = self.plan
        if plan is None:
            plan = self._replan(t, now_s, "session_start")
        elif now_s - self.planned_at_s >= self.settings.replan_interval_s:
            plan = self._replan(t, now_s, "interval")
        excess = self._temperature_excess(plan, t, now_s)
        if excess > 0.0:
            if now_s > self.planned_at_s:
                plan = self._replan(t, now_s, "temperature_above_prediction")
            self.derate = max(_DERATE_FLOOR, 1.0 - _DERATE_PER_C * excess)
        elif now_s == self.planned_at_s:
            self.derate = 1.0  # a fresh plan starts from the live temperature
        if plan.source != "model":
            return cc_cv_current_a(t, self.capacity_ah) * self.derate, FALLBACK_CURVE
        c_rate = plan.c_rate_at(t.soc)
        if c_rate <= 0.0 and t.soc < 1.0:  # past the plan's end: the BMS wants more than we planned
            plan = self._replan(t, now_s, "past_plan_target")
            c_rate = plan.c_rate_at(t.soc)
        name = THERMAL_TRAJECTORY if self.derate < 1.0 else MODEL_CURVE
        return c_rate * self.capacity_ah * self.derate, name

    def _temperature_excess(self, plan: Plan, t: PackTelemetry, now_s: float) -> float:
        """°C by which the hottest cell runs above the plan's prediction plus the margin (0 if not)."""
        predicted = plan.predicted_temp_at((now_s - self.planned_at_s) / 60.0)
        if predicted is None or not math.isfinite(t.cell_temp_max_c):
            return 0.0
        return max(0.0, t.cell_temp_max_c - predicted - self.settings.temp_margin_c)
