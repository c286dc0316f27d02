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
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import MessageType, unpack
from ocpp.v201 import ChargePoint, call

from chargeagent.errors import ProtocolError
from chargeagent.tasks import checkpoint
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


# Variables GetVariables/SetVariables understand until the full device model lands (issue #4).
_VARIABLES: dict[tuple[str, str], str] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): "heartbeat_interval_s",
    ("SampledDataCtrlr", "TxUpdatedInterval"): "meter_interval_s",
}


class OcppChargePoint(ChargePoint):  # type: ignore[misc]
    """The `ocpp` ChargePoint with our inbound handlers, all answered by `StationCore`."""

    def __init__(
        self,
        station_id: str,
        connection: Any,
        core: StationCore,
        hooks: StationHooks,
        response_timeout_s: float,
        clock_now: Callable[[], datetime],
    ) -> None:
        super().__init__(station_id, connection, response_timeout=response_timeout_s)
        self.core = core
        self.hooks = hooks
        self._after: Callable[[], None] | None = None
        self.clock_now = clock_now

    async def send(self, message: Outbound) -> dict[str, Any]:
        """Send one CALL and return the camelCase response payload; CallError/timeout -> ProtocolError."""
        payload_cls = getattr(call, message.action)
        kwargs = {_snake(key): value for key, value in message.payload.items()}
        try:
            result = await self.call(payload_cls(**kwargs), suppress=False)
        except OCPPError as exc:
            raise ProtocolError(f"{message.action} rejected by CSMS: {exc}") from exc
        except TimeoutError as exc:
            raise ProtocolError(f"{message.action}: no response within {self._response_timeout}s") from exc
        finally:
            checkpoint()  # the library's wait_for may have swallowed our cancellation (see chargeagent.tasks)
        response: dict[str, Any] = snake_to_camel_case(
            {k: v for k, v in vars(result).items() if v is not None}
        )
        return response

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

    @_on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            attr = _VARIABLES.get((component, variable))
            result: dict[str, Any] = {
                "attributeStatus": "Accepted" if attr else _unknown(component),
                "component": {"name": component},
                "variable": {"name": variable},
            }
            if attr:
                result["attributeValue"] = str(int(getattr(self.core, attr)))
            results.append(result)
        return call_result("GetVariables", {"getVariableResult": results})

    @_on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            attr = _VARIABLES.get((component, variable))
            status = _unknown(component) if attr is None else "Accepted"
            if attr is not None:
                try:
                    value = int(item["attribute_value"])
                except ValueError:
                    value = 0
                if value > 0:
                    setattr(self.core, attr, float(value))
                else:
                    status = "Rejected"
            results.append(
                {"attributeStatus": status, "component": {"name": component}, "variable": {"name": variable}}
            )
        return call_result("SetVariables", {"setVariableResult": results})


def _unknown(component: str) -> str:
    known_components = {name for name, _ in _VARIABLES}
    return "UnknownVariable" if component in known_components else "UnknownComponent"


def call_result(action: str, payload: dict[str, Any]) -> Any:
    """Build the library's call_result dataclass from a camelCase payload."""
    from ocpp.v201 import call_result as results  # noqa: PLC0415 - keeps the module namespace small

    return getattr(results, action)(**{_snake(k): v for k, v in payload.items()})


def _snake(key: str) -> str:
    """Top-level key in the library's snake_case (nested dicts keep camelCase; the library converts back)."""
    converted: dict[str, Any] = camel_to_snake_case({key: None})
    return next(iter(converted))
