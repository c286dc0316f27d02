"""Degradation forecast: a population prior, the battery's own trend, knee and jump detection, quantiles.

Model (per battery, against equivalent full cycles e):

    capacity_soh(e)      = β0 + β1·√e + β2·e  [+ γ·max(0, e - e_knee) once a knee is detected]
    resistance_growth(e) = ρ0 + ρ1·√e + ρ2·e  [+ δ·1(e ≥ e_jump) once a jump is detected]

The prior on (β, ρ) is Gaussian, fitted on a simulated population (`fit_prior`: least squares of every
battery's pre-knee path, then the sample mean and covariance of the coefficients), together with the
population's knee statistics (share of batteries with a knee, onsets, post-knee slopes). The battery's
per-session estimates update it by Bayesian linear regression (conjugate normal, the session standard
deviations as known noise, inflated when the residuals say they were too small: a "Bayesian-ish"
empirical-Bayes step). Forecasts draw coefficients from the posterior and, while no knee has been seen,
a future knee with the population's conditional probability of one after today's EFC; p10/p50/p90 are
the draws' quantiles.

Knee onset: the best two-slope (hinge) fit over candidate breakpoints against a straight line; flagged
when the extra slope is negative (accelerating fade), its t statistic ≥ KNEE_T (conservative for the
search over breakpoints; the false-alarm rate on healthy simulated batteries is measured by the tests)
and it has already cost ≥ 0.5 % capacity. Resistance jump: the same search with a step regressor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from policy.health_prior import RESISTANCE_PER_SOH_LOSS, Population, _ramp, sample_population
from policy.physics import FloatArray
from policy.physics_params import Chemistry

KNEE_T = 4.0
KNEE_MIN_EXTRA_FADE = 0.005
KNEE_WIDTH_EFC = 40.0
JUMP_T = 4.5
JUMP_MIN_RELATIVE = 0.10
JUMP_SLOPE_SPAN_EFC = 100.0
# Systematic capacity error no session average removes: current-sensor gain (≈ 0.2 %) and OCV-table
# mismatch. Added to the "now" estimate in quadrature; calibrated on simulated batteries (p10-p90 covers
# the truth ≈ 80 % of the time after 10 sessions, tests/policy/test_health.py). Resistance needs none.
CAPACITY_SYSTEMATIC_SD = 0.0025
RESISTANCE_SYSTEMATIC_SD = 0.0
_DRAWS = 1000
_HORIZON_EFC = 8000.0
# Per forecast draw: knee or not (0/1), onset EFC, extra fade per EFC.
KneeDraws = tuple[FloatArray, FloatArray, FloatArray]


def basis(efc: FloatArray | float) -> FloatArray:
    e = np.maximum(np.atleast_1d(np.asarray(efc, dtype=np.float64)), 0.0)
    return np.column_stack([np.ones_like(e), np.sqrt(e), e])


@dataclass(frozen=True)
class Prior:
    """Population prior: Gaussian coefficients on `basis`, plus the knee statistics."""

    capacity_mean: FloatArray
    capacity_cov: FloatArray
    resistance_mean: FloatArray
    resistance_cov: FloatArray
    knee_fraction: float
    knee_onsets_efc: FloatArray
    knee_slopes_per_efc: FloatArray  # extra fade per EFC after a knee (positive numbers)


# A battery first seen at a station without its cycle count (GB/T 27930 carries none) may be new or
# worn: its SoH at the first session is anywhere from ~0.65 to 1.0, not the population's new-battery
# intercept. So the intercept's prior sd is widened to this (capacity SoH; resistance growth: x2.5,
# the surrogate's R ∝ 1 + 2.5 (1 - SoH)), and the first sessions' own estimates decide the level.
UNKNOWN_AGE_CAPACITY_SD = 0.12


def unknown_age(prior: Prior) -> Prior:
    """`prior` for a battery whose age is unknown: the same slopes, an uninformative starting level."""
    cap_cov, res_cov = prior.capacity_cov.copy(), prior.resistance_cov.copy()
    cap_cov[0, 0] += UNKNOWN_AGE_CAPACITY_SD**2
    res_cov[0, 0] += (RESISTANCE_PER_SOH_LOSS * UNKNOWN_AGE_CAPACITY_SD) ** 2
    return replace(prior, capacity_cov=cap_cov, resistance_cov=res_cov)


def fit_prior(population: Population) -> Prior:
    """Fit the prior on a population of true paths (any generator with `Population`'s shape)."""
    x = basis(population.efc)
    knee = population.knee_efc
    # Each battery's fit uses its pre-knee points only: weighted normal equations, all batteries at once.
    pre = (population.efc[None, :] < np.where(np.isfinite(knee), knee, np.inf)[:, None]).astype(np.float64)
    keep = pre.sum(axis=1) >= 5
    gram = np.einsum("mg,gi,gj->mij", pre[keep], x, x)
    cap = np.linalg.solve(
        gram, np.einsum("mg,gi->mi", pre[keep] * population.capacity_soh[keep], x)[..., None]
    )[..., 0]
    res = np.linalg.solve(
        gram, np.einsum("mg,gi->mi", pre[keep] * population.resistance_growth[keep], x)[..., None]
    )[..., 0]
    slopes = []
    knee_kept, soh_kept = knee[keep], population.capacity_soh[keep]
    for m in np.flatnonzero(np.isfinite(knee_kept)):
        onset = float(knee_kept[m])
        post = (population.efc > onset) & (population.efc <= onset + 500.0)
        excess = x[post] @ cap[m] - soh_kept[m, post]
        run = population.efc[post] - onset
        if run.size >= 3:
            slopes.append(float(np.sum(excess * run) / np.sum(run * run)))
    jitter = np.diag([1e-6, 1e-8, 1e-12])  # keeps the covariance invertible for a degenerate population
    onsets = population.knee_efc[np.isfinite(population.knee_efc)]
    return Prior(
        capacity_mean=cap.mean(axis=0),
        capacity_cov=np.cov(cap.T) + jitter,
        resistance_mean=res.mean(axis=0),
        resistance_cov=np.cov(res.T) + jitter,
        knee_fraction=float(onsets.size / population.knee_efc.size),
        knee_onsets_efc=onsets,
        knee_slopes_per_efc=np.maximum(np.array(slopes), 0.0) if slopes else np.zeros(0),
    )


@cache
def default_prior(chemistry: Chemistry) -> Prior:
    """The prior fitted on 2,000 batteries of `policy.health_prior`'s population (computed once)."""
    return fit_prior(sample_population(chemistry, 2000, seed=2014))


@dataclass(frozen=True)
class Break:
    """A detected change: at session `index` (EFC `efc`), size per EFC (hinge) or absolute (step)."""

    index: int
    efc: float
    size: float
    t_stat: float


# A change in a trend: (where, "hinge" | "step", prior mean and sd of its coefficient).
Change = tuple[Break, str, float, float]


def best_break(
    efc: FloatArray,
    y: FloatArray,
    sd: FloatArray,
    kind: str,
    min_before: int,
    min_after: int,
    with_slope: bool = True,
) -> Break | None:
    """Best single hinge (`kind="hinge"`) or step (`"step"`) on top of a straight line, by weighted LS.

    All candidate breakpoints at once (Frisch-Waugh: residualise the regressor and y on the line).
    The residual scale is inflated to max(1, χ²/dof) so underestimated session errors cannot make
    noise look significant. Returns the candidate with the largest |t|, signed as fitted.
    """
    n = efc.size
    if n < min_before + min_after + 3:
        return None
    sw = 1.0 / sd
    base = (np.column_stack([np.ones(n), efc]) if with_slope else np.ones((n, 1))) * sw[:, None]
    q, _ = np.linalg.qr(base)
    cand = np.arange(min_before, n - min_after + 1)
    if kind == "hinge":
        reg = np.maximum(efc[:, None] - efc[cand][None, :], 0.0)
    else:
        reg = (np.arange(n)[:, None] >= cand[None, :]).astype(np.float64)
    reg = reg * sw[:, None]
    yw = y * sw
    reg_t = reg - q @ (q.T @ reg)
    y_t = yw - q @ (q.T @ yw)
    den = np.sum(reg_t * reg_t, axis=0)
    valid = den > 1e-12
    if not np.any(valid):
        return None
    num = reg_t.T @ y_t
    gamma = np.where(valid, num / np.where(valid, den, 1.0), 0.0)
    rss = float(y_t @ y_t) - np.where(valid, num * gamma, 0.0)
    scale2 = np.maximum(rss / max(n - base.shape[1] - 1, 1), 1.0)
    t = np.where(valid, gamma / np.sqrt(scale2 / np.where(valid, den, 1.0)), 0.0)
    j = int(np.argmax(np.abs(t)))
    return Break(int(cand[j]), float(efc[cand[j]]), float(gamma[j]), float(t[j]))


def detect_knee(efc: FloatArray, soh: FloatArray, sd: FloatArray) -> Break | None:
    """A knee (accelerating capacity fade), or None; see the module docstring for the criteria."""
    found = best_break(efc, soh, sd, "hinge", min_before=15, min_after=8)
    if found is None or found.size >= 0.0 or -found.t_stat < KNEE_T:
        return None
    if -found.size * (efc[-1] - found.efc) < KNEE_MIN_EXTRA_FADE:
        return None
    return found


def detect_jump(
    efc: FloatArray, growth: FloatArray, sd: FloatArray, trend: FloatArray | None = None
) -> Break | None:
    """A resistance jump (step up), or None.

    `trend` (the prior's mean growth at each session) is removed first. Over a short history (< 100 EFC)
    aging moves resistance by ~1 %, so no line is fitted on top: a free slope there would soak up half
    of any step. Over longer ones the battery's own slope is fitted.
    """
    detrended = growth if trend is None else growth - trend + trend[0]
    with_slope = efc.size > 0 and float(efc[-1] - efc[0]) >= JUMP_SLOPE_SPAN_EFC
    found = best_break(efc, detrended, sd, "step", min_before=8, min_after=3, with_slope=with_slope)
    if found is None or found.size <= 0.0 or found.t_stat < JUMP_T:
        return None
    level = float(np.median(growth[max(found.index - 10, 0) : found.index]))
    if found.size < JUMP_MIN_RELATIVE * level:
        return None
    return found


def bayes_linear(
    x: FloatArray, y: FloatArray, sd: FloatArray, mean0: FloatArray, cov0: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Conjugate normal posterior of the coefficients; the noise is inflated if the residuals demand it."""
    prec0 = np.linalg.inv(cov0)
    w = 1.0 / sd**2
    for _ in range(2):
        a = prec0 + x.T @ (x * w[:, None])
        cov = np.asarray(np.linalg.inv(a), dtype=np.float64)
        mean = np.asarray(cov @ (prec0 @ mean0 + x.T @ (w * y)), dtype=np.float64)
        resid = y - x @ mean
        dof = y.size - float(np.trace(cov @ (x.T @ (x * w[:, None]))))
        scale2 = float(np.sum(w * resid**2)) / dof if dof > 3.0 else 1.0
        if scale2 <= 1.0:
            break
        w = w / scale2
    return mean, cov


@dataclass(frozen=True)
class Quantiles:
    p10: float
    p50: float
    p90: float

    @classmethod
    def of(cls, draws: FloatArray) -> Quantiles:
        q = np.quantile(draws, [0.1, 0.5, 0.9])
        return cls(float(q[0]), float(q[1]), float(q[2]))


@dataclass(frozen=True)
class Forecast:
    efc_now: float
    capacity_now: Quantiles
    resistance_now: Quantiles
    points: list[tuple[float, Quantiles, Quantiles]]  # (EFC, capacity SoH, resistance growth)
    cycles_to_80pct: Quantiles  # remaining EFC until capacity SoH < 0.8 (censored at the horizon)
    knee: Break | None
    jump: Break | None


def forecast(
    efc: FloatArray,
    cap: FloatArray,
    cap_sd: FloatArray,
    res: FloatArray,
    res_sd: FloatArray,
    efc_now: float,
    prior: Prior,
    seed: int = 0,
) -> Forecast:
    """Posterior + Monte Carlo forecast from per-session estimates (NaN rows are ignored per quantity)."""
    rng = np.random.default_rng(seed)
    c_ok = np.isfinite(cap) & np.isfinite(cap_sd) & (cap_sd > 0)
    r_ok = np.isfinite(res) & np.isfinite(res_sd) & (res_sd > 0)
    knee = detect_knee(efc[c_ok], cap[c_ok], cap_sd[c_ok]) if c_ok.sum() > 0 else None
    trend = basis(efc[r_ok]) @ prior.resistance_mean
    jump = detect_jump(efc[r_ok], res[r_ok], res_sd[r_ok], trend) if r_ok.sum() > 0 else None
    # A capacity knee bends resistance too (the surrogate ties them: R ∝ 1 + 2.5·(1 - SoH)).
    # Each change: (break, kind, prior mean, prior sd of its coefficient).
    cap_changes: list[Change] = [] if knee is None else [(knee, "hinge", 0.0, 1e-2)]
    res_changes: list[Change] = []
    if knee is not None:
        res_slope = -RESISTANCE_PER_SOH_LOSS * knee.size
        res_changes.append((knee, "hinge", res_slope, 0.5 * abs(res_slope)))
    if jump is not None:
        res_changes.append((jump, "step", 0.0, 1.0))
    cap_draw = _posterior_draws(
        efc[c_ok], cap[c_ok], cap_sd[c_ok], prior.capacity_mean, prior.capacity_cov, cap_changes, rng
    )
    res_draw = _posterior_draws(
        efc[r_ok], res[r_ok], res_sd[r_ok], prior.resistance_mean, prior.resistance_cov, res_changes, rng
    )
    future_knee = None if knee is not None else _future_knees(prior, efc_now, rng)
    # The same future knees raise resistance by RESISTANCE_PER_SOH_LOSS per unit of capacity lost.
    res_knee = None
    if future_knee is not None:
        res_knee = (future_knee[0], future_knee[1], -RESISTANCE_PER_SOH_LOSS * future_knee[2])
    start = (math.floor(efc_now / 100.0) + 1) * 100.0
    grid = np.concatenate([[efc_now], start + 200.0 * np.arange(10)])
    fine = efc_now + np.linspace(0.0, _HORIZON_EFC, 401)
    cap_grid = np.maximum(cap_draw(grid, future_knee), 0.0)
    cap_grid[:, 0] += rng.normal(0.0, CAPACITY_SYSTEMATIC_SD, _DRAWS)
    res_grid = res_draw(grid, res_knee)
    res_grid[:, 0] += rng.normal(0.0, RESISTANCE_SYSTEMATIC_SD, _DRAWS)
    cap_fine = cap_draw(fine, future_knee)
    below = cap_fine < 0.8
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), fine.size - 1)
    remaining = fine[first] - efc_now
    points = [
        (float(e), Quantiles.of(cap_grid[:, j]), Quantiles.of(res_grid[:, j]))
        for j, e in enumerate(grid)
        if j > 0
    ]
    return Forecast(
        efc_now=efc_now,
        capacity_now=Quantiles.of(cap_grid[:, 0]),
        resistance_now=Quantiles.of(res_grid[:, 0]),
        points=points,
        cycles_to_80pct=Quantiles.of(remaining),
        knee=knee,
        jump=jump,
    )


def _posterior_draws(
    efc: FloatArray,
    y: FloatArray,
    sd: FloatArray,
    mean0: FloatArray,
    cov0: FloatArray,
    changes: list[Change],
    rng: np.random.Generator,
) -> Callable[[FloatArray, KneeDraws | None], FloatArray]:
    """Draw coefficients once; return a function evaluating the draws (x extra knees) on any EFC grid.

    Each detected change (hinge or step) adds a column with its own prior (wide unless the physics
    says more, as for resistance after a capacity knee).
    """
    x = basis(efc)
    m0, c0 = mean0, cov0
    for change, kind, mean_extra, sd_extra in changes:
        x = np.column_stack([x, _regressor(efc, np.arange(efc.size), change, kind)])
        k = m0.size
        m0 = np.append(m0, mean_extra)
        c0 = np.block([[c0, np.zeros((k, 1))], [np.zeros((1, k)), np.array([[sd_extra**2]])]])
    if efc.size:
        mean, cov = bayes_linear(x, y, sd, m0, c0)
    else:
        mean, cov = m0, c0
    chol = np.linalg.cholesky(cov + 1e-14 * np.eye(cov.shape[0]))
    coefs = mean[None, :] + rng.standard_normal((_DRAWS, mean.size)) @ chol.T

    def evaluate(grid: FloatArray, knees: KneeDraws | None) -> FloatArray:
        g = basis(grid)
        after = np.full(grid.size, efc.size)  # future points lie after every session
        for change, kind, _, _ in changes:
            g = np.column_stack([g, _regressor(grid, after, change, kind)])
        out = coefs @ g.T
        if knees is not None:
            has, onset, slope = knees
            rows = np.flatnonzero(has)  # only the draws that get a knee
            out[rows] -= slope[rows, None] * _ramp(grid[None, :] - onset[rows, None], KNEE_WIDTH_EFC)
        return np.asarray(out, dtype=np.float64)

    return evaluate


def _regressor(efc: FloatArray, index: np.ndarray, change: Break, kind: str) -> FloatArray:
    if kind == "hinge":
        return np.maximum(efc - change.efc, 0.0)
    return (index >= change.index).astype(np.float64)


def _future_knees(prior: Prior, efc_now: float, rng: np.random.Generator) -> KneeDraws | None:
    """Per draw: whether a knee comes after today, its onset and slope (population, given none yet)."""
    later = prior.knee_onsets_efc[prior.knee_onsets_efc > efc_now]
    if later.size == 0 or prior.knee_slopes_per_efc.size == 0:
        return None
    total = prior.knee_onsets_efc.size
    # P(knee later | none by now) = f·P(onset > now) / (1 - f·P(onset <= now)).
    f = prior.knee_fraction
    p_later = f * later.size / total / (1.0 - f * (total - later.size) / total)
    has = (rng.random(_DRAWS) < p_later).astype(np.float64)
    return has, rng.choice(later, _DRAWS), rng.choice(prior.knee_slopes_per_efc, _DRAWS)
