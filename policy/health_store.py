"""Per-battery charging history on the station: SQLite, pseudonymised keys, bounded, exportable.

A battery is keyed by SHA-256(salt ‖ id) of its VIN or EVCCID (upper-cased, stripped): the raw id is
never written, so the file alone does not say which vehicle it describes, and the same vehicle gets the
same key at every visit to this station. The salt is per install: passed in (e.g. from config), or a
random 32-byte file `<data_dir>/health_salt` created on first use (mode 0600). Keep it with the database:
without it the keys cannot be matched to a vehicle again, which is also how to forget them all.

Bounded: at most `max_sessions` sessions per battery (the oldest go first) and none older than
`retention_days` (by session start). Samples are stored as a float64 blob per session; a session's
estimate (`policy.health_estimators.SessionEstimate`) can be stored next to it so the nightly update only
estimates new sessions. The data stay on the station unless `export` writes them out (CHARGES.csv,
pseudonymised key in the file name only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import sqlite3
import time
from pathlib import Path

import numpy as np

from chargeagent.errors import ChargeAgentError, ConfigError
from chargeagent.sqlite_wal import connect_wal
from policy.health_csv import SessionData, write_charges
from policy.health_estimators import SessionEstimate

FILE_NAME = "battery_health.sqlite3"
SALT_FILE = "health_salt"
_DAY_S = 86_400.0
_COLUMNS = 6  # time_s, current_a, voltage_v, soc, cell_temp_c, ambient_c

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (
    battery TEXT NOT NULL, session_id TEXT NOT NULL, start_s REAL NOT NULL, added_s REAL NOT NULL,
    samples BLOB NOT NULL, bms_soh REAL, efc REAL, estimate TEXT,
    PRIMARY KEY (battery, session_id)
);
CREATE INDEX IF NOT EXISTS session_by_start ON session (battery, start_s);
"""


def load_or_create_salt(data_dir: Path) -> bytes:
    """The install's salt from `<data_dir>/health_salt` (hex), created with 32 random bytes if missing."""
    path = data_dir / SALT_FILE
    try:
        if path.exists():
            salt = bytes.fromhex(path.read_text(encoding="ascii").strip())
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            salt = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(salt.hex())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"station.data_dir: cannot read or create the health salt {path}: {exc}") from None
    if len(salt) < 16:
        raise ConfigError(f"station.data_dir: health salt {path} is shorter than 16 bytes")
    return salt


def pseudonymise(raw_id: str, salt: bytes) -> str:
    """The battery key: hex SHA-256 of salt ‖ normalised id (VINs are case-insensitive)."""
    return hashlib.sha256(salt + raw_id.strip().upper().encode("utf-8")).hexdigest()


class HealthStore:
    """Sessions per pseudonymised battery; every call takes raw ids and hashes them first."""

    def __init__(
        self, path: Path, salt: bytes, *, max_sessions: int = 500, retention_days: float = 3 * 365.0
    ) -> None:
        if max_sessions < 1 or not retention_days > 0:
            raise ConfigError("health store: max_sessions must be >= 1 and retention_days > 0")
        try:
            db = connect_wal(path, _SCHEMA, fsync_each_commit=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"station.data_dir: cannot open the health store {path}: {exc}") from None
        self._db: sqlite3.Connection | None = db
        self.path = path
        self._salt = salt
        self.max_sessions = max_sessions
        self.retention_days = retention_days

    def key(self, raw_id: str) -> str:
        return pseudonymise(raw_id, self._salt)

    def add_session(
        self,
        raw_id: str,
        session: SessionData,
        estimate: SessionEstimate | None = None,
        now_s: float | None = None,
    ) -> str:
        """Store (or replace) one session, then apply the bounds; returns the battery key."""
        key = self.key(raw_id)
        now = time.time() if now_s is None else now_s
        samples = np.column_stack(
            [
                session.time_s,
                session.current_a,
                session.voltage_v,
                session.soc,
                session.cell_temp_c,
                session.ambient_c,
            ]
        ).astype(np.float64)
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.execute(
                "INSERT OR REPLACE INTO session VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    session.session_id,
                    session.start_s,
                    now,
                    samples.tobytes(),
                    session.bms_soh,
                    session.efc,
                    None if estimate is None else json.dumps(dataclasses.asdict(estimate)),
                ),
            )
            self._apply_bounds(db, key, now)
        return key

    def sessions_for(self, raw_id: str) -> list[SessionData]:
        """The battery's stored sessions, oldest first."""
        return [session for session, _ in self._rows(self.key(raw_id))]

    def estimates_for(self, raw_id: str) -> list[SessionEstimate | None]:
        """Stored estimates in session order (None where a session was stored without one)."""
        return [estimate for _, estimate in self._rows(self.key(raw_id))]

    def batteries(self) -> list[str]:
        return [
            row[0] for row in self._conn().execute("SELECT DISTINCT battery FROM session ORDER BY battery")
        ]

    def export(self, raw_id: str, out: Path) -> int:
        """Write the battery's sessions as CHARGES.csv (no raw id in it); returns the number of sessions."""
        sessions = self.sessions_for(raw_id)
        write_charges(out, sessions)
        return len(sessions)

    def prune(self, now_s: float | None = None) -> int:
        """Apply the retention bound to every battery; returns the number of sessions removed."""
        now = time.time() if now_s is None else now_s
        db = self._conn()
        with db:
            cursor = db.execute(
                "DELETE FROM session WHERE start_s < ?", (now - self.retention_days * _DAY_S,)
            )
        return cursor.rowcount

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _apply_bounds(self, db: sqlite3.Connection, key: str, now: float) -> None:
        db.execute(
            "DELETE FROM session WHERE battery = ? AND start_s < ?", (key, now - self.retention_days * _DAY_S)
        )
        db.execute(
            "DELETE FROM session WHERE battery = ? AND session_id NOT IN "
            "(SELECT session_id FROM session WHERE battery = ? ORDER BY start_s DESC LIMIT ?)",
            (key, key, self.max_sessions),
        )

    def _rows(self, key: str) -> list[tuple[SessionData, SessionEstimate | None]]:
        rows = self._conn().execute(
            "SELECT session_id, samples, bms_soh, efc, estimate FROM session "
            "WHERE battery = ? ORDER BY start_s",
            (key,),
        )
        out = []
        for session_id, blob, bms_soh, efc, estimate in rows:
            table = np.frombuffer(blob, dtype=np.float64).reshape(-1, _COLUMNS)
            session = SessionData(
                session_id=session_id,
                time_s=table[:, 0].copy(),
                current_a=table[:, 1].copy(),
                voltage_v=table[:, 2].copy(),
                soc=table[:, 3].copy(),
                cell_temp_c=table[:, 4].copy(),
                ambient_c=table[:, 5].copy(),
                bms_soh=bms_soh,
                efc=efc,
            )
            out.append((session, None if estimate is None else _estimate(json.loads(estimate))))
        return out

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ChargeAgentError(f"health store {self.path} is closed")
        return self._db


def _estimate(raw: dict[str, object]) -> SessionEstimate:
    values = {k: (math.nan if v is None else v) for k, v in raw.items()}
    return SessionEstimate(**values)  # type: ignore[arg-type]
