"""One OCPP 2.0.1 transaction: seqNo, charging state and the TransactionEvent payloads it produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bms_link.models import StopReason
from chargeagent.clock import ocpp_timestamp


class ChargingState(StrEnum):
    """OCPP 2.0.1 ChargingStateEnumType."""

    CHARGING = "Charging"
    EV_CONNECTED = "EVConnected"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    IDLE = "Idle"


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One meter reading at the EVSE output (DC side) plus what the BMS reports."""

    energy_wh: float  # Energy.Active.Import.Register (since station start, never decreasing)
    power_w: float
    current_a: float
    voltage_v: float
    soc: float | None  # 0..1
    cell_temp_c: float | None


# StopReason -> (triggerReason, stoppedReason) per OCPP 2.0.1 TriggerReasonEnumType / ReasonEnumType.
_STOP_MAP: dict[StopReason, tuple[str, str]] = {
    StopReason.SOC_TARGET_REACHED: ("ChargingStateChanged", "SOCLimitReached"),
    StopReason.VOLTAGE_TARGET_REACHED: ("ChargingStateChanged", "StoppedByEV"),
    StopReason.STOPPED_BY_EV: ("ChargingStateChanged", "StoppedByEV"),
    StopReason.BMS_FAULT: ("AbnormalCondition", "StoppedByEV"),
    StopReason.OVERTEMPERATURE: ("AbnormalCondition", "Other"),
    StopReason.INSULATION_FAULT: ("AbnormalCondition", "GroundFault"),
    StopReason.BMS_TIMEOUT: ("EVCommunicationLost", "Timeout"),
    StopReason.CHARGER_TIMEOUT: ("EVCommunicationLost", "Timeout"),
    StopReason.REMOTE: ("RemoteStop", "Remote"),
    StopReason.LOCAL: ("StopAuthorized", "Local"),
    StopReason.IMMEDIATE_RESET: ("ResetCommand", "ImmediateReset"),  # B11: Ended before the reset
    StopReason.EV_DISCONNECTED: ("EVDeparted", "EVDisconnected"),
    StopReason.SAFETY_ENVELOPE: ("AbnormalCondition", "Other"),
    StopReason.IMPLAUSIBLE_DATA: ("AbnormalCondition", "Other"),
}


def stop_reasons(reason: StopReason) -> tuple[str, str]:
    """(triggerReason, stoppedReason) for a session end."""
    return _STOP_MAP[reason]


VENDOR_ID = "org.chargeagent"


def meter_value(moment: datetime, sample: MeterSample, context: str) -> dict[str, Any]:
    """A MeterValueType with the measurands we report (OCPP 2.0.1 part 2, 2.44 SampledValueType)."""

    def sampled(value: float, measurand: str, unit: str, **extra: str) -> dict[str, Any]:
        return {
            "value": round(value, 3),
            "measurand": measurand,
            "context": context,
            "unitOfMeasure": {"unit": unit},
            **extra,
        }

    values = [
        sampled(sample.energy_wh, "Energy.Active.Import.Register", "Wh", location="Outlet"),
        sampled(sample.power_w, "Power.Active.Import", "W", location="Outlet"),
        sampled(sample.current_a, "Current.Import", "A", location="Outlet"),
        sampled(sample.voltage_v, "Voltage", "V", location="Outlet"),
    ]
    if sample.soc is not None:
        values.append(sampled(sample.soc * 100.0, "SoC", "Percent", location="EV"))
    meter: dict[str, Any] = {"timestamp": ocpp_timestamp(moment), "sampledValue": values}
    if sample.cell_temp_c is not None:
        # OCPP 2.0.1 dropped 'Temperature' from MeasurandEnumType (1.6 had it; the shipped 2.0.1 schema
        # rejects it), so the hottest cell temperature travels in the meter value's customData.
        meter["customData"] = {"vendorId": VENDOR_ID, "cellTempMaxC": round(sample.cell_temp_c, 2)}
    return meter


@dataclass
class Transaction:
    """State of one transaction; each `event()` call consumes the next seqNo (E01.FR.xx: +1 per message)."""

    transaction_id: str
    evse_id: int
    connector_id: int
    id_token: dict[str, str] | None
    remote_start_id: int | None
    charging_state: ChargingState
    seq_no: int = 0
    started_monotonic_s: float = 0.0
    last_meter_s: float = 0.0
    ended: bool = False
    stop_requested: StopReason | None = None

    def event(
        self,
        event_type: str,
        trigger_reason: str,
        moment: datetime,
        *,
        sample: MeterSample | None = None,
        context: str = "Sample.Periodic",
        stopped_reason: str | None = None,
        include_token: bool = False,
    ) -> dict[str, Any]:
        """Build the next TransactionEvent payload (camelCase JSON) and advance seqNo."""
        info: dict[str, Any] = {
            "transactionId": self.transaction_id,
            "chargingState": self.charging_state.value,
        }
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if self.remote_start_id is not None and event_type == "Started":
            info["remoteStartId"] = self.remote_start_id
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": ocpp_timestamp(moment),
            "triggerReason": trigger_reason,
            "seqNo": self.seq_no,
            "transactionInfo": info,
        }
        if event_type == "Started":
            payload["evse"] = {"id": self.evse_id, "connectorId": self.connector_id}
        if include_token and self.id_token is not None:
            payload["idToken"] = dict(self.id_token)
        if sample is not None:
            payload["meterValue"] = [meter_value(moment, sample, context)]
        self.seq_no += 1
        if event_type == "Ended":
            self.ended = True
        return payload


def interrupted_end_payload(last_event: dict[str, Any], now: datetime) -> dict[str, Any]:
    """After a power cut or crash: end a transaction the previous run left open.

    The station cannot know what happened while it was down, so the transaction ends at start-up with the
    next seqNo, triggerReason AbnormalCondition and stoppedReason PowerLoss (ReasonEnumType), carrying the
    last energy register it recorded.
    """
    info = last_event["transactionInfo"]
    payload: dict[str, Any] = {
        "eventType": "Ended",
        "timestamp": ocpp_timestamp(now),
        "triggerReason": "AbnormalCondition",
        "seqNo": int(last_event["seqNo"]) + 1,
        "transactionInfo": {
            "transactionId": info["transactionId"],
            "chargingState": "Idle",
            "stoppedReason": "PowerLoss",
        },
    }
    for meter in last_event.get("meterValue", []):
        register = [v for v in meter["sampledValue"] if v["measurand"] == "Energy.Active.Import.Register"]
        if register:
            payload["meterValue"] = [
                {
                    "timestamp": payload["timestamp"],
                    "sampledValue": [{**register[0], "context": "Transaction.End"}],
                }
            ]
    return payload
