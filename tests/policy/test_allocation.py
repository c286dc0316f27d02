"""Site load allocation: the cap is never exceeded, deadlines come first, health makes the share gentler."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policy.allocation import allocate

N = st.integers(min_value=1, max_value=12)


@st.composite
def sites(draw: st.DrawFn) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(N)
    floats = lambda lo, hi: arrays(np.float64, n, elements=st.floats(lo, hi))  # noqa: E731
    return (
        draw(st.floats(0.0, 500_000.0)),
        draw(floats(0.0, 150_000.0)),  # want W
        draw(floats(0.0, 100_000.0)),  # need Wh
        draw(floats(60.0, 86_400.0)),  # time left s
        draw(floats(0.6, 1.0)),  # SoH
    )


@settings(max_examples=300, deadline=None)
@given(sites())
def test_never_above_the_cap_never_negative_never_above_the_want(site) -> None:
    cap, want, need, left, soh = site
    grant = allocate(cap, want, need, left, soh)
    assert grant.sum() <= cap + 1e-6
    assert np.all(grant >= 0.0)
    assert np.all(grant <= want + 1e-9)


@settings(max_examples=300, deadline=None)
@given(sites())
def test_every_deadline_rate_is_met_when_they_fit_under_the_cap(site) -> None:
    cap, want, need, left, soh = site
    deadline = np.minimum(need * 3600.0 / left, want)
    grant = allocate(cap, want, need, left, soh)
    if deadline.sum() <= cap:
        assert np.all(grant >= deadline - 1e-6)


@settings(max_examples=300, deadline=None)
@given(sites())
def test_the_cap_is_used_up_before_anyone_is_held_back(site) -> None:
    cap, want, need, left, soh = site
    grant = allocate(cap, want, need, left, soh)
    if want.sum() <= cap:
        assert np.array_equal(grant, want)
    else:
        assert grant.sum() >= cap - 1e-3  # work-conserving: a held-back car means the cap is spent


def test_the_most_urgent_car_gets_its_rate_first_when_not_all_fit() -> None:
    # 40 kW cap; car 0 leaves in 1 h needing 30 kWh, car 1 leaves in 2 h needing 30 kWh (15 kW rate)
    grant = allocate(
        40_000.0, np.array([50e3, 50e3]), np.array([30e3, 30e3]), np.array([3600.0, 7200.0]), np.ones(2)
    )
    assert grant[0] == 30_000.0 and grant[1] == 10_000.0


def test_spare_capacity_is_shared_by_health() -> None:
    # no deadline pressure: the spare 60 kW goes 1.0 : 0.5 by SoH
    grant = allocate(
        60_000.0, np.array([100e3, 100e3]), np.zeros(2), np.full(2, 36_000.0), np.array([1.0, 0.5])
    )
    assert np.allclose(grant, [40_000.0, 20_000.0])


def test_bad_inputs_grant_nothing_unsafe() -> None:
    grant = allocate(
        float("nan"), np.array([10e3, np.nan]), np.array([1.0, 1.0]), np.array([60.0, 60.0]), np.ones(2)
    )
    assert np.all(grant == 0.0)
    grant = allocate(
        5e3, np.array([np.nan, -3.0, 10e3]), np.full(3, np.nan), np.full(3, np.nan), np.full(3, np.nan)
    )
    assert grant[0] == 0.0 and grant[1] == 0.0 and grant.sum() <= 5e3 + 1e-9
