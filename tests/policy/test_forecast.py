"""The load forecaster: quantile shape, known future, cold start, determinism, the upstream message."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from policy.forecast import ForecastConfig, LoadForecaster, forecast_message
from policy.forecast_features import (
    FEATURES,
    ChargingIntervals,
    ForecastError,
    committed_rows,
    interval_mean_kw,
)
from policy.forecast_io import LoadHistory, format_utc, parse_utc
from simulators.arrivals import generate_sessions, site_history
from simulators.site_config import load_site

REPO = Path(__file__).resolve().parents[2]
MONDAY = int(parse_utc("2024-01-01T00:00:00Z"))
STEP = 900
# Small and quick: the behaviour under test does not depend on model size.
SMALL = ForecastConfig(
    max_horizon_steps=96,
    max_iter=30,
    quantile_learning_rates=(0.15, 0.01, 0.15),
    max_rows=4000,
    min_samples_leaf=40,
)
TINY = ForecastConfig(
    max_horizon_steps=96,
    max_iter=8,
    quantile_learning_rates=(0.3, 0.02, 0.3),
    max_rows=1500,
    min_samples_leaf=20,
)


@pytest.fixture(scope="module")
def workplace():
    site = load_site(REPO / "config" / "sites" / "workplace.toml")
    sessions = generate_sessions(site, MONDAY, 21, stations=20, seed=7)
    return sessions, site_history(sessions, MONDAY, 21)


def intervals(sessions) -> ChargingIntervals:
    return ChargingIntervals(sessions.connection_s, sessions.charge_end_s, sessions.power_kw)


def check_quantiles(forecast, horizon):
    for q in (forecast.p10_kw, forecast.p50_kw, forecast.p90_kw):
        assert q.shape == (horizon,)
        assert np.all(np.isfinite(q))
        assert np.all(q >= 0.0)
    assert np.all(forecast.p10_kw <= forecast.p50_kw)
    assert np.all(forecast.p50_kw <= forecast.p90_kw)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    days=st.sampled_from([3, 16]),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.0, 500.0),
    gap_share=st.floats(0.0, 0.3),
)
def test_quantiles_never_cross_never_negative_on_random_histories(days, seed, scale, gap_share):
    rng = np.random.default_rng(seed)
    n = days * 96
    slot = np.arange(n) % 96
    shape = np.maximum(np.sin((slot - 24) / 96 * 2 * np.pi), 0.0)
    y = scale * shape * rng.lognormal(0.0, 1.0, n) * (rng.random(n) > 0.3)
    y[rng.random(n) < gap_share] = np.nan
    y[-1] = scale * rng.random()  # at least one value
    history = LoadHistory(MONDAY, STEP, y)
    model = LoadForecaster(TINY).fit(history)
    assert model.method == ("quantile_gbm" if days >= 14 else "seasonal_profile")
    forecast = model.predict(history.end_s, 96)
    check_quantiles(forecast, 96)


def test_ten_plugged_in_cars_add_their_energy_to_the_next_hours(workplace):
    sessions, history = workplace
    start = history.end_s  # Monday 00:00: nobody plugged in, model expects ~0 for hours
    remaining_kwh = np.full(10, 30.0)
    cars = ChargingIntervals.plugged_in(
        start, remaining_kwh, np.full(10, 22.0), np.full(10, start + 8 * 3600.0)
    )
    fitted = {
        "with sessions": LoadForecaster(SMALL).fit(history, intervals(sessions)),
        "without sessions": LoadForecaster(SMALL).fit(history),
    }
    for name, model in fitted.items():
        empty = model.predict(start, 96, plugged_in=ChargingIntervals.empty())
        full = model.predict(start, 96, plugged_in=cars)
        check_quantiles(full, 96)
        np.testing.assert_allclose(full.committed_kw.sum() * STEP / 3600, 300.0, rtol=1e-9)
        first_3h = slice(0, 12)
        added_kwh = (full.p50_kw[first_3h] - empty.p50_kw[first_3h]).sum() * STEP / 3600
        assert np.all(full.p10_kw >= full.committed_kw - 1e-9), name
        if name == "with sessions":  # committed load is added on top of the residual model
            assert added_kwh == pytest.approx(300.0, abs=1e-6)
        else:  # committed load is a floor under a model that already includes a typical share
            assert 0.8 * 300.0 <= added_kwh <= 300.0 + 1e-6


def test_fitted_sessions_give_the_known_future_by_default(workplace):
    sessions, history = workplace
    # 10:00 on the last Friday: cars from the morning are still charging.
    start = MONDAY + 18 * 86_400 + 10 * 3600
    cut = (start - MONDAY) // STEP
    earlier = LoadHistory(MONDAY, STEP, history.load_kw[:cut])
    seen = sessions.connection_s < start
    known = ChargingIntervals(
        sessions.connection_s[seen], sessions.charge_end_s[seen], sessions.power_kw[seen]
    )
    forecast = LoadForecaster(SMALL).fit(earlier, known).predict(start, 96)
    expected = interval_mean_kw(
        np.full(int(((known.on_s < start) & (known.off_s > start)).sum()), float(start)),
        known.off_s[(known.on_s < start) & (known.off_s > start)],
        known.power_kw[(known.on_s < start) & (known.off_s > start)],
        start,
        STEP,
        96,
    )
    assert expected.sum() > 0
    np.testing.assert_allclose(forecast.committed_kw, expected, atol=1e-9)
    assert np.all(forecast.p10_kw >= expected - 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 40_000), st.floats(0, 30_000), st.floats(1, 300)), min_size=1, max_size=15
    ),
    st.lists(st.integers(0, 60), min_size=1, max_size=5, unique=True),
)
def test_committed_rows_match_per_cutoff_interval_means(spans, cutoff_steps):
    on = np.asarray([a for a, _, _ in spans])
    off = on + np.asarray([d for _, d, _ in spans])
    power = np.asarray([p for _, _, p in spans])
    sessions = ChargingIntervals(on, off, power)
    cutoffs = np.sort(np.asarray(cutoff_steps, dtype=float)) * STEP
    rows = committed_rows(sessions, cutoffs, STEP, 20)
    for row, cutoff in zip(rows, cutoffs, strict=True):
        active = sessions.active_at(cutoff)
        expected = interval_mean_kw(active.on_s, active.off_s, active.power_kw, cutoff, STEP, 20)
        np.testing.assert_allclose(row, expected, atol=1e-6)


def test_cold_start_falls_back_to_a_seasonal_profile_and_says_so(workplace):
    _, history = workplace
    short = LoadHistory(MONDAY, STEP, history.load_kw[: 5 * 96])  # Mon-Fri only
    with capture_logs() as logs:
        model = LoadForecaster(SMALL).fit(short)
    assert model.method == "seasonal_profile"
    assert any(e["event"] == "forecast_cold_start" and e["method"] == "seasonal_profile" for e in logs)
    forecast = model.predict(short.end_s, 96)  # Saturday: no weekend seen yet, uses every day
    assert forecast.method == "seasonal_profile"
    check_quantiles(forecast, 96)
    # the profile keeps the site's shape: the 9:00 slot is busier than the 3:00 slot
    assert forecast.p50_kw[36] > forecast.p50_kw[12]
    weekday_9h = short.load_kw[36::96]
    assert forecast.p90_kw[36] <= weekday_9h.max() + 1e-9


def test_same_data_same_forecast(workplace):
    sessions, history = workplace
    a = LoadForecaster(SMALL).fit(history, intervals(sessions)).predict(history.end_s, 96)
    b = LoadForecaster(SMALL).fit(history, intervals(sessions)).predict(history.end_s, 96)
    np.testing.assert_array_equal(a.p10_kw, b.p10_kw)
    np.testing.assert_array_equal(a.p90_kw, b.p90_kw)


def test_newer_history_updates_the_lags_without_a_refit(workplace):
    _, history = workplace
    earlier = LoadHistory(MONDAY, STEP, history.load_kw[: 17 * 96])
    model = LoadForecaster(SMALL).fit(earlier)
    updated = model.predict(history.end_s, 96, history=history)
    assert updated.start_s == history.end_s
    check_quantiles(updated, 96)


def test_predict_refuses_what_it_cannot_answer(workplace):
    _, history = workplace
    with pytest.raises(ForecastError, match="before fit"):
        LoadForecaster(SMALL).predict(history.end_s, 4)
    model = LoadForecaster(SMALL).fit(history)
    with pytest.raises(ForecastError, match="inside the history"):
        model.predict(history.end_s - STEP, 4)
    with pytest.raises(ForecastError, match="grid"):
        model.predict(history.end_s + 60, 4)
    with pytest.raises(ForecastError, match="fitted for 24 h"):
        model.predict(history.end_s, 97)
    with pytest.raises(ForecastError, match="no load values"):
        LoadForecaster(SMALL).fit(LoadHistory(MONDAY, STEP, np.full(10, np.nan)))


def test_resampled_forecast_averages_and_stays_sorted(workplace):
    _, history = workplace
    forecast = LoadForecaster(SMALL).fit(history).predict(history.end_s, 96)
    hourly = forecast.resampled(3600)
    assert hourly.step_s == 3600
    assert len(hourly.p50_kw) == 24
    np.testing.assert_allclose(hourly.p50_kw, forecast.p50_kw.reshape(24, 4).mean(axis=1))
    check_quantiles(hourly, 24)


def test_upstream_message_validates_against_the_published_schema(workplace):
    _, history = workplace
    schema = json.loads((REPO / "config" / "schemas" / "forecast.schema.json").read_text())
    forecast = LoadForecaster(SMALL).fit(history).predict(history.end_s, 96)
    message = forecast_message(forecast, "site-7", generated_at_s=history.end_s)
    jsonschema.validate(message, schema)
    assert message["intervals"][0]["start"] == format_utc(history.end_s)
    assert len(message["intervals"]) == 96
    assert message["unit"] == "kW"
    assert message["interval_minutes"] == 15
    bad = json.loads(json.dumps(message))
    bad["intervals"][3]["p10"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    del bad["site_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def noisy_daily_load(days: int, noise_kw, seed: int = 3) -> LoadHistory:
    """A daily sine around 50 kW plus Gaussian noise whose sd is noise_kw[i] per interval."""
    n = days * 96
    slot = np.arange(n) % 96
    base = 50.0 + 30.0 * np.sin(2 * np.pi * slot / 96)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, n) * noise_kw
    return LoadHistory(MONDAY, STEP, np.maximum(base + noise, 0.0))


def band_coverage(forecast, actual) -> float:
    return float(np.mean((actual >= forecast.p10_kw) & (actual <= forecast.p90_kw)))


def test_a_site_whose_load_got_noisier_gets_a_wider_band():
    """The last 14 days are twice as noisy: the pinball band, fitted on all 35 days, is too narrow for
    the site as it is now; the conformal scale (models fitted on the first 21 days, scored on the last
    14) widens it. It over-widens (the scale is measured on models that never saw the noisier days):
    conservative by design, documented in docs/forecast.md."""
    noise = np.where(np.arange(35 * 96) < 21 * 96, 4.0, 8.0)
    history = noisy_daily_load(35, noise)
    raw = LoadForecaster(ForecastConfig(**{**SMALL.__dict__, "calibration_days": 0.0})).fit(history)
    calibrated = LoadForecaster(SMALL).fit(history)
    assert raw.band_scale == (1.0, 1.0)
    assert min(calibrated.band_scale) > 1.5
    future = noisy_daily_load(36, np.full(36 * 96, 8.0), seed=11).load_kw[35 * 96 :]
    raw_f, cal_f = raw.predict(history.end_s, 96), calibrated.predict(history.end_s, 96)
    assert band_coverage(raw_f, future) < 0.75
    assert band_coverage(cal_f, future) >= 0.8
    assert np.array_equal(raw_f.p50_kw, cal_f.p50_kw)  # the median is not touched


def test_a_steady_site_gets_a_band_that_covers_fresh_days_as_asked():
    """Same noise throughout: the scale stays modest and the calibrated band covers ~80 % of three fresh
    days. (The pinball band alone comes out ~20 % narrow here, 0.74 on these days: the tail models'
    corrections to the seasonal median fit some noise in-sample, which is what the holdout measures.)"""
    history = noisy_daily_load(35, np.full(35 * 96, 6.0))
    model = LoadForecaster(SMALL).fit(history)
    assert all(0.8 <= side <= 1.5 for side in model.band_scale)
    forecast = model.predict(history.end_s, 96)
    fresh = [noisy_daily_load(36, np.full(36 * 96, 6.0), seed=s).load_kw[35 * 96 :] for s in (11, 12, 13)]
    assert 0.75 <= np.mean([band_coverage(forecast, day) for day in fresh]) <= 0.88  # measured 0.82


def test_calibration_needs_enough_history_to_hold_days_out():
    history = noisy_daily_load(20, np.full(20 * 96, 6.0))  # 20 - 14 days < min_history_days
    with capture_logs() as logs:
        model = LoadForecaster(SMALL).fit(history)
    assert model.method == "quantile_gbm"
    assert model.band_scale == (1.0, 1.0)
    assert not [e for e in logs if e["event"] == "forecast_calibrated"]


def test_the_models_start_from_the_seasonal_median_less_what_is_committed():
    x = np.zeros((3, len(FEATURES)))
    x[:, FEATURES.index("median_6week")] = [10.0, np.nan, 4.0]
    committed = np.array([3.0, 0.0, 9.0])
    on = LoadForecaster(SMALL)
    np.testing.assert_array_equal(on.base(x, committed), [7.0, 0.0, 0.0])  # no median yet: 0; never < 0
    assert on.rate(0.5) == SMALL.quantile_learning_rates[1]
    off = LoadForecaster(ForecastConfig(**{**SMALL.__dict__, "median_base": False}))
    np.testing.assert_array_equal(off.base(x, committed), [0.0, 0.0, 0.0])
    assert off.rate(0.5) == off.rate(0.9) == SMALL.learning_rate
