"""Charge plans: ask the model for a curve, clamp it with the envelope's rules, or fall back to CC-CV.

`CurvePolicy.plan(request)` returns a `Plan`: contiguous constant-current segments from the start SoC to
the target, the predicted temperature trajectory, the expected minutes, where it came from (`model` or
`fallback`), the constraints that shaped it and the model's sha256. Invalid input (NaN, out of the
training range) or any model error gives the conservative CC-CV fallback, flagged and logged, never an
exception. The plan is advice: the safety envelope (`policy.envelope.decide`) still clamps every step.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from policy.charge_sim import HORIZONS_MIN, N_STAGES
from policy.curve import (
    DEFAULT_MODEL,
    FEATURES,
    CurveModel,
    ModelError,
    decode,
    feature_ranges,
    shared_model,
)
from policy.envelope import EnvelopeLimits, thermal_derate_fraction
from policy.physics import resistance_factor
from policy.physics_params import CellParams, cell_params
from policy.teacher import MIN_FRACTION, PREFERENCE_BUDGET_RATIO, STATE_RANGES

log = structlog.get_logger(__name__)

FALLBACK_C_RATE = 1.0  # as envelope.cc_cv_current_a: 1C is conservative for EV cells rated 2-3C
_FALLBACK_TAPER_SOC = 0.8
_FALLBACK_TAPER_FLOOR = 0.3


@dataclass(frozen=True)
class PlanRequest:
    """The charging situation a plan is for (C-rates on nominal capacity)."""

    soc: float
    target_soc: float
    soh: float
    cell_temp_c: float
    ambient_c: float
    chemistry: str = "nmc"
    max_c_rate: float = 3.0
    preference: str = "balanced"
    budget_minutes: float | None = None  # overrides the preference when given
    grid_c_rate: float | None = None  # a site/grid cap, as a C-rate


@dataclass(frozen=True)
class Segment:
    soc_start: float
    soc_end: float
    c_rate: float


@dataclass(frozen=True)
class Plan:
    segments: tuple[Segment, ...]
    predicted_temp_c: tuple[float, ...]
    expected_minutes: float | None
    source: str  # "model" | "fallback"
    binding_constraints: tuple[str, ...]
    model_sha256: str | None
    horizon_temp_c: tuple[float, ...] = ()
    horizon_voltage_v: tuple[float, ...] = ()
    explanation: str = ""
    expected_capacity_loss: float | None = None  # the model's estimate for this charge (fraction)

    def c_rate_at(self, soc: float) -> float:
        """The planned C-rate at `soc` (0 past the target)."""
        for seg in self.segments:
            if soc < seg.soc_end:
                return seg.c_rate
        return 0.0

    def current_schedule(self, soc: float, capacity_ah: float, soh: float) -> list[tuple[float, float]]:
        """The planned output current over time from `soc`: [(seconds from now, A)], ending with a 0 A entry.

        Each remaining segment runs at its C-rate × the rated capacity for as long as it takes to pass its
        SoC window (usable charge = window × capacity × SoH). Envelope derating and the BMS's own requests
        can only lower it: this is what the station expects to draw, at most.
        """
        periods: list[tuple[float, float]] = []
        t_s = 0.0
        for seg in self.segments:
            span = seg.soc_end - max(seg.soc_start, soc)
            if span <= 0 or seg.c_rate <= 0:
                continue
            periods.append((t_s, seg.c_rate * capacity_ah))
            t_s += span * soh / seg.c_rate * 3600.0
        return [*periods, (t_s, 0.0)] if periods else []

    def predicted_temp_at(self, minutes: float) -> float | None:
        """Hottest-cell temperature the model predicted `minutes` after planning (linear between horizons)."""
        if not self.horizon_temp_c or not math.isfinite(minutes):
            return None
        return float(np.interp(minutes, (0.0, *HORIZONS_MIN), (self.horizon_temp_c[0], *self.horizon_temp_c)))

    def to_json(self) -> dict[str, Any]:
        """The `chargeagent plan --json` contract (DESIGN.md)."""
        return {
            "segments": [
                {
                    "soc_start": round(s.soc_start, 4),
                    "soc_end": round(s.soc_end, 4),
                    "c_rate": round(s.c_rate, 3),
                }
                for s in self.segments
            ],
            "predicted_temp_c": [round(t, 2) for t in self.predicted_temp_c],
            "expected_minutes": None if self.expected_minutes is None else round(self.expected_minutes, 1),
            "source": self.source,
            "binding_constraints": list(self.binding_constraints),
            "model_sha256": self.model_sha256,
            "explanation": self.explanation,
            "expected_capacity_loss": (
                None if self.expected_capacity_loss is None else float(f"{self.expected_capacity_loss:.3g}")
            ),
        }


def budget_ratio(req: PlanRequest) -> float:
    """The time budget as a multiple of the ideal time (window at the max C-rate), clipped to training.

    An explicit budget is taken as is. A preference sets a base multiple, scaled by the cell's
    resistance relative to a new cell at 25 °C (`physics.resistance_factor`: Arrhenius in temperature,
    growth with age). The anode overpotential that drives lithium plating is about I·R, so giving a
    colder or older cell proportionally more time keeps it about as far from plating as a healthy warm
    one: the same preference charges it more gently, and the choice is explainable in one number.
    """
    lo, hi = STATE_RANGES["budget_ratio"]
    if req.budget_minutes is not None:
        ratio = req.budget_minutes / _ideal_minutes(req)
    else:
        factor = float(resistance_factor(_reference_cell(req.chemistry), req.cell_temp_c, req.soh))
        ratio = PREFERENCE_BUDGET_RATIO[req.preference] * min(max(factor, _MIN_R_FACTOR), _MAX_R_FACTOR)
    return min(max(ratio, lo), hi)


_MIN_R_FACTOR, _MAX_R_FACTOR = 0.8, 3.0


@cache
def _reference_cell(chemistry: str) -> CellParams:
    """The chemistry's cell parameters, built once (only the per-Ah scalings matter for the factor)."""
    return cell_params("lfp" if chemistry == "lfp" else "nmc", 100.0)


