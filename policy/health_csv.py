"""CHARGES.csv for the battery-health estimator: parse (strictly, one clear error) and write.

One file = one battery, many charging sessions. Columns (any order, header row required):

    session_id, timestamp, current_a, voltage_v, soc, cell_temp_c, ambient_c [, bms_soh] [, efc]

Units are per PACK: `current_a` is the pack current (positive INTO the battery; with one series string it
is also every cell's current), `voltage_v` the pack terminal voltage, `soc` the BMS's pack SoC as a 0-1
fraction, `cell_temp_c` the pack's mean cell temperature (the mean of the BMS's highest and lowest cell
temperatures when that is all it reports, as GB/T 27930 BSM), `ambient_c` the air temperature. Optional:
`bms_soh` (0-1, the SoH the BMS reports) and `efc` (the battery's lifetime equivalent full cycles, e.g. its
lifetime charge counter / rated Ah; without it EFC are counted from this file's own charge throughput).
Timestamps are ISO 8601 with an explicit UTC offset (`2024-05-01T08:00:00Z`). Rows are numbered as in
the file (the header is row 1).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from chargeagent.errors import ChargeAgentError
from policy.physics import FloatArray

REQUIRED_COLUMNS = ("session_id", "timestamp", "current_a", "voltage_v", "soc", "cell_temp_c", "ambient_c")
OPTIONAL_COLUMNS = ("bms_soh", "efc")
# Plausibility ranges: outside them a value is a unit or column mix-up, not a measurement.
_RANGES: dict[str, tuple[float, float]] = {
    "current_a": (-2000.0, 2000.0),
    "voltage_v": (0.0, 2000.0),
    "soc": (0.0, 1.0),
    "cell_temp_c": (-50.0, 100.0),
    "ambient_c": (-60.0, 70.0),
    "bms_soh": (0.0, 1.2),
    "efc": (0.0, 1.0e6),
}


class HealthDataError(ChargeAgentError):
    """CHARGES.csv is malformed; the message names the file, the row and the column."""

    def __init__(self, file: str, row: int | None, column: str | None, reason: str) -> None:
        where = ", ".join(
            part for part in (f"row {row}" if row else "", f"column {column!r}" if column else "") if part
        )
        super().__init__(f"{file}: {where + ': ' if where else ''}{reason}")
        self.file, self.row, self.column = file, row, column


@dataclass(frozen=True)
class SessionData:
    """One charging session's samples, in time order (arrays of equal length, units as in the CSV)."""

    session_id: str
    time_s: FloatArray  # seconds since the Unix epoch (UTC)
    current_a: FloatArray
    voltage_v: FloatArray
    soc: FloatArray
    cell_temp_c: FloatArray
    ambient_c: FloatArray
    bms_soh: float | None = None  # median of the session's bms_soh values
    efc: float | None = None  # lifetime EFC at the session's first row

    @property
    def start_s(self) -> float:
        return float(self.time_s[0])


def parse_timestamp(text: str) -> float:
    """ISO 8601 with an explicit offset → Unix seconds; ValueError otherwise."""
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        raise ValueError("no UTC offset")
    return stamp.timestamp()


