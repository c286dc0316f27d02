"""Battery health from charging data: per-session estimates → SoH/resistance quantiles, forecast, alerts.

The sans-I/O entry points (no files, no clock):

    estimates = estimate_sessions(sessions, spec)          # policy.health_estimators, once per session
    report = assess_estimates(estimates, spec)              # policy.health_forecast + alerts
    report.to_json()                                        # the `chargeagent health --json` document

`assess(sessions, spec)` does both. Estimates are small and can be cached per session (the station's
nightly update only estimates new sessions, see `policy.health_store`). CSV parsing lives in
`policy.health_csv`; the method is described in docs/health.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from policy.health_csv import HealthDataError, SessionData, read_charges
from policy.health_estimators import HealthSpec, SessionEstimate, estimate_session
from policy.health_forecast import Forecast, Prior, Quantiles, default_prior, forecast, unknown_age

__all__ = [
    "Alert",
    "CalendarProjection",
    "HealthDataError",
    "HealthReport",
    "HealthSpec",
    "SessionData",
    "SessionEstimate",
    "assess",
    "assess_estimates",
    "estimate_sessions",
    "read_charges",
]

# Abnormal heating: the last sessions heat this much more than a healthy cell of the estimated resistance
# (median heating ratio). Healthy simulated sessions scatter ≈ 0.95 ± 0.09, so 1.3 is far outside it.
HEATING_RATIO_ALERT = 1.3
HEATING_RECENT_SESSIONS = 5
# The BMS's SoH disagrees when it lies this far outside the station's p10-p90 band.
BMS_SOH_MARGIN = 0.02


@dataclass(frozen=True)
class Alert:
    """A structured early warning: what, where it started, and the numbers behind it."""

    type: str  # knee_onset | resistance_jump | abnormal_heating | bms_soh_disagrees
    session_id: str
    equivalent_full_cycles: float
    message: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session_id": self.session_id,
            "equivalent_full_cycles": round(self.equivalent_full_cycles, 1),
            "message": self.message,
            "evidence": self.evidence,
        }


# Calendar projection. The forecast is against EFC: the population law (policy.health_prior) has no
# separate calendar-fade term, so at a battery's own usage rate its calendar fade is folded into its
# per-EFC trend. Dates follow from that rate (EFC between the first and the last session over the days
# between them), measured once the history spans this long; a change of use (a taxi becomes a commuter
# car) moves the dates and is not forecast.
MIN_CALENDAR_SPAN_DAYS = 7.0
_DAY_S = 86_400.0


@dataclass(frozen=True)
class CalendarProjection:
    """When the battery reaches 80 % capacity SoH at its observed usage rate."""

    observed_days: float
    efc_per_day: float
    now_s: float  # the last session's start (epoch s)
    date_80pct_s: Quantiles  # epoch s; p10 is the earliest date (the p10 of the remaining EFC)

    def to_json(self) -> dict[str, Any]:
        def day(t: float) -> str:
            return datetime.fromtimestamp(t, tz=UTC).date().isoformat()

        q = self.date_80pct_s
        return {
            "observed_days": round(self.observed_days, 1),
            "efc_per_day": round(self.efc_per_day, 3),
            "date_80pct": {"p10": day(q.p10), "p50": day(q.p50), "p90": day(q.p90)},
        }


def calendar_projection(
    estimates: Sequence[SessionEstimate], efc: Sequence[float], cycles_to_80pct: Quantiles
) -> CalendarProjection | None:
    """Map the remaining EFC to dates at the observed usage rate; None when the history is too short."""
    if len(estimates) < 2:
        return None
    days = (estimates[-1].start_s - estimates[0].start_s) / _DAY_S
    rate = (efc[-1] - efc[0]) / days if days > 0 else 0.0
    if days < MIN_CALENDAR_SPAN_DAYS or not (math.isfinite(rate) and rate > 0.0):
        return None
    now = estimates[-1].start_s
    dates = Quantiles(
        *(now + c / rate * _DAY_S for c in (cycles_to_80pct.p10, cycles_to_80pct.p50, cycles_to_80pct.p90))
    )
    return CalendarProjection(days, rate, now, dates)


@dataclass(frozen=True)
class HealthReport:
    forecast: Forecast
    alerts: list[Alert]
    sessions_used: int
    estimates: list[SessionEstimate] = field(repr=False)
    efc: list[float] = field(repr=False)
    calendar: CalendarProjection | None = None

    @property
    def knee_detected(self) -> bool:
        return self.forecast.knee is not None

    def to_json(self) -> dict[str, Any]:
        """The `chargeagent health --json` document (shape fixed by issue #10)."""
        f = self.forecast
        return {
            "capacity_soh": _q(f.capacity_now, 3),
            "resistance_growth": _q(f.resistance_now, 3),
            "forecast": [
                {
                    "equivalent_full_cycles": round(efc),
                    "capacity_soh": _q(cap, 3),
                    "resistance_growth": _q(res, 3),
                }
                for efc, cap, res in f.points
            ],
            "cycles_to_80pct": {k: round(v) for k, v in _q(f.cycles_to_80pct, 0).items()},
            "calendar": None if self.calendar is None else self.calendar.to_json(),
            "knee_detected": self.knee_detected,
            "alerts": [a.to_json() for a in self.alerts],
            "sessions_used": self.sessions_used,
        }


def _q(q: Quantiles, digits: int) -> dict[str, float]:
    return {"p10": round(q.p10, digits), "p50": round(q.p50, digits), "p90": round(q.p90, digits)}


def estimate_sessions(sessions: Sequence[SessionData], spec: HealthSpec) -> list[SessionEstimate]:
    return [estimate_session(s, spec) for s in sessions]


def assess(sessions: Sequence[SessionData], spec: HealthSpec, prior: Prior | None = None) -> HealthReport:
    """Estimate every session, then forecast and alert."""
    return assess_estimates(estimate_sessions(sessions, spec), spec, prior)


def equivalent_full_cycles(estimates: Sequence[SessionEstimate], spec: HealthSpec) -> tuple[FloatList, float]:
    """EFC at each session's start and now: the CSV's `efc` column when every session has it, else the
    charge seen in this history (Ah in / rated Ah, counted from 0 at the first session)."""
    ah = np.array([e.ah_in for e in estimates]) / spec.capacity_ah
    recorded = np.array([e.efc_recorded for e in estimates])
    if recorded.size and np.all(np.isfinite(recorded)):
        starts = recorded
    else:
        starts = np.concatenate([[0.0], np.cumsum(ah)[:-1]]) if ah.size else ah
    now = float(starts[-1] + ah[-1]) if ah.size else 0.0
    return [float(x) for x in starts], now


FloatList = list[float]


def assess_estimates(
    estimates: Sequence[SessionEstimate], spec: HealthSpec, prior: Prior | None = None
) -> HealthReport:
    """Forecast and alerts from per-session estimates (ordered by session start)."""
    if not estimates:
        raise HealthDataError("history", None, None, "no sessions")
    prior = prior or default_prior(spec.chemistry)
    if not all(math.isfinite(e.efc_recorded) for e in estimates):
        prior = unknown_age(prior)  # counted from 0 at the first session: that is not the battery's age
    starts, efc_now = equivalent_full_cycles(estimates, spec)
    efc = np.array(starts)
    cap = np.array([e.capacity_soh for e in estimates])
    cap_sd = np.array([e.capacity_sd for e in estimates])
    res = np.array([e.resistance_growth for e in estimates])
    res_sd = np.array([e.resistance_sd for e in estimates])
    result = forecast(efc, cap, cap_sd, res, res_sd, efc_now, prior)
    used = int(np.sum(np.isfinite(cap) | np.isfinite(res)))
    alerts = _alerts(estimates, efc, result, cap, res)
    calendar = calendar_projection(estimates, starts, result.cycles_to_80pct)
    return HealthReport(result, alerts, used, list(estimates), starts, calendar)


def _alerts(
    estimates: Sequence[SessionEstimate], efc: np.ndarray, f: Forecast, cap: np.ndarray, res: np.ndarray
) -> list[Alert]:
    alerts: list[Alert] = []
    ids = [e.session_id for e in estimates]
    if f.knee is not None:
        k = f.knee
        at = _index_of(efc, cap, k.index)
        alerts.append(
            Alert(
                "knee_onset",
                ids[at],
                k.efc,
                f"capacity fade accelerated from {k.efc:.0f} EFC: {-k.size * 1e4:.1f} % of capacity "
                "more per 100 EFC",
                {
                    "knee_efc": round(k.efc, 1),
                    "extra_fade_pct_per_100_efc": round(-k.size * 1e4, 2),
                    "t_stat": round(-k.t_stat, 1),
                    "capacity_soh_now_p50": round(f.capacity_now.p50, 3),
                    "cycles_to_80pct_p50": round(f.cycles_to_80pct.p50),
                },
            )
        )
    if f.jump is not None:
        j = f.jump
        at = _index_of(efc, res, j.index)
        finite = np.isfinite(res)
        before = float(np.median(res[:at][finite[:at]][-10:])) if at > 0 else math.nan
        after = float(np.median(res[at:][finite[at:]]))
        alerts.append(
            Alert(
                "resistance_jump",
                ids[at],
                j.efc,
                f"internal resistance jumped by {j.size:.2f} x new from session {ids[at]}",
                {
                    "growth_before": round(before, 3),
                    "growth_after": round(after, 3),
                    "jump": round(j.size, 3),
                    "t_stat": round(j.t_stat, 1),
                },
            )
        )
    heating = _heating_alert(estimates, efc)
    if heating is not None:
        alerts.append(heating)
    bms = _bms_alert(estimates, efc, f)
    if bms is not None:
        alerts.append(bms)
    return alerts


def _index_of(efc: np.ndarray, values: np.ndarray, index_in_finite: int) -> int:
    """Map an index among the finite values back to the session index."""
    finite = np.flatnonzero(np.isfinite(values))
    return int(finite[min(index_in_finite, finite.size - 1)])


def _heating_alert(estimates: Sequence[SessionEstimate], efc: np.ndarray) -> Alert | None:
    ratio = np.array([e.heating_ratio for e in estimates])
    idx = np.flatnonzero(np.isfinite(ratio))[-HEATING_RECENT_SESSIONS:]
    if idx.size < 3:
        return None
    recent = float(np.median(ratio[idx]))
    if recent < HEATING_RATIO_ALERT:
        return None
    # Where it started: the first of the trailing run of sessions above the threshold.
    above = ratio >= HEATING_RATIO_ALERT
    start = int(idx[-1])
    while start > 0 and (above[start - 1] or not np.isfinite(ratio[start - 1])):
        start -= 1
    last = estimates[int(idx[-1])]
    earlier = np.isfinite(ratio[:start])
    return Alert(
        "abnormal_heating",
        estimates[start].session_id,
        float(efc[start]),
        f"cells heat {recent:.2f} x what their resistance explains (last {idx.size} sessions)",
        {
            "heating_ratio_recent": round(recent, 3),
            "heating_ratio_before": round(float(np.median(ratio[:start][earlier])), 3)
            if earlier.any()
            else None,
            "heating_coeff_c_per_a2_min": float(f"{last.heating_coeff_c_per_a2_min:.4g}"),
            "cooling_per_min": round(last.cooling_per_min, 4),
            "threshold": HEATING_RATIO_ALERT,
        },
    )


def _bms_alert(estimates: Sequence[SessionEstimate], efc: np.ndarray, f: Forecast) -> Alert | None:
    bms = np.array([e.bms_soh for e in estimates])
    idx = np.flatnonzero(np.isfinite(bms))[-HEATING_RECENT_SESSIONS:]
    if idx.size == 0:
        return None
    reported = float(np.median(bms[idx]))
    band = f.capacity_now
    if band.p10 - BMS_SOH_MARGIN <= reported <= band.p90 + BMS_SOH_MARGIN:
        return None
    last = int(idx[-1])
    return Alert(
        "bms_soh_disagrees",
        estimates[last].session_id,
        float(efc[last]),
        f"BMS reports SoH {reported:.3f}, station estimates {band.p50:.3f} "
        f"(p10-p90 {band.p10:.3f}-{band.p90:.3f})",
        {
            "bms_soh": round(reported, 3),
            "station_capacity_soh": _q(band, 3),
            "difference": round(reported - band.p50, 3),
            "margin": BMS_SOH_MARGIN,
        },
    )
