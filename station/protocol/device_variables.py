"""This station's OCPP 2.0.1 device model: which components and variables exist, their limits and defaults.

Names are the standardized ones (OCPP 2.0.1 part 2 appendix 3, 'Standardized components/variables'; the
`ocpp` package's v201 enums list the same). Defaults come from the configuration (`[ocpp]`, `[station]`);
values stored by an earlier run override them at start (`station.device_runtime`). What each variable
drives is listed in docs/operator-guide.md ("Device model").

Features this station does not have are ReadOnly with the value that describes its actual behaviour
(e.g. AuthCacheCtrlr.Enabled = false, TxCtrlr.TxStartPoint = Authorized) rather than writable variables that
would silently be ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from chargeagent.config import Settings
from station.protocol.device_model import DEVICE_DATA, DeviceModel
from station.protocol.device_types import ComponentRef, DataType, Mutability, Variable, VariableRef
from station.protocol.station import StationCore

Ref = tuple[ComponentRef, VariableRef]

OCPP_COMM = ComponentRef("OCPPCommCtrlr")
HEARTBEAT_INTERVAL: Ref = (OCPP_COMM, VariableRef("HeartbeatInterval"))
OFFLINE_THRESHOLD: Ref = (OCPP_COMM, VariableRef("OfflineThreshold"))
MESSAGE_ATTEMPTS: Ref = (OCPP_COMM, VariableRef("MessageAttempts", "TransactionEvent"))
MESSAGE_ATTEMPT_INTERVAL: Ref = (OCPP_COMM, VariableRef("MessageAttemptInterval", "TransactionEvent"))
RETRY_WAIT_MINIMUM: Ref = (OCPP_COMM, VariableRef("RetryBackOffWaitMinimum"))
RETRY_REPEAT_TIMES: Ref = (OCPP_COMM, VariableRef("RetryBackOffRepeatTimes"))
RETRY_RANDOM_RANGE: Ref = (OCPP_COMM, VariableRef("RetryBackOffRandomRange"))
TX_UPDATED_INTERVAL: Ref = (ComponentRef("SampledDataCtrlr"), VariableRef("TxUpdatedInterval"))
AUTHORIZE_REMOTE_START: Ref = (ComponentRef("AuthCtrlr"), VariableRef("AuthorizeRemoteStart"))
BASIC_AUTH_PASSWORD: Ref = (ComponentRef("SecurityCtrlr"), VariableRef("BasicAuthPassword"))
LOCAL_AUTHORIZE_OFFLINE: Ref = (ComponentRef("AuthCtrlr"), VariableRef("LocalAuthorizeOffline"))
LOCAL_PRE_AUTHORIZE: Ref = (ComponentRef("AuthCtrlr"), VariableRef("LocalPreAuthorize"))
AUTH_CACHE_ENABLED: Ref = (ComponentRef("AuthCacheCtrlr"), VariableRef("Enabled"))
AUTH_CACHE_LIFETIME: Ref = (ComponentRef("AuthCacheCtrlr"), VariableRef("LifeTime"))
# Our own component (OCPP 2.0.1 part 1 allows vendor components): the operator's override, issue #9.
CHARGE_AGENT = ComponentRef("ChargeAgentCtrlr")
MODEL_ENABLED: Ref = (CHARGE_AGENT, VariableRef("ModelEnabled"))
MAX_CURRENT: Ref = (CHARGE_AGENT, VariableRef("MaxCurrent"))
PAUSED: Ref = (CHARGE_AGENT, VariableRef("Paused"))
# AuthCacheCtrlr.Storage is in bytes in the spec; we bound entries (a hash, status and two times each).
AUTH_CACHE_ENTRIES = 1000
AUTH_CACHE_ENTRY_BYTES = 160

# Used for OfflineThreshold until a CSMS sets it (the spec gives no default; 60 s matches common firmware).
DEFAULT_OFFLINE_THRESHOLD_S = 60
# DeviceDataCtrlr.ItemsPerMessage per request kind: small report pages keep a NotifyReport well under any
# CSMS frame limit; 50 Get/Set items cover every variable here in one request.
DEFAULT_ITEMS_PER_MESSAGE = {"GetReport": 20, "GetVariables": 50, "SetVariables": 50}
# Largest request we read: the websocket max_size in station/connection.py (1 MiB).
BYTES_PER_MESSAGE = 2**20
# SmartChargingCtrlr limits the core enforces on SetChargingProfile (1024 = the schema's maxItems).
PERIODS_PER_SCHEDULE = 1024
PROFILE_STACK_LEVEL = 100

MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC")
TX_POINTS = (
    "ParkingBayOccupancy",
    "EVConnected",
    "Authorized",
    "DataSigned",
    "PowerPathClosed",
    "EnergyTransfer",
)
AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")

_INT, _BOOL, _STR = DataType.INTEGER, DataType.BOOLEAN, DataType.STRING
_RO, _WO = Mutability.READ_ONLY, Mutability.WRITE_ONLY


def seconds(value_s: float) -> str:
    """A configured float duration as the integer seconds the spec's variables use (at least 1 s shown)."""
    return str(max(1, round(value_s)))