def format_timestamp(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_charges(path: Path) -> list[SessionData]:
    """Parse CHARGES.csv into sessions ordered by start time; `HealthDataError` on the first bad cell."""
    name = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return parse_rows(csv.reader(handle), name)
    except OSError as exc:
        raise HealthDataError(name, None, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HealthDataError(name, None, None, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise HealthDataError(name, None, None, f"not a CSV file: {exc}") from None


def parse_rows(rows: Iterable[Sequence[str]], name: str = "CHARGES.csv") -> list[SessionData]:
    """The parser behind `read_charges`, on any iterable of CSV rows (header first)."""
    iterator = iter(rows)
    header = [cell.strip() for cell in next(iterator, [])]
    if not header:
        raise HealthDataError(name, 1, None, "empty file (no header row)")
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise HealthDataError(name, 1, column, "missing column")
    index = {
        column: header.index(column) for column in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if column in header
    }
    numeric = [c for c in index if c not in ("session_id", "timestamp")]
    # Blank lines come as []; a row of empty cells fails the fast path and is skipped by the slow one.
    body = [(n, row) for n, row in enumerate(iterator, start=2) if row]
    if not body:
        raise HealthDataError(name, 2, None, "no data rows")
    # Vectorised when the file is clean (the common case, ~10x faster); any doubt → the row-by-row
    # path below, which finds and names the first bad cell.
    fast = _parse_fast(len(header), index, numeric, [row for _, row in body])
    if fast is not None:
        return fast
    sessions: dict[str, list[tuple[int, float, list[float]]]] = {}
    for row_number, row in body:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise HealthDataError(name, row_number, header[len(row)], "missing value (short row)")
        session_id = row[index["session_id"]].strip()
        if not session_id:
            raise HealthDataError(name, row_number, "session_id", "empty session id")
        try:
            time_s = parse_timestamp(row[index["timestamp"]])
        except ValueError:
            text = row[index["timestamp"]]
            raise HealthDataError(
                name, row_number, "timestamp", f"not an ISO 8601 UTC timestamp: {text!r}"
            ) from None
        values = [_number(name, row_number, column, row[index[column]]) for column in numeric]
        sessions.setdefault(session_id, []).append((row_number, time_s, values))
    if not sessions:
        raise HealthDataError(name, 2, None, "no data rows")
    out = [_session(name, sid, rows_, numeric) for sid, rows_ in sessions.items()]
    return sorted(out, key=lambda s: s.start_s)


def _parse_fast(
    width: int, index: dict[str, int], numeric: list[str], rows: list[Sequence[str]]
) -> list[SessionData] | None:
    """All rows at once with NumPy; None as soon as anything would need a precise error message."""
    if any(len(row) < width for row in rows):
        return None
    cols = list(zip(*rows, strict=False))
    stamps = cols[index["timestamp"]]
    # Only the plain `YYYY-MM-DDTHH:MM:SS[.fff]Z` form here; other offsets go the slow way.
    if not all(len(t) >= 20 and t[10] == "T" and t.endswith("Z") for t in stamps):
        return None
    try:
        times = np.array([t[:-1] for t in stamps], dtype="datetime64[ms]").astype(np.int64) / 1000.0
        values = {c: np.array(cols[index[c]], dtype=np.float64) for c in numeric}
    except ValueError:
        return None
    for column, v in values.items():
        lo, hi = _RANGES[column]
        if not np.all(np.isfinite(v) & (v >= lo) & (v <= hi)):
            return None
    members: dict[str, list[int]] = {}
    for i, sid in enumerate(cols[index["session_id"]]):
        members.setdefault(sid.strip(), []).append(i)
    if "" in members:
        return None
    out = []
    for sid, rows_of in members.items():
        idx = np.array(rows_of)
        t = times[idx]
        if np.any(np.diff(t) <= 0.0):
            return None
        col = {c: v[idx] for c, v in values.items()}
        out.append(
            SessionData(
                session_id=sid,
                time_s=t,
                current_a=col["current_a"],
                voltage_v=col["voltage_v"],
                soc=col["soc"],
                cell_temp_c=col["cell_temp_c"],
                ambient_c=col["ambient_c"],
                bms_soh=float(np.median(col["bms_soh"])) if "bms_soh" in col else None,
                efc=float(col["efc"][0]) if "efc" in col else None,
            )
        )
    return sorted(out, key=lambda s: s.start_s)


def _number(name: str, row: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HealthDataError(name, row, column, f"not a number: {text!r}") from None
    lo, hi = _RANGES[column]
    if not (math.isfinite(value) and lo <= value <= hi):
        raise HealthDataError(name, row, column, f"{text!r} outside [{lo:g}, {hi:g}]")
    return value


def _session(
    name: str, session_id: str, rows: list[tuple[int, float, list[float]]], numeric: list[str]
) -> SessionData:
    times = np.array([t for _, t, _ in rows])
    steps = np.diff(times)
    if np.any(steps <= 0.0):
        bad = int(np.argmax(steps <= 0.0)) + 1
        raise HealthDataError(
            name, rows[bad][0], "timestamp", f"not after the previous row of session {session_id!r}"
        )
    table = np.array([v for _, _, v in rows], dtype=np.float64)
    col = {column: table[:, i] for i, column in enumerate(numeric)}
    bms = col.get("bms_soh")
    efc = col.get("efc")
    return SessionData(
        session_id=session_id,
        time_s=times,
        current_a=col["current_a"],
        voltage_v=col["voltage_v"],
        soc=col["soc"],
        cell_temp_c=col["cell_temp_c"],
        ambient_c=col["ambient_c"],
        bms_soh=None if bms is None else float(np.median(bms)),
        efc=None if efc is None else float(efc[0]),
    )


def write_charges(path: Path, sessions: Sequence[SessionData]) -> None:
    """Write sessions as CHARGES.csv (with `bms_soh` / `efc` columns when every session has them)."""
    with_bms = bool(sessions) and all(s.bms_soh is not None for s in sessions)
    with_efc = bool(sessions) and all(s.efc is not None for s in sessions)
    header = [*REQUIRED_COLUMNS, *(["bms_soh"] if with_bms else []), *(["efc"] if with_efc else [])]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for s in sessions:
            for i in range(s.time_s.size):
                row = [
                    s.session_id,
                    format_timestamp(float(s.time_s[i])),
                    f"{s.current_a[i]:.2f}",
                    f"{s.voltage_v[i]:.2f}",
                    f"{s.soc[i]:.3f}",
                    f"{s.cell_temp_c[i]:.1f}",
                    f"{s.ambient_c[i]:.1f}",
                ]
                if with_bms:
                    row.append(f"{s.bms_soh:.3f}")
                if with_efc:
                    row.append(f"{s.efc:.2f}")
                writer.writerow(row)
