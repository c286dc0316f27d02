"""Battery health on simulated batteries with known truth: accuracy, coverage, alerts, false alarms."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from policy.health import (
    MIN_CALENDAR_SPAN_DAYS,
    HealthSpec,
    assess,
    assess_estimates,
    equivalent_full_cycles,
    estimate_sessions,
)
from policy.health_forecast import detect_knee
from policy.health_prior import sample_law
from simulators.battery_history import HistoryConfig, simulate_histories

SPEC = HealthSpec()


@pytest.fixture(scope="module")
def ten_session_batteries():
    """40 random healthy batteries, 10 sessions each, anywhere in 0-1500 EFC of their life."""
    rng = np.random.default_rng(11)
    configs = [
        HistoryConfig(sessions=10, seed=500 + i, start_efc=float(rng.uniform(0.0, 1500.0))) for i in range(40)
    ]
    histories = simulate_histories(configs, noise_seed=1)
    return [(h, assess(h.sessions, SPEC)) for h in histories]


def test_capacity_p50_within_2_percent_of_truth_after_10_sessions(ten_session_batteries):
    errors = np.array([r.forecast.capacity_now.p50 - h.capacity_soh[-1] for h, r in ten_session_batteries])
    worst = float(np.max(np.abs(errors)))
    print(f"capacity SoH p50 error after 10 sessions: max |e| {worst:.4f}, mean {errors.mean():+.4f}")
    assert np.all(np.abs(errors) <= 0.02)


def test_p10_p90_band_covers_truth_about_80_percent(ten_session_batteries):
    cap = [r.forecast.capacity_now for _, r in ten_session_batteries]
    res = [r.forecast.resistance_now for _, r in ten_session_batteries]
    cap_cover = np.mean(
        [q.p10 <= h.capacity_soh[-1] <= q.p90 for q, (h, _) in zip(cap, ten_session_batteries, strict=True)]
    )
    res_cover = np.mean(
        [
            q.p10 <= h.resistance_growth[-1] <= q.p90
            for q, (h, _) in zip(res, ten_session_batteries, strict=True)
        ]
    )
    print(f"p10-p90 coverage on {len(cap)} batteries: capacity {cap_cover:.2f}, resistance {res_cover:.2f}")
    assert 0.6 <= cap_cover <= 0.95
    assert 0.6 <= res_cover <= 0.97
    assert all(q.p10 < q.p50 < q.p90 for q in cap + res)


def test_forecast_is_monotone_in_efc_and_cycles_to_80_are_ordered(ten_session_batteries):
    for _, report in ten_session_batteries[:10]:
        p50 = [cap.p50 for _, cap, _ in report.forecast.points]
        efc = [e for e, _, _ in report.forecast.points]
        assert efc == sorted(efc) and efc[0] > report.forecast.efc_now
        assert all(a >= b for a, b in itertools.pairwise(p50))
        c = report.forecast.cycles_to_80pct
        assert 0 < c.p10 <= c.p50 <= c.p90


def test_healthy_batteries_raise_no_alerts():
    """False-alarm rate over 30 healthy batteries (40 sessions each, BMS SoH within ±1 % of truth)."""
    rng = np.random.default_rng(12)
    configs = [
        HistoryConfig(
            sessions=40,
            seed=900 + i,
            start_efc=float(rng.uniform(0.0, 1500.0)),
            bms_soh_error=float(rng.uniform(-0.01, 0.01)),
            write_bms_soh=True,
        )
        for i in range(30)
    ]
    alerts = [assess(h.sessions, SPEC).alerts for h in simulate_histories(configs, noise_seed=2)]
    rate = float(np.mean([bool(a) for a in alerts]))
    print(f"false-alarm rate on {len(alerts)} healthy batteries: {rate:.3f}")
    assert rate <= 0.05, [[a.type for a in x] for x in alerts if x]


def test_knee_is_flagged_before_capacity_falls_3_percent_past_it():
    configs = []
    for i in range(4):
        law = sample_law("nmc", np.random.default_rng(100 + i), knee=True)
        law = dataclasses.replace(law, knee_slope_per_efc=4e-4)
        assert law.knee_efc is not None
        configs.append(HistoryConfig(sessions=260, seed=i, law=law, start_efc=law.knee_efc - 60.0))
    for history in simulate_histories(configs, noise_seed=3):
        knee_efc = history.law.knee_efc
        assert knee_efc is not None
        est = estimate_sessions(history.sessions, SPEC)
        efc = np.array(equivalent_full_cycles(est, SPEC)[0])
        cap = np.array([e.capacity_soh for e in est])
        sd = np.array([e.capacity_sd for e in est])
        soh_at_knee = float(history.law.capacity_soh(knee_efc))
        # Replay the history as it grows (as the nightly update sees it), every 5 sessions.
        first = next(
            (n for n in range(30, len(est) + 1, 5) if detect_knee(efc[:n], cap[:n], sd[:n]) is not None), None
        )
        assert first is not None, "knee never flagged"
        drop = soh_at_knee - history.capacity_soh[first - 1]
        found = detect_knee(efc[:first], cap[:first], sd[:first])
        assert found is not None
        print(
            f"knee at {knee_efc:.0f} EFC flagged at session {first}: {drop:.4f} below it, at {found.efc:.0f}"
        )
        assert drop < 0.03
        assert abs(found.efc - knee_efc) < 80.0
        # Before the knee there was nothing to flag.
        before = int(np.searchsorted(efc, knee_efc))
        assert detect_knee(efc[:before], cap[:before], sd[:before]) is None


def test_resistance_jump_is_flagged_with_evidence():
    (history,) = simulate_histories([HistoryConfig(sessions=45, seed=21, resistance_jump_session=35)])
    report = assess(history.sessions, SPEC)
    jumps = [a for a in report.alerts if a.type == "resistance_jump"]
    assert len(jumps) == 1
    alert = jumps[0]
    assert abs(int(alert.session_id[1:]) - 35) <= 1
    assert alert.evidence["growth_after"] - alert.evidence["growth_before"] > 0.15
    # The estimate follows the jump: truth after it inside (or near) the band.
    q = report.forecast.resistance_now
    assert q.p10 - 0.05 <= history.resistance_growth[-1] <= q.p90 + 0.05


def test_cooling_fault_is_flagged_as_abnormal_heating():
    (history,) = simulate_histories([HistoryConfig(sessions=40, seed=22, cooling_fault_session=32)])
    report = assess(history.sessions, SPEC)
    heating = [a for a in report.alerts if a.type == "abnormal_heating"]
    assert len(heating) == 1
    assert heating[0].evidence["heating_ratio_recent"] >= 1.3
    assert heating[0].evidence["heating_ratio_before"] < 1.2
    # Earlier in the same history (before the fault) no such alert.
    early = assess_estimates(report.estimates[:30], SPEC)
    assert not [a for a in early.alerts if a.type == "abnormal_heating"]


def test_bms_soh_disagreement_is_flagged_only_when_the_bms_is_off():
    configs = [
        HistoryConfig(sessions=15, seed=23, bms_soh_error=0.06, write_bms_soh=True),
        HistoryConfig(sessions=15, seed=23, bms_soh_error=0.0, write_bms_soh=True),
    ]
    off, right = (assess(h.sessions, SPEC) for h in simulate_histories(configs))
    flagged = [a for a in off.alerts if a.type == "bms_soh_disagrees"]
    assert len(flagged) == 1
    assert flagged[0].evidence["difference"] > 0.03
    assert not [a for a in right.alerts if a.type == "bms_soh_disagrees"]


def test_json_has_exactly_the_issue_shape():
    (history,) = simulate_histories([HistoryConfig(sessions=12, seed=24)])
    doc = assess(history.sessions, SPEC).to_json()
    assert set(doc) == {
        "capacity_soh",
        "resistance_growth",
        "forecast",
        "cycles_to_80pct",
        "calendar",
        "knee_detected",
        "alerts",
        "sessions_used",
    }
    for key in ("capacity_soh", "resistance_growth", "cycles_to_80pct"):
        assert set(doc[key]) == {"p10", "p50", "p90"}
    assert all(isinstance(v, int) for v in doc["cycles_to_80pct"].values())
    point = doc["forecast"][0]
    assert isinstance(point["equivalent_full_cycles"], int)
    assert set(point["capacity_soh"]) == {"p10", "p50", "p90"}
    assert doc["knee_detected"] is False and doc["alerts"] == [] and doc["sessions_used"] == 12


def test_efc_counted_from_throughput_without_an_efc_column():
    (history,) = simulate_histories([HistoryConfig(sessions=20, seed=25, write_efc=False)])
    est = estimate_sessions(history.sessions, SPEC)
    starts, now = equivalent_full_cycles(est, SPEC)
    assert starts[0] == 0.0
    # Truth EFC advance by the planned charge; the estimator counts the metered charge: same within 3 %.
    assert now == pytest.approx(history.efc[-1] + (history.efc[-1] - history.efc[-2]), rel=0.1)
    assert starts[-1] == pytest.approx(history.efc[-1], rel=0.03)


def test_calendar_dates_follow_the_observed_usage_rate():
    (history,) = simulate_histories([HistoryConfig(sessions=30, seed=26, start_efc=300.0)])
    report = assess(history.sessions, SPEC)
    cal = report.calendar
    assert cal is not None
    first, last = history.sessions[0].start_s, history.sessions[-1].start_s
    days = (last - first) / 86_400.0
    assert cal.observed_days == pytest.approx(days) and days >= MIN_CALENDAR_SPAN_DAYS
    assert cal.efc_per_day == pytest.approx((report.efc[-1] - report.efc[0]) / days)
    # The truth's own usage rate (EFC per day between the first and last session): within 3 %.
    assert cal.efc_per_day == pytest.approx((history.efc[-1] - history.efc[0]) / days, rel=0.03)
    c, d = report.forecast.cycles_to_80pct, cal.date_80pct_s
    for cycles, date in ((c.p10, d.p10), (c.p50, d.p50), (c.p90, d.p90)):
        assert date == pytest.approx(last + cycles / cal.efc_per_day * 86_400.0)
    assert d.p10 <= d.p50 <= d.p90
    doc = report.to_json()["calendar"]
    assert doc["date_80pct"]["p10"] <= doc["date_80pct"]["p50"] <= doc["date_80pct"]["p90"]


def test_no_calendar_projection_from_a_short_history():
    (history,) = simulate_histories([HistoryConfig(sessions=3, seed=27)])
    span = (history.sessions[-1].start_s - history.sessions[0].start_s) / 86_400.0
    assert span < MIN_CALENDAR_SPAN_DAYS
    report = assess(history.sessions, SPEC)
    assert report.calendar is None and report.to_json()["calendar"] is None
