"""HISTORY.csv / FORECAST.csv: grid, gaps, and one-line errors naming file, row and column."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from policy.forecast_io import (
    InputFileError,
    LoadHistory,
    format_utc,
    parse_utc,
    read_history_csv,
    write_forecast_csv,
    write_history_csv,
)

START = parse_utc("2019-06-03T00:00:00Z")
HEADER = "interval_start,load_kw\n"


def test_history_round_trips_and_gaps_become_nan(tmp_path):
    load = np.array([1.0, 2.5, np.nan, 0.0, 7.25])
    path = tmp_path / "h.csv"
    write_history_csv(path, LoadHistory(int(START) - 5 * 900, 900, load))
    history = read_history_csv(path, 900, before_s=START)
    assert history.start_s == START - 5 * 900
    assert history.end_s == START
    np.testing.assert_array_equal(history.load_kw, load)


def test_offsets_and_naive_times_are_read_as_utc(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(HEADER + "2019-06-02T01:00:00+01:00,1\n2019-06-02T00:15:00,2\n")
    history = read_history_csv(path)
    assert format_utc(history.start_s) == "2019-06-02T00:00:00Z"
    np.testing.assert_array_equal(history.load_kw, [1.0, 2.0])


@pytest.mark.parametrize(
    ("body", "where", "problem"),
    [
        ("2019-06-02T00:00:00Z,abc\n", "row 1 (line 2), column load_kw", "not a number"),
        ("2019-06-02T00:00:00Z,-2\n", "row 1 (line 2), column load_kw", "must be a finite number >= 0"),
        ("2019-06-02T00:00:00Z,nan\n", "row 1 (line 2), column load_kw", "finite"),
        ("2019-06-02T00:00:00Z,1\n2019-13-02T00:15:00Z,1\n", "row 2 (line 3), column interval_start", "ISO"),
        ("2019-06-02T00:07:00Z,1\n", "row 1 (line 2), column interval_start", "15-min grid"),
        (
            "2019-06-02T00:15:00Z,1\n2019-06-02T00:15:00Z,1\n",
            "row 2 (line 3), column interval_start",
            "not after the previous row",
        ),
        (
            "2019-06-02T00:00:00Z,1\n2019-06-03T00:00:00Z,1\n",
            "row 2 (line 3), column interval_start",
            "--start",
        ),
        ("2019-06-02T00:00:00Z\n", "row 1 (line 2), column load_kw", "missing value"),
        ("", None, "no data rows"),
    ],
)
def test_malformed_history_names_file_row_and_column(tmp_path, body, where, problem):
    path = tmp_path / "HISTORY.csv"
    path.write_text(HEADER + body)
    with pytest.raises(InputFileError) as info:
        read_history_csv(path, 900, before_s=START)
    message = str(info.value)
    assert message.startswith(str(path))
    if where is not None:
        assert where in message
    assert problem in message
    assert "\n" not in message


def test_missing_column_and_empty_file_are_named(tmp_path):
    path = tmp_path / "HISTORY.csv"
    path.write_text("interval_start,kw\n2019-06-02T00:00:00Z,1\n")
    with pytest.raises(InputFileError, match=r"header \(line 1\), column load_kw: missing from the header"):
        read_history_csv(path)
    path.write_text("")
    with pytest.raises(InputFileError, match="empty file"):
        read_history_csv(path)
    with pytest.raises(InputFileError, match="cannot open"):
        read_history_csv(tmp_path / "absent.csv")


def test_forecast_csv_has_the_contract_columns(tmp_path):
    path = tmp_path / "FORECAST.csv"
    p = np.array([0.0, 1.23456, 2.0])
    write_forecast_csv(path, START, 900, p, p + 1, p + 2)
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["interval_start", "p10_kw", "p50_kw", "p90_kw"]
    assert rows[1] == ["2019-06-03T00:00:00Z", "0.000", "1.000", "2.000"]
    assert rows[3][0] == "2019-06-03T00:30:00Z"
