"""The MQTT wire protocol without a broker: payload validation, the core's transitions and watchdog."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_link.models import ChargeCommand, StopReason
from bms_link.mqtt_protocol import (
    CommandMessage,
    InfoMessage,
    LinkPhase,
    MqttChargerCore,
    Publish,
    Rejected,
    SessionEnded,
    SessionStarted,
    StopMessage,
    TelemetryBody,
    TelemetryMessage,
    encode,
    json_schemas,
    parse_bms_message,
    parse_charger_message,
)
from chargeagent.config import config_dir
from chargeagent.errors import InvalidTransition
from simulators.pack import PackSpec, SimulatedBms

BMS = SimulatedBms(PackSpec("nmc", 150.0, 0.95, 96, 0.5, 0.8, 25.0, 25.0, 200.0))
INFO = encode(InfoMessage(info=BMS.info()))
TELEMETRY = encode(TelemetryMessage(telemetry=TelemetryBody.of(BMS.telemetry(0.0))))


def with_field(payload: bytes, key: str, value: object) -> bytes:
    data = json.loads(payload)
    data["telemetry"][key] = value
    return json.dumps(data).encode()


def charging_core(now_s: float = 0.0) -> MqttChargerCore:
    core = MqttChargerCore(telemetry_timeout_s=2.0, info_timeout_s=10.0)
    core.start(now_s)
    core.on_payload(INFO, now_s)
    return core


def published(outputs: list[object]) -> list[CommandMessage | StopMessage | Rejected]:
    return [parse_charger_message(o.payload) for o in outputs if isinstance(o, Publish)]


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_committed_json_schemas_equal_what_the_models_generate(name):
    committed = json.loads((config_dir() / "schemas" / name).read_text())
    assert committed == json_schemas()[name], (
        f"config/schemas/{name} drifted: regenerate with bms_link.mqtt_protocol.write_json_schemas()"
    )


def test_the_published_schema_accepts_real_payloads_and_rejects_a_120_c_cell():
    schema = json.loads((config_dir() / "schemas" / "bms_telemetry.schema.json").read_text())
    for payload in (INFO, TELEMETRY, encode(StopMessage(reason=StopReason.SOC_TARGET_REACHED))):
        jsonschema.validate(json.loads(payload), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(with_field(TELEMETRY, "cell_temp_max_c", 120.0)), schema)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xfe", b"not json{", b"[]", b'{"schema_version": 1, "kind": "hello"}',
     b'{"schema_version": 2, "kind": "stop", "reason": "remote"}',
     b'{"schema_version": 1, "kind": "stop", "reason": "bored"}'],
)  # fmt: skip
def test_garbage_is_rejected_but_not_implausible(payload):
    result = parse_bms_message(payload)
    assert isinstance(result, Rejected)
    assert not result.implausible


@pytest.mark.parametrize(
    ("key", "value"),
    [("cell_temp_max_c", 120.0), ("soc", 1.7), ("pack_voltage_v", math.nan), ("cell_voltage_max_v", -1.0)],
)
def test_out_of_range_or_nan_values_are_implausible(key, value):
    result = parse_bms_message(with_field(TELEMETRY, key, value))
    assert isinstance(result, Rejected)
    assert result.implausible
    assert key in result.reason


@given(
    current_a=st.floats(0.0, 400.0, allow_nan=False),
    voltage_v=st.floats(0.0, 1000.0, allow_nan=False),
    permitted=st.booleans(),
)
def test_commands_round_trip_through_json(current_a, voltage_v, permitted):
    cmd = ChargeCommand(output_voltage_v=voltage_v, output_current_a=current_a, charging_permitted=permitted)
    assert parse_charger_message(encode(CommandMessage(command=cmd))) == CommandMessage(command=cmd)


def test_info_starts_the_session_and_the_first_command_answers_the_handshake():
    core = MqttChargerCore(telemetry_timeout_s=2.0, info_timeout_s=10.0)
    core.start(0.0)
    assert core.on_payload(TELEMETRY, 0.1) == []  # telemetry from a previous session: wait for info
    outputs = core.on_payload(INFO, 0.2)
    assert isinstance(outputs[0], SessionStarted)
    (answer,) = published(outputs)
    assert isinstance(answer, CommandMessage)
    assert answer.command.output_current_a == 0.0
    assert core.phase is LinkPhase.CHARGING
    assert core.next_deadline_s() == pytest.approx(2.2)


def test_telemetry_is_stamped_with_the_receivers_clock():
    core = charging_core()
    (telemetry,) = core.on_payload(TELEMETRY, 5.5)
    assert telemetry.monotonic_s == 5.5
    assert telemetry.soc == pytest.approx(BMS.soc)


def test_no_info_before_the_deadline_ends_with_bms_timeout():
    core = MqttChargerCore(telemetry_timeout_s=2.0, info_timeout_s=10.0)
    core.start(0.0)
    assert core.tick(9.9) == []
    ended = core.tick(10.0)
    assert SessionEnded(StopReason.BMS_TIMEOUT, "no info message within 10.0 s") in ended
    assert core.pack is None


def test_stale_telemetry_commands_0_a_and_stops_the_bms_with_bms_timeout():
    core = charging_core()
    core.command(ChargeCommand(output_voltage_v=400.0, output_current_a=100.0))
    core.on_payload(TELEMETRY, 1.0)
    assert core.tick(2.9) == []  # fed at 1.0: deadline 3.0
    outputs = core.tick(3.0)
    zero, stop = published(outputs)
    assert isinstance(zero, CommandMessage)
    assert (zero.command.output_current_a, zero.command.charging_permitted) == (0.0, False)
    assert stop == StopMessage(reason=StopReason.BMS_TIMEOUT)
    assert core.end_reason is StopReason.BMS_TIMEOUT
    assert core.output.output_current_a == 0.0


def test_implausible_value_ends_the_session_garbage_does_not():
    core = charging_core()
    assert isinstance(core.on_payload(b"garbage", 0.5)[0], Rejected)
    assert core.phase is LinkPhase.CHARGING
    outputs = core.on_payload(with_field(TELEMETRY, "cell_temp_max_c", 120.0), 0.6)
    assert StopMessage(reason=StopReason.IMPLAUSIBLE_DATA) in published(outputs)
    assert core.end_reason is StopReason.IMPLAUSIBLE_DATA


def test_bms_stop_ends_the_session_with_its_reason_and_0_a_and_no_stop_echo():
    core = charging_core()
    outputs = core.on_payload(encode(StopMessage(reason=StopReason.SOC_TARGET_REACHED)), 1.0)
    (zero,) = published(outputs)
    assert isinstance(zero, CommandMessage)
    assert zero.command.output_current_a == 0.0
    assert core.end_reason is StopReason.SOC_TARGET_REACHED
    assert core.on_payload(TELEMETRY, 1.1) == []  # after the end nothing is yielded


def test_charger_stop_is_idempotent_and_commands_are_ignored_outside_a_session():
    core = charging_core()
    assert len(published(core.stop(StopReason.REMOTE))) == 2
    assert core.stop(StopReason.REMOTE) == []
    assert core.command(ChargeCommand(output_voltage_v=400.0, output_current_a=10.0)) == []


def test_starting_twice_is_an_invalid_transition():
    core = charging_core()
    with pytest.raises(InvalidTransition):
        core.start(1.0)