def default_repeat_times(min_s: float, max_s: float) -> int:
    """RetryBackOffRepeatTimes that reaches the configured maximum: doublings of the minimum."""
    return max(0, math.ceil(math.log2(max_s / min_s))) if max_s > min_s else 0


def build_device_model(
    settings: Settings, core: StationCore, items_per_message: Mapping[str, int] | None = None
) -> DeviceModel:
    """The device model of a station configured by `settings`; live values are read from `core`."""
    o, st = settings.ocpp, settings.station
    model = DeviceModel()

    def comm(ref: Ref, value: str, min_limit: int = 1, max_limit: int = 86_400) -> None:
        """A persistent ReadWrite duration in whole seconds (a 0 s heartbeat or back-off would spin)."""
        definition = Variable(*ref, _INT, unit="s", min_limit=min_limit, max_limit=max_limit, persistent=True)
        model.add(definition, value)

    # OCPPCommCtrlr: B01 heartbeat, B04 offline threshold, E13 message attempts, OCPP-J part 4 back-off
    comm(HEARTBEAT_INTERVAL, seconds(core.heartbeat_interval_s))
    comm(OFFLINE_THRESHOLD, str(DEFAULT_OFFLINE_THRESHOLD_S), min_limit=0)
    model.add(
        Variable(*MESSAGE_ATTEMPTS, _INT, min_limit=1, max_limit=100, persistent=True),
        str(o.message_attempts),
    )
    comm(MESSAGE_ATTEMPT_INTERVAL, seconds(o.message_attempt_interval_s))
    comm(RETRY_WAIT_MINIMUM, seconds(o.reconnect_min_s))
    model.add(
        Variable(*RETRY_REPEAT_TIMES, _INT, min_limit=0, max_limit=16, persistent=True),
        str(default_repeat_times(o.reconnect_min_s, o.reconnect_max_s)),
    )
    comm(RETRY_RANDOM_RANGE, str(round(o.reconnect_random_s)), min_limit=0)
    _sampled_data(model, core)
    _tx_and_auth(model, o.authorize_remote_start, core)
    _security(model, settings)
    _smart_charging(model)
    _override(model, settings.policy.model_enabled, st.charger_max_current_a)
    limits = {**DEFAULT_ITEMS_PER_MESSAGE, **(items_per_message or {})}
    for instance, count in limits.items():
        ref = ComponentRef(DEVICE_DATA)
        model.add(
            Variable(ref, VariableRef("ItemsPerMessage", instance), _INT, _RO, constant=True), str(count)
        )
        model.add(
            Variable(ref, VariableRef("BytesPerMessage", instance), _INT, _RO, constant=True),
            str(BYTES_PER_MESSAGE),
        )
    _physical(model, core, st.charger_max_current_a * st.charger_max_voltage_v)
    model.seal()
    return model


def _sampled_data(model: DeviceModel, core: StationCore) -> None:
    sampled = ComponentRef("SampledDataCtrlr")
    model.add(
        Variable(*TX_UPDATED_INTERVAL, _INT, unit="s", min_limit=1, max_limit=86_400, persistent=True),
        seconds(core.meter_interval_s),
    )
    # The measurands are the ones station/protocol/transaction.py reports (Updated and Ended alike).
    for name in ("TxUpdatedMeasurands", "TxEndedMeasurands"):
        model.add(
            Variable(
                sampled, VariableRef(name), DataType.MEMBER_LIST, _RO, values_list=MEASURANDS, constant=True
            ),
            ",".join(MEASURANDS),
        )


def _tx_and_auth(model: DeviceModel, authorize_remote_start: bool, core: StationCore) -> None:
    tx = ComponentRef("TxCtrlr")
    # A transaction starts when the remote start is authorized and ends on unplug, remote stop
    # (authorization ended) or when the BMS ends the session (power path opened): E01/E06 trigger points.
    for name, value in (
        ("TxStartPoint", "Authorized"),
        ("TxStopPoint", "EVConnected,Authorized,PowerPathClosed"),
    ):
        model.add(Variable(tx, VariableRef(name), DataType.MEMBER_LIST, _RO, values_list=TX_POINTS), value)
    # No EV-connection timer: a remote start waits for the BMS handshake, whose own timeouts end it.
    model.add(Variable(tx, VariableRef("EVConnectionTimeOut"), _INT, _RO, unit="s"), "0")
    model.add(Variable(tx, VariableRef("StopTxOnInvalidId"), _BOOL, _RO), "false")
    model.add(Variable(*AUTHORIZE_REMOTE_START, _BOOL, persistent=True), str(authorize_remote_start).lower())
    # The authorization cache (C10-C12, station/protocol/auth_cache.py); no local authorization list.
    auth = core.auth
    for ref, flag in (
        (LOCAL_AUTHORIZE_OFFLINE, auth.local_authorize_offline),
        (LOCAL_PRE_AUTHORIZE, auth.local_pre_authorize),
        (AUTH_CACHE_ENABLED, auth.cache_enabled),
    ):
        model.add(Variable(*ref, _BOOL, persistent=True), str(flag).lower())
    model.add(
        Variable(*AUTH_CACHE_LIFETIME, _INT, unit="s", min_limit=1, max_limit=31_536_000, persistent=True),
        seconds(auth.lifetime_s),
    )
    model.add(
        Variable(ComponentRef("AuthCacheCtrlr"), VariableRef("Storage"), _INT, _RO, unit="B", constant=True),
        str(AUTH_CACHE_ENTRIES * AUTH_CACHE_ENTRY_BYTES),
    )


