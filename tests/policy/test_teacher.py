"""The teacher: never worse than CC-CV within the same time, and a Pareto trade-off across budgets."""

import numpy as np

from policy.charge_sim import ChargeStates, constant_fractions, simulate
from policy.teacher import generate_dataset, ideal_minutes, solve


def _states(n: int, temp_c: float = 15.0, soh: float = 0.85) -> ChargeStates:
    return ChargeStates(
        "nmc",
        np.full(n, 0.2),
        np.full(n, 0.8),
        np.full(n, soh),
        np.full(n, temp_c),
        np.full(n, temp_c),
        np.full(n, 3.0),
    )


def test_teacher_beats_cc_cv_at_its_own_time() -> None:
    states = _states(2)
    cc = simulate(states, np.vstack([constant_fractions(_states(1), c) for c in (1.0, 2.0)]))
    result = solve(states, cc.minutes, seed=1)
    assert np.all(result.sim.minutes <= cc.minutes * 1.001)
    assert np.all(result.sim.loss <= cc.loss)
    assert result.sim.loss[0] < 0.95 * cc.loss[0]  # a cool, aged cell at 1C: tapering pays


def test_longer_budget_means_less_aging() -> None:
    states = _states(3)
    budgets = ideal_minutes(states) * np.array([2.0, 3.0, 4.5])  # all feasible (fastest ≈ 1.8x ideal)
    result = solve(states, budgets, population=24, iterations=3, seed=2)
    assert np.all(np.diff(result.sim.loss) < 0)
    assert np.all(result.sim.minutes <= budgets * 1.001)


def test_dataset_is_reproducible_and_labelled() -> None:
    a = generate_dataset(6, seed=3, workers=1, population=8, iterations=2, chunk=3)
    b = generate_dataset(6, seed=3, workers=1, population=8, iterations=2, chunk=3)
    assert np.array_equal(a.fractions, b.fractions)
    assert a.fractions.shape == (6, 6) and np.all((a.fractions > 0) & (a.fractions <= 1))
    assert set(a.chemistry_lfp) == {0.0, 1.0}
