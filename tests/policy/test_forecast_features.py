"""Feature rows: nothing after the cutoff leaks in, and the seasonal profiles are what they claim."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.forecast_features import (
    FEATURES,
    SeriesIndex,
    day_type_profiles,
    feature_rows,
    nan_median_rows,
)
from policy.forecast_io import parse_utc

MONDAY = int(parse_utc("2024-01-01T00:00:00Z"))
STEP, PER_DAY = 900, 96


def rows(y: np.ndarray, cutoff: np.ndarray, target: np.ndarray) -> np.ndarray:
    return feature_rows(SeriesIndex.build(y, 7 * PER_DAY), MONDAY, STEP, cutoff, target, FEATURES)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cutoff_day=st.integers(15, 40), cutoff_slot=st.integers(0, 95))
def test_no_feature_sees_an_interval_at_or_after_its_cutoff(seed, cutoff_day, cutoff_slot):
    rng = np.random.default_rng(seed)
    y = rng.exponential(20.0, size=50 * PER_DAY)
    cutoff = cutoff_day * PER_DAY + cutoff_slot
    target = np.arange(cutoff, cutoff + 144, dtype=np.int64)
    cutoffs = np.full(len(target), cutoff, dtype=np.int64)
    before = rows(y, cutoffs, target)
    changed = y.copy()
    changed[cutoff:] = rng.exponential(200.0, size=len(y) - cutoff)  # a different future
    np.testing.assert_array_equal(rows(changed, cutoffs, target), before)
    # and what a forecaster sees at predict time (the history ends at the cutoff) is the same row
    np.testing.assert_array_equal(rows(y[:cutoff], cutoffs, target), before)


def test_the_median_profile_is_over_same_type_days_and_neighbour_slots_before_the_cutoff():
    y = np.zeros(21 * PER_DAY)
    days = np.arange(21)
    weekday = (days % 7) < 5  # day 0 is a Monday
    slot = 40
    # weekdays: the slot and its neighbours carry the day number; weekends carry 1000
    for d in days:
        y[d * PER_DAY + slot - 1 : d * PER_DAY + slot + 2] = d if weekday[d] else 1000.0
    target_day = 18  # a Thursday; the cutoff is midnight of day 17, so days 0..16 are seen
    cutoff = np.array([17 * PER_DAY], dtype=np.int64)
    target = np.array([target_day * PER_DAY + slot], dtype=np.int64)
    dow = np.array([target_day % 7], dtype=np.int64)
    mean, median = day_type_profiles(y, cutoff, target, dow, PER_DAY)
    seen = [d for d in range(17) if weekday[d]]  # 13 weekdays, each 3 slots
    assert median[0] == np.median(seen)
    assert mean[0] == np.mean(seen)


def test_nan_median_rows_matches_numpy():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(200, 17))
    values[rng.random(values.shape) < 0.4] = np.nan
    values[7] = np.nan
    expected = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in values])
    np.testing.assert_array_equal(nan_median_rows(values), expected)
