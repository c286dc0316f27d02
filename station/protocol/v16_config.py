"""OCPP 1.6 configuration keys (GetConfiguration / ChangeConfiguration) on the 2.0.1 device model.

1.6 configures a charge point through flat keys (OCPP 1.6 section 9, "Standard Configuration Keys");
the agent keeps its configuration in the 2.0.1 device model (`station.protocol.device_model`), so each
supported key maps onto the variable that already drives the behaviour, and a change through 1.6 is the
same `Change` a 2.0.1 SetVariables makes (persisted, applied, logged). Keys with no variable behind them
are answered as unknown; read-only variables are reported `readonly` and refused on change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from station.protocol.device_model import DeviceModel
from station.protocol.device_types import Change, ComponentRef, Mutability, SetStatus, VariableRef
from station.protocol.device_variables import (
    AUTH_CACHE_ENABLED,
    AUTHORIZE_REMOTE_START,
    HEARTBEAT_INTERVAL,
    LOCAL_AUTHORIZE_OFFLINE,
    LOCAL_PRE_AUTHORIZE,
    MESSAGE_ATTEMPT_INTERVAL,
    MESSAGE_ATTEMPTS,
    TX_UPDATED_INTERVAL,
)
from station.protocol.station import StationCore

_SMART = ComponentRef("SmartChargingCtrlr")
KEYS: dict[str, tuple[ComponentRef, VariableRef]] = {
    "HeartbeatInterval": HEARTBEAT_INTERVAL,
    "MeterValueSampleInterval": TX_UPDATED_INTERVAL,
    "AuthorizeRemoteTxRequests": AUTHORIZE_REMOTE_START,
    "LocalAuthorizeOffline": LOCAL_AUTHORIZE_OFFLINE,
    "LocalPreAuthorize": LOCAL_PRE_AUTHORIZE,
    "AuthorizationCacheEnabled": AUTH_CACHE_ENABLED,
    "TransactionMessageAttempts": MESSAGE_ATTEMPTS,
    "TransactionMessageRetryInterval": MESSAGE_ATTEMPT_INTERVAL,
    "ChargeProfileMaxStackLevel": (_SMART, VariableRef("ProfileStackLevel")),
    "ChargingScheduleMaxPeriods": (_SMART, VariableRef("PeriodsPerSchedule")),
}
# Read-only facts with no device-model variable of their own.
FIXED: dict[str, Callable[[StationCore], str]] = {
    "NumberOfConnectors": lambda core: str(len(core.evses)),
    "SupportedFeatureProfiles": lambda _: "Core,SmartCharging,RemoteTrigger",
    "ChargingScheduleAllowedChargingRateUnit": lambda _: "Current,Power",
}
MAX_KEYS = 50  # GetConfigurationMaxKeys: answer at most this many keys per request


def get_configuration(model: DeviceModel, core: StationCore, keys: list[str] | None) -> dict[str, Any]:
    """GetConfiguration.conf: every known key when `keys` is empty or absent (OCPP 1.6, 5.8)."""
    wanted = keys or [*KEYS, *FIXED]
    known: list[dict[str, Any]] = []
    unknown: list[str] = []
    for key in wanted[:MAX_KEYS]:
        entry = _entry(model, core, key)
        if entry is None:
            unknown.append(key)
        else:
            known.append(entry)
    answer: dict[str, Any] = {"configurationKey": known}
    if unknown:
        answer["unknownKey"] = unknown
    return answer


def _entry(model: DeviceModel, core: StationCore, key: str) -> dict[str, Any] | None:
    if key in FIXED:
        return {"key": key, "readonly": True, "value": FIXED[key](core)}
    ref = KEYS.get(key)
    definition = None if ref is None else model.definition(*ref)
    if ref is None or definition is None or definition.write_only:
        return None
    value = model.value(*ref)
    return {"key": key, "readonly": definition.mutability is Mutability.READ_ONLY, "value": value}


def change_configuration(model: DeviceModel, key: str, value: str) -> tuple[str, list[Change]]:
    """ChangeConfiguration.conf status (Accepted / Rejected / RebootRequired / NotSupported) and the
    device-model changes to apply."""
    if key in FIXED:
        return "Rejected", []  # read-only
    ref = KEYS.get(key)
    if ref is None:
        return "NotSupported", []
    result = model.set(*ref, value)
    if result.status in (SetStatus.ACCEPTED, SetStatus.REBOOT_REQUIRED) and result.change is not None:
        return result.status.value, [result.change]
    return "Rejected", []
