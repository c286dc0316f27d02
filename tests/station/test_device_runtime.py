"""DeviceRuntime: stored values at start, a write per change, what each variable drives; OfflineThreshold."""

import random
from datetime import UTC, datetime

import structlog

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from station.connection import BackOff, ConnectOptions, backoff_s, basic_auth_header
from station.device_runtime import DeviceRuntime
from station.outbox import Outbox
from station.protocol.device_types import ComponentRef, VariableRef
from station.protocol.device_variables import (
    AUTHORIZE_REMOTE_START,
    BASIC_AUTH_PASSWORD,
    HEARTBEAT_INTERVAL,
    MESSAGE_ATTEMPT_INTERVAL,
    MESSAGE_ATTEMPTS,
    OFFLINE_THRESHOLD,
    RETRY_RANDOM_RANGE,
    RETRY_REPEAT_TIMES,
    RETRY_WAIT_MINIMUM,
    TX_UPDATED_INTERVAL,
)
from station.protocol.station import StationCore, StationInfo

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "brand-new-password-from-csms"  # 28 characters


def runtime(store_path=None, events=None, **ocpp):
    settings = load_settings(overrides={"station": {"id": "CS-RT"}, "ocpp": ocpp})
    core = StationCore("CS-RT", StationInfo("v", "m", "s", "f"))
    outbox = Outbox(LoopClock())
    sink = events if events is not None else []
    return DeviceRuntime(
        settings, core, outbox, store_path=store_path, on_security_event=lambda t, i: sink.append((t, i))
    )


def set_all(rt, values):
    changes = []
    for ref, value in values:
        result = rt.model.set(*ref, value)
        assert result.change is not None, (ref, result)
        changes.append(result.change)
    rt.changed(changes)


def test_each_variable_drives_its_consumer():
    rt = runtime(reconnect_min_s=2, reconnect_max_s=30, reconnect_random_s=0)
    rt.heartbeat_changed.clear()
    set_all(
        rt,
        [
            (HEARTBEAT_INTERVAL, "15"),
            (TX_UPDATED_INTERVAL, "20"),
            (OFFLINE_THRESHOLD, "300"),
            (MESSAGE_ATTEMPTS, "7"),
            (MESSAGE_ATTEMPT_INTERVAL, "4"),
            (AUTHORIZE_REMOTE_START, "true"),
        ],
    )
    assert rt.heartbeat_changed.is_set()
    assert rt.core.heartbeat_interval_s == 15.0
    assert rt.core.meter_interval_s == 20.0
    assert rt.core.offline_threshold_s == 300.0
    assert (rt.outbox.message_attempts, rt.outbox.attempt_interval_s) == (7, 4.0)
    assert rt.core.authorize_remote_start is True


def test_retry_back_off_variables_replace_the_configured_back_off():
    rt = runtime(reconnect_min_s=2, reconnect_max_s=30, reconnect_random_s=0)
    rng = random.Random(1)
    assert [backoff_s(a, rt.current_backoff(), rng) for a in range(6)] == [2, 4, 8, 16, 30, 30]
    set_all(rt, [(RETRY_WAIT_MINIMUM, "3"), (RETRY_REPEAT_TIMES, "2"), (RETRY_RANDOM_RANGE, "5")])
    assert rt.current_backoff() == BackOff(3.0, 2, 5.0, float("inf"))
    delays = [backoff_s(a, rt.current_backoff(), rng) for a in range(5)]
    for delay, base in zip(delays, [3, 6, 12, 12, 12], strict=True):  # doubled twice, then kept
        assert base <= delay <= base + 5


def test_accepted_sets_survive_a_restart_and_drive_behaviour_from_the_start(tmp_path):
    path = tmp_path / "CS-RT" / "device_model.sqlite3"
    first = runtime(path)
    set_all(first, [(TX_UPDATED_INTERVAL, "25"), (MESSAGE_ATTEMPTS, "9"), (OFFLINE_THRESHOLD, "5")])
    first.close()

    second = runtime(path)
    assert second.model.value(*TX_UPDATED_INTERVAL) == "25"
    assert second.core.meter_interval_s == 25.0
    assert second.outbox.message_attempts == 9
    assert second.core.offline_threshold_s == 5.0
    assert second.model.value(*HEARTBEAT_INTERVAL) == "300"  # never set: the configured default
    second.close()


