"""Fault descriptions and schedules for the simulated BMS peers (`simulators/faults.py`)."""

from __future__ import annotations

import math

import pytest

from chargeagent.errors import ConfigError
from simulators.faults import Fault, FaultKind, FaultSchedule


def test_faults_parse_from_text_and_print_back() -> None:
    assert Fault.parse("drop:BCS") == Fault(FaultKind.DROP, "BCS")
    assert Fault.parse(" Silent ") == Fault(FaultKind.SILENT)
    assert str(Fault(FaultKind.DROP, "BCL")) == "drop:BCL"
    assert [str(Fault.parse(k.value if k is not FaultKind.DROP else "drop:x")) for k in FaultKind] == [
        k.value if k is not FaultKind.DROP else "drop:x" for k in FaultKind
    ]


@pytest.mark.parametrize("text", ["melt", "drop", "silent:BCL", ""])
def test_bad_fault_text_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        Fault.parse(text)


def test_schedule_hands_out_due_faults_in_time_order_and_only_once() -> None:
    schedule = FaultSchedule.parse("5:drop:BCS, 1:silent, 5:restore")
    assert len(schedule) == 3 and schedule.next_at_s() == 1.0
    assert schedule.due(0.99) == []
    assert schedule.due(1.0) == [Fault(FaultKind.SILENT)]
    assert schedule.next_at_s() == 5.0
    # two at the same time keep the order they were given in
    assert schedule.due(100.0) == [Fault(FaultKind.DROP, "BCS"), Fault(FaultKind.RESTORE)]
    assert schedule.due(200.0) == [] and schedule.next_at_s() is None


@pytest.mark.parametrize("text", ["x:silent", "-1:silent", "nan:silent", "3"])
def test_bad_schedule_text_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        FaultSchedule.parse(text)


def test_schedule_refuses_a_nan_time_given_in_code() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        FaultSchedule([(math.nan, Fault(FaultKind.SILENT))])
