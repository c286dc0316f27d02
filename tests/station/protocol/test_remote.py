"""TriggerMessage, UnlockConnector and DataTransfer answered from the station's state (no sockets)."""

from __future__ import annotations

from test_station import T0, assert_schema_valid, make_core, sample, start  # same directory

from station.protocol.remote import data_transfer, get_charging_profiles, trigger_message, unlock_connector


def test_triggered_boot_is_rejected_once_accepted_and_heartbeat_status_are_sent() -> None:
    core = make_core()
    response, messages = trigger_message(core, "BootNotification", None, T0)
    assert response["status"] == "Accepted" and messages[0].action == "BootNotification"
    assert messages[0].payload["reason"] == "Triggered"
    core.on_boot_response("Accepted", 60)
    assert trigger_message(core, "BootNotification", None, T0) == ({"status": "Rejected"}, [])  # F06.FR.17
    response, messages = trigger_message(core, "Heartbeat", None, T0)
    assert response["status"] == "Accepted" and [m.action for m in messages] == ["Heartbeat"]
    response, messages = trigger_message(core, "StatusNotification", {"id": 1}, T0)
    assert [m.payload["evseId"] for m in messages] == [1]
    for message in messages:
        assert_schema_valid(message)


def test_meter_values_and_transaction_event_need_something_to_report() -> None:
    core = make_core()
    assert trigger_message(core, "MeterValues", None, T0)[0]["status"] == "Rejected"  # no sample yet
    assert trigger_message(core, "TransactionEvent", None, T0)[0]["status"] == "Rejected"  # no transaction
    core.plug_in(1, T0)
    start(core)
    core.record_sample(1, sample(energy_wh=1234.0))
    response, messages = trigger_message(core, "MeterValues", {"id": 1}, T0)
    assert response["status"] == "Accepted"
    assert messages[0].payload["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    response, messages = trigger_message(core, "TransactionEvent", None, T0)
    assert messages[0].payload["triggerReason"] == "Trigger" and messages[0].payload["eventType"] == "Updated"
    for message in messages:
        assert_schema_valid(message)


def test_unknown_requests_evses_and_vendors() -> None:
    core = make_core()
    assert trigger_message(core, "LogStatusNotification", None, T0)[0] == {"status": "NotImplemented"}
    assert trigger_message(core, "Heartbeat", {"id": 9}, T0)[0]["status"] == "Rejected"
    assert unlock_connector(core, 9, 1) == {"status": "UnknownConnector"}
    assert unlock_connector(core, 1, 1) == {"status": "Unlocked"}
    core.plug_in(1, T0)
    start(core)
    assert unlock_connector(core, 1, 1) == {"status": "OngoingAuthorizedTransaction"}  # F05.FR.02
    assert data_transfer("com.example")["status"] == "UnknownVendorId"


def _profile(pid: int, purpose: str, stack_level: int = 0) -> dict[str, object]:
    return {
        "id": pid,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": pid,
                "startSchedule": "2026-01-01T00:00:00.000Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 100.0}],
            }
        ],
    }


def test_get_charging_profiles_reports_matches_per_evse_chained_by_tbc() -> None:
    core = make_core()
    assert get_charging_profiles(core, 1, None, {})[0] == {"status": "NoProfiles"}
    assert core.on_set_charging_profile(0, _profile(1, "ChargingStationMaxProfile"))["status"] == "Accepted"
    assert core.on_set_charging_profile(1, _profile(2, "TxDefaultProfile", 3))["status"] == "Accepted"
    response, reports = get_charging_profiles(core, 42, None, {})
    assert response == {"status": "Accepted"}
    assert [(r.payload["evseId"], r.payload["tbc"]) for r in reports] == [(0, True), (1, False)]
    for report in reports:
        assert report.payload["requestId"] == 42
        assert_schema_valid(report)
    only_tx_default = get_charging_profiles(core, 43, None, {"chargingProfilePurpose": "TxDefaultProfile"})[1]
    assert [p["id"] for r in only_tx_default for p in r.payload["chargingProfile"]] == [2]
    assert get_charging_profiles(core, 44, 1, {"stackLevel": 0})[0]["status"] == "NoProfiles"
    assert get_charging_profiles(core, 45, None, {"chargingProfileId": [1]})[1][0].payload["evseId"] == 0
    assert (
        get_charging_profiles(core, 46, None, {"chargingLimitSource": ["EMS"]})[0]["status"] == "NoProfiles"
    )


def test_get_charging_profiles_reports_the_grids_constraints_with_source_so() -> None:
    core = make_core()
    assert core.on_set_charging_profile(0, _profile(1, "ChargingStationMaxProfile"))["status"] == "Accepted"
    grid = _profile(1_000_000, "ChargingStationMaxProfile")
    grid["chargingProfilePurpose"] = "ChargingStationExternalConstraints"
    core.profiles.install_external("event-1/0", grid)
    _, reports = get_charging_profiles(core, 50, 0, {})
    assert [(r.payload["chargingLimitSource"], r.payload["tbc"]) for r in reports] == [
        ("CSO", True),
        ("SO", False),
    ]
    for report in reports:
        assert_schema_valid(report)
    only_grid = get_charging_profiles(core, 51, None, {"chargingLimitSource": ["SO"]})[1]
    assert [p["id"] for r in only_grid for p in r.payload["chargingProfile"]] == [1_000_000]
