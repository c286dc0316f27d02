"""Tests for the embedded CSMS over real loopback websockets, with plain `ocpp` library clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result

from chargeagent.errors import ConfigError, ProtocolError
from simulators.csms import (
    CsmsCallError,
    EmbeddedCsms,
    FrameError,
    parse_frame,
    run_csms,
    station_id_from_path,
)

OCPP_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CHARGING_STATION = {"model": "SimCharger", "vendor_name": "chargeagent"}
PROFILE = {
    "id": 7,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [
        {
            "id": 1,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 80.0, "numberPhases": 3}],
        }
    ],
}


class Station(ChargePoint):
    """A plain library charge point that answers a few CSMS-initiated calls and remembers them."""

    def __init__(self, station_id: str, connection: Any) -> None:
        super().__init__(station_id, connection)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    @on("RequestStartTransaction")
    def on_request_start(self, **kwargs: Any) -> call_result.RequestStartTransaction:
        self.requests.append(("RequestStartTransaction", kwargs))
        return call_result.RequestStartTransaction(status="Accepted", transaction_id="tx-9")

    @on("RequestStopTransaction")
    def on_request_stop(self, **kwargs: Any) -> call_result.RequestStopTransaction:
        self.requests.append(("RequestStopTransaction", kwargs))
        return call_result.RequestStopTransaction(status="Rejected")

    @on("SetChargingProfile")
    def on_set_profile(self, **kwargs: Any) -> call_result.SetChargingProfile:
        self.requests.append(("SetChargingProfile", kwargs))
        return call_result.SetChargingProfile(status="Accepted")

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = [
            {
                "attribute_status": "Accepted",
                "attribute_value": "300",
                "component": d["component"],
                "variable": d["variable"],
            }
            for d in get_variable_data
        ]
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self.requests.append(("SetVariables", {"set_variable_data": set_variable_data}))
        results = [
            {"attribute_status": "Rejected", "component": d["component"], "variable": d["variable"]}
            for d in set_variable_data
        ]
        return call_result.SetVariables(set_variable_result=results)

    @on("GetCompositeSchedule")
    def on_composite(self, evse_id: int, duration: int, **_: Any) -> Any:
        schedule = {
            "evse_id": evse_id,
            "duration": duration,
            "schedule_start": "2026-01-01T00:00:00.000Z",
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 32.0}],
        }
        return call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)

    @on("ClearChargingProfile")
    def on_clear_profile(self, **kwargs: Any) -> call_result.ClearChargingProfile:
        self.requests.append(("ClearChargingProfile", kwargs))
        return call_result.ClearChargingProfile(status="Unknown")

    @on("TriggerMessage")
    def on_trigger(self, **kwargs: Any) -> call_result.TriggerMessage:
        self.requests.append(("TriggerMessage", kwargs))
        return call_result.TriggerMessage(status="Accepted")


@pytest.fixture
async def csms() -> AsyncIterator[EmbeddedCsms]:
    async with EmbeddedCsms(boot_statuses=["Pending", "Accepted"], boot_retry_interval_s=7) as server:
        yield server
    assert server.internal_errors == []


@contextlib.asynccontextmanager
async def station(server: EmbeddedCsms, station_id: str = "CP1") -> AsyncIterator[Station]:
    async with websockets.connect(f"{server.url}/{station_id}", subprotocols=["ocpp2.0.1"]) as ws:
        cp = Station(station_id, ws)
        task = asyncio.create_task(cp.start(), name=f"client-{station_id}")
        try:
            await server.wait_connected(station_id)
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(websockets.ConnectionClosed):
                await task


@contextlib.asynccontextmanager
async def raw_client(server: EmbeddedCsms, station_id: str = "RAW") -> AsyncIterator[Any]:
    async with websockets.connect(f"{server.url}/{station_id}", subprotocols=["ocpp2.0.1"]) as ws:
        yield ws


async def exchange(ws: Any, frame: str) -> list[Any]:
    await ws.send(frame)
    async with asyncio.timeout(5):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def boot(cp: Station) -> Any:
    return await cp.call(call.BootNotification(charging_station=CHARGING_STATION, reason="PowerUp"))


def tx_event(seq_no: int, event_type: str, tx_id: str, **extra: Any) -> call.TransactionEvent:
    return call.TransactionEvent(
        event_type=event_type,
        timestamp="2026-01-01T00:00:00.000Z",
        trigger_reason="Authorized" if event_type == "Started" else "MeterValuePeriodic",
        seq_no=seq_no,
        transaction_info={"transaction_id": tx_id},
        **extra,
    )


async def test_boot_is_answered_per_script_pending_then_accepted_then_accepted(
    csms: EmbeddedCsms,
) -> None:
    csms.heartbeat_interval_s = 123
    async with station(csms) as cp:
        answers = [await boot(cp) for _ in range(3)]
    assert [(a.status, a.interval) for a in answers] == [
        ("Pending", 7),
        ("Accepted", 123),
        ("Accepted", 123),
    ]
    assert all(OCPP_TS.match(a.current_time) for a in answers)
    assert [r.payload["chargingStation"]["vendorName"] for r in csms.received("CP1")] == ["chargeagent"] * 3


def test_unknown_boot_status_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="boot_statuses"):
        EmbeddedCsms(boot_statuses=["Maybe"])


async def test_heartbeat_is_answered_with_ms_timestamp_and_recorded(csms: EmbeddedCsms) -> None:
    async with station(csms) as cp:
        answer = await cp.call(call.Heartbeat())
        item = await csms.wait_for("CP1", "Heartbeat")
        assert csms.connected_stations == {"CP1"}
    assert OCPP_TS.match(answer.current_time)
    assert item.payload == {}
    assert item.at.tzinfo is not None


async def test_transaction_events_are_recorded_in_order_grouped_by_transaction(
    csms: EmbeddedCsms,
) -> None:
    csms.accept_id_token = lambda token: token != "STOLEN"
    async with station(csms) as cp:
        started = await cp.call(
            tx_event(0, "Started", "tx-1", id_token={"id_token": "TAG1", "type": "ISO14443"})
        )
        await cp.call(tx_event(0, "Started", "tx-2", id_token={"id_token": "STOLEN", "type": "Local"}))
        updated = await cp.call(tx_event(1, "Updated", "tx-1"))
        await cp.call(tx_event(2, "Ended", "tx-1"))
    assert started.id_token_info == {"status": "Accepted"}
    assert updated.id_token_info is None  # no idToken in the request, none in the answer
    groups = csms.transactions("CP1")
    assert list(groups) == ["tx-1", "tx-2"]
    assert [(p["seqNo"], p["eventType"]) for p in groups["tx-1"]] == [
        (0, "Started"),
        (1, "Updated"),
        (2, "Ended"),
    ]
    assert groups["tx-2"][0]["idToken"] == {"idToken": "STOLEN", "type": "Local"}  # camelCase kept


async def test_authorize_answers_per_accept_id_token(csms: EmbeddedCsms) -> None:
    csms.accept_id_token = lambda token: token == "GOOD"
    async with station(csms) as cp:
        good = await cp.call(call.Authorize(id_token={"id_token": "GOOD", "type": "ISO14443"}))
        bad = await cp.call(call.Authorize(id_token={"id_token": "BAD", "type": "ISO14443"}))
    assert good.id_token_info["status"] == "Accepted"
    assert bad.id_token_info["status"] == "Invalid"


async def test_other_station_messages_get_schema_valid_answers(csms: EmbeddedCsms) -> None:
    ts = "2026-01-01T00:00:00.000Z"
    event = {
        "event_id": 1,
        "timestamp": ts,
        "trigger": "Delta",
        "actual_value": "Faulted",
        "component": {"name": "Connector"},
        "variable": {"name": "AvailabilityState"},
        "event_notification_type": "HardWiredNotification",
    }
    requests = [
        call.StatusNotification(timestamp=ts, connector_status="Occupied", evse_id=1, connector_id=1),
        call.MeterValues(evse_id=1, meter_value=[{"timestamp": ts, "sampled_value": [{"value": 1.5}]}]),
        call.NotifyReport(request_id=1, generated_at=ts, seq_no=0),
        call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=ts),
        call.NotifyEvent(generated_at=ts, seq_no=0, event_data=[event]),
        call.FirmwareStatusNotification(status="Idle"),
        call.LogStatusNotification(status="Idle"),
    ]
    async with station(csms) as cp:
        for request in requests:
            await cp.call(request, suppress=False)  # raises on CallError or invalid answer
        transfer = await cp.call(call.DataTransfer(vendor_id="acme"), suppress=False)
    assert transfer.status == "UnknownVendorId"
    assert [r.action for r in csms.received("CP1")] == [
        "StatusNotification",
        "MeterValues",
        "NotifyReport",
        "SecurityEventNotification",
        "NotifyEvent",
        "FirmwareStatusNotification",
        "LogStatusNotification",
        "DataTransfer",
    ]


async def test_request_start_transaction_reaches_station_and_returns_its_status(
    csms: EmbeddedCsms,
) -> None:
    async with station(csms) as cp:
        status = await csms.request_start_transaction(
            "CP1", id_token="REMOTE1", evse_id=2, charging_profile=PROFILE
        )
        second = await csms.request_start_transaction("CP1", id_token="REMOTE2", evse_id=None)
    assert (status, second) == ("Accepted", "Accepted")
    (_, first_req), (_, second_req) = cp.requests
    assert first_req["id_token"] == {"id_token": "REMOTE1", "type": "Central"}
    assert first_req["evse_id"] == 2
    assert first_req["charging_profile"]["charging_schedule"][0]["charging_schedule_period"] == [
        {"start_period": 0, "limit": 80.0, "number_phases": 3}
    ]
    assert second_req["remote_start_id"] != first_req["remote_start_id"]
    assert "evse_id" not in second_req


async def test_smart_charging_and_device_model_calls_return_parsed_answers(
    csms: EmbeddedCsms,
) -> None:
    async with station(csms) as cp:
        assert await csms.set_charging_profile("CP1", evse_id=1, profile=PROFILE) == "Accepted"
        assert await csms.request_stop_transaction("CP1", "tx-9") == "Rejected"
        got = await csms.get_variables("CP1", [("OCPPCommCtrlr", "HeartbeatInterval")])
        put = await csms.set_variables("CP1", [("TxCtrlr", "EVConnectionTimeOut", "60")])
        composite = await csms.get_composite_schedule("CP1", evse_id=0, duration_s=3600)
        assert await csms.trigger_message("CP1", "StatusNotification", evse_id=1, connector_id=1) == (
            "Accepted"
        )
    assert got == [
        {
            "attributeStatus": "Accepted",
            "attributeValue": "300",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
        }
    ]
    assert put[0]["attributeStatus"] == "Rejected"
    assert composite["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 32.0}]
    actions = [name for name, _ in cp.requests]
    assert actions == ["SetChargingProfile", "RequestStopTransaction", "SetVariables", "TriggerMessage"]
    assert cp.requests[-1][1]["evse"] == {"id": 1, "connector_id": 1}


async def test_call_error_from_station_raises_csms_call_error(csms: EmbeddedCsms) -> None:
    async with station(csms) as cp:
        with pytest.raises(CsmsCallError) as caught:
            await csms.reset("CP1")  # the client has no Reset handler
        # the connection is still usable after a CALLERROR
        assert await csms.clear_charging_profile("CP1", evse_id=1, purpose="TxProfile") == "Unknown"
    assert caught.value.error_code == "NotImplemented"
    assert cp.requests[-1][1]["charging_profile_criteria"] == {
        "evse_id": 1,
        "charging_profile_purpose": "TxProfile",
    }


async def test_schema_invalid_request_is_refused_before_sending(csms: EmbeddedCsms) -> None:
    async with station(csms) as cp:
        with pytest.raises(ProtocolError, match="not schema-valid"):
            await csms.set_charging_profile("CP1", evse_id=1, profile={"id": "seven"})
        assert await csms.set_charging_profile("CP1", evse_id=1, profile=PROFILE) == "Accepted"
    assert len(cp.requests) == 1


async def test_call_to_unconnected_station_raises_protocol_error(csms: EmbeddedCsms) -> None:
    with pytest.raises(ProtocolError, match="not connected"):
        await csms.request_stop_transaction("NOPE", "tx")


async def test_unanswered_call_times_out_with_protocol_error(csms: EmbeddedCsms) -> None:
    csms.response_timeout_s = 0.05
    async with raw_client(csms, "MUTE") as ws:
        await csms.wait_connected("MUTE")
        with pytest.raises(ProtocolError, match="no answer to Reset"):
            await csms.reset("MUTE")
        assert json.loads(await ws.recv())[2] == "Reset"  # it was sent, just never answered


async def test_station_disconnecting_mid_call_raises_protocol_error(csms: EmbeddedCsms) -> None:
    async with raw_client(csms, "GONE") as ws:
        await csms.wait_connected("GONE")
        pending = asyncio.create_task(csms.reset("GONE"))
        async with asyncio.timeout(5):
            assert json.loads(await ws.recv())[2] == "Reset"
        await ws.close()
        with pytest.raises(ProtocolError, match="disconnected before answering Reset"):
            await pending


@pytest.mark.parametrize(
    ("frame", "message_id", "code"),
    [
        ("this is not json", "-1", "RpcFrameworkError"),
        ('{"not": "an array"}', "-1", "RpcFrameworkError"),
        ('[2, 17, "Heartbeat", {}]', "-1", "RpcFrameworkError"),
        ('[2, "m1", "Heartbeat"]', "m1", "RpcFrameworkError"),
        ('[2, "m2", "Heartbeat", []]', "m2", "FormatViolation"),
        ('[9, "m3", {}]', "m3", "MessageTypeNotSupported"),
        ('[2, "m4", "BootNotification", {"reason": "PowerUp"}]', "m4", "ProtocolError"),
        ('[2, "m5", "Heartbeat", {"extra": 1}]', "m5", "FormatViolation"),
        ('[2, "m6", "NoSuchAction", {}]', "m6", "NotSupported"),
    ],
)
async def test_malformed_frame_gets_call_error_and_server_keeps_serving(
    csms: EmbeddedCsms, frame: str, message_id: str, code: str
) -> None:
    async with raw_client(csms) as ws, station(csms, "CP2") as other:
        reply = await exchange(ws, frame)
        assert reply[:3] == [4, message_id, code]
        assert isinstance(reply[3], str)
        assert isinstance(reply[4], dict)
        assert (await exchange(ws, '[2,"ok","Heartbeat",{}]'))[:2] == [3, "ok"]
        assert (await other.call(call.Heartbeat())).current_time  # other station unaffected
    assert [r.unique_id for r in csms.received("RAW")] == ["ok"]


async def test_stray_responses_are_ignored_without_reply(csms: EmbeddedCsms) -> None:
    async with raw_client(csms) as ws:
        await ws.send('[3,"nobody-asked",{}]')
        await ws.send('[4,"nobody-asked","GenericError","x",{}]')
        await ws.send('[3,"broken"]')
        reply = await exchange(ws, '[2,"ok","Heartbeat",{}]')
    assert reply[:2] == [3, "ok"]  # the first thing we got back answers the heartbeat


@pytest.mark.parametrize("offered", [None, ["ocpp1.6"]])
async def test_connection_without_ocpp201_subprotocol_is_closed_at_once(
    csms: EmbeddedCsms, offered: list[str] | None
) -> None:
    async with websockets.connect(f"{csms.url}/CP1", subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol is None  # §3.3: handshake completes without a subprotocol ...
        with pytest.raises(websockets.ConnectionClosedError):
            async with asyncio.timeout(5):
                await ws.recv()  # ... and the CSMS closes right away
    assert ws.close_code == 1002
    assert csms.connected_stations == frozenset()


@pytest.mark.parametrize("identity", ["", "a:b", "x" * 49])
async def test_unusable_station_identity_gets_http_404(csms: EmbeddedCsms, identity: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(f"{csms.url}/{identity}", subprotocols=["ocpp2.0.1"]):
            pass
    assert caught.value.response.status_code == 404


async def test_reconnect_with_same_identity_replaces_old_connection(csms: EmbeddedCsms) -> None:
    async with raw_client(csms, "CP7") as old:
        await exchange(old, '[2,"a","Heartbeat",{}]')
        async with raw_client(csms, "CP7") as new:
            async with asyncio.timeout(5):
                await old.wait_closed()
            assert (await exchange(new, '[2,"b","Heartbeat",{}]'))[:2] == [3, "b"]
            assert csms.connected_stations == {"CP7"}


async def test_stop_closes_connections_and_frees_the_port() -> None:
    server = EmbeddedCsms()
    await server.start()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    async with raw_client(server, "CP1") as ws:
        await exchange(ws, '[2,"a","Heartbeat",{}]')
        await server.stop()
        async with asyncio.timeout(5):
            await ws.wait_closed()
        assert ws.close_code == 1001
    with socket.socket() as probe:  # binding fails with EADDRINUSE while anything listens
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    assert server.connected_stations == frozenset()


async def test_wait_for_sees_past_and_future_messages_and_reports_timeouts(
    csms: EmbeddedCsms,
) -> None:
    async with station(csms) as cp:
        await cp.call(call.Heartbeat())
        past = await csms.wait_for("CP1", "Heartbeat")
        mark = len(csms.received())
        later = asyncio.create_task(csms.wait_for("CP1", "Heartbeat", since=mark))
        ended = asyncio.create_task(
            csms.wait_for("CP1", "TransactionEvent", lambda p: p["eventType"] == "Ended")
        )
        await cp.call(tx_event(0, "Started", "tx-1"))
        await cp.call(call.Heartbeat())
        await cp.call(tx_event(1, "Ended", "tx-1"))
        assert (await later).unique_id != past.unique_id
        assert (await ended).payload["seqNo"] == 1
        with pytest.raises(TimeoutError, match="no matching Authorize from CP1"):
            await csms.wait_for("CP1", "Authorize", timeout_s=0.01)


def test_station_id_is_last_url_path_segment() -> None:
    assert station_id_from_path("/ocpp/CP1") == "CP1"
    assert station_id_from_path("/ocpp/CP%201?token=x") == "CP 1"
    assert station_id_from_path("/ocpp/") is None
    assert station_id_from_path("/ocpp/RDAM%7C123") == "RDAM|123"  # OCPP-J §3.1.1 example 2
    assert station_id_from_path("/ocpp/" + "x" * 48) == "x" * 48
    assert station_id_from_path("/") is None


def test_parse_frame_returns_library_messages_for_valid_frames() -> None:
    parsed_call = parse_frame(b'[2,"1","Heartbeat",{}]')
    assert isinstance(parsed_call, Call)
    assert (parsed_call.unique_id, parsed_call.action) == ("1", "Heartbeat")
    assert isinstance(parse_frame('[3,"2",{"a":1}]'), CallResult)
    error = parse_frame('[4,"3","GenericError","boom",{}]')
    assert isinstance(error, CallError)
    assert error.error_code == "GenericError"
    assert parse_frame(b"\xff\xfe") == FrameError("-1", "RpcFrameworkError", "Frame is not valid UTF-8 JSON")
    assert parse_frame('[true,"4","Heartbeat",{}]').code == "MessageTypeNotSupported"  # type: ignore[union-attr]
    assert parse_frame('[2,"' + "x" * 37 + '","Heartbeat",{}]').message_id == "-1"  # type: ignore[union-attr]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(st.one_of(st.text(), st.binary(), json_values.map(json.dumps)))
def test_parse_frame_never_raises_and_error_ids_fit_ocpp(raw: str | bytes) -> None:
    parsed = parse_frame(raw)
    assert isinstance(parsed, Call | CallResult | CallError | FrameError)
    if isinstance(parsed, FrameError):
        assert 0 < len(parsed.message_id) <= 36
        json.loads(parsed.to_call_error().to_json())  # always serialisable


async def test_run_csms_echoes_one_line_per_received_message() -> None:
    lines: list[str] = []
    ready = asyncio.Event()

    def echo(line: str) -> None:
        lines.append(line)
        ready.set()

    task = asyncio.create_task(run_csms("127.0.0.1", 0, echo=echo))
    try:
        async with asyncio.timeout(5):
            await ready.wait()
        url = lines[0].split()[3].removesuffix("/<station")
        async with websockets.connect(f"{url}/CP5", subprotocols=["ocpp2.0.1"]) as ws:
            assert (await exchange(ws, '[2,"h","Heartbeat",{}]'))[:2] == [3, "h"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(lines) == 2
    assert re.match(r"^\S+Z CP5 Heartbeat \{\}$", lines[1])
