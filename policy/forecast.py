"""Site load forecaster: p10/p50/p90 of the aggregate load for the next 24-36 h in 15-min intervals.

Method (docs/forecast.md): one HistGradientBoostingRegressor(loss="quantile") per quantile over pooled
direct multi-horizon rows (`policy.forecast_features`): calendar, lags, recent level and trend, lead time;
each boosted from the seasonal median profile (`median_6week`), the p50 with a small learning rate.
Known future: EVs already plugged in draw their remaining energy at full power until full or departure.
 - fitted with the sessions history: the model learns the load *not yet committed* at each origin
   (target = load - committed), and the committed load is added back to every quantile (it is treated as
   certain), so nothing is counted twice;
 - fitted without sessions: the model's quantiles already include a typical plugged-in share, so the
   committed load only acts as a floor (each quantile = max(quantile, committed)).
Cold start (< `min_history_days` of history): a seasonal profile (per weekday/weekend and slot of day,
empirical quantiles over the days seen), reported as `method="seasonal_profile"` and in a log line.
Quantiles are sorted per interval (never cross) and clipped at 0. Deterministic: fixed `random_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from policy.forecast_features import (
    FEATURES,
    ChargingIntervals,
    FloatArray,
    ForecastError,
    IntArray,
    SeriesIndex,
    committed_rows,
    feature_rows,
    interval_mean_kw,
)
from policy.forecast_io import LoadHistory, format_utc

log = structlog.get_logger(__name__)
QUANTILES = (0.1, 0.5, 0.9)
SCHEMA_VERSION = 1
_DAY_S = 86_400
_BAND_SCALE_RANGE = (0.5, 3.0)  # a calibration outside this says the holdout is odd, not the model


def load_sklearn() -> Any:
    """scikit-learn is the `grid` extra: import lazily, one clear line when it is missing."""
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: PLC0415
    except ImportError:
        raise ForecastError(
            "the load forecaster needs scikit-learn: pip install 'chargeagent[grid]'"
        ) from None
    return HistGradientBoostingRegressor


@dataclass(frozen=True)
class ForecastConfig:
    max_horizon_steps: int = 144  # 36 h of 15-min intervals
    min_history_days: float = 14.0  # below this: seasonal profile (cold start)
    max_iter: int = 150
    learning_rate: float = 0.05  # the plain-GBM baseline's (and ours where `median_base` is off)
    # Our quantile models boost from the seasonal median (`median_base`), so they only learn corrections;
    # a low rate for the p50 keeps them from fitting arrival noise (docs/forecast.md "Backtest").
    quantile_learning_rates: tuple[float, float, float] = (0.05, 0.003, 0.05)
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    origin_step: int = 12  # training cutoffs every 3 h (at 15-min steps), so every lead meets every slot
    max_rows: int = 40_000  # seeded subsample above this: adjacent cutoffs add little but cost time
    threads: int | None = 1  # OpenMP threads for sklearn (None = all cores; see fit_gbm)
    random_state: int = 0
    # Conformal calibration of the p10-p90 band (split conformal on a scaled band, after conformalised
    # quantile regression, Romano et al. 2019, NeurIPS): quantile models fitted without the last
    # `calibration_days` of targets forecast those days, and the band's lower and upper halves around
    # the median are each scaled so that each side misses at most (1 - coverage) / 2 of them.
    # 0 days: off (the raw pinball band).
    calibration_days: float = 14.0
    coverage: float = 0.8
    # Boost from the seasonal median (`median_6week`, minus the committed load) instead of from one
    # constant: the quantile models learn corrections to it (docs/forecast.md "Backtest").
    median_base: bool = True


@dataclass(frozen=True)
class Forecast:
    start_s: int
    step_s: int
    p10_kw: FloatArray
    p50_kw: FloatArray
    p90_kw: FloatArray
    method: str  # "quantile_gbm" | "seasonal_profile"
    committed_kw: FloatArray = field(default_factory=lambda: np.zeros(0))  # known future included above

    def times_s(self) -> IntArray:
        return self.start_s + self.step_s * np.arange(len(self.p50_kw), dtype=np.int64)

    def resampled(self, interval_s: int) -> Forecast:
        """Average onto a coarser grid (a multiple of step); means of sorted quantiles stay sorted."""
        factor = interval_s // self.step_s
        if factor <= 1:
            return self
        n = len(self.p50_kw) // factor * factor

        def mean(a: FloatArray) -> FloatArray:
            return np.asarray(a[:n].reshape(-1, factor).mean(axis=1), dtype=np.float64)

        committed = mean(self.committed_kw) if len(self.committed_kw) else self.committed_kw
        return Forecast(
            self.start_s,
            interval_s,
            mean(self.p10_kw),
            mean(self.p50_kw),
            mean(self.p90_kw),
            self.method,
            committed,
        )


def finish_quantiles(raw: FloatArray) -> FloatArray:
    """(rows, 3) → sorted per row, non-negative, no -0.0."""
    return np.maximum(np.sort(raw, axis=1), 0.0) + 0.0


class LoadForecaster:
    """`fit(history[, sessions])` then `predict(start_s, horizon_steps)`; refit on your schedule."""

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()
        self.history: LoadHistory | None = None
        self.sessions: ChargingIntervals | None = None
        self.models: list[Any] = []
        self.method = "unfitted"
        # Conformal scales of the band's lower and upper halves (`ForecastConfig.calibration_days`).
        self.band_scale: tuple[float, float] = (1.0, 1.0)

    def fit(self, history: LoadHistory, sessions: ChargingIntervals | None = None) -> LoadForecaster:
        self.history, self.sessions, self.models = history, sessions, []
        if not np.isfinite(history.load_kw).any():
            raise ForecastError("the history has no load values")
        if history.days() < self.config.min_history_days:
            self.method = "seasonal_profile"
            log.info(
                "forecast_cold_start",
                method=self.method,
                history_days=round(history.days(), 2),
                min_history_days=self.config.min_history_days,
            )
            return self
        x, y, cutoff, target, committed = training_rows(history, self.config, sessions, FEATURES)
        base = self.base(x, committed)
        # Zero-mean tie-breaking jitter (< 10 W): with many exact zeros (nights) the initial quantile sits
        # on a tie, sklearn's pinball gradient (-q where y >= prediction) is then the same for every row
        # and no tree can split: the p50 model stayed at 0 kW everywhere without it.
        jittered = y + np.random.default_rng(self.config.random_state).uniform(-0.01, 0.01, size=len(y))
        jittered -= base
        self.band_scale = self._band_scale(history, x, jittered, y, cutoff, target, base)
        self.models = [fit_gbm(x, jittered, self.config, q, self.rate(q)) for q in QUANTILES]
        self.method = "quantile_gbm"
        return self

    def rate(self, quantile: float) -> float:
        if not self.config.median_base:
            return self.config.learning_rate
        return self.config.quantile_learning_rates[QUANTILES.index(quantile)]

    def base(self, x: FloatArray, committed: FloatArray) -> FloatArray:
        """Where the quantile models start from, per row: the seasonal median of the load not yet
        committed (0 where there is no median yet, or with `median_base` off)."""
        if not self.config.median_base:
            return np.zeros(len(x))
        median = np.nan_to_num(x[:, FEATURES.index("median_6week")], nan=0.0)
        return np.asarray(np.maximum(median - committed, 0.0), dtype=np.float64)

    def _band_scale(
        self,
        history: LoadHistory,
        x: FloatArray,
        jittered: FloatArray,
        y: FloatArray,
        cutoff: IntArray,
        target: IntArray,
        base: FloatArray,
    ) -> tuple[float, float]:
        """Conformal scales of the band's lower and upper halves: 1.0 when the history is too short.

        An additive margin (plain CQR) fails here: nights are forecast as exactly 0 kW with a zero-width
        band, the score quantile sits on them and the margin comes out ~0. Scaling each half of the band
        around the median keeps the nights as they are. The halves are calibrated apart (each to a miss
        rate of (1 - coverage) / 2, Romano et al.'s asymmetric variant): the residual load is often
        exactly 0 with p10 at 0, so p10 can only be right or lifted off that point mass (a cliff), while
        p90 moves smoothly; a joint scale would stay at 1.0 with the upper half too wide."""
        c = self.config
        split = len(history.load_kw) - int(c.calibration_days * _DAY_S) // history.step_s
        if c.calibration_days <= 0 or split < c.min_history_days * _DAY_S // history.step_s:
            return 1.0, 1.0
        fit_rows, score_rows = target < split, cutoff >= split  # no fitted target is scored
        if fit_rows.sum() < 1000 or score_rows.sum() < 100:
            return 1.0, 1.0
        low, mid, high = (
            fit_gbm(x[fit_rows], jittered[fit_rows], c, q, self.rate(q)).predict(x[score_rows])
            + base[score_rows]
            for q in QUANTILES
        )
        actual = y[score_rows]
        n = len(actual)
        # Each side must hold at least this share (the split-conformal finite-sample level).
        wanted = min(1.0, np.ceil((1.0 - (1.0 - c.coverage) / 2) * (n + 1)) / n)
        scales = np.arange(_BAND_SCALE_RANGE[0], _BAND_SCALE_RANGE[1] + 1e-9, 0.01)
        cols = np.stack([low, mid, high], axis=1)
        held = np.empty((len(scales), 2))
        for i, candidate in enumerate(scales):
            # post-processed as `predict` does: clipped at 0, sorted
            band = np.sort(np.maximum(scale_band(cols, (candidate, candidate)), 0.0), axis=1)
            held[i] = np.mean(actual >= band[:, 0] - 1e-9), np.mean(actual <= band[:, 2] + 1e-9)
        picked = []
        for side in (0, 1):
            enough = np.flatnonzero(held[:, side] >= wanted)
            picked.append(float(scales[enough[0]]) if len(enough) else _BAND_SCALE_RANGE[1])
        lower, upper = picked
        log.info(
            "forecast_calibrated", band_scale=[round(lower, 2), round(upper, 2)], rows=n, coverage=c.coverage
        )
        return lower, upper

    def predict(
        self,
        start_s: int,
        horizon_steps: int,
        *,
        history: LoadHistory | None = None,
        plugged_in: ChargingIntervals | None = None,
    ) -> Forecast:
        """Quantiles for [start_s, start_s + horizon_steps·step). `history` (newer data, same grid) updates
        the lags without a refit; `plugged_in` defaults to the fitted sessions still charging at start."""
        fitted = self.history
        if fitted is None:
            raise ForecastError("predict() before fit()")
        hist = history or fitted
        step = hist.step_s
        if (start_s - hist.start_s) % step:
            raise ForecastError(f"start {format_utc(start_s)} is not on the {step // 60}-min grid")
        first = (start_s - hist.start_s) // step
        if first < len(hist.load_kw):
            raise ForecastError(f"start {format_utc(start_s)} is inside the history (history only before it)")
        lead_max = first + horizon_steps - len(hist.load_kw)
        if self.method == "quantile_gbm" and lead_max > self.config.max_horizon_steps:
            raise ForecastError(
                f"forecast reaches {lead_max * step / 3600:g} h past the history; fitted for "
                f"{self.config.max_horizon_steps * step / 3600:g} h"
            )
        if plugged_in is None and self.sessions is not None:
            plugged_in = self.sessions.active_at(start_s)
        committed = np.zeros(horizon_steps)
        if plugged_in is not None and len(plugged_in.on_s):
            # Each interval where it lies: a plan that starts later (a price plan waiting, from the
            # stations' demands, station/site_forecast.py) lands later; ones running now count from start.
            p = plugged_in
            committed = interval_mean_kw(p.on_s, p.off_s, p.power_kw, float(start_s), step, horizon_steps)
        target = np.arange(first, first + horizon_steps, dtype=np.int64)
        if self.method == "seasonal_profile":
            raw = seasonal_profile(hist, target)
            raw = np.maximum(raw, committed[:, None])
        else:
            index = SeriesIndex.build(hist.load_kw, 7 * _DAY_S // step)
            cutoff = np.full(horizon_steps, len(hist.load_kw), dtype=np.int64)
            x = feature_rows(index, hist.start_s, step, cutoff, target, FEATURES)
            base = self.base(x, committed if self.sessions is not None else np.zeros(horizon_steps))
            raw = np.column_stack([model.predict(x) + base for model in self.models])
            raw = scale_band(raw, self.band_scale)
            if self.sessions is not None:  # residual (not yet committed) load is >= 0 by definition
                raw = np.maximum(raw, 0.0) + committed[:, None]
            else:
                raw = np.maximum(raw, committed[:, None])
        q = finish_quantiles(raw)
        return Forecast(start_s, step, q[:, 0], q[:, 1], q[:, 2], self.method, committed)


def scale_band(raw: FloatArray, scale: tuple[float, float]) -> FloatArray:
    """p10/p50/p90 columns with the band's lower and upper halves around p50 scaled (sorted later)."""
    out = raw.copy()
    out[:, 0] = raw[:, 1] - scale[0] * np.maximum(raw[:, 1] - raw[:, 0], 0.0)
    out[:, 2] = raw[:, 1] + scale[1] * np.maximum(raw[:, 2] - raw[:, 1], 0.0)
    return out


def training_rows(
    history: LoadHistory, config: ForecastConfig, sessions: ChargingIntervals | None, names: tuple[str, ...]
) -> tuple[FloatArray, FloatArray, IntArray, IntArray, FloatArray]:
    """(features, target, cutoff, target index, committed) for every training cutoff × lead with a known
    target, subsampled to max_rows. With `sessions`, the target is the load not yet committed at the
    cutoff (see module docstring) and `committed` that committed load (zeros without sessions)."""
    horizon = config.max_horizon_steps
    cutoffs = training_cutoffs(history, config)
    cutoff, target = np.repeat(cutoffs, horizon), (cutoffs[:, None] + np.arange(horizon)).ravel()
    keep = target < len(history.load_kw)
    cutoff, target = cutoff[keep], target[keep]
    y = history.load_kw[target]
    committed = np.zeros(len(y))
    if sessions is not None:
        cutoff_s = (history.start_s + cutoffs * history.step_s).astype(np.float64)
        committed = committed_rows(sessions, cutoff_s, history.step_s, horizon).ravel()[keep]
        y = y - committed
    ok = np.flatnonzero(np.isfinite(y))
    if len(ok) > config.max_rows:
        rng = np.random.default_rng(config.random_state)
        ok = np.sort(rng.choice(ok, config.max_rows, replace=False))
    index = SeriesIndex.build(history.load_kw, 7 * _DAY_S // history.step_s)
    x = feature_rows(index, history.start_s, history.step_s, cutoff[ok], target[ok], names)
    return x, y[ok], cutoff[ok], target[ok], committed[ok]


def fit_gbm(
    x: FloatArray,
    y: FloatArray,
    config: ForecastConfig,
    quantile: float | None,
    learning_rate: float | None = None,
) -> Any:
    """One HistGradientBoostingRegressor: pinball loss at `quantile`, or squared error when None."""
    regressor = load_sklearn()
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # noqa: PLC0415

    kind: dict[str, Any] = {"loss": "squared_error"}
    if quantile is not None:
        kind = {"loss": "quantile", "quantile": quantile}
    model = regressor(
        **kind,
        max_iter=config.max_iter,
        learning_rate=config.learning_rate if learning_rate is None else learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization,
        early_stopping=False,
        random_state=config.random_state,
    )
    # An oversubscribed OpenMP pool is 5-20x slower on a busy 2-core box: let callers pin the threads.
    with threadpool_limits(limits=config.threads):
        return model.fit(x, y)


def training_cutoffs(history: LoadHistory, config: ForecastConfig) -> IntArray:
    """Training origins: every `origin_step` intervals from day 1 on, aligned to midnight (UTC)."""
    per_day = _DAY_S // history.step_s
    n = len(history.load_kw)
    step = config.origin_step
    offset = (history.start_s // history.step_s) % per_day  # grid index of the first interval in its day
    first = per_day + (-(offset + per_day)) % step
    return np.arange(first, n, step, dtype=np.int64)


def seasonal_profile(history: LoadHistory, target: IntArray) -> FloatArray:
    """Cold-start quantiles: per slot of day, the same day type (weekday/weekend) if seen, else any day."""
    step = history.step_s
    per_day = _DAY_S // step
    y = history.load_kw
    times = history.start_s + step * np.arange(len(y), dtype=np.int64)
    slot = (times % _DAY_S) // step
    weekend = (((times // _DAY_S) + 3) % 7) >= 5
    t_times = history.start_s + step * target
    t_slot = (t_times % _DAY_S) // step
    t_weekend = (((t_times // _DAY_S) + 3) % 7) >= 5
    ok = np.isfinite(y)
    fallback = np.nanquantile(y, QUANTILES) if ok.any() else np.zeros(3)
    out = np.empty((len(target), 3))
    for i in range(len(target)):
        same = ok & (slot == t_slot[i]) & (weekend == t_weekend[i])
        if not same.any():
            same = ok & (slot == t_slot[i])
        out[i] = np.quantile(y[same], QUANTILES) if same.any() and per_day > 0 else fallback
    return out


def forecast_message(forecast: Forecast, site_id: str, generated_at_s: float) -> dict[str, Any]:
    """The upstream message (MQTT `chargeagent/{site_id}/forecast`, OpenADR report payload);
    `config/schemas/forecast.schema.json` is its schema."""
    return {
        "site_id": site_id,
        "generated_at": format_utc(generated_at_s),
        "interval_minutes": forecast.step_s // 60,
        "unit": "kW",
        "method": forecast.method,
        "intervals": [
            {
                "start": format_utc(float(t)),
                "p10": round(float(a), 3),
                "p50": round(float(b), 3),
                "p90": round(float(c), 3),
            }
            for t, a, b, c in zip(
                forecast.times_s(), forecast.p10_kw, forecast.p50_kw, forecast.p90_kw, strict=True
            )
        ],
        "schema_version": SCHEMA_VERSION,
    }
