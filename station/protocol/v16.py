"""OCPP 1.6J on the agent's 2.0.1-shaped internal messages (sans-I/O): translation both ways.

The station core (`station.protocol.station`) speaks 2.0.1 internally; when the CSMS negotiated
`ocpp1.6`, every outgoing `Outbound` goes through `to_v16` on its way to the wire, and each 1.6 response
comes back through `response_from_v16`, so the core, the durable outbox and the charging session do not
know which version runs. What has no 1.6 equivalent is dropped (`None`), for the caller to log.

Transactions (OCPP 1.6 part "Core", 5.x/6.x): TransactionEvent Started → StartTransaction, Updated →
MeterValues with the CSMS's transactionId, Ended → StopTransaction. 1.6 transaction ids are integers the
CSMS assigns in StartTransaction.conf; `V16Transactions` remembers, per internal transaction id, that id,
the connector and the meterStart (the agent persists it next to the outbox, so a StopTransaction queued
before a kill -9 still carries the right id after the restart). The outbox delivers strictly in order,
so a transaction's StartTransaction is always answered before its MeterValues or StopTransaction go out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from station.protocol.station import Outbound

SUBPROTOCOL = "ocpp1.6"
ID_TAG_MAX = 20  # CiString20Type (1.6 part "Core", 7.23 IdToken)

# 2.0.1 ReasonEnumType (stoppedReason) -> 1.6 Reason (StopTransaction.req); no 1.6 match -> "Other".
_STOP_REASONS = {
    "DeAuthorized": "DeAuthorized",
    "EmergencyStop": "EmergencyStop",
    "EVDisconnected": "EVDisconnected",
    "ImmediateReset": "HardReset",
    "Local": "Local",
    "PowerLoss": "PowerLoss",
    "Reboot": "Reboot",
    "Remote": "Remote",
    "SoftReset": "SoftReset",
    "UnlockCommand": "UnlockCommand",
}
# 2.0.1 ConnectorStatusEnumType -> 1.6 ChargePointStatus; Occupied refines by the transaction state.
_STATUS = {
    "Available": "Available",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
# 2.0.1 ChargingProfilePurposeEnumType <-> 1.6 ChargingProfilePurposeType.
_PURPOSE_TO_V201 = {"ChargePointMaxProfile": "ChargingStationMaxProfile"}


@dataclass
class V16Transaction:
    csms_id: int | None  # None until StartTransaction.conf
    connector_id: int
    meter_start_wh: int
    id_tag: str | None


class V16Transactions(Protocol):
    """Internal transaction id -> what 1.6 needs of it (persisted by the agent)."""

    def get(self, internal_id: str) -> V16Transaction | None: ...

    def put(self, internal_id: str, tx: V16Transaction) -> None: ...

    def internal_id(self, csms_id: int) -> str | None: ...


class MemoryTransactions:
    """`V16Transactions` in memory (tests; an agent without a data directory)."""

    def __init__(self) -> None:
        self._by_id: dict[str, V16Transaction] = {}

    def get(self, internal_id: str) -> V16Transaction | None:
        return self._by_id.get(internal_id)

    def put(self, internal_id: str, tx: V16Transaction) -> None:
        self._by_id[internal_id] = tx

    def internal_id(self, csms_id: int) -> str | None:
        return next((k for k, v in self._by_id.items() if v.csms_id == csms_id), None)


@dataclass(frozen=True)
class V16Call:
    action: str
    payload: dict[str, Any]
    internal_tx: str | None = None  # the internal transaction a Start/Stop/MeterValues belongs to


def to_v16(message: Outbound, txs: V16Transactions, *, charging: bool = False) -> V16Call | None:
    """The 1.6 CALL for an internal message, or None when 1.6 has no equivalent. `charging`: a
    transaction runs on the connector (refines 2.0.1 Occupied into 1.6 Charging / Preparing)."""
    p = message.payload
    match message.action:
        case "BootNotification":
            station = p["chargingStation"]
            boot = {
                "chargePointVendor": station["vendorName"][:20],
                "chargePointModel": station["model"][:20],
            }
            if "serialNumber" in station:
                boot["chargePointSerialNumber"] = station["serialNumber"][:25]
            if "firmwareVersion" in station:
                boot["firmwareVersion"] = station["firmwareVersion"][:50]
            return V16Call("BootNotification", boot)
        case "Heartbeat":
            return V16Call("Heartbeat", {})
        case "StatusNotification":
            status = _STATUS.get(p["connectorStatus"], "Charging" if charging else "Preparing")
            return V16Call(
                "StatusNotification",
                {
                    "connectorId": p["connectorId"],
                    "errorCode": "NoError",
                    "status": status,
                    "timestamp": p["timestamp"],
                },
            )
        case "Authorize":
            return V16Call("Authorize", {"idTag": id_tag(p["idToken"])})
        case "SecurityEventNotification":  # OCPP 1.6 security whitepaper edition 2
            return V16Call(
                "SecurityEventNotification", {k: p[k] for k in ("type", "timestamp", "techInfo") if k in p}
            )
        case "TransactionEvent":
            return _transaction_event(p, txs)
    return None  # NotifyReport, NotifyEvent, ReportChargingProfiles, ...: 2.0.1 only


def _transaction_event(p: dict[str, Any], txs: V16Transactions) -> V16Call | None:
    internal = str(p["transactionInfo"]["transactionId"])
    register = energy_register_wh(p)
    if p["eventType"] == "Started":
        tag = id_tag(p["idToken"]) if "idToken" in p else None
        connector = int(p.get("evse", {}).get("connectorId", 1))
        start_wh = round(register) if register is not None else 0
        txs.put(internal, V16Transaction(None, connector, start_wh, tag))
        payload = {
            "connectorId": connector,
            "idTag": tag or "",
            "meterStart": start_wh,
            "timestamp": p["timestamp"],
        }
        return V16Call("StartTransaction", payload, internal)
    tx = txs.get(internal)
    if tx is None or tx.csms_id is None:
        return None  # the CSMS never accepted its start: nothing to report against
    if p["eventType"] == "Ended":
        stop: dict[str, Any] = {
            "transactionId": tx.csms_id,
            "meterStop": round(register) if register is not None else tx.meter_start_wh,
            "timestamp": p["timestamp"],
            "reason": _STOP_REASONS.get(p["transactionInfo"].get("stoppedReason", ""), "Other"),
        }
        if tx.id_tag:
            stop["idTag"] = tx.id_tag
        if p.get("meterValue"):
            stop["transactionData"] = [meter_value_v16(m) for m in p["meterValue"]]
        return V16Call("StopTransaction", stop, internal)
    if not p.get("meterValue"):
        return None  # a state change without a measurement: 1.6 reports it by StatusNotification
    return V16Call(
        "MeterValues",
        {
            "connectorId": tx.connector_id,
            "transactionId": tx.csms_id,
            "meterValue": [meter_value_v16(m) for m in p["meterValue"]],
        },
        internal,
    )


# 2.0.1 ChargingStateEnumType -> the 1.6 ChargePointStatus a 1.6 CSMS expects while a transaction runs.
_CHARGING_STATUS = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "Preparing",
    "Idle": "Finishing",
}


def status_after(message: Outbound, connector_id: int) -> V16Call | None:
    """1.6 reports a transaction's state by StatusNotification (2.0.1 puts it in TransactionEvent): the
    status to send after a TransactionEvent that started, changed the charging state of, or ended one."""
    if message.action != "TransactionEvent":
        return None
    p = message.payload
    if p["eventType"] == "Updated" and p["triggerReason"] != "ChargingStateChanged":
        return None
    state = "Idle" if p["eventType"] == "Ended" else p["transactionInfo"].get("chargingState", "Charging")
    status = _CHARGING_STATUS.get(state)
    if status is None:
        return None
    payload = {
        "connectorId": connector_id,
        "errorCode": "NoError",
        "status": status,
        "timestamp": p["timestamp"],
    }
    return V16Call("StatusNotification", payload)


def response_from_v16(call: V16Call, response: dict[str, Any], txs: V16Transactions) -> dict[str, Any]:
    """The 1.6 CALLRESULT in the 2.0.1 shape the agent reads (and the CSMS's transaction id remembered)."""
    if call.action == "StartTransaction" and call.internal_tx is not None:
        tx = txs.get(call.internal_tx)
        if tx is not None:
            tx.csms_id = int(response["transactionId"])
            txs.put(call.internal_tx, tx)
    if "idTagInfo" in response:  # Authorize / Start / StopTransaction
        info = dict(response["idTagInfo"])
        if "expiryDate" in info:
            info["cacheExpiryDateTime"] = info.pop("expiryDate")
        info.pop("parentIdTag", None)
        return {"idTokenInfo": info}
    return response


def id_tag(id_token: dict[str, Any]) -> str:
    """1.6 idTag from a 2.0.1 IdTokenType (the token itself; 1.6 has no token type)."""
    return str(id_token["idToken"])[:ID_TAG_MAX]


def id_token(tag: str) -> dict[str, str]:
    """2.0.1 IdTokenType for a 1.6 idTag (an RFID-style tag: ISO14443)."""
    return {"idToken": tag, "type": "ISO14443"}


def energy_register_wh(event: dict[str, Any]) -> float | None:
    for meter in event.get("meterValue", []):
        for sampled in meter["sampledValue"]:
            if sampled.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
                return float(sampled["value"])
    return None


def meter_value_v16(meter: dict[str, Any]) -> dict[str, Any]:
    """2.0.1 MeterValueType -> 1.6 MeterValue: values as strings, unit flattened, no customData."""
    values = []
    for s in meter["sampledValue"]:
        v16: dict[str, Any] = {"value": f"{float(s['value']):g}"}
        for key in ("context", "measurand", "phase", "location"):
            if key in s:
                v16[key] = s[key]
        if "unitOfMeasure" in s and "unit" in s["unitOfMeasure"]:
            v16["unit"] = s["unitOfMeasure"]["unit"]
        values.append(v16)
    return {"timestamp": meter["timestamp"], "sampledValue": values}


def profile_to_v201(cs_profile: dict[str, Any], txs: V16Transactions) -> dict[str, Any]:
    """1.6 csChargingProfiles -> the 2.0.1 ChargingProfileType the profile store takes."""
    schedule = dict(cs_profile["chargingSchedule"])
    schedule["id"] = int(cs_profile["chargingProfileId"])
    schedule["chargingSchedulePeriod"] = [dict(p) for p in schedule["chargingSchedulePeriod"]]
    profile: dict[str, Any] = {
        "id": int(cs_profile["chargingProfileId"]),
        "stackLevel": int(cs_profile["stackLevel"]),
        "chargingProfilePurpose": purpose_to_v201(cs_profile["chargingProfilePurpose"]),
        "chargingProfileKind": cs_profile["chargingProfileKind"],
        "chargingSchedule": [schedule],
    }
    for key in ("recurrencyKind", "validFrom", "validTo"):
        if key in cs_profile:
            profile[key] = cs_profile[key]
    if "transactionId" in cs_profile:
        internal = txs.internal_id(int(cs_profile["transactionId"]))
        profile["transactionId"] = (
            internal if internal is not None else f"unknown-{cs_profile['transactionId']}"
        )
    return profile


def composite_to_v16(response: dict[str, Any], connector_id: int) -> dict[str, Any]:
    """The core's 2.0.1 GetCompositeSchedule answer in the 1.6 shape."""
    if response["status"] != "Accepted":
        return {"status": "Rejected"}
    schedule = response["schedule"]
    return {
        "status": "Accepted",
        "connectorId": connector_id,
        "scheduleStart": schedule["scheduleStart"],
        "chargingSchedule": {
            "duration": schedule["duration"],
            "startSchedule": schedule["scheduleStart"],
            "chargingRateUnit": schedule["chargingRateUnit"],
            "chargingSchedulePeriod": schedule["chargingSchedulePeriod"],
        },
    }


def purpose_to_v201(purpose: str) -> str:
    """1.6 ChargingProfilePurposeType -> 2.0.1 ChargingProfilePurposeEnumType."""
    return _PURPOSE_TO_V201.get(purpose, purpose)
