"""Thin adapter between `StationCore` and the `ocpp` library's 1.6 ChargePoint (OCPP 1.6J).

Used when the CSMS picked the `ocpp1.6` subprotocol. Same contract as `station.ocpp_v201`: `send` takes
the core's (2.0.1-shaped) `Outbound` and returns a 2.0.1-shaped response, translated both ways by the
sans-I/O `station.protocol.v16`; inbound 1.6 requests are answered from the same core and hooks, follow-ups
run in `@after` hooks, nothing is awaited inside a handler. A request without a handler here is answered
NotImplemented by the library. The library validates every payload against the 1.6 schemas both ways.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from ocpp.charge_point import snake_to_camel_case
from ocpp.v16 import ChargePoint
from ocpp.v16 import call_result as results

from chargeagent.errors import ProtocolError
from station.ocpp_routes import slim_charge_point
from station.ocpp_schema import use_compiled
from station.ocpp_v201 import RoutingMixin, StationHooks, _after, _on, _snake
from station.protocol.availability import on_change_availability, on_reset
from station.protocol.device_model import DeviceModel
from station.protocol.remote import data_transfer, trigger_message, unlock_connector
from station.protocol.station import Outbound, StationCore
from station.protocol.v16 import (
    V16Call,
    V16Transactions,
    composite_to_v16,
    id_token,
    profile_to_v201,
    purpose_to_v201,
    response_from_v16,
    status_after,
    to_v16,
)
from station.protocol.v16_config import change_configuration, get_configuration

log = structlog.get_logger(__name__)

_RESET = {"Hard": "Immediate", "Soft": "OnIdle"}  # 1.6 ResetType -> 2.0.1 ResetEnumType
_UNLOCK = {"Unlocked": "Unlocked", "UnknownConnector": "NotSupported"}  # else UnlockFailed
_remote_start_ids = itertools.count(1)  # 1.6 has no remoteStartId; the core wants one for a remote start


def _result(action: str, payload: dict[str, Any]) -> Any:
    return getattr(results, action)(**{_snake(k): v for k, v in payload.items()})


class OcppChargePoint16(RoutingMixin, ChargePoint):  # type: ignore[misc]
    """The `ocpp` 1.6 ChargePoint with our inbound handlers, answered by `StationCore`."""

    def __init__(
        self,
        station_id: str,
        connection: Any,
        core: StationCore,
        hooks: StationHooks,
        response_timeout_s: float,
        clock_now: Callable[[], datetime],
        *,
        transactions: V16Transactions,
        device_model: DeviceModel,
        compiled_validation: bool = False,
    ) -> None:
        super().__init__(station_id, connection, response_timeout=response_timeout_s)
        slim_charge_point(self)  # shared route map, no idle asyncio.Queue (station.ocpp_routes)
        if compiled_validation:  # the same schemas, compiled: faster, more memory (station.ocpp_schema)
            self._ocpp_version = use_compiled(self._ocpp_version)
        self.core, self.hooks, self.txs = core, hooks, transactions
        self.device_model = device_model
        self.clock_now = clock_now
        self._after: Callable[[], None] | None = None

    async def send(self, message: Outbound) -> dict[str, Any]:
        """Send the 1.6 form of one internal message; the response comes back in 2.0.1 shape. A message
        1.6 has no form for is not sent (an empty response: nothing for the caller to read)."""
        charging = any(self.core.transaction(i) is not None for i in self.core.evses)
        v16 = to_v16(message, self.txs, charging=charging)
        response: dict[str, Any] = {}
        if v16 is None:
            log.debug("ocpp16_not_sent", action=message.action, reason="no OCPP 1.6 equivalent")
        else:
            response = response_from_v16(v16, await self._call(v16), self.txs)
        tx = self.txs.get(str(message.payload.get("transactionInfo", {}).get("transactionId", "")))
        status = status_after(message, tx.connector_id) if tx is not None and tx.csms_id is not None else None
        if status is not None:  # a 1.6 CSMS follows the transaction by StatusNotification
            try:
                await self._call(status)
            except ProtocolError as exc:  # the transaction message itself went through: do not resend it
                log.warning("ocpp16_status_not_sent", status=status.payload["status"], error=str(exc))
        return response

    async def _call(self, v16: V16Call) -> dict[str, Any]:
        return await self.call_payload(v16.action, v16.payload)

    # --- remote control --------------------------------------------------------------------------
    @_on("RemoteStartTransaction")
    def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        response, pending = self.core.on_request_start(
            id_token=id_token(id_tag), remote_start_id=next(_remote_start_ids), evse_id=connector_id
        )
        log.info("remote_start", status=response["status"], connector_id=connector_id, ocpp="1.6")
        if pending is not None:
            profile = (
                profile_to_v201(snake_to_camel_case(charging_profile), self.txs) if charging_profile else None
            )
            self._after = lambda: self.hooks.remote_start_accepted(pending, profile)
        return _result("RemoteStartTransaction", {"status": response["status"]})

    @_after("RemoteStartTransaction")
    def after_remote_start(self, **_: Any) -> None:
        self._run_after()

    @_on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        internal = self.txs.internal_id(transaction_id)
        status = "Rejected" if internal is None else self.core.on_request_stop(internal)["status"]
        log.info("remote_stop", status=status, transaction_id=transaction_id, ocpp="1.6")
        if status == "Accepted" and internal is not None:
            self._after = lambda: self.hooks.remote_stop_accepted(internal)
        return _result("RemoteStopTransaction", {"status": status})

    @_after("RemoteStopTransaction")
    def after_remote_stop(self, **_: Any) -> None:
        self._run_after()

    @_on("Reset")
    def on_reset(self, type: str, **_: Any) -> Any:  # `type`: the OCPP field name
        internal_type = _RESET[type]
        response = on_reset(self.core, internal_type, None)
        if response["status"] != "Rejected":  # 1.6 has no Scheduled: an OnIdle reset is Accepted and waits
            self._after = lambda: self.hooks.reset_requested(internal_type)
        log.info("reset_request", type=type, status=response["status"], ocpp="1.6")
        return _result("Reset", {"status": "Rejected" if response["status"] == "Rejected" else "Accepted"})

    @_after("Reset")
    def after_reset(self, **_: Any) -> None:
        self._run_after()

    @_on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        response, messages = on_change_availability(
            self.core, type, None if connector_id == 0 else connector_id, self.clock_now()
        )
        if response["status"] != "Rejected":
            self._after = lambda: self.hooks.availability_changed(messages)
        return _result("ChangeAvailability", {"status": response["status"]})

    @_after("ChangeAvailability")
    def after_change_availability(self, **_: Any) -> None:
        self._run_after()

    @_on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Any:
        evse = None if connector_id is None else {"id": connector_id}
        response, messages = trigger_message(self.core, requested_message, evse, self.clock_now())
        if messages:
            self._after = lambda: self.hooks.enqueue(messages)
        return _result("TriggerMessage", {"status": response["status"]})

    @_after("TriggerMessage")
    def after_trigger_message(self, **_: Any) -> None:
        self._run_after()

    @_on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        status = unlock_connector(self.core, connector_id, 1)["status"]
        return _result("UnlockConnector", {"status": _UNLOCK.get(status, "UnlockFailed")})

    @_on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Any:
        return _result("ClearCache", {"status": "Accepted" if self.hooks.clear_auth_cache() else "Rejected"})

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return _result("DataTransfer", {"status": data_transfer(vendor_id)["status"]})  # 1.6: no statusInfo

    # --- configuration (1.6 keys on the device model) ------------------------------------------------
    @_on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        return _result("GetConfiguration", get_configuration(self.device_model, self.core, key))

    @_on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        status, changes = change_configuration(self.device_model, key, value)
        log.info("change_configuration", key=key, status=status, ocpp="1.6")  # never the value
        if changes:
            self._after = lambda: self.hooks.variables_changed(changes)
        return _result("ChangeConfiguration", {"status": status})

    @_after("ChangeConfiguration")
    def after_change_configuration(self, **_: Any) -> None:
        self._run_after()

    # --- smart charging ----------------------------------------------------------------------------
    @_on("SetChargingProfile")
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        profile = profile_to_v201(snake_to_camel_case(cs_charging_profiles), self.txs)
        response = self.core.on_set_charging_profile(connector_id, profile)
        log.info("set_charging_profile", connector_id=connector_id, status=response["status"], ocpp="1.6")
        return _result("SetChargingProfile", {"status": response["status"]})

    @_on("ClearChargingProfile")
    def on_clear_charging_profile(
        self, id: int | None = None, charging_profile_purpose: str | None = None, **_: Any
    ) -> Any:
        purpose = purpose_to_v201(charging_profile_purpose) if charging_profile_purpose else None
        cleared = self.core.profiles.clear(id, purpose)
        return _result("ClearChargingProfile", {"status": "Accepted" if cleared else "Unknown"})

    @_on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        response = self.core.on_get_composite_schedule(
            connector_id, duration, charging_rate_unit, self.clock_now()
        )
        return _result("GetCompositeSchedule", composite_to_v16(response, connector_id))
