"""The authorization cache on disk: survives a restart, keeps its salt, never holds a raw idToken."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from station.auth_store import PersistentAuthCache

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOKEN = {"idToken": "04A1B2C3D4", "type": "ISO14443"}


def test_cache_survives_a_restart_and_stores_no_raw_token(tmp_path: Path) -> None:
    path = tmp_path / "auth_cache.sqlite3"
    first = PersistentAuthCache(path, max_entries=10)
    first.update(TOKEN, {"status": "Accepted"}, T0, 3600.0)
    first.close()
    again = PersistentAuthCache(path, max_entries=10)
    assert again.cache.lookup(TOKEN, T0) == "Accepted"  # same salt, same key
    again.clear()
    again.close()
    assert PersistentAuthCache(path, max_entries=10).cache.entries == {}
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert TOKEN["idToken"].encode() not in raw


def test_evicted_and_expired_entries_leave_the_file(tmp_path: Path) -> None:
    path = tmp_path / "auth_cache.sqlite3"
    store = PersistentAuthCache(path, max_entries=1)
    store.update(TOKEN, {"status": "Accepted"}, T0, 3600.0)
    store.update({"idToken": "OTHER", "type": "Central"}, {"status": "Accepted"}, T0, 3600.0)
    store.close()
    assert len(PersistentAuthCache(path, max_entries=1).cache.entries) == 1
