"""The authorization cache on disk: `<data_dir>/<station id>/auth_cache.sqlite3` (survives a restart).

Holds the per-station random salt and one row per cached token hash (never a raw idToken; see
`station.protocol.auth_cache`). WAL with SQLite's default durability: losing the last cache update in a
power cut only means asking the CSMS again.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import datetime
from pathlib import Path

import structlog

from chargeagent.errors import ConfigError
from chargeagent.sqlite_wal import connect_wal
from station.protocol.auth_cache import AuthCache, CacheEntry

FILE_NAME = "auth_cache.sqlite3"
log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS token (key TEXT PRIMARY KEY, status TEXT NOT NULL, expires TEXT NOT NULL,
                                  used TEXT NOT NULL);
"""


class PersistentAuthCache:
    """An `AuthCache` whose every change is written through to SQLite (or kept in memory: `path=None`)."""

    def __init__(self, path: Path | None, *, max_entries: int) -> None:
        self._db: sqlite3.Connection | None = None
        if path is None:
            self.cache = AuthCache(secrets.token_bytes(32), max_entries=max_entries)
            return
        try:
            self._db = connect_wal(path, _SCHEMA, fsync_each_commit=False)
            self.cache = AuthCache(self._salt(), max_entries=max_entries)
            for key, status, expires, used in self._db.execute(
                "SELECT key, status, expires, used FROM token"
            ):
                self.cache.entries[key] = CacheEntry(
                    status, datetime.fromisoformat(expires), datetime.fromisoformat(used)
                )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"station.data_dir: cannot open the authorization cache {path}: {exc}"
            ) from None

    def _salt(self) -> bytes:
        assert self._db is not None
        row = self._db.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()
        if row is not None:
            return bytes(row[0])
        salt = secrets.token_bytes(32)
        self._db.execute("INSERT INTO meta (name, value) VALUES ('salt', ?)", (salt,))
        return salt

    def update(
        self, id_token: dict[str, object], info: dict[str, object], now: datetime, lifetime_s: float
    ) -> None:
        key, entry = self.cache.update(id_token, info, now, lifetime_s)
        self._write(key, entry)
        for dropped in self.cache.evict():
            self._write(dropped, None)

    def touch(self, id_token: dict[str, object]) -> None:
        """Persist the last-used time a lookup just refreshed (or the removal of an expired entry)."""
        key = self.cache.key(id_token)
        self._write(key, self.cache.entries.get(key))

    def clear(self) -> None:
        self.cache.clear()
        self._execute("DELETE FROM token", ())

    def _write(self, key: str, entry: CacheEntry | None) -> None:
        if entry is None:
            self._execute("DELETE FROM token WHERE key = ?", (key,))
            return
        self._execute(
            "INSERT INTO token (key, status, expires, used) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE "
            "SET status = excluded.status, expires = excluded.expires, used = excluded.used",
            (key, entry.status, entry.expires.isoformat(), entry.used.isoformat()),
        )

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:  # the in-memory cache still works; it is only not kept
            log.error("auth_cache_store_failed", error=str(exc))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
