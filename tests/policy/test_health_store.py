"""The per-battery history store: pseudonymised keys, bounds, salt, export, cached estimates."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from chargeagent.errors import ConfigError
from policy.health_csv import read_charges
from policy.health_estimators import HealthSpec, estimate_session
from policy.health_store import FILE_NAME, HealthStore, load_or_create_salt, pseudonymise
from simulators.battery_history import HistoryConfig, simulate_history

VIN = "WVWZZZ1JZXW000001"
DAY_S = 86_400.0


@pytest.fixture(scope="module")
def sessions():
    return simulate_history(
        HistoryConfig(sessions=6, seed=31, write_bms_soh=True, bms_soh_error=0.0)
    ).sessions


def _store(tmp_path, **kwargs):
    return HealthStore(tmp_path / FILE_NAME, load_or_create_salt(tmp_path), **kwargs)


def test_raw_vin_never_reaches_the_database_file(tmp_path, sessions):
    store = _store(tmp_path)
    key = store.add_session(VIN, sessions[0], now_s=sessions[0].start_s)
    store.add_session(VIN.lower(), sessions[1], now_s=sessions[1].start_s)  # same car, other spelling
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(FILE_NAME))
    assert VIN.encode() not in raw and VIN.lower().encode() not in raw
    assert key.encode() in raw
    assert len(key) == 64 and key == pseudonymise(VIN, load_or_create_salt(tmp_path))
    store = _store(tmp_path)
    assert [s.session_id for s in store.sessions_for(VIN)] == [sessions[0].session_id, sessions[1].session_id]


def test_salt_is_per_install_private_and_stable(tmp_path):
    salt = load_or_create_salt(tmp_path / "a")
    assert load_or_create_salt(tmp_path / "a") == salt
    assert load_or_create_salt(tmp_path / "b") != salt
    mode = stat.S_IMODE((tmp_path / "a" / "health_salt").stat().st_mode)
    assert mode == 0o600
    assert pseudonymise(VIN, salt) != pseudonymise(VIN, load_or_create_salt(tmp_path / "b"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "health_salt").write_text("zz")
    with pytest.raises(ConfigError, match="health salt"):
        load_or_create_salt(tmp_path / "c")


def test_max_sessions_per_battery_keeps_the_newest(tmp_path, sessions):
    store = _store(tmp_path, max_sessions=3)
    for s in sessions:
        store.add_session(VIN, s, now_s=s.start_s)
    store.add_session("OTHER-VIN", sessions[0], now_s=sessions[-1].start_s)
    assert [s.session_id for s in store.sessions_for(VIN)] == [s.session_id for s in sessions[-3:]]
    assert len(store.sessions_for("OTHER-VIN")) == 1
    assert len(store.batteries()) == 2


def test_retention_drops_old_sessions(tmp_path, sessions):
    store = _store(tmp_path, retention_days=2.0)
    for s in sessions:
        store.add_session(VIN, s, now_s=s.start_s)
    now = sessions[-1].start_s
    kept = [s.session_id for s in store.sessions_for(VIN)]
    assert kept == [s.session_id for s in sessions if s.start_s >= now - 2 * DAY_S]
    assert 0 < len(kept) < len(sessions)
    assert store.prune(now_s=now + 10 * DAY_S) == len(kept)
    assert store.sessions_for(VIN) == []


def test_export_and_estimates_round_trip(tmp_path, sessions):
    spec = HealthSpec()
    store = _store(tmp_path)
    estimate = estimate_session(sessions[0], spec)
    store.add_session(VIN, sessions[0], estimate=estimate, now_s=sessions[0].start_s)
    store.add_session(VIN, sessions[1], now_s=sessions[1].start_s)
    loaded = store.estimates_for(VIN)
    assert loaded[1] is None
    assert loaded[0] is not None
    assert dataclasses.asdict(loaded[0]).keys() == dataclasses.asdict(estimate).keys()
    assert loaded[0].capacity_soh == pytest.approx(estimate.capacity_soh)
    out = tmp_path / "export.csv"
    assert store.export(VIN, out) == 2
    assert VIN not in out.read_text()
    back = read_charges(out)
    assert [s.session_id for s in back] == [sessions[0].session_id, sessions[1].session_id]
    assert back[0].bms_soh == pytest.approx(sessions[0].bms_soh, abs=1e-3)


def test_bad_bounds_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        _store(tmp_path, max_sessions=0)
