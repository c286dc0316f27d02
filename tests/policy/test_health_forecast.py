"""Forecast internals: the prior fit, breakpoint search, Bayesian update, swapping the prior generator."""

from __future__ import annotations

import numpy as np
import pytest

from policy.health_forecast import (
    basis,
    bayes_linear,
    best_break,
    default_prior,
    detect_jump,
    detect_knee,
    fit_prior,
    forecast,
)
from policy.health_prior import DegradationLaw, Population, sample_population


def test_prior_fit_recovers_the_population_law():
    population = sample_population("nmc", 3000, seed=1)
    prior = fit_prior(population)
    # c0 ≈ 0.995, a ≈ 0.0025·E[lognormal] (median 0.0025), b ≈ 3e-5: the basis is [1, √e, e], signs negative.
    assert prior.capacity_mean[0] == pytest.approx(0.995, abs=0.003)
    assert -prior.capacity_mean[1] == pytest.approx(0.0025 * np.exp(0.3**2 / 2), rel=0.05)
    assert -prior.capacity_mean[2] == pytest.approx(3e-5 * np.exp(0.3**2 / 2), rel=0.05)
    assert prior.knee_fraction == pytest.approx(0.25, abs=0.03)
    assert np.median(prior.knee_slopes_per_efc) == pytest.approx(4e-4, rel=0.15)


def test_prior_generator_can_be_swapped():
    """Any generator giving `Population` works: here every battery is the same law, no knees."""
    grid = np.linspace(0, 3000, 61)
    law = DegradationLaw(c0=0.99, a=0.002, b=2e-5)
    rng = np.random.default_rng(0)
    soh = np.stack([law.capacity_soh(grid) + rng.normal(0, 1e-4, grid.size) for _ in range(50)])
    population = Population(grid, soh, 1.0 + 2.5 * (1.0 - soh), np.full(50, np.nan))
    prior = fit_prior(population)
    assert prior.capacity_mean == pytest.approx([0.99, -0.002, -2e-5], rel=0.02)
    assert prior.knee_fraction == 0.0
    result = forecast(
        np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), efc_now=1000.0, prior=prior
    )
    assert result.capacity_now.p50 == pytest.approx(float(law.capacity_soh(1000.0)), abs=0.004)
    assert result.knee is None


def test_best_break_finds_a_planted_step_and_hinge():
    rng = np.random.default_rng(3)
    efc = np.linspace(0.0, 100.0, 80)
    sd = np.full(80, 0.01)
    step = 1.0 + 0.001 * efc + np.where(np.arange(80) >= 60, 0.2, 0.0) + rng.normal(0, 0.01, 80)
    jump = detect_jump(efc, step, sd)
    assert jump is not None and jump.index == 60 and jump.size == pytest.approx(0.2, abs=0.02)
    hinge = 1.0 - 1e-4 * efc - 2e-3 * np.maximum(efc - 70.0, 0.0) + rng.normal(0, 0.002, 80)
    knee = detect_knee(efc, hinge, np.full(80, 0.002))
    assert knee is not None and abs(knee.efc - 70.0) < 5.0
    flat = 1.0 - 1e-4 * efc + rng.normal(0, 0.002, 80)
    assert detect_knee(efc, flat, np.full(80, 0.002)) is None
    assert best_break(efc[:5], flat[:5], sd[:5], "step", 8, 3) is None  # too short to say anything


def test_bayes_linear_follows_the_data_and_inflates_underestimated_noise():
    efc = np.linspace(0, 400, 50)
    x = basis(efc)
    truth = np.array([0.98, -0.002, -2e-5])
    rng = np.random.default_rng(4)
    y = x @ truth + rng.normal(0, 0.01, 50)
    prior = default_prior("nmc")
    mean, cov = bayes_linear(x, y, np.full(50, 0.01), prior.capacity_mean, prior.capacity_cov)
    assert float(basis(400.0)[0] @ mean) == pytest.approx(float(basis(400.0)[0] @ truth), abs=0.006)
    # Claiming 10x smaller errors than the data show must not make the posterior 10x tighter.
    _, cov_small = bayes_linear(x, y, np.full(50, 0.001), prior.capacity_mean, prior.capacity_cov)
    var = float(basis(400.0)[0] @ cov @ basis(400.0)[0])
    var_small = float(basis(400.0)[0] @ cov_small @ basis(400.0)[0])
    assert var_small > 0.3 * var


def test_forecast_quantiles_are_ordered_and_knee_prior_widens_the_long_run():
    prior = default_prior("nmc")
    efc = np.linspace(100, 150, 30)
    cap = 0.97 + np.zeros(30)
    sd = np.full(30, 0.005)
    res = 1.08 + np.zeros(30)
    result = forecast(efc, cap, sd, res, np.full(30, 0.03), efc_now=150.0, prior=prior)
    for _, c, r in result.points:
        assert c.p10 <= c.p50 <= c.p90 and r.p10 <= r.p50 <= r.p90
    late = result.points[-1][1]
    early = result.points[0][1]
    assert (late.p90 - late.p10) > (early.p90 - early.p10)
