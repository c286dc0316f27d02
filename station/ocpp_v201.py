"""Thin adapter between `StationCore` and the `ocpp` library's 2.0.1 ChargePoint (the only ocpp importer).

The library does framing, schema validation and routing; `StationCore` owns state and rules. Inbound
handlers answer from the core and hand follow-up messages to the outbox in `@after` hooks, so nothing is
awaited inside a handler (the library processes one inbound call at a time per connection).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import structlog
from ocpp import messages as ocpp_messages
from ocpp import routing
from ocpp.charge_point import camel_to_snake_case, remove_nones, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, unpack
from ocpp.v201 import ChargePoint

from chargeagent.errors import ProtocolError
from chargeagent.tasks import checkpoint
from station.ocpp_routes import slim_charge_point
from station.ocpp_schema import use_compiled, validate_payload
from station.protocol.availability import on_change_availability, on_reset
from station.protocol.device_model import DeviceModel
from station.protocol.device_types import Change
from station.protocol.remote import data_transfer, get_charging_profiles, trigger_message, unlock_connector
from station.protocol.station import Outbound, PendingStart, StationCore

# Validate on the loop thread: the executor hop costs more than validating a small payload on a 1-2 core
# edge CPU, and the virtual-time simulator must not wait on threads. Validation itself stays on.
ocpp_messages.ASYNC_VALIDATION = False

log = structlog.get_logger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_F], _F]:
    """`ocpp.routing.on` with a type (the library ships no hints)."""
    return cast(Callable[[_F], _F], routing.on(action))


def _after(action: str) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], routing.after(action))


class StationHooks(Protocol):
    """What the adapter tells the agent; implementations must not block (schedule work instead)."""

    def remote_start_accepted(
        self, pending: PendingStart, charging_profile: dict[str, Any] | None
    ) -> None: ...

    def remote_stop_accepted(self, transaction_id: str) -> None: ...

    def enqueue(self, messages: list[Outbound]) -> None: ...

    def variables_changed(self, changes: list[Change]) -> None: ...

    def availability_changed(self, messages: list[Outbound]) -> None: ...

    def reset_requested(self, reset_type: str) -> None: ...

    def clear_auth_cache(self) -> bool: ...


class RoutingMixin:
    """Inbound routing shared by the 2.0.1 and 1.6 adapters (mixed into the library's ChargePoint)."""

    _after: Callable[[], None] | None
    _response_queue: Any
    _handle_call: Callable[[Any], Any]
    _send: Callable[[str], Any]
    _call_lock: Any
    _get_specific_response: Callable[[str, float], Any]
    _unique_id_generator: Callable[[], Any]
    _ocpp_version: str
    _response_timeout: float

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one CALL with a camelCase payload; return the CALLRESULT's camelCase payload.

        The library's `call` takes a dataclass and converts it (asdict, snake_case -> camelCase, and the
        answer back again): for payloads that are camelCase JSON already, that was ~40 % of the agent's
        CPU per call (bench/bench_ocpp_fleet.py). This keeps the library's parts that matter: its `Call`
        framing, its schema validation of request and answer (`station.ocpp_schema`), its one-call-at-a-
        time lock (OCPP-J: one outstanding CALL per direction) and its response matching.
        CallError, timeout or an invalid answer -> `ProtocolError`.
        """
        request = Call(str(self._unique_id_generator()), action, remove_nones(payload))
        try:
            await validate_payload(request, self._ocpp_version)
        except OCPPError as exc:
            raise ProtocolError(f"{action} request is not schema-valid: {exc}") from exc
        try:
            async with self._call_lock:
                await self._send(request.to_json())
                response = await self._get_specific_response(request.unique_id, self._response_timeout)
        except TimeoutError as exc:
            raise ProtocolError(f"{action}: no response within {self._response_timeout}s") from exc
        finally:
            checkpoint()  # the library's wait_for may have swallowed our cancellation (see chargeagent.tasks)
        if response.message_type_id == MessageType.CallError:
            raise ProtocolError(f"{action} rejected by CSMS: {response.to_exception()}")
        response.action = action
        try:
            await validate_payload(response, self._ocpp_version)
        except OCPPError as exc:
            raise ProtocolError(f"{action}: invalid response from the CSMS: {exc}") from exc
        answer: dict[str, Any] = response.payload
        return answer

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Like the library's, but a bad frame is one structured log line (not a traceback) and never fatal.

        OCPP-J (part 4, 4.2.3): a CALL that fails validation is answered with a CallError; a frame that is not
        even parseable cannot be answered reliably and is dropped.
        """
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            log.warning(
                "ocpp_bad_frame", error=type(exc).__name__, reason=str(exc)[:200], frame=str(raw_msg)[:120]
            )
            return
        if msg.message_type_id != MessageType.Call:
            self._response_queue.put_nowait(msg)
            return
        try:
            await self._handle_call(msg)
        except OCPPError as exc:
            log.warning(
                "ocpp_call_rejected", action=msg.action, error=exc.code, reason=str(exc.description)[:200]
            )
            await self._send(msg.create_call_error(exc).to_json())

    def _run_after(self) -> None:
        pending, self._after = self._after, None
        if pending is not None:
            pending()


