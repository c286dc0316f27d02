"""Durable device-model values: the variables a CSMS set, kept in SQLite so they survive a restart.

One file per station, `<data_dir>/<station id>/device_model.sqlite3`, next to the transaction outbox. WAL
with synchronous=FULL (fsync per commit), one row per variable, written on every accepted Set. At start the
agent loads the rows and lets them override the configured defaults (`DeviceModel.restore`).

The BasicAuthPassword is stored as the CSMS sent it: this file is the station's own secret store (keep
`data_dir` readable by the agent's user only); it is never logged and never reported.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from chargeagent.errors import ChargeAgentError, ConfigError
from chargeagent.sqlite_wal import connect_wal
from station.protocol.device_types import Change, ComponentRef, VariableRef

FILE_NAME = "device_model.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS variable (key TEXT PRIMARY KEY, component TEXT NOT NULL, variable TEXT NOT NULL,
                                     value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS availability (evse_id INTEGER PRIMARY KEY, operative INTEGER NOT NULL);
"""


def _key(component: ComponentRef, variable: VariableRef) -> str:
    """Case-insensitive identity (OCPP names are), so one variable is one row however it was spelt."""
    return json.dumps([*component.match_key, *variable.match_key])


class DeviceStore:
    """Stored values by (component, variable); `save` commits (and fsyncs) before returning."""

    def __init__(self, path: Path) -> None:
        try:
            db = connect_wal(path, _SCHEMA, fsync_each_commit=True)  # every statement is durable
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"station.data_dir: cannot open the device model store {path}: {exc}") from None
        self._db: sqlite3.Connection | None = db
        self.path = path

    def load(self) -> list[tuple[ComponentRef, VariableRef, str]]:
        """Every stored value, in the order they were first written."""
        rows = self._conn().execute("SELECT component, variable, value FROM variable ORDER BY rowid")
        out = []
        for component, variable, value in rows:
            name, instance, evse_id, connector_id = json.loads(component)
            var_name, var_instance = json.loads(variable)
            out.append(
                (
                    ComponentRef(name, instance, evse_id, connector_id),
                    VariableRef(var_name, var_instance),
                    value,
                )
            )
        return out

    def save(self, change: Change) -> None:
        """Insert or replace one variable's value; ChargeAgentError if SQLite cannot write it."""
        c, v = change.component, change.variable
        try:
            self._write(c, v, change.value)
        except sqlite3.Error as exc:
            raise ChargeAgentError(f"device model store {self.path}: {exc}") from None

    def _write(self, c: ComponentRef, v: VariableRef, value: str) -> None:
        self._conn().execute(
            "INSERT INTO variable (key, component, variable, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (
                _key(c, v),
                json.dumps([c.name, c.instance, c.evse_id, c.connector_id]),
                json.dumps([v.name, v.instance]),
                value,
            ),
        )

    def load_operative(self) -> dict[int, bool]:
        """The operational status by evseId (0 = station) a ChangeAvailability left (G03/G04: it persists)."""
        rows = self._conn().execute("SELECT evse_id, operative FROM availability")
        return {int(evse_id): bool(operative) for evse_id, operative in rows}

    def save_operative(self, operative: dict[int, bool]) -> None:
        """Store the operational status per evseId; ChargeAgentError if SQLite cannot write it."""
        try:
            for evse_id, value in operative.items():
                self._conn().execute(
                    "INSERT INTO availability (evse_id, operative) VALUES (?, ?) "
                    "ON CONFLICT(evse_id) DO UPDATE SET operative = excluded.operative",
                    (evse_id, int(value)),
                )
        except sqlite3.Error as exc:
            raise ChargeAgentError(f"device model store {self.path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ChargeAgentError(f"device model store {self.path} is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