def _features(req: PlanRequest, budget_ratio: float) -> np.ndarray:
    return np.array(
        [
            req.soc,
            req.target_soc,
            req.soh,
            req.cell_temp_c,
            req.ambient_c,
            1.0 if req.chemistry == "lfp" else 0.0,
            req.max_c_rate,
            math.log(budget_ratio),
        ]
    )


def _ideal_minutes(req: PlanRequest) -> float:
    return (req.target_soc - req.soc) * 60.0 / req.max_c_rate


def out_of_range(req: PlanRequest) -> list[str]:
    """Why the model must not answer this request (empty when it may)."""
    numbers = {
        "soc": req.soc,
        "target_soc": req.target_soc,
        "soh": req.soh,
        "cell_temp_c": req.cell_temp_c,
        "ambient_c": req.ambient_c,
        "max_c_rate": req.max_c_rate,
    }
    reasons = [f"nan_input:{k}" for k, v in numbers.items() if not math.isfinite(v)]
    if reasons:
        return reasons
    if req.chemistry not in ("nmc", "lfp"):
        reasons.append("out_of_range:chemistry")
    if req.budget_minutes is None and req.preference not in PREFERENCE_BUDGET_RATIO:
        reasons.append("out_of_range:preference")
    if req.budget_minutes is not None and not (math.isfinite(req.budget_minutes) and req.budget_minutes > 0):
        reasons.append("nan_input:budget_minutes")
    for name, value, (lo, hi) in zip(FEATURES, _features(req, 1.0), feature_ranges(), strict=True):
        # Budgets beyond the trained range are clipped (longer than 8x ideal is "gentle" anyway).
        if name != "log_budget_ratio" and not lo <= value <= hi:
            reasons.append(f"out_of_range:{name}")
    if req.target_soc <= req.soc + 0.01:
        reasons.append("out_of_range:target_soc_not_above_soc")
    if req.grid_c_rate is not None and not (math.isfinite(req.grid_c_rate) and req.grid_c_rate >= 0.0):
        reasons.append("nan_input:grid_c_rate")
    return reasons


