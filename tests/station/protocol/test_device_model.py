"""DeviceModel and this station's variable table: Get/Set statuses, validation, reports — plain calls."""

from datetime import UTC, datetime

import pytest
from ocpp.messages import Call, CallResult, _validate_payload

from chargeagent.config import load_settings
from chargeagent.errors import ConfigError
from station.protocol.device_model import DeviceModel, notify_report_pages
from station.protocol.device_types import (
    ComponentRef,
    DataType,
    GetStatus,
    Mutability,
    ReportBase,
    SetStatus,
    Variable,
    VariableRef,
)
from station.protocol.device_variables import (
    BASIC_AUTH_PASSWORD,
    HEARTBEAT_INTERVAL,
    MESSAGE_ATTEMPTS,
    build_device_model,
)
from station.protocol.station import StationCore, StationInfo

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "s3cret-password-0123456789"  # 26 characters: within 16-40
OCPP_COMM = ComponentRef("OCPPCommCtrlr")


def station(items_per_message=None, **ocpp):
    settings = load_settings(overrides={"station": {"id": "CS-DM"}, "ocpp": ocpp})
    core = StationCore("CS-DM", StationInfo("acme", "dc-1", "SN1", "1.0"), heartbeat_interval_s=120)
    return build_device_model(settings, core, items_per_message), core


def request(component, variable, **extra):
    """A GetVariableData/SetVariableData item in camelCase, as the adapter hands it over."""
    return {"component": component.to_ocpp(), "variable": variable.to_ocpp(), **extra}


def assert_valid(action, payload, response=False):
    """Check a payload against the OCPP 2.0.1 JSON schema shipped with the `ocpp` package."""
    message = CallResult("1", payload, action) if response else Call("1", action, payload)
    _validate_payload(message, "2.0.1")


# --- GetVariables (B06) ---------------------------------------------------------------------------
def test_get_returns_the_configured_value_and_names_are_case_insensitive():
    model, _ = station()
    assert model.get(*HEARTBEAT_INTERVAL).status is GetStatus.ACCEPTED
    assert model.get(*HEARTBEAT_INTERVAL).value == "120"
    result = model.get(ComponentRef("ocppcommctrlr"), VariableRef("messageattempts", "transactionevent"))
    assert (result.status, result.value) == (GetStatus.ACCEPTED, "3")


@pytest.mark.parametrize(
    ("component", "variable", "attribute", "status"),
    [
        (ComponentRef("NoCtrlr"), VariableRef("HeartbeatInterval"), "Actual", GetStatus.UNKNOWN_COMPONENT),
        (OCPP_COMM, VariableRef("NoSuchVariable"), "Actual", GetStatus.UNKNOWN_VARIABLE),
        (OCPP_COMM, VariableRef("MessageAttempts"), "Actual", GetStatus.UNKNOWN_VARIABLE),  # instance needed
        (ComponentRef("EVSE", evse_id=9), VariableRef("Power"), "Actual", GetStatus.UNKNOWN_COMPONENT),
        (OCPP_COMM, VariableRef("HeartbeatInterval"), "MaxSet", GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE),
        (*BASIC_AUTH_PASSWORD, "Actual", GetStatus.REJECTED),
    ],
)
def test_get_statuses(component, variable, attribute, status):
    model, _ = station()
    result = model.get(component, variable, attribute)
    assert result.status is status
    assert result.value is None


def test_live_variables_follow_the_station_state():
    model, core = station()
    connector = ComponentRef("Connector", evse_id=1, connector_id=1)
    assert model.get(connector, VariableRef("AvailabilityState")).value == "Available"
    core.plug_in(1, T0)
    assert model.get(connector, VariableRef("AvailabilityState")).value == "Occupied"
    power = model.get(ComponentRef("EVSE", evse_id=1), VariableRef("Power"))
    assert power.value == "0.0"
    vendor = model.get(ComponentRef("ChargingStation"), VariableRef("VendorName"))
    assert vendor.value == "acme"


# --- SetVariables (B05) ---------------------------------------------------------------------------
def test_an_accepted_set_changes_the_value_and_returns_the_change_to_act_on():
    model, _ = station()
    result = model.set(*HEARTBEAT_INTERVAL, " 45 ")
    assert result.status is SetStatus.ACCEPTED
    assert result.change is not None and result.change.value == "45" and result.change.persistent
    assert model.get(*HEARTBEAT_INTERVAL).value == "45"