def _security(model: DeviceModel, settings: Settings) -> None:
    security = ComponentRef("SecurityCtrlr")
    model.add(
        Variable(security, VariableRef("SecurityProfile"), _INT, _RO, min_limit=0, max_limit=3),
        str(settings.ocpp.security_profile),
    )
    model.add(
        Variable(security, VariableRef("Identity"), _STR, _RO, max_limit=48, constant=True),
        settings.station.id,
    )
    # A00: Basic auth password 16-40 characters. WriteOnly: never read back, never reported, never logged.
    # RebootRequired: the new password is stored at once and used from the next start of the agent.
    password = Variable(
        *BASIC_AUTH_PASSWORD, _STR, _WO, max_limit=40, min_length=16, persistent=True, reboot_required=True
    )
    model.add(password, lambda: "")  # unknown to the model until set: the configured one lives in an env var


def _smart_charging(model: DeviceModel) -> None:
    smart = ComponentRef("SmartChargingCtrlr")
    model.add(Variable(smart, VariableRef("Enabled"), _BOOL, _RO), "true")
    model.add(Variable(smart, VariableRef("PeriodsPerSchedule"), _INT, _RO), str(PERIODS_PER_SCHEDULE))
    model.add(Variable(smart, VariableRef("ProfileStackLevel"), _INT, _RO), str(PROFILE_STACK_LEVEL))
    model.add(
        Variable(smart, VariableRef("RateUnit"), DataType.MEMBER_LIST, _RO, values_list=("A", "W")), "A,W"
    )


def _override(model: DeviceModel, model_enabled: bool, rating_a: float) -> None:
    """ChargeAgentCtrlr: the learned curve on/off, a current cap (the rating = no cap), pause (0 A)."""
    model.add(Variable(*MODEL_ENABLED, _BOOL, persistent=True), str(model_enabled).lower())
    model.add(
        Variable(*MAX_CURRENT, DataType.DECIMAL, unit="A", min_limit=0, max_limit=rating_a, persistent=True),
        f"{rating_a:g}",
    )
    model.add(Variable(*PAUSED, _BOOL, persistent=True), "false")


def _physical(model: DeviceModel, core: StationCore, max_power_w: float) -> None:
    station = ComponentRef("ChargingStation")
    availability = VariableRef("AvailabilityState")

    def station_state() -> str:
        states = {evse.connector.status.value for evse in core.evses.values()}
        return states.pop() if len(states) == 1 and states <= {"Unavailable", "Faulted"} else "Available"

    def state(component: ComponentRef) -> Variable:
        return Variable(
            component, availability, DataType.OPTION_LIST, _RO, values_list=AVAILABILITY, summary=True
        )

    model.add(state(station), station_state)
    model.add(Variable(station, VariableRef("Model"), _STR, _RO, constant=True), core.info.model)
    model.add(Variable(station, VariableRef("VendorName"), _STR, _RO, constant=True), core.info.vendor)
    for evse_id, evse in core.evses.items():
        evse_ref = ComponentRef("EVSE", evse_id=evse_id)
        connector = ComponentRef("Connector", evse_id=evse_id, connector_id=evse.connector.connector_id)

        def status(evse_id: int = evse_id) -> str:
            return core.evses[evse_id].connector.status.value

        def power_w(evse_id: int = evse_id) -> str:
            sample = core.evses[evse_id].last_sample
            return f"{sample.power_w if sample is not None else 0.0:.1f}"

        model.add(state(evse_ref), status)
        # EVSE.Power: Actual = present output, maxLimit = the rating (part 2 appendix: 'Power', W).
        model.add(
            Variable(
                evse_ref,
                VariableRef("Power"),
                DataType.DECIMAL,
                _RO,
                unit="W",
                min_limit=0,
                max_limit=max_power_w,
            ),
            power_w,
        )
        model.add(state(connector), status)