def test_a_new_basic_auth_password_is_stored_used_at_the_next_start_and_never_logged(tmp_path):
    path = tmp_path / "device_model.sqlite3"
    events: list[tuple[str, str]] = []
    first = runtime(path, events)
    with structlog.testing.capture_logs() as logs:
        set_all(first, [(BASIC_AUTH_PASSWORD, PASSWORD)])
    first.close()
    assert events == [
        (
            "ReconfigurationOfSecurityParameters",
            "SecurityCtrlr.BasicAuthPassword changed; used from the next start",
        )
    ]
    configured = ConnectOptions(None, {"Authorization": basic_auth_header("CS-RT", "configured-password-16")})
    assert first.connect_options(configured).headers["Authorization"] == basic_auth_header("CS-RT", PASSWORD)

    with structlog.testing.capture_logs() as more_logs:
        second = runtime(path)
        options = second.connect_options(configured)
    second.close()
    assert options.headers["Authorization"] == basic_auth_header("CS-RT", PASSWORD)
    assert PASSWORD not in repr(logs + more_logs)
    assert any(e.get("variable") == "SecurityCtrlr.BasicAuthPassword" for e in logs)
    unauthenticated = ConnectOptions(None, {})  # profile 3 or 0: nothing to replace
    assert second.connect_options(unauthenticated).headers == {}


def test_boot_interval_is_what_get_variables_reports():
    rt = runtime()
    rt.core.on_boot_response("Accepted", 90)
    rt.boot_accepted()
    assert rt.model.value(*HEARTBEAT_INTERVAL) == "90"


def test_authorize_remote_start_default_comes_from_the_configuration():
    rt = runtime(authorize_remote_start=True)
    assert rt.model.value(*AUTHORIZE_REMOTE_START) == "true"
    assert rt.core.authorize_remote_start is True
    assert rt.model.value(ComponentRef("SecurityCtrlr"), VariableRef("Identity")) == "CS-RT"


# --- OfflineThreshold (B04) in StationCore ---------------------------------------------------------
def two_evse_core():
    core = StationCore("CS-RT", StationInfo("v", "m", "s", "f"), evse_count=2)
    core.offline_threshold_s = 60.0
    return core


def test_after_boot_every_connector_status_is_sent():
    core = two_evse_core()
    statuses = core.reconnect_status_notifications(T0, now_s=0.0)
    assert [m.payload["evseId"] for m in statuses] == [1, 2]


def test_a_short_outage_sends_only_connectors_that_changed_b04_fr_02():
    core = two_evse_core()
    core.went_offline(now_s=100.0)
    core.plug_in(2, T0)  # while offline: the StatusNotification was dropped
    statuses = core.reconnect_status_notifications(T0, now_s=130.0)
    assert [(m.payload["evseId"], m.payload["connectorStatus"]) for m in statuses] == [(2, "Occupied")]
    core.went_offline(now_s=200.0)
    assert core.reconnect_status_notifications(T0, now_s=210.0) == []


def test_an_outage_longer_than_the_threshold_sends_every_connector_b04_fr_01():
    core = two_evse_core()
    core.went_offline(now_s=100.0)
    core.plug_in(2, T0)
    statuses = core.reconnect_status_notifications(T0, now_s=161.0)
    assert [(m.payload["evseId"], m.payload["connectorStatus"]) for m in statuses] == [
        (1, "Available"),
        (2, "Occupied"),
    ]


def test_a_store_that_cannot_write_is_one_log_line_and_the_change_still_applies(tmp_path):
    rt = runtime(tmp_path / "device_model.sqlite3")
    rt.store.close()  # as if the disk went away
    with structlog.testing.capture_logs() as logs:
        set_all(rt, [(TX_UPDATED_INTERVAL, "50")])
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["device_model_store_failed"]
    assert rt.core.meter_interval_s == 50.0


def test_a_boot_interval_beyond_the_variable_limit_keeps_the_reported_value():
    rt = runtime()
    rt.core.on_boot_response("Accepted", 100_000)
    with structlog.testing.capture_logs() as logs:
        rt.boot_accepted()
    assert rt.core.heartbeat_interval_s == 100_000
    assert rt.model.value(*HEARTBEAT_INTERVAL) == "300"
    assert [e["event"] for e in logs] == ["heartbeat_interval_not_reportable"]
