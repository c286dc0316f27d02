"""The station's OCPP 2.0.1 state without I/O: boot, heartbeat, connectors, transactions, limits.

Every method takes the time it needs as an argument and returns `Outbound` messages for the adapter to send
(in order). Inbound CSMS requests return the response payload plus the messages to send AFTER the
response (never awaited inside the handler: the `ocpp` library answers one call at a time).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bms_link.models import StopReason
from chargeagent.clock import ocpp_timestamp
from station.protocol.auth_cache import AuthSettings
from station.protocol.charging_profile import ProfileStore
from station.protocol.composite import composite_schedule
from station.protocol.connector import Connector, ConnectorEvent, ConnectorStatus
from station.protocol.override import Override
from station.protocol.transaction import (
    ChargingState,
    MeterSample,
    Transaction,
    interrupted_end_payload,
    stop_reasons,
)

# W-based limits and schedules need a voltage; before any session we assume a typical 400 V DC pack.
NOMINAL_DC_VOLTAGE_V = 400.0


class BootState(StrEnum):
    NOT_SENT = "NotSent"
    PENDING = "Pending"
    REJECTED = "Rejected"
    ACCEPTED = "Accepted"


@dataclass(frozen=True, slots=True)
class Outbound:
    """A CALL to send: OCPP action name and camelCase JSON payload."""

    action: str
    payload: dict[str, Any]

    @property
    def transactional(self) -> bool:
        """Transaction messages must not be lost (queued durably by the outbox)."""
        return self.action == "TransactionEvent"


@dataclass(frozen=True)
class StationInfo:
    vendor: str
    model: str
    serial_number: str
    firmware_version: str


@dataclass
class Evse:
    evse_id: int
    connector: Connector
    transaction: Transaction | None = None
    tx_started_at: datetime | None = None
    last_sample: MeterSample | None = field(default=None)
    reserved_for_start: bool = False


@dataclass(frozen=True)
class PendingStart:
    """An accepted start (RequestStartTransaction, or None = an idToken presented locally) waiting for
    authorization and the Started event."""

    evse_id: int
    id_token: dict[str, str]
    remote_start_id: int | None


class StationCore:
    """OCPP 2.0.1 charge-point rules for one station with `evse_count` single-connector EVSEs."""

    def __init__(
        self,
        station_id: str,
        info: StationInfo,
        *,
        evse_count: int = 1,
        heartbeat_interval_s: float = 300.0,
        meter_interval_s: float = 60.0,
        new_transaction_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        charger_max_current_a: float = 250.0,
        authorize_remote_start: bool = False,
    ) -> None:
        self.station_id = station_id
        self.info = info
        self.evses = {i: Evse(i, Connector(i)) for i in range(1, evse_count + 1)}
        self.boot_state = BootState.NOT_SENT
        self.heartbeat_interval_s = heartbeat_interval_s
        self.meter_interval_s = meter_interval_s
        self.profiles = ProfileStore()
        self._new_transaction_id = new_transaction_id
        self.charger_max_current_a = charger_max_current_a
        # Device-model driven (station/protocol/device_variables.py); the agent updates them on a Set.
        self.authorize_remote_start = authorize_remote_start  # AuthCtrlr.AuthorizeRemoteStart (C01/F01)
        self.auth = AuthSettings()  # AuthCtrlr / AuthCacheCtrlr (C10-C12)
        self.override = Override()  # ChargeAgentCtrlr: the operator's model off / cap / pause
        self.offline_threshold_s = 60.0  # OCPPCommCtrlr.OfflineThreshold (B04)
        self.max_stack_level = 100  # SmartChargingCtrlr.ProfileStackLevel
        self.max_periods_per_schedule = 1024  # SmartChargingCtrlr.PeriodsPerSchedule
        self._offline: tuple[float, dict[int, str]] | None = None  # (since_s, statuses then)
        # Operational status by evseId, 0 = the station (G03/G04, station.protocol.availability); persisted.
        self.operative: dict[int, bool] = {}
        self.reset_scheduled = False  # an OnIdle Reset waits: no new transactions meanwhile (B12)
        self.planned: dict[int, tuple[datetime, list[tuple[float, float]]]] = {}  # evse -> charge plan (A)

    # --- boot & heartbeat (B01-B04) -------------------------------------------------------------
    def boot_request(self, reason: str = "PowerUp") -> Outbound:
        return Outbound(
            "BootNotification",
            {
                "chargingStation": {
                    "model": self.info.model,
                    "vendorName": self.info.vendor,
                    "serialNumber": self.info.serial_number,
                    "firmwareVersion": self.info.firmware_version,
                },
                "reason": reason,
            },
        )

    def on_boot_response(self, status: str, interval_s: float) -> float:
        """Apply the response; return seconds until the next boot retry or heartbeat.

        B01/B02/B03: while Pending/Rejected, retry BootNotification after `interval` (0 means the station
        picks: we use the configured heartbeat interval); once Accepted, heartbeat every interval.
        """
        self.boot_state = BootState(status)
        if interval_s > 0:
            if self.boot_state is BootState.ACCEPTED:
                self.heartbeat_interval_s = interval_s
            return interval_s
        return self.heartbeat_interval_s

    def rebooted(self) -> None:
        """A Reset restarted the protocol session: BootNotification again, then every connector's status."""
        self.boot_state = BootState.NOT_SENT
        self._offline = None
        self.reset_scheduled = False

    @property
    def accepted(self) -> bool:
        return self.boot_state is BootState.ACCEPTED

    @staticmethod
    def heartbeat_request() -> Outbound:
        return Outbound("Heartbeat", {})

    def status_notifications(self, now: datetime) -> list[Outbound]:
        """Current status of every connector (after boot and on every reconnect; never queued)."""
        return [self.status_notification(evse, now) for evse in self.evses.values()]

    def went_offline(self, now_s: float) -> None:
        """The CSMS connection was lost: remember when, and the connector statuses the CSMS last saw."""
        self._offline = (now_s, {i: evse.connector.status.value for i, evse in self.evses.items()})

    def reconnect_status_notifications(self, now: datetime, now_s: float) -> list[Outbound]:
        """StatusNotifications once the CSMS accepted us again (after boot: all connectors, B01).

        B04.FR.01: offline longer than OfflineThreshold -> the status of every connector;
        B04.FR.02: not longer -> only connectors whose status changed while offline.
        """
        offline, self._offline = self._offline, None
        if offline is None or now_s - offline[0] > self.offline_threshold_s:
            return self.status_notifications(now)
        before = offline[1]
        return [
            self.status_notification(evse, now)
            for i, evse in self.evses.items()
            if before.get(i) != evse.connector.status.value
        ]

    def status_notification(self, evse: Evse, now: datetime) -> Outbound:
        return Outbound(
            "StatusNotification",
            {
                "timestamp": ocpp_timestamp(now),
                "connectorStatus": evse.connector.status.value,
                "evseId": evse.evse_id,
                "connectorId": evse.connector.connector_id,
            },
        )

    # --- cable ------------------------------------------------------------------------------------
    def plug_in(self, evse_id: int, now: datetime) -> list[Outbound]:
        evse = self.evses[evse_id]
        evse.connector.fire(ConnectorEvent.PLUG_IN)
        out = [self.status_notification(evse, now)]
        tx = evse.transaction
        if tx is not None and not tx.ended:
            tx.charging_state = ChargingState.EV_CONNECTED
            out.append(Outbound("TransactionEvent", tx.event("Updated", "CablePluggedIn", now)))
        return out

    def unplug(self, evse_id: int, now: datetime, sample: MeterSample | None) -> list[Outbound]:
        evse = self.evses[evse_id]
        out: list[Outbound] = []
        if evse.transaction is not None and not evse.transaction.ended:
            out += self.end_transaction(evse_id, now, StopReason.EV_DISCONNECTED, sample)
        evse.connector.fire(ConnectorEvent.UNPLUG)
        out.append(self.status_notification(evse, now))
        return out

    # --- remote start / stop (F01, F03) ---------------------------------------------------------
    def on_request_start(
        self, *, id_token: dict[str, str], remote_start_id: int | None, evse_id: int | None
    ) -> tuple[dict[str, Any], PendingStart | None]:
        """F01 (and a locally presented idToken, C01): accept when an EVSE is free; the caller then authorizes
        (if configured) and starts it."""
        evse = self._pick_evse(evse_id)
        if evse is None:
            return {"status": "Rejected"}, None
        evse.reserved_for_start = True
        return {"status": "Accepted"}, PendingStart(evse.evse_id, dict(id_token), remote_start_id)

    def abandon_start(self, pending: PendingStart) -> None:
        """The remote start was not authorized (C01/F01.FR.02): release the EVSE."""
        self.evses[pending.evse_id].reserved_for_start = False

    def start_transaction(
        self,
        pending: PendingStart,
        *,
        charging_profile: dict[str, Any] | None,
        now: datetime,
        now_s: float,
    ) -> list[Outbound]:
        """Start the transaction (TxStartPoint=Authorized): Started, trigger RemoteStart or Authorized."""
        evse = self.evses[pending.evse_id]
        evse.reserved_for_start = False
        tx = Transaction(
            transaction_id=self._new_transaction_id(),
            evse_id=evse.evse_id,
            connector_id=evse.connector.connector_id,
            id_token=pending.id_token,
            remote_start_id=pending.remote_start_id,
            charging_state=(
                ChargingState.EV_CONNECTED if evse.connector.cable_plugged else ChargingState.IDLE
            ),
            started_monotonic_s=now_s,
            last_meter_s=now_s,
        )
        evse.transaction = tx
        evse.tx_started_at = now
        if charging_profile is not None:
            profile = {**charging_profile, "transactionId": tx.transaction_id}
            self.profiles.install(evse.evse_id, profile, tx.transaction_id)  # F01.FR.08
        started = tx.event(
            "Started",
            "RemoteStart" if pending.remote_start_id is not None else "Authorized",
            now,
            sample=evse.last_sample,
            context="Transaction.Begin",
            include_token=True,
        )
        return [Outbound("TransactionEvent", started)]

    def _pick_evse(self, evse_id: int | None) -> Evse | None:
        candidates = [self.evses[evse_id]] if evse_id in self.evses else []
        if evse_id is None:
            candidates = list(self.evses.values())
        if self.reset_scheduled:
            return None
        for evse in candidates:
            free = (evse.transaction is None or evse.transaction.ended) and not evse.reserved_for_start
            if free and evse.connector.status in (
                ConnectorStatus.AVAILABLE,
                ConnectorStatus.OCCUPIED,
            ):
                return evse
        return None

    def on_request_stop(self, transaction_id: str) -> dict[str, Any]:
        """F03: accept if the transaction is ongoing; the agent then stops the BMS session and ends it."""
        for evse in self.evses.values():
            tx = evse.transaction
            if tx is not None and tx.transaction_id == transaction_id and not tx.ended:
                tx.stop_requested = StopReason.REMOTE
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def transaction(self, evse_id: int) -> Transaction | None:
        tx = self.evses[evse_id].transaction
        return tx if tx is not None and not tx.ended else None

    # --- charging & metering (E01-E07, J02) -----------------------------------------------------
    def charging_state_changed(
        self, evse_id: int, state: ChargingState, now: datetime, sample: MeterSample | None
    ) -> list[Outbound]:
        tx = self.transaction(evse_id)
        if tx is None or tx.charging_state is state:
            return []
        tx.charging_state = state
        return [
            Outbound(
                "TransactionEvent",
                tx.event("Updated", "ChargingStateChanged", now, sample=sample, context="Trigger"),
            )
        ]

    def record_sample(self, evse_id: int, sample: MeterSample) -> None:
        self.evses[evse_id].last_sample = sample

    def meter_update(self, evse_id: int, now: datetime, now_s: float) -> list[Outbound]:
        """J02: a periodic Updated every TxUpdatedInterval while the transaction runs."""
        evse = self.evses[evse_id]
        tx = self.transaction(evse_id)
        if tx is None or evse.last_sample is None or now_s - tx.last_meter_s < self.meter_interval_s:
            return []
        tx.last_meter_s = now_s
        payload = tx.event("Updated", "MeterValuePeriodic", now, sample=evse.last_sample)
        return [Outbound("TransactionEvent", payload)]

    def end_transaction(
        self, evse_id: int, now: datetime, reason: StopReason, sample: MeterSample | None
    ) -> list[Outbound]:
        """E06/E07: Ended with triggerReason/stoppedReason mapped from why the session stopped."""
        evse = self.evses[evse_id]
        tx = self.transaction(evse_id)
        if tx is None:
            return []
        trigger, stopped = stop_reasons(tx.stop_requested or reason)
        tx.charging_state = ChargingState.EV_CONNECTED if evse.connector.cable_plugged else ChargingState.IDLE
        payload = tx.event(
            "Ended",
            trigger,
            now,
            sample=sample or evse.last_sample,
            context="Transaction.End",
            stopped_reason=stopped,
        )
        self.profiles.clear_tx_profiles(tx.transaction_id)
        self.planned.pop(evse_id, None)
        return [Outbound("TransactionEvent", payload)]

    @staticmethod
    def end_interrupted_transaction(last_event: dict[str, Any], now: datetime) -> Outbound:
        """After a power cut or crash: the Ended event of a transaction the previous run left open."""
        return Outbound("TransactionEvent", interrupted_end_payload(last_event, now))

    # --- smart charging (K01) -------------------------------------------------------------------
    def on_set_charging_profile(self, evse_id: int, profile: dict[str, Any]) -> dict[str, Any]:
        periods = [len(s.get("chargingSchedulePeriod", [])) for s in profile.get("chargingSchedule", [])]
        if int(profile.get("stackLevel", 0)) > self.max_stack_level or any(
            n > self.max_periods_per_schedule for n in periods
        ):
            return {"status": "Rejected"}  # beyond what the device model reports (SmartChargingCtrlr)
        tx = self.transaction(evse_id) if evse_id in self.evses else None
        status = self.profiles.install(evse_id, profile, tx.transaction_id if tx else None)
        return {"status": status}

    def on_get_composite_schedule(
        self, evse_id: int, duration_s: int, unit: str | None, now: datetime
    ) -> dict[str, Any]:
        """K08: the expected limit over the next `duration_s` for one EVSE or the station (evseId 0)."""
        if evse_id != 0 and evse_id not in self.evses:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        tx = self.transaction(evse_id) if evse_id else None
        sample = self.evses[evse_id or 1].last_sample
        voltage_v = sample.voltage_v if sample is not None and sample.voltage_v > 0 else NOMINAL_DC_VOLTAGE_V
        schedule = composite_schedule(
            self.profiles,
            evse_id,
            now,
            duration_s,
            tx_id=tx.transaction_id if tx else None,
            tx_start=self.evses[evse_id].tx_started_at if tx else None,
            voltage_v=voltage_v,
            default_limit_a=self.charger_max_current_a,
            unit=unit or "A",
            planned=[p for i, p in self.planned.items() if evse_id in (0, i)],
        )
        return {"status": "Accepted", "schedule": schedule}

    def limit_a(self, evse_id: int, now: datetime, voltage_v: float, external: bool = True) -> float | None:
        """The profiles' current limit for the EVSE now (None = no limit); external: with the grid's."""
        evse = self.evses[evse_id]
        tx = self.transaction(evse_id)
        return self.profiles.limit_a(
            evse_id,
            now,
            tx_id=tx.transaction_id if tx else None,
            tx_start=evse.tx_started_at if tx else None,
            voltage_v=voltage_v,
            external=external,
        )
