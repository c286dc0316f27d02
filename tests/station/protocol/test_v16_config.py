"""OCPP 1.6 configuration keys on the 2.0.1 device model: values, read-only keys, unknown keys, changes."""

from ocpp.messages import CallResult, _validate_payload

from chargeagent.config import load_settings
from station.protocol.device_model import DeviceModel
from station.protocol.device_variables import HEARTBEAT_INTERVAL, build_device_model
from station.protocol.v16_config import change_configuration, get_configuration
from tests.station.protocol.test_station import make_core


def _model() -> tuple[DeviceModel, object]:
    core = make_core()
    return build_device_model(load_settings(), core), core


def _valid(action: str, payload: dict) -> dict:
    _validate_payload(CallResult(unique_id="1", action=action, payload=payload), "1.6")
    return payload


def test_get_configuration_reports_known_keys_and_names_unknown_ones() -> None:
    model, core = _model()
    everything = _valid("GetConfiguration", get_configuration(model, core, None))
    keys = {entry["key"]: entry for entry in everything["configurationKey"]}
    assert keys["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "1"}
    assert keys["ChargeProfileMaxStackLevel"]["readonly"] is True
    asked = ["MeterValueSampleInterval", "NoSuchKey"]
    some = _valid("GetConfiguration", get_configuration(model, core, asked))
    assert [e["key"] for e in some["configurationKey"]] == ["MeterValueSampleInterval"]
    assert some["unknownKey"] == ["NoSuchKey"]


def test_change_configuration_goes_through_the_device_model() -> None:
    model, _ = _model()
    status, changes = change_configuration(model, "HeartbeatInterval", "45")
    assert status == "Accepted" and len(changes) == 1
    assert model.value(*HEARTBEAT_INTERVAL) == "45"
    assert change_configuration(model, "HeartbeatInterval", "soon") == ("Rejected", [])  # not an integer
    assert change_configuration(model, "NumberOfConnectors", "2") == ("Rejected", [])  # read-only
    assert change_configuration(model, "ChargeProfileMaxStackLevel", "9") == ("Rejected", [])  # read-only
    assert change_configuration(model, "NoSuchKey", "1") == ("NotSupported", [])
    for status in ("Accepted", "Rejected", "NotSupported"):
        _valid("ChangeConfiguration", {"status": status})