class CurvePolicy:
    """Plans from the shipped model inside the envelope's rules; CC-CV when the model can't answer."""

    def __init__(self, model_path: Path = DEFAULT_MODEL, limits: EnvelopeLimits | None = None) -> None:
        self.limits = limits or EnvelopeLimits(charger_max_current_a=1e9, charger_max_voltage_v=1e9)
        self.model: CurveModel | None
        try:
            self.model = shared_model(model_path)
        except ModelError as exc:
            log.error("curve_model_unavailable", error=str(exc), reaction="CC-CV fallback for every plan")
            self.model = None

    def plan(self, req: PlanRequest) -> Plan:
        reasons = out_of_range(req)
        if self.model is None:
            reasons.append("model_unavailable")
        if reasons:
            log.warning("plan_fallback", reasons=reasons)
            return fallback_plan(req, self.limits, reasons)
        assert self.model is not None
        ratio = budget_ratio(req)
        features = _features(req, ratio)[None, :]
        try:
            raw, gate = self.model.infer(features)
        except ModelError as exc:
            log.error("plan_model_error", error=str(exc), reaction="CC-CV fallback")
            return fallback_plan(req, self.limits, ["model_error"])
        decoded = decode(raw[0], gate[0], features[0])
        budget_min = ratio * _ideal_minutes(req)
        return self._clamp(req, fit_budget(req, budget_min, decoded.fractions, decoded.cc_share), decoded)

    def _clamp(self, req: PlanRequest, fractions: np.ndarray, d: Any) -> Plan:
        """Apply the envelope's rules to the model's curve and name what bound each stage."""
        bounds = np.linspace(req.soc, req.target_soc, N_STAGES + 1)
        binding: list[str] = []
        segments = []
        start_temps = (req.cell_temp_c, *d.stage_end_temp_c[:-1])
        for k in range(N_STAGES):
            c_rate, name = float(fractions[k]) * req.max_c_rate, ""
            derate = thermal_derate_fraction(start_temps[k], start_temps[k], self.limits) * req.max_c_rate
            if derate < c_rate:
                c_rate, name = derate, "thermal_derate"
            if req.grid_c_rate is not None and req.grid_c_rate < c_rate:
                c_rate, name = req.grid_c_rate, "grid_limit"
            if name and name not in binding:
                binding.append(name)
            segments.append(Segment(float(bounds[k]), float(bounds[k + 1]), max(c_rate, 0.0)))
        if req.cell_temp_c < self.limits.cold_block_below_c:
            binding = ["cold_block"]
        cc_min = _segment_minutes(segments, req.soh)
        minutes = None if cc_min is None else cc_min / max(d.cc_share, 0.05)
        peak_c = float(np.max(fractions)) * req.max_c_rate
        goal = f"{req.preference}" if req.budget_minutes is None else f"{req.budget_minutes:.0f}-min budget"
        text = (
            f"model curve ({goal}, expert {d.expert}): peak {peak_c:.2f}C for SoH {req.soh:.2f} at "
            f"{req.cell_temp_c:.1f} °C, {segments[-1].c_rate:.2f}C near {req.target_soc:.0%}, "
            f"expected loss {d.loss * 100:.4f} % of capacity"
        )
        return Plan(
            segments=tuple(segments),
            predicted_temp_c=tuple(float(t) for t in d.stage_end_temp_c),
            expected_minutes=minutes,
            source="model",
            binding_constraints=tuple(binding),
            model_sha256=self.model.sha256 if self.model else None,
            horizon_temp_c=tuple(float(t) for t in d.horizon_temp_c),
            horizon_voltage_v=tuple(float(v) for v in d.horizon_voltage_v),
            explanation=text + (f"; clamped by {', '.join(binding)}" if binding else ""),
            expected_capacity_loss=d.loss,
        )


