"""Curve simulation on the surrogate: envelope rules, trajectories, and the vectorised derating."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.charge_sim import ChargeStates, constant_fractions, default_limits, simulate, thermal_fraction
from policy.envelope import thermal_derate_fraction


def _states(n: int, **kw: float) -> ChargeStates:
    d = {"soc": 0.1, "target_soc": 0.8, "soh": 1.0, "cell_temp_c": 25.0, "ambient_c": 25.0, "max_c_rate": 3.0}
    d.update(kw)
    return ChargeStates(
        "nmc",
        *(
            np.full(n, float(d[k]))
            for k in ("soc", "target_soc", "soh", "cell_temp_c", "ambient_c", "max_c_rate")
        ),
    )


@settings(max_examples=200, deadline=None)
@given(st.floats(-20, 70), st.floats(-20, 70))
def test_vectorised_derating_matches_the_envelope(t_min: float, t_max: float) -> None:
    limits = default_limits()
    vec = thermal_fraction(np.array([t_min]), np.array([t_max]), limits)[0]
    assert vec == thermal_derate_fraction(t_min, t_max, limits)


def test_faster_cc_cv_is_quicker_and_ages_more() -> None:
    states = _states(3)
    fractions = np.vstack([constant_fractions(_states(1), c) for c in (0.5, 1.0, 2.0)])
    result = simulate(states, fractions)
    assert result.reached.all()
    assert np.all(np.diff(result.minutes) < 0)
    assert np.all(np.diff(result.loss) > 0)
    # 70 % of capacity at 0.5C takes at least 84 min.
    assert result.minutes[0] >= 0.7 * 60 / 0.5 - 0.5


def test_cold_cell_ages_more_from_plating() -> None:
    cold = simulate(_states(1, cell_temp_c=5.0, ambient_c=5.0), constant_fractions(_states(1), 1.0))
    warm = simulate(_states(1), constant_fractions(_states(1), 1.0))
    assert cold.loss_plating[0] > 2 * warm.loss_plating[0]


def test_trajectories_are_recorded_per_stage_and_horizon() -> None:
    result = simulate(_states(1), constant_fractions(_states(1), 1.0))
    assert np.all(np.diff(result.stage_end_minutes[0]) > 0)
    assert result.stage_end_minutes[0, -1] == result.minutes[0]
    assert np.all(result.horizon_temp_c[0] > 25.0)  # heating under 1C
    assert np.all(result.applied_c_rate[0, :3] > 0.95)  # CC before the voltage limit


def test_below_zero_nothing_flows() -> None:
    result = simulate(
        _states(1, cell_temp_c=-5.0, ambient_c=-5.0), constant_fractions(_states(1), 1.0), max_minutes=20.0
    )
    assert not result.reached[0]
    assert result.applied_c_rate[0].max() == 0.0
