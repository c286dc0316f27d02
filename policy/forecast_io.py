"""Files of the forecaster: HISTORY.csv in, FORECAST.csv out, with one-line errors naming file, row, column.

HISTORY.csv is `interval_start,load_kw` (ISO 8601 UTC, on a fixed grid, strictly increasing); missing
intervals are allowed and become NaN in `LoadHistory` (the model skips them). Row numbers in messages
count data rows from 1 (the header is line 1, so row N is line N+1).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from chargeagent.errors import ChargeAgentError

FloatArray = npt.NDArray[np.float64]
HISTORY_COLUMNS = ("interval_start", "load_kw")
FORECAST_COLUMNS = ("interval_start", "p10_kw", "p50_kw", "p90_kw")


class InputFileError(ChargeAgentError):
    """A data file is malformed; the message is one line naming the file, the row and the column."""

    def __init__(self, path: str, row: int | None, column: str | None, problem: str) -> None:
        where = [path]
        if row is not None:
            where.append(f"row {row} (line {row + 1})" if row > 0 else "header (line 1)")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {problem}")
        self.path, self.row, self.column = path, row, column


def parse_utc(text: str) -> float:
    """ISO 8601 → epoch seconds. A naive time is taken as UTC; other offsets are converted."""
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def format_utc(epoch_s: float) -> str:
    """Epoch seconds → `2019-06-03T00:00:00Z` (whole seconds: our grids are minutes)."""
    return datetime.fromtimestamp(round(epoch_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LoadHistory:
    """Site load on a regular grid: `load_kw[i]` is the mean over [start_s + i*step_s, +step_s)."""

    start_s: int
    step_s: int
    load_kw: FloatArray  # NaN where the meter has no value

    @property
    def end_s(self) -> int:
        """End of the last interval (the forecast origin when history runs up to now)."""
        return self.start_s + self.step_s * len(self.load_kw)

    def days(self) -> float:
        return len(self.load_kw) * self.step_s / 86_400.0


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number, {column: text}) for each data row; `InputFileError` on header/shape problems."""
    name = str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputFileError(name, None, None, f"cannot open: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [cell.strip() for cell in next(reader)]
        except StopIteration:
            raise InputFileError(name, 0, None, f"empty file (expected header {','.join(columns)})") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFileError(name, 0, None, f"unreadable: {exc}") from None
        for column in columns:
            if column not in header:
                raise InputFileError(name, 0, column, "missing from the header")
        index = {column: header.index(column) for column in columns}
        row = 0
        try:
            for cells in reader:
                row += 1
                if not cells or all(not cell.strip() for cell in cells):
                    continue  # blank line, e.g. at the end of a hand-edited file
                values: dict[str, str] = {}
                for column, i in index.items():
                    if i >= len(cells) or not cells[i].strip():
                        raise InputFileError(name, row, column, "missing value")
                    values[column] = cells[i].strip()
                yield row, values
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFileError(name, row + 1, None, f"unreadable: {exc}") from None


def parse_time_cell(path: str, row: int, column: str, text: str) -> float:
    try:
        return parse_utc(text)
    except ValueError:
        raise InputFileError(path, row, column, f"not an ISO 8601 time: {text!r}") from None


def parse_number_cell(path: str, row: int, column: str, text: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(path, row, column, f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise InputFileError(path, row, column, f"must be a finite number >= {minimum:g} (got {text!r})")
    return value


def read_history_csv(path: Path, step_s: int = 900, before_s: float | None = None) -> LoadHistory:
    """Read HISTORY.csv onto a regular grid of `step_s`; every interval must start before `before_s`."""
    name = str(path)
    times: list[int] = []
    loads: list[float] = []
    for row, values in read_csv_rows(path, HISTORY_COLUMNS):
        stamp = parse_time_cell(name, row, "interval_start", values["interval_start"])
        if stamp % step_s != 0:
            raise InputFileError(name, row, "interval_start", f"not on the {step_s // 60}-min grid")
        if times and stamp <= times[-1]:
            raise InputFileError(name, row, "interval_start", "not after the previous row")
        if before_s is not None and stamp + step_s > before_s:
            raise InputFileError(
                name, row, "interval_start", f"must end by --start {format_utc(before_s)} (history only)"
            )
        times.append(int(stamp))
        loads.append(parse_number_cell(name, row, "load_kw", values["load_kw"]))
    if not times:
        raise InputFileError(name, None, None, "no data rows")
    index = (np.asarray(times, dtype=np.int64) - times[0]) // step_s
    load_kw = np.full(int(index[-1]) + 1, np.nan)
    load_kw[index] = loads
    return LoadHistory(start_s=times[0], step_s=step_s, load_kw=load_kw)


def write_history_csv(path: Path, history: LoadHistory) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_COLUMNS)
        for i, value in enumerate(history.load_kw):
            if math.isfinite(value):
                writer.writerow((format_utc(history.start_s + i * history.step_s), f"{value:.3f}"))


def write_forecast_csv(
    path: Path, start_s: float, step_s: int, p10: FloatArray, p50: FloatArray, p90: FloatArray
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FORECAST_COLUMNS)
        for i in range(len(p50)):
            writer.writerow(
                (format_utc(start_s + i * step_s), f"{p10[i]:.3f}", f"{p50[i]:.3f}", f"{p90[i]:.3f}")
            )
