"""Vectorised simulation of multistage constant-current charge curves on the surrogate, with aging.

A curve is K constant-current stages over equal SoC windows from the start SoC to the target; stage k
asks `fractions[k] · max_c_rate` (C-rate on nominal capacity). What flows is what the charger would
deliver inside the safety envelope: the stage current, min'd with the thermal derating of
`policy.envelope` (same rules, vectorised here) and a CV taper at the cell voltage limit (the same
integral rule as `envelope.cc_cv_current_a`). One `PackBatch` row per (state, candidate); the result has
charge time, capacity lost (SEI + plating, `policy.aging`), and the temperature/voltage trajectory the
student model learns to predict. The envelope's soft-start ramp (seconds) is below the step and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.aging import step_loss
from policy.envelope import EnvelopeLimits
from policy.physics import FloatArray, PackBatch
from policy.physics_params import Chemistry, cell_params

N_STAGES = 6
HORIZONS_MIN = (2.0, 5.0, 10.0, 15.0)  # the multi-horizon heads forecast T and V this far ahead
STEP_S = 10.0
MAX_MINUTES = 360.0
CV_MARGIN_V = 0.02  # as envelope.cc_cv_current_a
CV_GAIN_A_PER_V_AH = 1.5
REFERENCE_CAPACITY_AH = 100.0  # the surrogate cell size; results are per unit capacity (C-rates)


@dataclass(frozen=True)
class ChargeStates:
    """N charging situations (arrays of shape (N,)), all of one chemistry."""

    chemistry: Chemistry
    soc: FloatArray
    target_soc: FloatArray
    soh: FloatArray
    cell_temp_c: FloatArray
    ambient_c: FloatArray
    max_c_rate: FloatArray

    @property
    def n(self) -> int:
        return int(self.soc.size)

    def repeat(self, times: int) -> ChargeStates:
        """Each state `times` times in a row (state i -> rows i·times ... i·times + times - 1)."""
        return ChargeStates(
            self.chemistry,
            *(np.repeat(getattr(self, f), times) for f in _STATE_ARRAYS),
        )


_STATE_ARRAYS = ("soc", "target_soc", "soh", "cell_temp_c", "ambient_c", "max_c_rate")


@dataclass(frozen=True)
class SimResult:
    """Per row: minutes to target (MAX_MINUTES if not reached), capacity loss, trajectories."""

    minutes: FloatArray
    reached: np.ndarray
    loss: FloatArray
    loss_plating: FloatArray
    peak_temp_c: FloatArray
    stage_end_minutes: FloatArray  # (N, K)
    stage_end_temp_c: FloatArray  # (N, K) mean cell temperature when leaving stage k
    horizon_temp_c: FloatArray  # (N, H) hottest cell at HORIZONS_MIN
    horizon_voltage_v: FloatArray  # (N, H) highest cell voltage at HORIZONS_MIN
    applied_c_rate: FloatArray  # (N, K) mean C-rate that really flowed in each stage


def thermal_fraction(t_min_c: FloatArray, t_max_c: FloatArray, limits: EnvelopeLimits) -> FloatArray:
    """`envelope.thermal_derate_fraction` over arrays (tests check the two agree point by point)."""
    cold = np.minimum(t_min_c, t_max_c)
    hot = np.maximum(t_min_c, t_max_c)
    cold_span = (cold - limits.cold_block_below_c) / (limits.cold_derate_full_c - limits.cold_block_below_c)
    cold_frac = np.where(
        cold < limits.cold_derate_full_c,
        limits.cold_derate_floor_fraction + (1.0 - limits.cold_derate_floor_fraction) * cold_span,
        1.0,
    )
    hot_span = (hot - limits.hot_derate_start_c) / (limits.stop_temp_c - limits.hot_derate_start_c)
    hot_frac = np.where(
        hot > limits.hot_derate_start_c, 1.0 - (1.0 - limits.hot_derate_floor_fraction) * hot_span, 1.0
    )
    frac = np.minimum(cold_frac, hot_frac)
    blocked = (cold < limits.cold_block_below_c) | (hot >= limits.stop_temp_c)
    return np.asarray(np.where(blocked, 0.0, frac), dtype=np.float64)


def default_limits() -> EnvelopeLimits:
    """Envelope rules with no charger cap (the caller's max C-rate is the cap)."""
    return EnvelopeLimits(charger_max_current_a=1e9, charger_max_voltage_v=1e9)


class _Recorder:
    """Per-stage and per-horizon bookkeeping of one `simulate` run (keeps the step loop short)."""

    def __init__(self, states: ChargeStates, n: int, k_stages: int, max_minutes: float) -> None:
        self.states, self.k = states, k_stages
        self.span = np.maximum(states.target_soc - states.soc, 1e-9)
        self.rows = np.arange(n)
        self.stage_end_min = np.full((n, k_stages), np.nan)
        self.stage_end_temp = np.full((n, k_stages), np.nan)
        self.charge_in_stage = np.zeros((n, k_stages))
        self.time_in_stage = np.zeros((n, k_stages))
        self.horizon_steps = [round(h * 60.0 / STEP_S) for h in HORIZONS_MIN]
        self.h_temp = np.zeros((n, len(HORIZONS_MIN)))
        self.h_volt = np.zeros((n, len(HORIZONS_MIN)))
        self.max_steps = round(max_minutes * 60.0 / STEP_S)

    def stage(self, soc: FloatArray) -> np.ndarray:
        return np.clip(((soc - self.states.soc) / self.span * self.k).astype(np.int64), 0, self.k - 1)

    def horizon(self, step: int, pack: PackBatch) -> None:
        for j, at in enumerate(self.horizon_steps):
            if at == step or (step == self.max_steps and at >= step):
                self.h_temp[:, j], self.h_volt[:, j] = pack.cell_temp_max_c, pack.cell_voltage_max_v

    def after_step(
        self, step: int, active: np.ndarray, stage: np.ndarray, soc_before: FloatArray, pack: PackBatch
    ) -> None:
        self.charge_in_stage[self.rows, stage] += np.where(active, pack.current_a * STEP_S, 0.0)
        self.time_in_stage[self.rows, stage] += np.where(active, STEP_S, 0.0)
        # Stage boundaries crossed in this step (several at once only for tiny windows).
        before = (soc_before - self.states.soc) / self.span * self.k
        after = (pack.soc - self.states.soc) / self.span * self.k
        for k in range(self.k):
            crossed = active & (before < k + 1) & (after >= k + 1 - 1e-9) & np.isnan(self.stage_end_min[:, k])
            self.stage_end_min[crossed, k] = (step + 1) * STEP_S / 60.0
            self.stage_end_temp[crossed, k] = pack.cell_temp_c[crossed]


def simulate(
    states: ChargeStates,
    fractions: FloatArray,
    *,
    limits: EnvelopeLimits | None = None,
    max_minutes: float = MAX_MINUTES,
) -> SimResult:
    """Charge every row with its curve (`fractions`, shape (N, K)) until its target SoC or `max_minutes`."""
    lim = limits or default_limits()
    n, k_stages = fractions.shape
    cell = cell_params(states.chemistry, REFERENCE_CAPACITY_AH)
    q = cell.capacity_ah
    pack = PackBatch(cell, 1, states.soc, states.soh, states.cell_temp_c, states.ambient_c)
    rec = _Recorder(states, n, k_stages, max_minutes)
    stage_a = np.clip(fractions, 0.0, 1.0) * (states.max_c_rate * q)[:, None]
    done = states.soc >= states.target_soc
    minutes = np.where(done, 0.0, max_minutes)
    loss = np.zeros(n)
    loss_pl = np.zeros(n)
    peak = pack.cell_temp_max_c.copy()
    previous_a = np.zeros(n)
    for step in range(rec.max_steps):
        rec.horizon(step, pack)
        if done.all() and step > rec.horizon_steps[-1]:
            break
        stage = rec.stage(pack.soc)
        derate_a = thermal_fraction(pack.cell_temp_min_c, pack.cell_temp_max_c, lim) * states.max_c_rate * q
        error_v = cell.max_cell_voltage_v - CV_MARGIN_V - pack.cell_voltage_max_v
        cv_a = np.maximum(previous_a, 0.0) + CV_GAIN_A_PER_V_AH * q * error_v
        want_a = np.minimum(np.minimum(stage_a[rec.rows, stage], derate_a), cv_a)
        current = np.where(done, 0.0, np.maximum(want_a, 0.0))
        # Aging is scored on the state at the start of the step (explicit Euler; STEP_S is short
        # against the thermal time constant of ~800 s).
        step_l = step_loss(cell, current, pack.soc, pack.cell_temp_c, states.soh, STEP_S)
        active = ~done
        loss += np.where(active, step_l.total, 0.0)
        loss_pl += np.where(active, step_l.plating, 0.0)
        soc_before = pack.soc.copy()
        pack.step(current, STEP_S)
        previous_a = pack.current_a
        rec.after_step(step, active, stage, soc_before, pack)
        peak = np.where(active, np.maximum(peak, pack.cell_temp_max_c), peak)
        finished = active & (pack.soc >= states.target_soc - 1e-6)
        minutes = np.where(finished, (step + 1) * STEP_S / 60.0, minutes)
        done = done | finished
    else:
        rec.horizon(rec.max_steps, pack)  # horizons past the end: the last state
    return SimResult(
        minutes=minutes,
        reached=done,
        loss=loss,
        loss_plating=loss_pl,
        peak_temp_c=peak,
        stage_end_minutes=np.where(np.isnan(rec.stage_end_min), minutes[:, None], rec.stage_end_min),
        stage_end_temp_c=np.where(
            np.isnan(rec.stage_end_temp), pack.cell_temp_c[:, None], rec.stage_end_temp
        ),
        horizon_temp_c=rec.h_temp,
        horizon_voltage_v=rec.h_volt,
        applied_c_rate=rec.charge_in_stage / np.maximum(rec.time_in_stage, STEP_S) / q,
    )


def constant_fractions(states: ChargeStates, c_rate: float, k_stages: int = N_STAGES) -> FloatArray:
    """The curve of plain CC-CV at `c_rate`: every stage the same (capped at the state's max C-rate)."""
    frac = np.minimum(c_rate / states.max_c_rate, 1.0)
    return np.repeat(frac[:, None], k_stages, axis=1)
