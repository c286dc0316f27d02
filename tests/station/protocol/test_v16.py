"""OCPP 1.6J translation (sans-I/O): a real core's 2.0.1 messages become schema-valid 1.6 CALLs, the
CSMS's integer transaction ids are remembered, profiles and composite schedules cross both ways."""

from datetime import timedelta

from ocpp.messages import Call, CallResult, _validate_payload

from bms_link.models import StopReason
from station.protocol.charging_profile import ProfileStore
from station.protocol.station import Outbound
from station.protocol.v16 import (
    MemoryTransactions,
    V16Call,
    composite_to_v16,
    profile_to_v201,
    response_from_v16,
    to_v16,
)
from tests.station.protocol.test_station import T0, make_core, sample, start


def valid(call: V16Call | None) -> V16Call:
    """Validate against the OCPP 1.6 JSON schema shipped with the `ocpp` package."""
    assert call is not None
    _validate_payload(Call(unique_id="1", action=call.action, payload=call.payload), "1.6")
    return call


def valid_response(action: str, payload: dict) -> dict:
    _validate_payload(CallResult(unique_id="1", action=action, payload=payload), "1.6")
    return payload


def test_boot_heartbeat_status_and_authorize_translate_to_valid_1_6() -> None:
    core, txs = make_core(), MemoryTransactions()
    boot = valid(to_v16(core.boot_request("PowerUp"), txs))
    assert boot.payload == {
        "chargePointVendor": "v", "chargePointModel": "m",
        "chargePointSerialNumber": "s", "firmwareVersion": "f",
    }  # fmt: skip
    assert valid(to_v16(core.heartbeat_request(), txs)).payload == {}
    (status,) = core.status_notifications(T0)
    assert valid(to_v16(status, txs)).payload["status"] == "Available"
    (occupied,) = core.plug_in(1, T0)
    assert valid(to_v16(occupied, txs)).payload["status"] == "Preparing"
    assert valid(to_v16(occupied, txs, charging=True)).payload["status"] == "Charging"
    auth = Outbound("Authorize", {"idToken": {"idToken": "A" * 30, "type": "ISO14443"}})
    assert valid(to_v16(auth, txs)).payload == {"idTag": "A" * 20}  # CiString20
    answer = valid_response(
        "Authorize", {"idTagInfo": {"status": "Accepted", "expiryDate": "2026-02-01T00:00:00Z"}}
    )
    assert response_from_v16(valid(to_v16(auth, txs)), answer, txs) == {
        "idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": "2026-02-01T00:00:00Z"}
    }
    assert to_v16(Outbound("NotifyReport", {"requestId": 1}), txs) is None  # 2.0.1 only


def test_a_transaction_becomes_start_meter_values_stop_with_the_csms_id() -> None:
    core, txs = make_core(), MemoryTransactions()
    core.plug_in(1, T0)
    (started, *_) = start(core)
    start_call = valid(to_v16(started, txs))
    assert start_call.action == "StartTransaction"
    assert start_call.payload["connectorId"] == 1 and start_call.payload["idTag"] == "TAG1"
    # Nothing can be reported against the transaction until the CSMS gave its id:
    core.record_sample(1, sample(energy_wh=1200.0))
    (update,) = core.meter_update(1, T0 + timedelta(seconds=60), 60.0)
    assert to_v16(update, txs) is None
    assert response_from_v16(
        start_call, {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}}, txs
    ) == {"idTokenInfo": {"status": "Accepted"}}
    core.record_sample(1, sample(energy_wh=2500.0))
    (update,) = core.meter_update(1, T0 + timedelta(seconds=120), 120.0)
    meter = valid(to_v16(update, txs))
    assert meter.action == "MeterValues" and meter.payload["transactionId"] == 4711
    values = {v["measurand"]: v for v in meter.payload["meterValue"][0]["sampledValue"]}
    assert values["Energy.Active.Import.Register"]["value"] == "2500" and values["SoC"]["unit"] == "Percent"
    ended = core.end_transaction(1, T0 + timedelta(seconds=180), StopReason.REMOTE, sample(energy_wh=3000.0))
    stop = valid(to_v16(next(m for m in ended if m.action == "TransactionEvent"), txs))
    assert stop.action == "StopTransaction"
    assert stop.payload["transactionId"] == 4711 and stop.payload["meterStop"] == 3000
    assert stop.payload["reason"] == "Remote" and stop.payload["idTag"] == "TAG1"
    assert txs.internal_id(4711) == started.payload["transactionInfo"]["transactionId"]


def test_stop_reasons_without_a_1_6_match_become_other() -> None:
    core, txs = make_core(), MemoryTransactions()
    core.plug_in(1, T0)
    (started, *_) = start(core)
    response_from_v16(
        valid(to_v16(started, txs)), {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}, txs
    )
    ended = core.end_transaction(1, T0, StopReason.SOC_TARGET_REACHED, sample(energy_wh=10.0))
    assert (
        valid(to_v16(next(m for m in ended if m.action == "TransactionEvent"), txs)).payload["reason"]
        == "Other"
    )


def test_1_6_profiles_enter_the_store_and_the_composite_goes_back_in_1_6_shape() -> None:
    txs = MemoryTransactions()
    cs_profile = {
        "chargingProfileId": 3,
        "stackLevel": 1,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2026-01-01T12:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 63.0}],
        },
    }
    _validate_payload(
        Call("1", "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": cs_profile}), "1.6"
    )
    store = ProfileStore()
    assert store.install(0, profile_to_v201(cs_profile, txs), None) == "Accepted"
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400.0) == 63.0
    core = make_core()
    assert core.on_set_charging_profile(0, profile_to_v201(cs_profile, txs))["status"] == "Accepted"
    composite = composite_to_v16(core.on_get_composite_schedule(0, 600, "A", T0), 0)
    valid_response("GetCompositeSchedule", composite)
    assert composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 63.0
