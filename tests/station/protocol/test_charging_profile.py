"""Charging profiles: stack levels, purposes, validity windows, W→A conversion."""

from datetime import UTC, datetime, timedelta

from station.protocol.charging_profile import ProfileStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def profile(pid, purpose, stack, limit, unit="A", kind="Absolute", start=T0, **extra):
    schedule = {
        "id": 1,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    if kind == "Absolute":
        schedule["startSchedule"] = start.isoformat().replace("+00:00", "Z")
    return {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
        **extra,
    }


def test_highest_stack_level_wins_within_a_purpose():
    store = ProfileStore()
    assert store.install(1, profile(1, "TxDefaultProfile", 0, 100), None) == "Accepted"
    assert store.install(1, profile(2, "TxDefaultProfile", 3, 40), None) == "Accepted"
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400) == 40


def test_tx_profile_overrides_default_and_station_max_caps_both():
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 0, 100), None)
    store.install(1, profile(2, "TxProfile", 0, 150, transactionId="tx"), "tx")
    assert store.limit_a(1, T0, tx_id="tx", tx_start=T0, voltage_v=400) == 150
    store.install(0, profile(3, "ChargingStationMaxProfile", 0, 120), None)
    assert store.limit_a(1, T0, tx_id="tx", tx_start=T0, voltage_v=400) == 120


def test_station_max_profile_is_rejected_on_an_evse_and_tx_profile_without_transaction():
    store = ProfileStore()
    assert store.install(1, profile(1, "ChargingStationMaxProfile", 0, 10), None) == "Rejected"
    assert store.install(1, profile(2, "TxProfile", 0, 10), None) == "Rejected"


def test_watt_limits_are_converted_with_the_output_voltage():
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 0, 40_000, unit="W"), None)
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400) == 100


def test_relative_profile_counts_from_transaction_start_and_ends_after_duration():
    store = ProfileStore()
    p = profile(1, "TxDefaultProfile", 0, 50, kind="Relative")
    p["chargingSchedule"][0]["duration"] = 600
    p["chargingSchedule"][0]["chargingSchedulePeriod"].append({"startPeriod": 300, "limit": 20})
    store.install(1, p, None)
    at = lambda s: store.limit_a(1, T0 + timedelta(seconds=s), tx_id="t", tx_start=T0, voltage_v=400)  # noqa: E731
    assert (at(10), at(301), at(601)) == (50, 20, None)


def test_profile_outside_valid_window_does_not_apply():
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 0, 50, validTo="2026-01-01T11:00:00Z"), None)
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400) is None


def test_tx_profiles_are_cleared_when_the_transaction_ends():
    store = ProfileStore()
    store.install(1, profile(2, "TxProfile", 0, 150, transactionId="tx"), "tx")
    store.clear_tx_profiles("tx")
    assert store.limit_a(1, T0, tx_id="tx", tx_start=T0, voltage_v=400) is None
