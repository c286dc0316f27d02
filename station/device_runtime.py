"""The device model inside a running agent: stored values at start, one write per accepted Set, and effects.

What each variable drives (the table in docs/operator-guide.md, "Device model"):
- OCPPCommCtrlr.HeartbeatInterval -> the heartbeat loop (restarts its wait at once);
- OCPPCommCtrlr.OfflineThreshold -> which StatusNotifications follow a reconnect (B04.FR.01/02);
- OCPPCommCtrlr.MessageAttempts / MessageAttemptInterval [TransactionEvent] -> the outbox's retries (E13);
- OCPPCommCtrlr.RetryBackOff* -> the reconnect back-off (read before every wait);
- SampledDataCtrlr.TxUpdatedInterval -> the periodic meter values (J02);
- AuthCtrlr.AuthorizeRemoteStart -> Authorize before a remote start (F01);
- SecurityCtrlr.BasicAuthPassword -> RebootRequired: stored now, used for Basic auth from the next start;
  a SecurityEventNotification ReconfigurationOfSecurityParameters (part 2 appendix 1, security events)
  tells the CSMS a security parameter changed; the value itself never leaves the store.

Consumers keep the configuration's exact values until a variable is set (the spec's variables are whole
seconds, the configuration may say 0.5 s in a test); from then on the device model's value rules.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import structlog

from chargeagent.config import Settings
from chargeagent.errors import ChargeAgentError
from chargeagent.lean import LeanEvent
from station.connection import BackOff, ConnectOptions, basic_auth_header
from station.device_store import DeviceStore
from station.outbox import Outbox
from station.protocol.device_model import DeviceModel
from station.protocol.device_types import Change
from station.protocol.device_variables import (
    AUTH_CACHE_ENABLED,
    AUTH_CACHE_LIFETIME,
    AUTHORIZE_REMOTE_START,
    BASIC_AUTH_PASSWORD,
    HEARTBEAT_INTERVAL,
    LOCAL_AUTHORIZE_OFFLINE,
    LOCAL_PRE_AUTHORIZE,
    MAX_CURRENT,
    MESSAGE_ATTEMPT_INTERVAL,
    MESSAGE_ATTEMPTS,
    MODEL_ENABLED,
    OFFLINE_THRESHOLD,
    PAUSED,
    PERIODS_PER_SCHEDULE,
    PROFILE_STACK_LEVEL,
    RETRY_RANDOM_RANGE,
    RETRY_REPEAT_TIMES,
    RETRY_WAIT_MINIMUM,
    TX_UPDATED_INTERVAL,
    Ref,
    build_device_model,
    seconds,
)
from station.protocol.station import StationCore

log = structlog.get_logger(__name__)

SECURITY_EVENT = "ReconfigurationOfSecurityParameters"


def _match(change: Change) -> tuple[object, ...]:
    return change.component.match_key, change.variable.match_key


@functools.cache  # the same few keys for every agent in the process (a fleet runs thousands): shared
def _ref_key(ref: Ref) -> tuple[object, ...]:
    return ref[0].match_key, ref[1].match_key


class DeviceRuntime:
    """Owns the station's `DeviceModel` and its store; applies every change to the parts it drives."""

    def __init__(
        self,
        settings: Settings,
        core: StationCore,
        outbox: Outbox,
        *,
        store_path: Path | None,
        on_security_event: Callable[[str, str], None],
    ) -> None:
        """`store_path=None` keeps values in memory only (simulations)."""
        self.core = core
        self.outbox = outbox
        self._on_security_event = on_security_event
        self.station_id = settings.station.id
        self.heartbeat_changed = LeanEvent()
        self.backoff = BackOff.from_settings(settings.ocpp)
        core.max_stack_level = PROFILE_STACK_LEVEL
        core.max_periods_per_schedule = PERIODS_PER_SCHEDULE
        self.model: DeviceModel = build_device_model(settings, core)
        # Exact values need no rounding: the core takes them from the model from the start.
        core.offline_threshold_s = float(self.model.value(*OFFLINE_THRESHOLD))
        core.authorize_remote_start = self.model.value(*AUTHORIZE_REMOTE_START) == "true"
        self._password: str | None = None  # set via SetVariables (this or an earlier run)
        self._rating_a = settings.station.charger_max_current_a
        self.store = DeviceStore(store_path) if store_path is not None else None
        if self.store is not None:
            applied, skipped = self.model.restore(self.store.load())
            for line in skipped:
                log.warning("device_model_stored_value_ignored", reason=line)
            for change in applied:
                self._apply(change)
            if applied:
                log.info("device_model_restored", variables=[c.name for c in applied])
            core.operative.update(self.store.load_operative())

    # --- changes ---------------------------------------------------------------------------------
    def changed(self, changes: list[Change]) -> None:
        """Accepted SetVariables (called after the response went out): persist, then act on each."""
        for change in changes:
            if self.store is not None and change.persistent:
                try:
                    self.store.save(change)
                except ChargeAgentError as exc:  # e.g. disk full: act on it now, it is lost at restart
                    log.error("device_model_store_failed", variable=change.name, error=str(exc))
            log.info("device_variable_set", variable=change.name, value=change.loggable_value)
            self._apply(change)
            if _match(change) == _ref_key(BASIC_AUTH_PASSWORD):
                self._on_security_event(SECURITY_EVENT, f"{change.name} changed; used from the next start")

    def _apply(self, change: Change) -> None:
        effect = _effects().get(_match(change))
        if effect is not None:
            effect(self, change.value)

    def _heartbeat(self, value: str) -> None:
        self.core.heartbeat_interval_s = float(value)
        self.heartbeat_changed.set()

    def _backoff(self, **fields: float) -> None:
        self.backoff = dataclasses.replace(self.backoff, **fields)  # type: ignore[arg-type]

    def _auth(self, **fields: float | bool) -> None:
        self.core.auth = dataclasses.replace(self.core.auth, **fields)  # type: ignore[arg-type]

    def _override(self, **fields: bool | float | None) -> None:
        self.core.override = dataclasses.replace(self.core.override, **fields)  # type: ignore[arg-type]
        log.warning("operator_override", **dataclasses.asdict(self.core.override))

    def _max_current(self, value: str) -> None:
        cap = float(value)
        self._override(max_current_a=None if cap >= self._rating_a else cap)

    def _remember_password(self, value: str) -> None:
        self._password = value

    def boot_accepted(self) -> None:
        """B01: the BootNotification interval is the heartbeat interval now; GetVariables must say so."""
        try:
            self.model.update(*HEARTBEAT_INTERVAL, seconds(self.core.heartbeat_interval_s))
        except ValueError as exc:  # beyond the variable's maxLimit: keep heartbeating, report the old value
            log.warning("heartbeat_interval_not_reportable", error=str(exc))

    def availability_changed(self) -> None:
        """Persist the operational status after a ChangeAvailability (G03/G04: it survives a restart)."""
        if self.store is None:
            return
        try:
            self.store.save_operative(self.core.operative)
        except ChargeAgentError as exc:  # act on it now; it is lost at restart
            log.error("availability_store_failed", error=str(exc))

    # --- start-time wiring -----------------------------------------------------------------------
    def connect_options(self, options: ConnectOptions) -> ConnectOptions:
        """Basic auth with the password a CSMS set (RebootRequired: it takes effect at this start)."""
        if self._password is None or "Authorization" not in options.headers:
            return options
        headers = {**options.headers, "Authorization": basic_auth_header(self.station_id, self._password)}
        log.info("basic_auth_password_from_device_model")
        return dataclasses.replace(options, headers=headers)

    def current_backoff(self) -> BackOff:
        return self.backoff

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


