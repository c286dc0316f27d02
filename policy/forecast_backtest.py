"""Rolling-origin backtest of the load forecaster against the strong simple baselines, in one run.

Origins are midnights (UTC), one day apart, the last one such that its whole horizon is in the history.
At each origin every method sees only the history before it (our model and the plain GBM are refitted).
Metrics (REFERENCE.md, "Load forecasting for the grid"), pooled over origins and intervals:
 - WAPE = Σ|actual - p50| / Σ actual (no MAPE: zeros at night);
 - MASE = MAE / in-sample MAE of the weekly seasonal naive, averaged over origins;
 - pinball loss (kW), mean over p10/p50/p90; a point forecast is scored as all three quantiles;
 - coverage = share of actuals inside [p10, p90] (target ≈ 0.8), quantile methods only; with the shares
   below p10 and above p90 (≈ 0.1 each for calibrated quantiles: a load that is often exactly 0 with p10 at
   0 covers more than 0.8 with both quantiles right, see docs/forecast.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policy.forecast import QUANTILES, ForecastConfig, LoadForecaster, fit_gbm, training_rows
from policy.forecast_features import (
    PLAIN_FEATURES,
    ChargingIntervals,
    FloatArray,
    ForecastError,
    IntArray,
    SeriesIndex,
    feature_rows,
    take,
)
from policy.forecast_io import LoadHistory

_DAY_S = 86_400
OURS = "ours (quantile GBM)"
BASELINES = ("same interval last week", "mean of last 4 same weekdays", "plain GBM (calendar+lags)")


@dataclass(frozen=True)
class Score:
    method: str
    wape: float
    mase: float
    pinball_kw: float
    coverage: float | None  # p10-p90; None for point forecasts
    below_p10: float | None = None  # share of actuals under p10 (a calibrated p10: 0.1)
    above_p90: float | None = None  # share of actuals over p90 (a calibrated p90: 0.1)


def backtest_origins(
    history: LoadHistory, n_origins: int, horizon: int, min_days: float, every_h: float = 24.0
) -> IntArray:
    """`n_origins` origins `every_h` hours apart (aligned on UTC midnight: 24 gives midnights, 6 gives
    00/06/12/18 h), the last one with its whole horizon inside the history."""
    per_day = _DAY_S // history.step_s
    every = round(every_h * 3600.0 / history.step_s)
    if every < 1 or every * history.step_s != every_h * 3600.0 or per_day % every:
        raise ForecastError(
            f"origins every {every_h:g} h: must divide a day into whole {history.step_s // 60}-min steps"
        )
    n = len(history.load_kw)
    offset = (history.start_s // history.step_s) % per_day
    last = (n - horizon + offset) // every * every - offset  # latest aligned origin with a full horizon
    origins = last - every * np.arange(n_origins - 1, -1, -1, dtype=np.int64)
    need_days = min_days + (n_origins - 1) * every / per_day + horizon / per_day
    if n_origins < 1 or origins[0] < min_days * per_day:
        raise ForecastError(
            f"the history has {history.days():.1f} days; {n_origins} origins with a "
            f"{horizon * history.step_s / 3600:g} h horizon need at least {need_days:.1f}"
        )
    return origins


def _weekly_naive(y: FloatArray, target: IntArray, per_week: int) -> FloatArray:
    return take(y, target - per_week)


def _mean_4_weekdays(y: FloatArray, target: IntArray, per_week: int) -> FloatArray:
    stack = np.vstack([take(y, target - per_week * j) for j in range(1, 5)])
    ok = np.isfinite(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(axis=0), np.where(ok, stack, 0.0).sum(axis=0) / ok.sum(axis=0), np.nan)


def plain_gbm_point(train: LoadHistory, target: IntArray, config: ForecastConfig) -> FloatArray:
    """Baseline: squared-error gradient boosting on calendar + lags only, same rows and settings as ours."""
    x, y, _, _, _ = training_rows(train, config, None, PLAIN_FEATURES)
    model = fit_gbm(x, y, config, None)
    index = SeriesIndex.build(train.load_kw, 7 * _DAY_S // train.step_s)
    now = np.full(len(target), len(train.load_kw), dtype=np.int64)
    x_now = feature_rows(index, train.start_s, train.step_s, now, target, PLAIN_FEATURES)
    return np.asarray(np.maximum(model.predict(x_now), 0.0), dtype=np.float64)


@dataclass
class _Acc:
    abs_err: float = 0.0
    actual: float = 0.0
    pinball: float = 0.0
    count: int = 0
    covered: int = 0
    below: int = 0
    above: int = 0
    mase: list[float] | None = None

    def add(self, actual: FloatArray, q: FloatArray, scale: float) -> None:
        """`q` has shape (n, 3): p10, p50, p90 (a point forecast repeated)."""
        ok = np.isfinite(actual)
        a, q = actual[ok], np.nan_to_num(q[ok])
        err = np.abs(a - q[:, 1])
        self.abs_err += float(err.sum())
        self.actual += float(a.sum())
        for j, level in enumerate(QUANTILES):
            diff = a - q[:, j]
            self.pinball += float(np.maximum(level * diff, (level - 1) * diff).sum())
        self.count += len(a)
        below, above = a < q[:, 0], a > q[:, 2]
        self.covered += int((~below & ~above).sum())
        self.below += int(below.sum())
        self.above += int(above.sum())
        if self.mase is None:
            self.mase = []
        self.mase.append(float(err.mean()) / scale if len(a) and scale > 0 else float("nan"))

    def score(self, method: str, quantile: bool) -> Score:
        return Score(
            method=method,
            wape=self.abs_err / self.actual if self.actual > 0 else float("nan"),
            mase=float(np.nanmean(self.mase)) if self.mase else float("nan"),
            pinball_kw=self.pinball / (3 * self.count) if self.count else float("nan"),
            coverage=self.covered / self.count if quantile and self.count else None,
            below_p10=self.below / self.count if quantile and self.count else None,
            above_p90=self.above / self.count if quantile and self.count else None,
        )


def seasonal_naive_scale(y: FloatArray, per_week: int) -> float:
    diff = np.abs(y[per_week:] - y[:-per_week]) if len(y) > per_week else np.zeros(0)
    diff = diff[np.isfinite(diff)]
    return float(diff.mean()) if len(diff) else float("nan")


def run_backtest(
    history: LoadHistory,
    n_origins: int = 14,
    config: ForecastConfig | None = None,
    sessions: ChargingIntervals | None = None,
    progress: Callable[[int, int], None] | None = None,
    every_h: float = 24.0,
) -> list[Score]:
    """Scores for our model and the three baselines over `n_origins` rolling origins `every_h` apart."""
    config = config or ForecastConfig()
    horizon = config.max_horizon_steps
    per_week = 7 * _DAY_S // history.step_s
    origins = backtest_origins(history, n_origins, horizon, config.min_history_days, every_h)
    accs = {name: _Acc() for name in (OURS, *BASELINES)}
    y = history.load_kw
    for i, cutoff in enumerate(origins):
        train = LoadHistory(history.start_s, history.step_s, y[:cutoff])
        start_s = history.start_s + int(cutoff) * history.step_s
        target = np.arange(cutoff, cutoff + horizon, dtype=np.int64)
        actual = y[target]
        scale = seasonal_naive_scale(train.load_kw, per_week)
        known = None
        if sessions is not None:  # only sessions that had started by the origin
            seen = sessions.on_s < start_s
            known = ChargingIntervals(sessions.on_s[seen], sessions.off_s[seen], sessions.power_kw[seen])
        forecast = LoadForecaster(config).fit(train, known).predict(start_s, horizon)
        ours = np.column_stack([forecast.p10_kw, forecast.p50_kw, forecast.p90_kw])
        accs[OURS].add(actual, ours, scale)
        points = (
            _weekly_naive(train.load_kw, target, per_week),
            _mean_4_weekdays(train.load_kw, target, per_week),
            plain_gbm_point(train, target, config),
        )
        for name, point in zip(BASELINES, points, strict=True):
            accs[name].add(actual, np.repeat(point[:, None], 3, axis=1), scale)
        if progress is not None:
            progress(i + 1, len(origins))
    return [accs[OURS].score(OURS, True)] + [accs[name].score(name, False) for name in BASELINES]


def wape_gain(scores: list[Score]) -> float:
    """How much lower our WAPE is than the best baseline's (0.1 = 10 % better)."""
    best = min(s.wape for s in scores[1:])
    return 1.0 - scores[0].wape / best
