"""Opening the station's local SQLite files (outbox, device model, battery health) the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect_wal(path: Path, schema: str, *, fsync_each_commit: bool) -> sqlite3.Connection:
    """Create the directory, open `path` in autocommit mode with WAL journaling, apply `schema`.

    `fsync_each_commit` sets synchronous=FULL: the WAL is fsynced on every commit, so a committed row
    survives a power cut (what transaction messages and CSMS-set values need); without it WAL's default
    (NORMAL) may lose the last commits on power loss but never corrupts the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    if fsync_each_commit:
        db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db
