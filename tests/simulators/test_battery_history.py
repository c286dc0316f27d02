"""The battery-history truth generator: the logs look like a station's, the truth is what was simulated."""

from __future__ import annotations

import numpy as np
import pytest

from policy.health_prior import DegradationLaw
from simulators.battery_history import SAMPLE_INTERVAL_S, HistoryConfig, simulate_histories, simulate_history


@pytest.fixture(scope="module")
def history():
    return simulate_history(
        HistoryConfig(sessions=8, seed=41, law=DegradationLaw(), start_efc=100.0, write_bms_soh=True)
    )


def test_sessions_are_logged_like_a_station_sees_them(history):
    assert len(history.sessions) == 8
    for s in history.sessions:
        assert np.all(np.diff(s.time_s) == SAMPLE_INTERVAL_S)
        # Rest before the current starts and after it stops (the car stays plugged in ≥ 10 min).
        assert abs(s.current_a[0]) < 2.0 and abs(s.current_a[-1]) < 2.0
        rest_tail = np.flatnonzero(s.current_a > 3.0)[-1]
        assert (s.time_s[-1] - s.time_s[rest_tail]) >= 600.0
        assert s.current_a.max() > 0.5 * 150.0
        # BMS SoC at 0.1 % resolution, rising while charging.
        assert np.allclose(s.soc * 1000.0, np.round(s.soc * 1000.0))
        assert s.soc[-1] > s.soc[0] + 0.1
        assert s.voltage_v.min() > 96 * 3.3 and s.voltage_v.max() < 96 * 4.2 + 1.0
    starts = [s.start_s for s in history.sessions]
    assert starts == sorted(starts)


def test_truth_follows_the_law_and_efc_advance_with_charge(history):
    law = history.law
    np.testing.assert_allclose(history.capacity_soh, law.capacity_soh(history.efc))
    assert np.all(np.diff(history.efc) > 0.1)
    assert history.efc[0] == 100.0
    np.testing.assert_allclose(history.resistance_growth, law.resistance_growth(history.efc))
    assert [s.efc for s in history.sessions] == pytest.approx(history.efc.tolist())
    assert all(s.bms_soh is not None for s in history.sessions)


def test_knee_jump_and_cooling_fault_are_injected_where_asked():
    base = HistoryConfig(sessions=30, seed=42, law=DegradationLaw(), start_efc=200.0)
    plain, faulty = simulate_histories(
        [
            base,
            HistoryConfig(
                sessions=30,
                seed=42,
                law=DegradationLaw(),
                start_efc=200.0,
                knee_efc=205.0,
                resistance_jump_session=20,
                cooling_fault_session=25,
            ),
        ]
    )
    before = faulty.efc <= 205.0
    assert np.array_equal(faulty.capacity_soh[before], plain.capacity_soh[before])
    assert np.all(faulty.capacity_soh[~before] < plain.capacity_soh[~before])
    ratio = faulty.resistance_growth / (1.0 + 2.5 * (1.0 - faulty.capacity_soh))
    assert np.allclose(ratio[:20], 1.0) and np.allclose(ratio[20:], 1.3)
    assert faulty.cooling_factor[24] == 1.0 and faulty.cooling_factor[25] == 0.3
    # Less cooling: the pack ends its charge hotter than the same session without the fault.
    peak_plain = max(s.cell_temp_c.max() - s.ambient_c.mean() for s in plain.sessions[25:])
    peak_faulty = max(s.cell_temp_c.max() - s.ambient_c.mean() for s in faulty.sessions[25:])
    assert peak_faulty > peak_plain + 3.0


def test_same_configs_give_the_same_logs():
    config = HistoryConfig(sessions=3, seed=43)
    a, b = simulate_history(config), simulate_history(config)
    for x, y in zip(a.sessions, b.sessions, strict=True):
        np.testing.assert_array_equal(x.voltage_v, y.voltage_v)
