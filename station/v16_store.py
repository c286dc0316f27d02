"""The 1.6 transaction-id map, persisted next to the outbox (`<data_dir>/<id>/ocpp16_transactions.sqlite3`).

OCPP 1.6 transaction ids are integers the CSMS assigns in StartTransaction.conf. A StopTransaction still
queued in the durable outbox when the agent is killed must carry that id after the restart, so the map
is written with fsync on every commit, like the outbox itself. Rows older than `RETENTION` are pruned.
"""

from __future__ import annotations

import time
from pathlib import Path

from chargeagent.sqlite_wal import connect_wal
from station.protocol.v16 import V16Transaction

FILE_NAME = "ocpp16_transactions.sqlite3"
RETENTION_S = 90 * 86_400.0  # a transaction's ids are kept three months

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tx (
    internal_id TEXT PRIMARY KEY,
    csms_id INTEGER,
    connector_id INTEGER NOT NULL,
    meter_start_wh INTEGER NOT NULL,
    id_tag TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_csms ON tx (csms_id);
"""


class SqliteTransactions:
    """`station.protocol.v16.V16Transactions` on SQLite (WAL, fsync per commit)."""

    def __init__(self, directory: Path) -> None:
        self._db = connect_wal(directory / FILE_NAME, _SCHEMA, fsync_each_commit=True)
        self._db.execute("DELETE FROM tx WHERE updated < ?", (time.time() - RETENTION_S,))

    def get(self, internal_id: str) -> V16Transaction | None:
        row = self._db.execute(
            "SELECT csms_id, connector_id, meter_start_wh, id_tag FROM tx WHERE internal_id = ?",
            (internal_id,),
        ).fetchone()
        return None if row is None else V16Transaction(row[0], row[1], row[2], row[3])

    def put(self, internal_id: str, tx: V16Transaction) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tx VALUES (?, ?, ?, ?, ?, ?)",
            (internal_id, tx.csms_id, tx.connector_id, tx.meter_start_wh, tx.id_tag, time.time()),
        )

    def internal_id(self, csms_id: int) -> str | None:
        row = self._db.execute(
            "SELECT internal_id FROM tx WHERE csms_id = ? ORDER BY updated DESC LIMIT 1", (csms_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self._db.close()
