"""The demo's fault option: a station's simulated BMS misbehaves on schedule and the agent reacts safely."""

from __future__ import annotations

import pytest

from bms_link.models import StopReason
from chargeagent.errors import ConfigError
from chargeagent.vtime import run_virtual
from simulators.demo import DEFAULT_STATIONS, health_summary, parse_faults, run_demo
from station.charging import SessionResult

AGED = tuple(s for s in DEFAULT_STATIONS if s.station_id == "CS-AGED-COLD")


@pytest.mark.parametrize(
    ("fault", "reason", "trigger", "stopped"),
    [
        ("60:insulation", StopReason.INSULATION_FAULT, "AbnormalCondition", "GroundFault"),
        ("60:drop:BCS", StopReason.BMS_TIMEOUT, "EVCommunicationLost", "Timeout"),
    ],
)
def test_a_scheduled_fault_ends_the_session_with_its_reason_on_the_wire(
    fault: str, reason: StopReason, trigger: str, stopped: str
) -> None:
    """(The 0 A command on each fault, and how fast it comes, is asserted in tests/bms_link/*_faults.py.)"""
    faults = parse_faults([f"CS-AGED-COLD={fault}"], AGED)
    result = run_virtual(run_demo(stations=AGED, timing_scale=4.0, faults=faults))
    (trace,) = result.traces
    assert trace.result is not None and trace.result.reason is reason
    assert 0.0 < trace.result.energy_wh < 5000.0  # it charged, then stopped long before 80 %
    ended = result.transactions["CS-AGED-COLD"][-1]
    assert ended["eventType"] == "Ended"
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (trigger, stopped)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["CS-NOPE=10:silent"], "no demo station CS-NOPE"),
        (["CS-AGED-COLD"], "expected STATION=AT_S:FAULT"),
        (["CS-AGED-COLD=10:melt"], "unknown fault"),
        (["CS-AGED-COLD=soon:silent"], "expected AT_S:FAULT"),
        (["CS-AGED-COLD=10:broker_disconnect"], "do not exist on CAN"),
    ],
)
def test_bad_fault_options_are_config_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_faults(items)


def test_health_summary_shows_the_estimate_the_forecast_band_and_alerts() -> None:
    health = {
        "capacity_soh": {"p10": 0.8, "p50": 0.82, "p90": 0.84},
        "cycles_to_80pct": {"p10": 40, "p50": 300, "p90": 900},
        "alerts": [{"type": "knee_onset"}, {"type": "abnormal_heating"}],
    }
    result = SessionResult("tx", None, StopReason.SOC_TARGET_REACHED, 1000.0, 60.0, health=health)
    assert health_summary(result) == {
        "est. SoH (p10-p90)": "0.82 (0.80-0.84)",
        "EFC to 80 % (p10-p90)": "300 (40-900)",
        "health alerts": "knee_onset, abnormal_heating",
    }
    quiet = SessionResult(
        "tx", None, StopReason.SOC_TARGET_REACHED, 1000.0, 60.0, health={**health, "alerts": []}
    )
    assert health_summary(quiet)["health alerts"] == "none"
    assert set(health_summary(None).values()) == {"-"}