_INF = float("inf")  # once a CSMS sets the doubling, the configured maximum no longer caps it


@functools.cache  # one table for the process, not ~3 KiB of closures per agent (bench/README.md)
def _effects() -> dict[tuple[object, ...], Callable[[DeviceRuntime, str], None]]:
    """What a changed variable does to the running station (the REFERENCE.md variables that drive it)."""
    return {
        _ref_key(HEARTBEAT_INTERVAL): DeviceRuntime._heartbeat,
        _ref_key(OFFLINE_THRESHOLD): lambda rt, v: setattr(rt.core, "offline_threshold_s", float(v)),
        _ref_key(TX_UPDATED_INTERVAL): lambda rt, v: setattr(rt.core, "meter_interval_s", float(v)),
        _ref_key(AUTHORIZE_REMOTE_START): lambda rt, v: setattr(
            rt.core, "authorize_remote_start", v == "true"
        ),
        _ref_key(MESSAGE_ATTEMPTS): lambda rt, v: setattr(rt.outbox, "message_attempts", int(v)),
        _ref_key(MESSAGE_ATTEMPT_INTERVAL): lambda rt, v: setattr(rt.outbox, "attempt_interval_s", float(v)),
        _ref_key(RETRY_WAIT_MINIMUM): lambda rt, v: rt._backoff(wait_minimum_s=float(v), maximum_s=_INF),
        _ref_key(RETRY_REPEAT_TIMES): lambda rt, v: rt._backoff(repeat_times=int(v), maximum_s=_INF),
        _ref_key(RETRY_RANDOM_RANGE): lambda rt, v: rt._backoff(random_range_s=float(v)),
        _ref_key(BASIC_AUTH_PASSWORD): DeviceRuntime._remember_password,
        _ref_key(AUTH_CACHE_ENABLED): lambda rt, v: rt._auth(cache_enabled=v == "true"),
        _ref_key(AUTH_CACHE_LIFETIME): lambda rt, v: rt._auth(lifetime_s=float(v)),
        _ref_key(LOCAL_AUTHORIZE_OFFLINE): lambda rt, v: rt._auth(local_authorize_offline=v == "true"),
        _ref_key(LOCAL_PRE_AUTHORIZE): lambda rt, v: rt._auth(local_pre_authorize=v == "true"),
        _ref_key(MODEL_ENABLED): lambda rt, v: rt._override(model_enabled=v == "true"),
        _ref_key(MAX_CURRENT): DeviceRuntime._max_current,
        _ref_key(PAUSED): lambda rt, v: rt._override(paused=v == "true"),
    }
