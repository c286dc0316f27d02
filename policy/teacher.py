"""The teacher: search multistage constant-current curves on the surrogate that age the battery least.

For each charging situation and a time budget, the cross-entropy method (CEM) samples a population of
K-stage curves, charges them all at once on the surrogate (`policy.charge_sim`, envelope rules
included), scores capacity lost plus a steep penalty per minute over budget, and refits a Gaussian to the
elite. Plain CC-CV at several rates is always in the first population, so the teacher's answer is
never worse than the best CC-CV curve that meets the budget. An infeasible budget yields the fastest
curve found. Sweeping the budget traces the Pareto front of time vs degradation; a preference picks a
point on it (`PREFERENCE_BUDGET_RATIO`).

Cost: one state alone ≈ 0.23 s on one core (48 candidates x 5 iterations; `bench/bench_policy.py`);
batches amortise it. `generate_dataset` spreads chunks over processes: 4,800 states took 29 min on 2
processes of a machine shared with other jobs.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from policy.charge_sim import MAX_MINUTES, N_STAGES, ChargeStates, SimResult, simulate
from policy.physics import FloatArray
from policy.physics_params import Chemistry

Preference = Literal["fast", "balanced", "gentle"]
# Time budget as a multiple of the ideal time (the SoC window at the BMS's max C-rate, no CV, no
# derating) for a new cell at 25 °C; `policy.plan.budget_ratio` scales it by the cell's resistance.
# fast asks for the ideal (usually infeasible, so: the fastest curve the envelope allows).
PREFERENCE_BUDGET_RATIO: dict[str, float] = {"fast": 1.0, "balanced": 1.6, "gentle": 2.5}
MIN_FRACTION = 0.05  # a stage never asks for less than 5 % of the max C-rate (a stall is never optimal)
_CC_LEVELS = (0.1, 0.17, 0.25, 0.33, 0.5, 0.67, 0.83, 1.0)
_BUDGET_CC_GAINS = (1.0, 1.03, 1.06, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5)
# Over-budget penalty per unit of relative overshoot: 1 % over costs 1e-3 of capacity, ten times a
# typical whole charge's loss, so any curve within budget beats any curve over it.
_OVER_BUDGET_PENALTY = 0.1


def ideal_minutes(states: ChargeStates) -> FloatArray:
    """Minutes to cover the SoC window at the max C-rate with no CV phase and no derating."""
    return np.asarray((states.target_soc - states.soc) * 60.0 / states.max_c_rate, dtype=np.float64)


@dataclass(frozen=True)
class TeacherResult:
    fractions: FloatArray  # (N, K) stage current / max current
    budget_minutes: FloatArray
    sim: SimResult


def score(sim: SimResult, budget_minutes: FloatArray) -> FloatArray:
    """Capacity lost, plus the steep over-budget penalty (lower is better)."""
    over = np.maximum(sim.minutes / budget_minutes - 1.0, 0.0)
    return np.asarray(
        sim.loss + _OVER_BUDGET_PENALTY * over + np.where(sim.reached, 0.0, 1.0), dtype=np.float64
    )


def solve(
    states: ChargeStates,
    budget_minutes: FloatArray,
    *,
    population: int = 48,
    iterations: int = 5,
    elite: int = 8,
    seed: int = 0,
) -> TeacherResult:
    """The best curve found for every state within its budget (vectorised over states)."""
    rng = np.random.default_rng(seed)
    n, k = states.n, N_STAGES
    budget = np.asarray(budget_minutes, dtype=np.float64)
    horizon = float(min(MAX_MINUTES, budget.max() * 1.5 + 5.0))
    mean = np.full((n, k), 0.7)
    std = np.full((n, k), 0.3)
    best = np.zeros((n, k))
    best_score = np.full(n, math.inf)
    tiled = states.repeat(population)
    budget_tiled = np.repeat(budget, population)
    for it in range(iterations):
        cand = np.clip(
            mean[:, None, :] + std[:, None, :] * rng.standard_normal((n, population, k)), MIN_FRACTION, 1.0
        )
        if it == 0:
            # Plain CC-CV at fixed rates, and at the budget's mean rate plus 0-50 % for the CV tail and
            # derating: the teacher never does worse than the best of these that meets the budget.
            levels = np.asarray(_CC_LEVELS)[: min(len(_CC_LEVELS), population // 2)]
            cand[:, : levels.size, :] = levels[None, :, None]
            mean_rate = (states.target_soc - states.soc) * 60.0 / budget / states.max_c_rate
            gains = np.asarray(_BUDGET_CC_GAINS)[: max(0, population - levels.size - 1)]
            fitted = np.clip(mean_rate[:, None] * gains[None, :], MIN_FRACTION, 1.0)
            cand[:, levels.size : levels.size + gains.size, :] = fitted[:, :, None]
        else:
            cand[:, 0, :] = best
        sim = simulate(tiled, cand.reshape(n * population, k), max_minutes=horizon)
        s = score(sim, budget_tiled).reshape(n, population)
        order = np.argsort(s, axis=1)
        top = np.take_along_axis(cand, order[:, :elite, None], axis=1)
        mean = top.mean(axis=1)
        std = np.maximum(top.std(axis=1), 0.03)
        winner = order[:, 0]
        better = s[np.arange(n), winner] < best_score
        best[better] = cand[np.arange(n), winner][better]
        best_score[better] = s[np.arange(n), winner][better]
    # The label run uses the full horizon, so "not reached" always reads minutes == MAX_MINUTES.
    return TeacherResult(best, budget, simulate(states, best))


# --- training data -----------------------------------------------------------------------------

# Ranges the student is trained on (and the runtime's in-range check; see policy/curve.py).
STATE_RANGES: dict[str, tuple[float, float]] = {
    "soc": (0.0, 0.9),
    "target_soc": (0.1, 1.0),
    "soh": (0.6, 1.0),
    "cell_temp_c": (0.0, 50.0),
    "ambient_c": (-20.0, 45.0),
    "max_c_rate": (0.3, 4.0),
    "budget_ratio": (1.0, 8.0),
}


@dataclass(frozen=True)
class Dataset:
    """Teacher-labelled states: features per `policy.curve.FEATURES` plus targets per head."""

    chemistry_lfp: FloatArray
    states: dict[str, FloatArray]
    fractions: FloatArray
    stage_end_minutes: FloatArray
    stage_end_temp_c: FloatArray
    horizon_temp_c: FloatArray
    horizon_voltage_v: FloatArray
    loss: FloatArray
    minutes: FloatArray


def sample_states(rng: np.random.Generator, n: int, chemistry: Chemistry) -> tuple[ChargeStates, FloatArray]:
    """Random charging situations over the training ranges, and budgets (log-uniform ratio)."""
    soc = rng.uniform(0.0, 0.85, n)
    target = np.minimum(soc + rng.uniform(0.1, 0.9, n), 1.0)
    temp = rng.uniform(0.0, 45.0, n)
    states = ChargeStates(
        chemistry,
        soc=soc,
        target_soc=target,
        soh=rng.uniform(0.65, 1.0, n),
        cell_temp_c=temp,
        ambient_c=np.clip(temp + rng.uniform(-10.0, 5.0, n), -20.0, 45.0),
        max_c_rate=rng.uniform(0.5, 3.5, n),
    )
    ratio = np.exp(rng.uniform(0.0, math.log(STATE_RANGES["budget_ratio"][1]), n))
    return states, ideal_minutes(states) * ratio


def _label_chunk(args: tuple[int, int, Chemistry, int, int]) -> Dataset:
    seed, n, chemistry, population, iterations = args
    rng = np.random.default_rng(seed)
    states, budget = sample_states(rng, n, chemistry)
    result = solve(states, budget, population=population, iterations=iterations, seed=seed)
    sim = result.sim
    return Dataset(
        chemistry_lfp=np.full(n, 1.0 if chemistry == "lfp" else 0.0),
        states={
            "soc": states.soc,
            "target_soc": states.target_soc,
            "soh": states.soh,
            "cell_temp_c": states.cell_temp_c,
            "ambient_c": states.ambient_c,
            "max_c_rate": states.max_c_rate,
            "budget_ratio": budget / ideal_minutes(states),
        },
        fractions=result.fractions,
        stage_end_minutes=sim.stage_end_minutes,
        stage_end_temp_c=sim.stage_end_temp_c,
        horizon_temp_c=sim.horizon_temp_c,
        horizon_voltage_v=sim.horizon_voltage_v,
        loss=sim.loss,
        minutes=sim.minutes,
    )


def concat(parts: list[Dataset]) -> Dataset:
    return Dataset(
        chemistry_lfp=np.concatenate([p.chemistry_lfp for p in parts]),
        states={key: np.concatenate([p.states[key] for p in parts]) for key in parts[0].states},
        **{
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in (
                "fractions",
                "stage_end_minutes",
                "stage_end_temp_c",
                "horizon_temp_c",
                "horizon_voltage_v",
                "loss",
                "minutes",
            )
        },
    )


def generate_dataset(
    n_states: int,
    *,
    seed: int,
    lfp_share: float = 0.3,
    chunk: int = 250,
    workers: int = 2,
    population: int = 48,
    iterations: int = 5,
) -> Dataset:
    """Teacher labels for `n_states` random states, chunked over `workers` processes (deterministic)."""
    jobs: list[tuple[int, int, Chemistry, int, int]] = []
    n_lfp = round(n_states * lfp_share)
    plan: tuple[tuple[Chemistry, int], ...] = (("nmc", n_states - n_lfp), ("lfp", n_lfp))
    for chemistry, count in plan:
        for start in range(0, count, chunk):
            jobs.append(
                (seed * 100_003 + len(jobs), min(chunk, count - start), chemistry, population, iterations)
            )
    if workers <= 1:
        parts = [_label_chunk(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_label_chunk, jobs))
    return concat(parts)
