"""Charging profiles: stack levels, purposes, validity windows, W→A conversion."""

from datetime import UTC, datetime, timedelta

import pytest

from chargeagent.errors import ProtocolError
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


def test_composite_schedule_merges_stacked_profiles_over_time_and_caps_at_the_station_rating():
    from station.protocol.composite import composite_schedule

    store = ProfileStore()
    p = profile(1, "TxDefaultProfile", 0, 300)  # above the 250 A rating: the rating wins
    p["chargingSchedule"][0]["chargingSchedulePeriod"] += [{"startPeriod": 600, "limit": 100}]
    store.install(1, p, None)
    store.install(1, profile(2, "TxDefaultProfile", 1, 50, start=T0 + timedelta(seconds=900),
                             validTo="2026-01-01T12:20:00Z"), None)  # fmt: skip
    schedule = composite_schedule(store, 1, T0, 1800, tx_id=None, tx_start=None, voltage_v=400,
                                  default_limit_a=250)  # fmt: skip
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 250},
        {"startPeriod": 600, "limit": 100},
        {"startPeriod": 900, "limit": 50},  # stack level 1 wins while valid
        {"startPeriod": 1200, "limit": 100},  # ... and stops at validTo
    ]
    in_watts = composite_schedule(store, 1, T0, 1800, tx_id=None, tx_start=None, voltage_v=400,
                                  default_limit_a=250, unit="W")  # fmt: skip
    assert in_watts["chargingSchedulePeriod"][1] == {"startPeriod": 600, "limit": 40_000}


def test_composite_schedule_is_schema_valid_and_unknown_evse_is_rejected():
    from ocpp.messages import CallResult, _validate_payload

    from station.protocol.station import StationCore, StationInfo

    core = StationCore("CS1", StationInfo("v", "m", "s", "f"))
    response = core.on_get_composite_schedule(0, 3600, None, T0)
    assert response["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 250.0}]
    _validate_payload(CallResult("1", response, "GetCompositeSchedule"), "2.0.1")
    assert core.on_get_composite_schedule(7, 3600, None, T0)["status"] == "Rejected"


def night_cap(limit=32.0, stack=1, **extra):
    """A daily 22:00-06:00 cap from 1 January on (the spec's 'Recurring, Daily' example shape)."""
    p = profile(9, "TxDefaultProfile", stack, limit, start=datetime(2026, 1, 1, 22, 0, tzinfo=UTC), **extra)
    p["chargingProfileKind"] = "Recurring"
    p["recurrencyKind"] = "Daily"
    p["chargingSchedule"][0]["duration"] = 8 * 3600
    return p


def at(day, hour, minute=0):
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_daily_recurring_profile_crosses_midnight_and_repeats_every_day():
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 0, 200), None)
    assert store.install(1, night_cap(), None) == "Accepted"

    def limit(moment):
        return store.limit_a(1, moment, tx_id=None, tx_start=None, voltage_v=400)

    assert limit(at(1, 21)) == 200  # before the first run
    assert limit(at(1, 23)) == 32
    assert limit(at(2, 2)) == 32  # after midnight: still the run that started at 22:00
    assert limit(at(2, 6)) == 200  # duration over
    assert limit(at(5, 23, 30)) == 32  # four days later
    assert limit(at(9, 5, 59)) == 32


def test_weekly_recurring_profile_applies_on_the_same_weekday_only():
    store = ProfileStore()
    p = profile(3, "TxDefaultProfile", 0, 16, start=at(5, 8))  # Monday 5 January, 08:00
    p.update(chargingProfileKind="Recurring", recurrencyKind="Weekly")
    p["chargingSchedule"][0]["duration"] = 10 * 3600
    store.install(1, p, None)
    assert store.limit_a(1, at(12, 9), tx_id=None, tx_start=None, voltage_v=400) == 16  # next Monday
    assert store.limit_a(1, at(13, 9), tx_id=None, tx_start=None, voltage_v=400) is None  # Tuesday


