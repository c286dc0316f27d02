"""CHARGES.csv parsing: strict, one error naming file, row and column; write/read round trip."""

from __future__ import annotations

import numpy as np
import pytest

from policy.health_csv import HealthDataError, read_charges, write_charges
from simulators.battery_history import HistoryConfig, simulate_history

HEADER = "session_id,timestamp,current_a,voltage_v,soc,cell_temp_c,ambient_c"
GOOD_ROWS = [
    "A,2024-05-01T08:00:00Z,0.0,350.1,0.300,25.0,20.0",
    "A,2024-05-01T08:00:30Z,150.2,362.4,0.301,25.1,20.0",
    "B,2024-05-02T08:00:00+00:00,0.0,351.0,0.410,22.0,18.0",
]


def _write(tmp_path, lines):
    path = tmp_path / "CHARGES.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parses_sessions_in_time_order_with_optional_columns(tmp_path):
    rows = [f"{r},0.91,{i}.5" for i, r in enumerate(GOOD_ROWS)]
    # Session B's rows come first in the file; sessions are still ordered by start time.
    sessions = read_charges(_write(tmp_path, [HEADER + ",bms_soh,efc", rows[2], rows[0], rows[1]]))
    assert [s.session_id for s in sessions] == ["A", "B"]
    a = sessions[0]
    assert a.time_s[1] - a.time_s[0] == 30.0
    assert a.current_a.tolist() == [0.0, 150.2]
    assert a.bms_soh == pytest.approx(0.91)
    assert a.efc == 0.5  # the session's first row


@pytest.mark.parametrize(
    ("lines", "row", "column"),
    [
        ([HEADER.replace(",soc", ""), "A,2024-05-01T08:00:00Z,0,350,25,20"], 1, "soc"),
        ([HEADER, GOOD_ROWS[0], "A,2024-13-01T08:00:30Z,1,350,0.3,25,20"], 3, "timestamp"),
        ([HEADER, "A,2024-05-01T08:00:00,0,350,0.3,25,20"], 2, "timestamp"),  # no UTC offset
        ([HEADER, GOOD_ROWS[0], GOOD_ROWS[1], "A,2024-05-01T08:01:00Z,abc,350,0.3,25,20"], 4, "current_a"),
        ([HEADER, "A,2024-05-01T08:00:00Z,0,350,30,25,20"], 2, "soc"),  # percent, not a fraction
        ([HEADER, "A,2024-05-01T08:00:00Z,0,nan,0.3,25,20"], 2, "voltage_v"),
        ([HEADER, "A,2024-05-01T08:00:00Z,0,350,0.3"], 2, "cell_temp_c"),  # short row
        ([HEADER, GOOD_ROWS[1], GOOD_ROWS[0]], 3, "timestamp"),  # not after the previous row
    ],
)
def test_malformed_input_names_file_row_and_column(tmp_path, lines, row, column):
    path = _write(tmp_path, lines)
    with pytest.raises(HealthDataError) as info:
        read_charges(path)
    err = info.value
    assert (err.row, err.column) == (row, column)
    message = str(err)
    assert str(path) in message and f"row {row}" in message and repr(column) in message
    assert "\n" not in message


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(HealthDataError, match="empty file"):
        read_charges(_write(tmp_path, [""]))
    with pytest.raises(HealthDataError, match="no data rows"):
        read_charges(_write(tmp_path, [HEADER]))
    with pytest.raises(HealthDataError, match="cannot read"):
        read_charges(tmp_path / "missing.csv")


def test_write_then_read_round_trips_a_simulated_history(tmp_path):
    history = simulate_history(HistoryConfig(sessions=3, seed=4, bms_soh_error=0.01, write_bms_soh=True))
    path = tmp_path / "CHARGES.csv"
    write_charges(path, history.sessions)
    back = read_charges(path)
    assert [s.session_id for s in back] == [s.session_id for s in history.sessions]
    for a, b in zip(history.sessions, back, strict=True):
        np.testing.assert_allclose(a.time_s, b.time_s)
        np.testing.assert_allclose(a.voltage_v, b.voltage_v, atol=0.005)
        np.testing.assert_allclose(a.current_a, b.current_a, atol=0.005)
        np.testing.assert_allclose(a.soc, b.soc, atol=5e-4)
        assert b.bms_soh == pytest.approx(a.bms_soh, abs=5e-4)
        assert b.efc == pytest.approx(a.efc, abs=0.005)