@pytest.mark.parametrize(
    ("ref", "value", "reason"),
    [
        (HEARTBEAT_INTERVAL, "abc", "InvalidValue"),
        (HEARTBEAT_INTERVAL, "1.5", "InvalidValue"),
        (HEARTBEAT_INTERVAL, "0", "ValueTooLow"),
        (HEARTBEAT_INTERVAL, "86401", "ValueTooHigh"),
        (MESSAGE_ATTEMPTS, "101", "ValueTooHigh"),
        ((ComponentRef("AuthCtrlr"), VariableRef("AuthorizeRemoteStart")), "yes", "InvalidValue"),
        (BASIC_AUTH_PASSWORD, "short", "ValueTooShort"),
        (BASIC_AUTH_PASSWORD, "x" * 41, "ValueTooLong"),
        ((ComponentRef("SecurityCtrlr"), VariableRef("SecurityProfile")), "2", "ReadOnly"),
    ],
)
def test_invalid_sets_are_rejected_and_change_nothing(ref, value, reason):
    model, _ = station()
    before = model.value(*ref)
    result = model.set(*ref, value)
    assert (result.status, result.reason, result.change) == (SetStatus.REJECTED, reason, None)
    assert model.value(*ref) == before


def test_set_unknowns_and_unsupported_attribute_types():
    model, _ = station()
    assert model.set(ComponentRef("Nope"), VariableRef("X"), "1").status is SetStatus.UNKNOWN_COMPONENT
    assert model.set(OCPP_COMM, VariableRef("X"), "1").status is SetStatus.UNKNOWN_VARIABLE
    assert model.set(*HEARTBEAT_INTERVAL, "30", "Target").status is SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    assert model.get(*HEARTBEAT_INTERVAL).value == "120"


def test_booleans_are_stored_in_their_canonical_spelling():
    model, _ = station()
    ref = (ComponentRef("AuthCtrlr"), VariableRef("AuthorizeRemoteStart"))
    assert model.set(*ref, "TRUE").status is SetStatus.ACCEPTED
    assert model.get(*ref).value == "true"


def test_option_and_member_lists_accept_only_values_from_the_list():
    model = DeviceModel()
    comp = ComponentRef("Lab")
    choose = Variable(comp, VariableRef("Mode"), DataType.OPTION_LIST, values_list=("A", "B"), max_limit=10)
    members = Variable(comp, VariableRef("Set"), DataType.MEMBER_LIST, values_list=("A", "B", "C"))
    model.add(choose, "A")
    model.add(members, "A,B")
    assert model.set(comp, VariableRef("Mode"), "B").status is SetStatus.ACCEPTED
    assert model.set(comp, VariableRef("Mode"), "C").reason == "InvalidValue"
    assert model.set(comp, VariableRef("Mode"), "A,B").reason == "InvalidValue"  # one option only
    assert model.set(comp, VariableRef("Set"), "C, A").status is SetStatus.ACCEPTED
    assert model.value(comp, VariableRef("Set")) == "C,A"
    assert model.set(comp, VariableRef("Set"), "A,A").reason == "InvalidValue"
    assert model.set(comp, VariableRef("Set"), "A,D").reason == "InvalidValue"
    with pytest.raises(ConfigError):
        model.add(Variable(comp, VariableRef("Bad"), DataType.OPTION_LIST, values_list=("A",)), "Z")


def test_a_reboot_required_variable_answers_reboot_required_and_is_stored():
    model, _ = station()
    result = model.set(*BASIC_AUTH_PASSWORD, PASSWORD)
    assert result.status is SetStatus.REBOOT_REQUIRED
    assert result.change is not None and result.change.reboot_required and result.change.persistent
    assert model.value(*BASIC_AUTH_PASSWORD) == PASSWORD  # the station itself can read it


def test_every_read_only_variable_refuses_every_write():
    model, _ = station()
    read_only = [d for d in model.definitions() if d.mutability is Mutability.READ_ONLY]
    assert len(read_only) >= 10
    for definition in read_only:
        before = model.value(definition.component, definition.variable)
        result = model.set(definition.component, definition.variable, before)
        assert (result.status, result.reason) == (SetStatus.REJECTED, "ReadOnly"), definition
        assert model.value(definition.component, definition.variable) == before


def test_a_write_only_value_is_never_readable_reported_or_in_a_repr():
    model, _ = station()
    change = model.set(*BASIC_AUTH_PASSWORD, PASSWORD).change
    assert PASSWORD not in repr(change) and change.loggable_value == "<write-only>"
    result = model.get(*BASIC_AUTH_PASSWORD)
    assert result.status is GetStatus.REJECTED and result.value is None and PASSWORD not in repr(result)
    for base in ReportBase:
        assert PASSWORD not in repr(model.report(base))
    answered = model.get_variables([request(*BASIC_AUTH_PASSWORD)])
    assert answered[0]["attributeStatus"] == "Rejected" and "attributeValue" not in answered[0]


