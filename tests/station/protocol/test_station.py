"""StationCore: boot, remote start/stop, TransactionEvent sequence, meter values — plain calls, no sockets."""

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.messages import Call, _validate_payload

from bms_link.models import StopReason
from station.protocol.station import BootState, StationCore, StationInfo
from station.protocol.transaction import ChargingState, MeterSample

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOKEN = {"idToken": "TAG1", "type": "ISO14443"}


def make_core(**kw):
    ids = iter(f"tx-{i}" for i in range(100))
    return StationCore(
        "CS1",
        StationInfo("v", "m", "s", "f"),
        new_transaction_id=lambda: next(ids),
        meter_interval_s=60,
        **kw,
    )


def assert_schema_valid(message):
    """Validate against the OCPP 2.0.1 JSON schema shipped with the `ocpp` package."""
    _validate_payload(Call(unique_id="1", action=message.action, payload=message.payload), "2.0.1")


def sample(energy_wh=0.0, soc=0.5):
    return MeterSample(energy_wh, 50_000.0, 125.0, 400.0, soc, 30.0)


def start(core, now=T0):
    response, pending = core.on_request_start(id_token=TOKEN, remote_start_id=7, evse_id=1)
    assert response == {"status": "Accepted"}
    return core.start_transaction(pending, charging_profile=None, now=now, now_s=0.0)


def test_boot_pending_retries_after_interval_then_accepted_sets_heartbeat():
    core = make_core()
    assert core.on_boot_response("Pending", 7) == 7
    assert core.boot_state is BootState.PENDING and not core.accepted
    assert core.on_boot_response("Accepted", 45) == 45
    assert core.accepted and core.heartbeat_interval_s == 45
    assert_schema_valid(core.boot_request())


def test_rejected_boot_with_zero_interval_falls_back_to_configured_interval():
    core = make_core(heartbeat_interval_s=120)
    assert core.on_boot_response("Rejected", 0) == 120


def test_transaction_events_have_increasing_seqno_and_schema_valid_payloads():
    core = make_core()
    messages = core.plug_in(1, T0)
    messages += start(core)
    core.record_sample(1, sample(100.0))
    messages += core.charging_state_changed(1, ChargingState.CHARGING, T0, sample(100.0))
    core.record_sample(1, sample(900.0, 0.6))
    messages += core.meter_update(1, T0 + timedelta(seconds=61), 61.0)
    messages += core.end_transaction(
        1, T0 + timedelta(seconds=90), StopReason.SOC_TARGET_REACHED, sample(1000.0)
    )
    tx_events = [m.payload for m in messages if m.action == "TransactionEvent"]
    assert [e["eventType"] for e in tx_events] == ["Started", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in tx_events] == [0, 1, 2, 3]
    assert tx_events[0]["triggerReason"] == "RemoteStart"
    assert tx_events[0]["idToken"] == TOKEN
    assert tx_events[0]["transactionInfo"]["remoteStartId"] == 7
    assert tx_events[2]["triggerReason"] == "MeterValuePeriodic"
    assert tx_events[3]["transactionInfo"]["stoppedReason"] == "SOCLimitReached"
    for m in messages:
        assert_schema_valid(m)
    measurands = {v["measurand"] for v in tx_events[2]["meterValue"][0]["sampledValue"]}
    assert measurands == {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Current.Import",
        "Voltage",
        "SoC",
    }
    assert tx_events[2]["meterValue"][0]["customData"] == {
        "vendorId": "org.chargeagent",
        "cellTempMaxC": 30.0,
    }


def test_meter_update_waits_for_the_configured_interval():
    core = make_core()
    start(core)
    core.record_sample(1, sample())
    assert core.meter_update(1, T0, 59.0) == []
    assert len(core.meter_update(1, T0, 60.0)) == 1
    assert core.meter_update(1, T0, 61.0) == []


def test_second_remote_start_on_a_busy_evse_is_rejected():
    core = make_core()
    start(core)
    response, pending = core.on_request_start(id_token=TOKEN, remote_start_id=8, evse_id=1)
    assert response == {"status": "Rejected"} and pending is None


def test_remote_stop_of_unknown_transaction_is_rejected_and_known_one_ends_with_remote():
    core = make_core()
    start(core)
    assert core.on_request_stop("nope") == {"status": "Rejected"}
    assert core.on_request_stop("tx-0") == {"status": "Accepted"}
    ended = core.end_transaction(1, T0, StopReason.STOPPED_BY_EV, None)[0].payload
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"


def test_unplug_during_transaction_ends_it_with_ev_disconnected_then_reports_available():
    core = make_core()
    core.plug_in(1, T0)
    start(core)
    messages = core.unplug(1, T0, sample())
    assert [m.action for m in messages] == ["TransactionEvent", "StatusNotification"]
    assert messages[0].payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert messages[1].payload["connectorStatus"] == "Available"


@pytest.mark.parametrize("reason", list(StopReason))
def test_every_stop_reason_maps_to_a_schema_valid_ended_event(reason):
    core = make_core()
    start(core)
    (ended,) = core.end_transaction(1, T0, reason, sample())
    assert_schema_valid(ended)


def test_timestamps_have_millisecond_precision_and_z_suffix():
    core = make_core()
    (status,) = core.status_notifications(datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))
    assert status.payload["timestamp"] == "2026-01-01T12:00:00.123Z"
