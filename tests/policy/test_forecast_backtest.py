"""Rolling-origin backtest: metric definitions, origins, and our model against the baselines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from policy.forecast import ForecastConfig
from policy.forecast_backtest import (
    BASELINES,
    OURS,
    _Acc,
    backtest_origins,
    run_backtest,
    seasonal_naive_scale,
    wape_gain,
)
from policy.forecast_features import ForecastError
from policy.forecast_io import LoadHistory, parse_utc
from simulators.arrivals import generate_sessions, site_history
from simulators.site_config import load_site

REPO = Path(__file__).resolve().parents[2]
MONDAY = int(parse_utc("2024-01-01T00:00:00Z"))
# Fewer training rows than the default (12k instead of 40k) so 8 weeks × 4 origins run in ~10 s; the
# default config scores better (docs/forecast.md has the 14-origin table).
LIGHT = ForecastConfig(max_rows=12_000)


def test_metrics_follow_their_definitions():
    acc = _Acc()
    actual = np.array([0.0, 10.0, 20.0, np.nan])
    q = np.array([[0.0, 1.0, 2.0], [8.0, 12.0, 14.0], [5.0, 10.0, 15.0], [0.0, 0.0, 0.0]])
    acc.add(actual, q, scale=2.0)
    score = acc.score("m", quantile=True)
    abs_err = 1.0 + 2.0 + 10.0
    assert score.wape == pytest.approx(abs_err / 30.0)
    assert score.mase == pytest.approx((abs_err / 3) / 2.0)
    # pinball: q·(y - f) if y >= f else (1 - q)·(f - y), mean over 3 intervals × 3 quantiles
    losses = [
        0.0, 0.5 * 1.0, 0.1 * 2.0,  # y = 0
        0.1 * 2.0, 0.5 * 2.0, 0.1 * 4.0,  # y = 10
        0.1 * 15.0, 0.5 * 10.0, 0.9 * 5.0,  # y = 20
    ]  # fmt: skip
    assert score.pinball_kw == pytest.approx(sum(losses) / 9)
    assert score.coverage == pytest.approx(2 / 3)  # 20 is above its p90 of 15
    assert (score.below_p10, score.above_p90) == (pytest.approx(0.0), pytest.approx(1 / 3))
    assert acc.score("m", quantile=False).coverage is None


def test_seasonal_naive_scale_is_the_mean_weekly_difference():
    y = np.arange(20, dtype=float)
    assert seasonal_naive_scale(y, 7) == pytest.approx(7.0)


def test_origins_are_midnights_a_day_apart_with_a_full_horizon():
    history = LoadHistory(MONDAY, 900, np.zeros(30 * 96 + 50))
    origins = backtest_origins(history, 5, 144, 14.0)
    assert np.all(origins % 96 == 0)
    assert np.all(np.diff(origins) == 96)
    assert origins[-1] + 144 <= len(history.load_kw)
    assert origins[-1] + 96 + 144 > len(history.load_kw)
    with pytest.raises(ForecastError, match="need at least"):
        backtest_origins(history, 20, 144, 14.0)


def test_origins_every_6_hours_fall_on_00_06_12_18_with_a_full_horizon():
    history = LoadHistory(MONDAY, 900, np.zeros(30 * 96 + 50))
    origins = backtest_origins(history, 9, 144, 14.0, every_h=6.0)
    assert np.all(origins % 24 == 0) and np.all(np.diff(origins) == 24)
    assert origins[-1] + 144 <= len(history.load_kw) < origins[-1] + 24 + 144
    with pytest.raises(ForecastError, match="must divide a day"):
        backtest_origins(history, 9, 144, 14.0, every_h=5.0)


@pytest.fixture(scope="module")
def eight_weeks():
    site = load_site(REPO / "config" / "sites" / "workplace.toml")
    sessions = generate_sessions(site, MONDAY, 56, stations=20, seed=1)
    return site_history(sessions, MONDAY, 56)


def test_on_8_weeks_of_workplace_data_our_p50_beats_every_baseline(eight_weeks):
    scores = run_backtest(eight_weeks, n_origins=4, config=LIGHT)
    by_name = {s.method: s for s in scores}
    assert list(by_name) == [OURS, *BASELINES]
    ours = by_name[OURS]
    if os.environ.get("FORECAST_BACKTEST_PRINT"):
        for s in scores:
            print(s)
    # The target: p50 WAPE at least 10 % below the best baseline's (the plain GBM). Measured
    # here: 0.496 vs 0.570, 13.0 % (docs/forecast.md has the default config over 14-28 origins; it was
    # 2.4 % before the p50 boosted from the seasonal median).
    assert wape_gain(scores) >= 0.10
    assert ours.mase < min(by_name[name].mase for name in BASELINES)
    assert ours.pinball_kw < 0.8 * min(by_name[name].pinball_kw for name in BASELINES)
    # the coverage target; measured 0.78 here
    assert 0.75 <= ours.coverage <= 0.85
    # sanity: the weekly naive is the weakest and its MASE is near 1 by construction
    assert 0.8 <= by_name["same interval last week"].mase <= 1.3