def test_recurring_profile_needs_a_recurrency_kind_and_a_start():
    store = ProfileStore()
    no_kind = night_cap()
    del no_kind["recurrencyKind"]
    assert store.install(1, no_kind, None) == "Rejected"
    no_start = night_cap()
    del no_start["chargingSchedule"][0]["startSchedule"]
    assert store.install(1, no_start, None) == "Rejected"


def test_composite_schedule_of_a_recurring_cap_over_a_day_and_under_a_tx_profile():
    from station.protocol.composite import composite_schedule

    store = ProfileStore()
    store.install(1, night_cap(), None)
    day = composite_schedule(store, 1, at(2, 20), 24 * 3600, tx_id=None, tx_start=None, voltage_v=400,
                             default_limit_a=250)  # fmt: skip
    assert day["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 250},  # 20:00: no profile applies, the station rating does
        {"startPeriod": 2 * 3600, "limit": 32},  # 22:00
        {"startPeriod": 10 * 3600, "limit": 250},  # 06:00 next day
    ]
    # A TxProfile replaces the TxDefaultProfile for its transaction, night cap or not.
    store.install(1, profile(4, "TxProfile", 0, 100, start=at(2, 20), transactionId="tx"), "tx")
    tx = composite_schedule(store, 1, at(2, 21), 4 * 3600, tx_id="tx", tx_start=at(2, 20), voltage_v=400,
                            default_limit_a=250)  # fmt: skip
    assert tx["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 100}]


def test_charge_plans_cap_the_composite_and_sum_for_the_station():
    from station.protocol.composite import composite_schedule

    store = ProfileStore()
    store.install(0, profile(1, "ChargingStationMaxProfile", 0, 150), None)
    plan_1 = (T0, [(0.0, 100.0), (600.0, 40.0), (1200.0, 0.0)])
    plan_2 = (T0 + timedelta(seconds=300), [(0.0, 80.0), (900.0, 0.0)])
    evse = composite_schedule(store, 1, T0, 1800, tx_id=None, tx_start=None, voltage_v=400,
                              default_limit_a=250, planned=[plan_1])  # fmt: skip
    assert evse["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 100},
        {"startPeriod": 600, "limit": 40},
        {"startPeriod": 1200, "limit": 0},
    ]
    site = composite_schedule(store, 0, T0, 1800, tx_id=None, tx_start=None, voltage_v=400,
                              default_limit_a=250, planned=[plan_1, plan_2])  # fmt: skip
    assert site["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 100},
        {"startPeriod": 300, "limit": 150},  # 100 + 80 planned, capped by the station max profile
        {"startPeriod": 600, "limit": 120},
        {"startPeriod": 1200, "limit": 0},
    ]


def external(limit_w, start=T0, duration_s=3600):
    p = profile(900, "ChargingStationExternalConstraints", 0, limit_w, unit="W", start=start)
    p["chargingSchedule"][0]["duration"] = duration_s
    return p


def test_external_constraints_cap_every_evse_until_they_end_and_survive_a_csms_clear():
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 0, 100), None)
    store.install_external("ev-1/0", external(20_000.0))  # 20 kW at 400 V = 50 A
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400) == 50
    assert store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400, external=False) == 100
    assert store.external_limit_a(T0, 400) == 50
    assert store.external_limit_a(T0 + timedelta(hours=1), 400) is None  # duration over: no grid limit
    store.clear()  # the CSMS clears all of its profiles
    assert store.external_limit_a(T0, 400) == 50
    assert [p.source for p in store.installed()] == ["SO"]
    assert store.clear_external("ev-1/0") and store.external_limit_a(T0, 400) is None


def test_a_csms_cannot_set_an_external_constraint_and_bad_ones_are_refused():
    store = ProfileStore()
    assert store.install(0, external(20_000.0), None) == "Rejected"  # K01.FR.22
    bad = external(float("nan"))
    with pytest.raises(ProtocolError):
        store.install_external("x", bad)
    with pytest.raises(ProtocolError):
        store.install_external("x", profile(1, "TxDefaultProfile", 0, 10))
    assert store.installed() == []