def fit_budget(req: PlanRequest, budget_min: float, fractions: np.ndarray, cc_share: float) -> np.ndarray:
    """Scale the model's curve (its shape kept) so its expected time meets the time budget.

    The network is good at the curve's shape and less precise about its overall level (a few % of
    current is a few % of aging). Its `cc_share` head predicts which share of the real charge time the
    stages' constant-current time is (the rest is CV tail and derating); scaling the stage currents so
    that CC time = budget x cc_share pins the level. The [MIN_FRACTION, 1] bounds and the envelope rules
    still apply, so a budget too short for the pack gives the fastest curve.
    """
    window = req.target_soc - req.soc
    if window <= 0.0 or not (0.0 < cc_share <= 1.0 and budget_min > 0.0):
        return fractions
    cc_min = float(np.sum(window * req.soh / N_STAGES * 60.0 / (fractions * req.max_c_rate)))
    return np.clip(fractions * cc_min / (budget_min * cc_share), MIN_FRACTION, 1.0)


def _segment_minutes(segments: list[Segment], soh: float) -> float | None:
    """Minutes at the planned rates (no CV tail): None when a segment has no current (cannot finish).

    C-rates are on nominal capacity; a SoC window holds window x SoH of it.
    """
    total = 0.0
    for seg in segments:
        if seg.c_rate < _MIN_C_RATE:  # e.g. a max C-rate of 1e-300: never finishes, not "inf minutes"
            return None
        total += (seg.soc_end - seg.soc_start) * soh * 60.0 / seg.c_rate
    return float(total)


_MIN_C_RATE = 1e-6


def fallback_plan(req: PlanRequest, limits: EnvelopeLimits, reasons: list[str]) -> Plan:
    """CC-CV at min(1C, max C-rate), tapered above 80 % SoC like `envelope.cc_cv_current_a`, derated."""
    soc = req.soc if math.isfinite(req.soc) else 0.0
    target = req.target_soc if math.isfinite(req.target_soc) else 0.8
    soc, target = min(max(soc, 0.0), 1.0), min(max(target, 0.0), 1.0)
    soh = min(max(req.soh, 0.1), 1.0) if math.isfinite(req.soh) else 1.0
    max_c = req.max_c_rate if math.isfinite(req.max_c_rate) and req.max_c_rate > 0 else FALLBACK_C_RATE
    temp = req.cell_temp_c if math.isfinite(req.cell_temp_c) else math.nan
    derate = thermal_derate_fraction(temp, temp, limits) if math.isfinite(temp) else 0.0
    base = min(FALLBACK_C_RATE, max_c) * derate
    if req.grid_c_rate is not None and math.isfinite(req.grid_c_rate):
        base = min(base, max(req.grid_c_rate, 0.0))
    bounds = np.linspace(soc, max(target, soc), N_STAGES + 1)
    segments = []
    for lo, hi in itertools.pairwise(bounds):
        mid = (lo + hi) / 2.0
        taper = 1.0
        if mid > _FALLBACK_TAPER_SOC:
            progress = (mid - _FALLBACK_TAPER_SOC) / (1.0 - _FALLBACK_TAPER_SOC)
            taper = 1.0 - (1.0 - _FALLBACK_TAPER_FLOOR) * min(progress, 1.0)
        segments.append(Segment(float(lo), float(hi), float(max(base * taper, 0.0))))
    binding = list(reasons)
    if derate < 1.0:
        binding.append("cold_block" if derate == 0.0 else "thermal_derate")
    return Plan(
        segments=tuple(segments),
        predicted_temp_c=(),
        expected_minutes=_segment_minutes(segments, soh) if target > soc else 0.0,
        source="fallback",
        binding_constraints=tuple(binding),
        model_sha256=None,
        explanation=f"CC-CV fallback at {base:.2f}C ({', '.join(reasons)})",
    )