class OcppChargePoint(RoutingMixin, ChargePoint):  # type: ignore[misc]
    """The `ocpp` ChargePoint with our inbound handlers, all answered by `StationCore`."""

    def __init__(
        self,
        station_id: str,
        connection: Any,
        core: StationCore,
        hooks: StationHooks,
        response_timeout_s: float,
        clock_now: Callable[[], datetime],
        *,
        device_model: DeviceModel,
        compiled_validation: bool = False,
    ) -> None:
        super().__init__(station_id, connection, response_timeout=response_timeout_s)
        slim_charge_point(self)  # shared route map, no idle asyncio.Queue (station.ocpp_routes)
        if compiled_validation:  # the same schemas, compiled: faster, more memory (station.ocpp_schema)
            self._ocpp_version = use_compiled(self._ocpp_version)
        self.core = core
        self.device_model = device_model
        self.hooks = hooks
        self._after: Callable[[], None] | None = None
        self.clock_now = clock_now

    async def send(self, message: Outbound) -> dict[str, Any]:
        """Send one CALL and return the camelCase response payload; CallError/timeout -> ProtocolError."""
        return await self.call_payload(message.action, message.payload)

    @_on("RequestStartTransaction")
    def on_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        response, pending = self.core.on_request_start(
            id_token=snake_to_camel_case(id_token), remote_start_id=remote_start_id, evse_id=evse_id
        )
        log.info("remote_start", status=response["status"], evse_id=evse_id, remote_start_id=remote_start_id)
        if pending is not None:
            profile = snake_to_camel_case(charging_profile) if charging_profile else None
            self._after = lambda: self.hooks.remote_start_accepted(pending, profile)
        return call_result("RequestStartTransaction", response)

    @_after("RequestStartTransaction")
    def after_request_start(self, **_: Any) -> None:
        self._run_after()

    @_on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        response = self.core.on_request_stop(transaction_id)
        log.info("remote_stop", status=response["status"], transaction_id=transaction_id)
        if response["status"] == "Accepted":
            self._after = lambda: self.hooks.remote_stop_accepted(transaction_id)
        return call_result("RequestStopTransaction", response)

    @_after("RequestStopTransaction")
    def after_request_stop(self, **_: Any) -> None:
        self._run_after()

    @_on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        profile = snake_to_camel_case(charging_profile)
        response = self.core.on_set_charging_profile(evse_id, profile)
        log.info("set_charging_profile", evse_id=evse_id, status=response["status"], profile_id=profile["id"])
        return call_result("SetChargingProfile", response)

    @_on("ClearChargingProfile")
    def on_clear_charging_profile(
        self, charging_profile_id: int | None = None, charging_profile_criteria: Any = None, **_: Any
    ) -> Any:
        purpose = (charging_profile_criteria or {}).get("charging_profile_purpose")
        cleared = self.core.profiles.clear(charging_profile_id, purpose)
        return call_result("ClearChargingProfile", {"status": "Accepted" if cleared else "Unknown"})

    @_on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        response = self.core.on_get_composite_schedule(
            evse_id, duration, charging_rate_unit, self.clock_now()
        )
        return call_result("GetCompositeSchedule", response)

    # --- device model (B05-B07): answers from `DeviceModel`, effects and reports after the response ---
    @_on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = self.device_model.get_variables([snake_to_camel_case(i) for i in get_variable_data])
        return call_result("GetVariables", {"getVariableResult": results})

    @_on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        data = [snake_to_camel_case(item) for item in set_variable_data]
        results, changes = self.device_model.set_variables(data)
        for result in results:  # never the value: it may be the BasicAuthPassword
            reason = result.get("attributeStatusInfo", {}).get("reasonCode")
            log.info(
                "set_variable",
                component=result["component"]["name"],
                variable=result["variable"]["name"],
                status=result["attributeStatus"],
                reason=reason,
            )
        if changes:
            self._after = lambda: self.hooks.variables_changed(changes)
        return call_result("SetVariables", {"setVariableResult": results})

    @_after("SetVariables")
    def after_set_variables(self, **_: Any) -> None:
        self._run_after()

    @_on("GetBaseReport")
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        status, pages = self.device_model.base_report(request_id, report_base, self.clock_now())
        log.info(
            "get_base_report", request_id=request_id, report_base=report_base, status=status, pages=len(pages)
        )
        if pages:
            self._after = lambda: self.hooks.enqueue([Outbound("NotifyReport", page) for page in pages])
        return call_result("GetBaseReport", {"status": status})

    @_after("GetBaseReport")
    def after_get_base_report(self, **_: Any) -> None:
        self._run_after()

    @_on("GetReport")
    def on_get_report(
        self,
        request_id: int,
        component_criteria: list[str] | None = None,
        component_variable: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        selectors = [snake_to_camel_case(item) for item in component_variable or []]
        status, pages = self.device_model.custom_report(
            request_id, list(component_criteria or []), selectors, self.clock_now()
        )
        log.info("get_report", request_id=request_id, status=status, pages=len(pages))
        if pages:
            self._after = lambda: self.hooks.enqueue([Outbound("NotifyReport", page) for page in pages])
        return call_result("GetReport", {"status": status})

    @_after("GetReport")
    def after_get_report(self, **_: Any) -> None:
        self._run_after()

    # --- remote control (F05, F06, P01) -------------------------------------------------------------
    @_on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> Any:
        response, messages = trigger_message(
            self.core, requested_message, snake_to_camel_case(evse) if evse else None, self.clock_now()
        )
        log.info("trigger_message", requested=requested_message, status=response["status"])
        if messages:
            self._after = lambda: self.hooks.enqueue(messages)
        return call_result("TriggerMessage", response)

    @_after("TriggerMessage")
    def after_trigger_message(self, **_: Any) -> None:
        self._run_after()

    @_on("GetChargingProfiles")
    def on_get_charging_profiles(
        self, request_id: int, charging_profile: dict[str, Any], evse_id: int | None = None, **_: Any
    ) -> Any:
        response, reports = get_charging_profiles(
            self.core, request_id, evse_id, snake_to_camel_case(charging_profile)
        )
        log.info(
            "get_charging_profiles", request_id=request_id, status=response["status"], reports=len(reports)
        )
        if reports:
            self._after = lambda: self.hooks.enqueue(reports)
        return call_result("GetChargingProfiles", response)

    @_after("GetChargingProfiles")
    def after_get_charging_profiles(self, **_: Any) -> None:
        self._run_after()

    @_on("UnlockConnector")
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        response = unlock_connector(self.core, evse_id, connector_id)
        log.info("unlock_connector", evse_id=evse_id, connector_id=connector_id, status=response["status"])
        return call_result("UnlockConnector", response)

    # --- availability and reset (G03/G04, B11/B12) ---------------------------------------------------
    @_on("ChangeAvailability")
    def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        evse_id = None if evse is None else int(evse["id"])
        response: dict[str, Any] = {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownConnector"}}
        if evse is None or evse.get("connector_id") in (None, 1):  # one connector (id 1) per EVSE
            now = self.clock_now()
            response, messages = on_change_availability(self.core, operational_status, evse_id, now)
            if response["status"] != "Rejected":
                self._after = lambda: self.hooks.availability_changed(messages)
        log.info("change_availability", operational_status=operational_status, evse_id=evse_id, **response)
        return call_result("ChangeAvailability", response)

    @_after("ChangeAvailability")
    def after_change_availability(self, **_: Any) -> None:
        self._run_after()

    @_on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:  # `type`: the OCPP field name
        response = on_reset(self.core, type, evse_id)
        log.info("reset_request", type=type, evse_id=evse_id, status=response["status"])
        if response["status"] != "Rejected":
            self._after = lambda: self.hooks.reset_requested(type)
        return call_result("Reset", response)

    @_after("Reset")
    def after_reset(self, **_: Any) -> None:
        self._run_after()

    @_on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Any:
        """C11: Accepted when the authorization cache is enabled (and now empty), else Rejected."""
        status = "Accepted" if self.hooks.clear_auth_cache() else "Rejected"
        log.info("clear_cache", status=status)
        return call_result("ClearCache", {"status": status})

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        response = data_transfer(vendor_id)
        log.info("data_transfer", vendor_id=vendor_id[:64], status=response["status"])
        return call_result("DataTransfer", response)


def call_result(action: str, payload: dict[str, Any]) -> Any:
    """Build the library's call_result dataclass from a camelCase payload."""
    from ocpp.v201 import call_result as results  # noqa: PLC0415 - keeps the module namespace small

    return getattr(results, action)(**{_snake(k): v for k, v in payload.items()})


def _snake(key: str) -> str:
    """Top-level key in the library's snake_case (nested dicts keep camelCase; the library converts back)."""
    converted: dict[str, Any] = camel_to_snake_case({key: None})
    return next(iter(converted))