# --- ItemsPerMessage ------------------------------------------------------------------------------
def test_get_variables_beyond_items_per_message_are_rejected_b06_fr_05():
    model, _ = station(items_per_message={"GetVariables": 2})
    data = [request(*HEARTBEAT_INTERVAL)] * 3
    results = model.get_variables(data)
    assert [r["attributeStatus"] for r in results] == ["Accepted", "Accepted", "Rejected"]
    assert results[2]["attributeStatusInfo"] == {"reasonCode": "TooManyElements"}
    assert_valid("GetVariables", {"getVariableResult": results}, response=True)


def test_set_variables_beyond_items_per_message_apply_nothing():
    model, _ = station(items_per_message={"SetVariables": 2})
    data = [request(*HEARTBEAT_INTERVAL, attributeValue=str(v)) for v in (10, 20, 30)]
    results, changes = model.set_variables(data)
    assert [r["attributeStatus"] for r in results] == ["Rejected"] * 3
    assert changes == [] and model.value(*HEARTBEAT_INTERVAL) == "120"
    results, changes = model.set_variables(data[:2])
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 2
    assert [c.value for c in changes] == ["10", "20"]
    assert_valid("SetVariables", {"setVariableResult": results}, response=True)


def test_get_variables_echo_component_evse_and_attribute_type():
    model, _ = station()
    item = request(ComponentRef("EVSE", evse_id=1), VariableRef("Power"), attributeType="Actual")
    (result,) = model.get_variables([item])
    assert result["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert result["attributeType"] == "Actual" and result["attributeStatus"] == "Accepted"


# --- GetBaseReport (B07) --------------------------------------------------------------------------
def test_report_bases_select_configuration_full_and_summary():
    model, _ = station()
    full = model.report(ReportBase.FULL_INVENTORY)
    config = model.report(ReportBase.CONFIGURATION_INVENTORY)
    summary = model.report(ReportBase.SUMMARY_INVENTORY)
    assert len(full) == len(model.definitions())
    assert {d["variableAttribute"][0]["mutability"] for d in config} == {"ReadWrite", "WriteOnly"}
    assert len(config) == sum(d.mutability is not Mutability.READ_ONLY for d in model.definitions())
    assert {d["variable"]["name"] for d in summary} == {"AvailabilityState"}
    assert {d["component"]["name"] for d in summary} == {"ChargingStation", "EVSE", "Connector"}
    password = next(d for d in full if d["variable"]["name"] == "BasicAuthPassword")
    assert "value" not in password["variableAttribute"][0]
    heartbeat = next(d for d in full if d["variable"]["name"] == "HeartbeatInterval")
    assert heartbeat["variableCharacteristics"] == {
        "dataType": "integer",
        "supportsMonitoring": False,
        "unit": "s",
        "minLimit": 1,
        "maxLimit": 86_400,
    }


def test_base_report_pages_hold_at_most_items_per_message_with_seq_no_and_tbc():
    model, _ = station(items_per_message={"GetReport": 7})
    status, pages = model.base_report(42, "FullInventory", T0)
    total = len(model.definitions())
    assert status == "Accepted"
    assert len(pages) == -(-total // 7)
    assert [p["seqNo"] for p in pages] == list(range(len(pages)))
    assert [p["tbc"] for p in pages] == [True] * (len(pages) - 1) + [False]
    assert all(len(p["reportData"]) <= 7 for p in pages)
    assert sum(len(p["reportData"]) for p in pages) == total
    assert {p["requestId"] for p in pages} == {42}
    assert {p["generatedAt"] for p in pages} == {"2026-01-01T12:00:00.000Z"}
    for page in pages:
        assert_valid("NotifyReport", page)


def test_base_report_statuses_not_supported_and_empty_result_set():
    model, _ = station()
    assert model.base_report(1, "NoSuchInventory", T0) == ("NotSupported", [])
    empty = DeviceModel()
    empty.add(Variable(ComponentRef("Lab"), VariableRef("X"), DataType.INTEGER, Mutability.READ_ONLY), "1")
    assert empty.base_report(2, "ConfigurationInventory", T0) == ("EmptyResultSet", [])
    assert empty.base_report(3, "FullInventory", T0)[0] == "Accepted"


def test_notify_report_pages_of_an_exact_multiple_end_with_a_full_page():
    items = [{"n": i} for i in range(6)]
    pages = notify_report_pages(5, items, T0, 3)
    assert [len(p["reportData"]) for p in pages] == [3, 3]
    assert [p["tbc"] for p in pages] == [True, False]


# --- restore at start -----------------------------------------------------------------------------
def test_restore_overrides_defaults_and_skips_read_only_unknown_or_invalid_values():
    model, _ = station()
    stored = [
        (*HEARTBEAT_INTERVAL, "77"),
        (ComponentRef("SecurityCtrlr"), VariableRef("SecurityProfile"), "3"),
        (ComponentRef("Gone"), VariableRef("X"), "1"),
        (*MESSAGE_ATTEMPTS, "0"),
    ]
    applied, skipped = model.restore(stored)
    assert [c.name for c in applied] == ["OCPPCommCtrlr.HeartbeatInterval"]
    assert len(skipped) == 3
    assert model.value(*HEARTBEAT_INTERVAL) == "77"
    assert model.value(*MESSAGE_ATTEMPTS) == "3"
    assert model.value(ComponentRef("SecurityCtrlr"), VariableRef("SecurityProfile")) == "0"


def test_defining_a_variable_twice_is_a_config_error():
    model = DeviceModel()
    definition = Variable(ComponentRef("Lab"), VariableRef("X"), DataType.INTEGER)
    model.add(definition, "1")
    with pytest.raises(ConfigError):
        model.add(definition, "2")


def test_stations_alike_share_their_definition_table_and_an_add_copies_it_first():
    (first, _), (second, _) = station(), station()
    assert first._defs is second._defs  # one table for the process (the fleet's memory diet)
    first.add(Variable(ComponentRef("Lab"), VariableRef("Extra"), DataType.INTEGER), "1")
    assert first.value(ComponentRef("Lab"), VariableRef("Extra")) == "1"
    assert second.definition(ComponentRef("Lab"), VariableRef("Extra")) is None
    assert second.get(ComponentRef("Lab"), VariableRef("Extra")).status.value == "UnknownComponent"
    assert first._defs is not second._defs
    assert first.set(*HEARTBEAT_INTERVAL, "300").status.value == "Accepted"  # values stay per station
    assert second.value(*HEARTBEAT_INTERVAL) != "300"


def reported(pages) -> list[tuple[str, str, int | None]]:
    return [
        (d["component"]["name"], d["variable"]["name"], d["component"].get("evse", {}).get("id"))
        for page in pages
        for d in page["reportData"]
    ]


def test_get_report_selects_by_component_variable_evse_and_criteria_b08():
    model, _ = station()
    status, pages = model.custom_report(
        5,
        [],
        [
            {"component": {"name": "ocppcommctrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "SmartChargingCtrlr"}},  # no variable: all of the component's
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}},
        ],
        T0,
    )
    assert status == "Accepted"
    got = reported(pages)
    assert ("OCPPCommCtrlr", "HeartbeatInterval", None) in got
    assert {v for c, v, _ in got if c == "SmartChargingCtrlr"} == {
        "Enabled",
        "PeriodsPerSchedule",
        "ProfileStackLevel",
        "RateUnit",
    }
    assert ("EVSE", "AvailabilityState", 1) in got and len(got) == 6
    for page in pages:
        assert_valid("NotifyReport", page)
    # Enabled criterion: only components whose Enabled variable is "true" (AuthCacheCtrlr, SmartChargingCtrlr)
    status, pages = model.custom_report(6, ["Enabled"], [], T0)
    assert status == "Accepted"
    assert {c for c, _, _ in reported(pages)} == {"AuthCacheCtrlr", "SmartChargingCtrlr"}
    # filters combine: SmartChargingCtrlr is Enabled, OCPPCommCtrlr has no Enabled variable
    both = model.custom_report(7, ["Enabled"], [{"component": {"name": "OCPPCommCtrlr"}}], T0)
    assert both == ("EmptyResultSet", [])


def test_get_report_statuses_and_write_only_values_stay_hidden():
    model, _ = station(items_per_message={"GetReport": 2})
    many = [{"component": {"name": "OCPPCommCtrlr"}}] * 3
    assert model.custom_report(1, [], many, T0) == ("Rejected", [])  # more selectors than ItemsPerMessage
    assert model.custom_report(2, ["Problem"], [], T0) == ("EmptyResultSet", [])
    status, pages = model.custom_report(3, [], [{"component": {"name": "SecurityCtrlr"}}], T0)
    password = [d for p in pages for d in p["reportData"] if d["variable"]["name"] == "BasicAuthPassword"]
    assert status == "Accepted" and "value" not in password[0]["variableAttribute"][0]
