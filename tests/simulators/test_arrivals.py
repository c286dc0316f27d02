"""EV arrival generator, site configs, SESSIONS.csv replay and the uncontrolled site-load aggregator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeagent.errors import ConfigError
from policy.forecast_features import interval_mean_kw
from policy.forecast_io import InputFileError, parse_utc
from simulators.arrivals import (
    generate_sessions,
    read_sessions_csv,
    site_history,
    site_load_kw,
    write_sessions_csv,
)
from simulators.site_config import load_site

REPO = Path(__file__).resolve().parents[2]
SITES = REPO / "config" / "sites"
MONDAY = int(parse_utc("2024-01-01T00:00:00Z"))  # a Monday


@pytest.fixture(scope="module")
def workplace():
    return load_site(SITES / "workplace.toml")


@pytest.mark.parametrize("name", ["workplace", "highway_hub", "depot"])
def test_example_sites_load_and_generate_plausible_sessions(name):
    site = load_site(SITES / f"{name}.toml")
    sessions = generate_sessions(site, MONDAY, 14, seed=3)
    assert len(sessions) > 50
    assert np.all(np.diff(sessions.connection_s) >= 0)
    assert np.all(sessions.disconnect_s > sessions.connection_s)
    assert np.all(sessions.power_kw <= site.site.station_max_power_kw)
    assert np.all(sessions.delivered_kwh <= sessions.energy_kwh * (1 + 1e-9))  # float round-off only
    assert np.all(sessions.delivered_kwh <= sessions.capacity_kwh)
    assert set(sessions.chemistry) <= {"nmc", "lfp"}
    assert np.all((sessions.soh >= site.soh.min) & (sessions.soh <= 1.0))
    assert len(set(sessions.station_id)) <= site.site.stations


def test_same_seed_same_sessions_other_seed_differs(workplace):
    a = generate_sessions(workplace, MONDAY, 7, seed=11)
    b = generate_sessions(workplace, MONDAY, 7, seed=11)
    c = generate_sessions(workplace, MONDAY, 7, seed=12)
    assert a.session_id == b.session_id
    np.testing.assert_array_equal(a.connection_s, b.connection_s)
    np.testing.assert_array_equal(a.energy_kwh, b.energy_kwh)
    np.testing.assert_array_equal(a.ambient_c, b.ambient_c)
    assert len(a) != len(c) or not np.array_equal(a.connection_s, c.connection_s)


def test_workplace_arrivals_peak_in_the_weekday_morning_and_drop_at_weekends(workplace):
    sessions = generate_sessions(workplace, MONDAY, 28, stations=40, seed=5)
    hour = (sessions.connection_s % 86_400) // 3600
    dow = ((sessions.connection_s // 86_400).astype(int) + 3) % 7
    weekday = dow < 5
    assert np.mean((hour[weekday] >= 6) & (hour[weekday] < 11)) > 0.7
    per_weekday = weekday.sum() / 20
    per_weekend_day = (~weekday).sum() / 8
    assert per_weekend_day < 0.4 * per_weekday


def test_no_station_serves_two_cars_at_once(workplace):
    sessions = generate_sessions(workplace, MONDAY, 14, stations=5, seed=2)
    assert sessions.rejected > 0  # 5 stations are too few for this site: some drivers leave
    for station in set(sessions.station_id):
        mine = [i for i, s in enumerate(sessions.station_id) if s == station]
        on, off = sessions.connection_s[mine], sessions.disconnect_s[mine]
        assert np.all(on[1:] >= off[:-1])


def test_ambient_temperature_is_colder_in_january_than_july(workplace):
    january = generate_sessions(workplace, MONDAY, 14, seed=1)
    july = generate_sessions(workplace, int(parse_utc("2024-07-01T00:00:00Z")), 14, seed=1)
    assert np.mean(july.ambient_c) - np.mean(january.ambient_c) > 10.0


def test_site_load_conserves_energy_at_1_and_15_min(workplace):
    sessions = generate_sessions(workplace, MONDAY, 7, seed=4)
    energy = float(sessions.delivered_kwh[sessions.charge_end_s <= MONDAY + 8 * 86_400].sum())
    minute = site_load_kw(sessions, MONDAY, 8 * 1440, 60)
    quarter = site_load_kw(sessions, MONDAY, 8 * 96, 900)
    assert minute.sum() / 60 == pytest.approx(energy, rel=1e-9)
    assert quarter.sum() / 4 == pytest.approx(energy, rel=1e-9)
    # 15-min values are the means of their 1-min values
    np.testing.assert_allclose(minute.reshape(-1, 15).mean(axis=1), quarter, atol=1e-9)
    assert np.all(minute >= 0)
    assert minute.max() <= 20 * workplace.site.station_max_power_kw + 1e-9


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-600, 6000, allow_nan=False),
            st.floats(0, 4000, allow_nan=False),
            st.floats(0.1, 300, allow_nan=False),
        ),
        max_size=20,
    ),
    st.sampled_from([60.0, 900.0, 7.0]),
)
def test_interval_means_match_a_brute_force_integral(spans, step_s):
    on = np.asarray([a for a, _, _ in spans], dtype=float)
    off = on + np.asarray([d for _, d, _ in spans], dtype=float)
    power = np.asarray([p for _, _, p in spans], dtype=float)
    n = 50
    fast = interval_mean_kw(on, off, power, 0.0, step_s, n)
    edges = np.arange(n + 1) * step_s
    brute = np.zeros(n)
    for a, b, p in zip(on, off, power, strict=True):
        overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, None)
        brute += p * overlap / step_s
    np.testing.assert_allclose(fast, brute, atol=1e-7)


def test_replayed_sessions_reproduce_their_energies(tmp_path, workplace):
    sessions = generate_sessions(workplace, MONDAY, 7, seed=9)
    path = tmp_path / "SESSIONS.csv"
    write_sessions_csv(path, sessions)
    replay = read_sessions_csv(path, station_power_kw=workplace.site.station_max_power_kw)
    assert replay.session_id == sessions.session_id
    np.testing.assert_allclose(replay.delivered_kwh, sessions.delivered_kwh, atol=2e-3)
    original = site_history(sessions, MONDAY, 8)
    replayed = site_history(replay, MONDAY, 8)
    assert replayed.load_kw.sum() == pytest.approx(original.load_kw.sum(), rel=1e-4)


def test_replay_raises_power_when_the_recorded_energy_needs_it(tmp_path):
    path = tmp_path / "S.csv"
    path.write_text(
        "session_id,station_id,connection_time,disconnect_time,kwh_delivered\n"
        "a,CS1,2024-01-01T08:00:00Z,2024-01-01T09:00:00Z,50\n"
    )
    replay = read_sessions_csv(path, station_power_kw=22.0)
    assert replay.power_kw[0] == pytest.approx(50.0)
    assert replay.delivered_kwh[0] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a,CS1,yesterday,2024-01-01T09:00:00Z,5\n", "row 1 (line 2), column connection_time"),
        (
            "a,CS1,2024-01-01T08:00:00Z,2024-01-01T09:00:00Z,5\nb,CS1,2024-01-01T10:00:00Z,"
            "2024-01-01T09:00:00Z,5\n",
            "row 2 (line 3), column disconnect_time: must be after connection_time",
        ),
        ("a,CS1,2024-01-01T08:00:00Z,2024-01-01T09:00:00Z,-1\n", "row 1 (line 2), column kwh_delivered"),
        ("a,CS1,2024-01-01T08:00:00Z,2024-01-01T09:00:00Z\n", "column kwh_delivered: missing value"),
    ],
)
def test_bad_sessions_csv_names_file_row_and_column(tmp_path, body, expected):
    path = tmp_path / "S.csv"
    path.write_text("session_id,station_id,connection_time,disconnect_time,kwh_delivered\n" + body)
    with pytest.raises(InputFileError) as info:
        read_sessions_csv(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_sessions_csv_without_a_required_column_is_named(tmp_path):
    path = tmp_path / "S.csv"
    path.write_text("session_id,station_id,connection_time,kwh_delivered\n")
    with pytest.raises(InputFileError, match=r"header \(line 1\), column disconnect_time: missing"):
        read_sessions_csv(path)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("median_h = 7.0", "median_h = -1.0"), "dwell.median_h"),
        (('chemistry = "lfp"', 'chemistry = "lead-acid"'), "vehicles.1.chemistry"),
        (("weekday_per_station = 1.1", "weekday_per_station = 1.1\nbogus = 3"), "arrivals.bogus"),
        (("min_h = 0.5", "min_h = 9.0"), "dwell.median_h"),
    ],
)
def test_invalid_site_config_names_the_key(tmp_path, edit, key):
    text = (SITES / "workplace.toml").read_text().replace(*edit, 1)
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}")
    assert "\n" not in message


def test_missing_site_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="site config not found"):
        load_site(tmp_path / "nope.toml")
