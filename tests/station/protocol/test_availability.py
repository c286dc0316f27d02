"""ChangeAvailability (G03/G04) and Reset (B11/B12) answered from the station's state (no sockets)."""

from __future__ import annotations

from test_station import T0, assert_schema_valid, make_core, start  # same directory

from bms_link.models import StopReason
from station.protocol.availability import apply_availability, on_change_availability, on_reset
from station.protocol.connector import ConnectorStatus


def statuses(messages) -> list[tuple[int, str]]:
    return [(m.payload["evseId"], m.payload["connectorStatus"]) for m in messages]


def test_an_idle_evse_goes_unavailable_at_once_and_back() -> None:
    core = make_core(evse_count=2)
    response, messages = on_change_availability(core, "Inoperative", 2, T0)
    assert response == {"status": "Accepted"}
    assert statuses(messages) == [(2, "Unavailable")]
    for message in messages:
        assert_schema_valid(message)
    # the same request again: Accepted, nothing changes, nothing to report
    assert on_change_availability(core, "Inoperative", 2, T0) == ({"status": "Accepted"}, [])
    # an unavailable EVSE cannot take a remote start; the other one can
    assert core.on_request_start(id_token={"idToken": "A", "type": "Central"}, remote_start_id=1, evse_id=2)[
        0
    ] == {"status": "Rejected"}
    response, messages = on_change_availability(core, "Operative", 2, T0)
    assert response == {"status": "Accepted"} and statuses(messages) == [(2, "Available")]


def test_a_charging_evse_is_scheduled_and_changes_when_its_transaction_ends() -> None:
    core = make_core(evse_count=2)
    core.plug_in(1, T0)
    start(core)
    response, messages = on_change_availability(core, "Inoperative", None, T0)  # the whole station (G04)
    assert response == {"status": "Scheduled"}
    assert statuses(messages) == [(2, "Unavailable")]  # the idle EVSE changes now
    assert core.evses[1].connector.status is ConnectorStatus.OCCUPIED  # charging goes on
    core.end_transaction(1, T0, StopReason.REMOTE, None)
    assert statuses(apply_availability(core, T0)) == [(1, "Unavailable")]
    # the cable is still in: back in service means Occupied, not Available
    response, messages = on_change_availability(core, "Operative", 0, T0)
    assert response == {"status": "Accepted"}
    assert statuses(messages) == [(1, "Occupied"), (2, "Available")]


def test_station_inoperative_wins_over_an_operative_evse_and_unknown_evse_is_rejected() -> None:
    core = make_core(evse_count=2)
    on_change_availability(core, "Inoperative", 0, T0)
    response, messages = on_change_availability(core, "Operative", 1, T0)
    assert response == {"status": "Accepted"} and messages == []  # the station is still Inoperative
    assert core.evses[1].connector.status is ConnectorStatus.UNAVAILABLE
    assert on_change_availability(core, "Operative", 9, T0)[0]["status"] == "Rejected"


def test_plugging_into_an_unavailable_connector_keeps_it_unavailable() -> None:
    core = make_core()
    on_change_availability(core, "Inoperative", 1, T0)
    messages = core.plug_in(1, T0)
    assert statuses(messages) == [(1, "Unavailable")]
    assert core.evses[1].connector.cable_plugged


def test_reset_answers_and_blocks_new_transactions_while_scheduled() -> None:
    core = make_core()
    assert on_reset(core, "OnIdle", None) == {"status": "Accepted"}
    assert on_reset(core, "Immediate", 1)["status"] == "Rejected"  # single-EVSE reset is not supported
    core.plug_in(1, T0)
    start(core)
    assert on_reset(core, "OnIdle", None) == {"status": "Scheduled"}
    assert on_reset(core, "Immediate", None) == {"status": "Accepted"}
    core.reset_scheduled = True
    core.end_transaction(1, T0, StopReason.IMMEDIATE_RESET, None)
    response, _ = core.on_request_start(
        id_token={"idToken": "A", "type": "Central"}, remote_start_id=2, evse_id=1
    )
    assert response == {"status": "Rejected"}
    core.rebooted()
    assert not core.reset_scheduled and not core.accepted


def test_immediate_reset_ends_the_transaction_with_reset_reasons() -> None:
    core = make_core()
    core.plug_in(1, T0)
    start(core)
    (ended,) = core.end_transaction(1, T0, StopReason.IMMEDIATE_RESET, None)
    assert ended.payload["triggerReason"] == "ResetCommand"
    assert ended.payload["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert_schema_valid(ended)
