"""One station's connection to the embedded CSMS: an `ocpp.v201.ChargePoint` with our inbound handlers.

`StationSession` routes frames through `simulators.csms_frames.parse_frame` (so unreadable frames get
the CALLERROR OCPP-J asks for), answers inbound CALLs with `@on` handlers whose policy (boot answers,
id tokens, the journal) belongs to `simulators.csms.EmbeddedCsms`, and sends CSMS-initiated CALLs
with one future per message id (`call_raw`). `CsmsCallError` is what a CALLERROR answer raises.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import ocpp.messages
import structlog
from ocpp.charge_point import (
    _raise_key_error,
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from chargeagent.clock import ocpp_timestamp
from chargeagent.errors import ProtocolError
from simulators.csms_frames import FrameError, parse_frame
from station.ocpp_routes import slim_charge_point
from station.ocpp_schema import use_compiled, validate_payload

if TYPE_CHECKING:
    from simulators.csms import EmbeddedCsms

# Schema validation stays ON; only the thread-pool hop is switched off. ocpp's default runs every
# jsonschema validation in the loop's executor. The work is pure Python and holds the GIL, so the
# hop buys no parallelism (~0.7 ms per TransactionEvent either way, measured on our 2-core box),
# and on the virtual-time loop the simulators use, work hidden in a thread is invisible to the
# loop: it may advance virtual time past a response timeout while a validation is in flight.
# The flag is process-wide, so station adapters in the same process validate inline too.
ocpp.messages.ASYNC_VALIDATION = False

log = structlog.get_logger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


@functools.cache
def _snake_key(key: str) -> str:
    return str(next(iter(camel_to_snake_case({key: None}))))


@functools.cache
def _camel_key(key: str) -> str:
    return str(next(iter(snake_to_camel_case({key: None}))))


def _keys(data: Any, convert: Callable[[str], str]) -> Any:
    """Every dict key inside `data` through `convert` (what the library's case converters do)."""
    if isinstance(data, dict):
        return {convert(key): _keys(value, convert) for key, value in data.items()}
    if isinstance(data, list):
        return [_keys(value, convert) for value in data]
    return data


def _on(action: str) -> Callable[[_F], _F]:
    """`ocpp.routing.on` with a type mypy can see through."""
    return cast(Callable[[_F], _F], on(action))


class CsmsCallError(ProtocolError):
    """The station answered our CALL with a CALLERROR."""

    def __init__(self, station_id: str, action: str, code: str, description: str) -> None:
        super().__init__(f"{station_id} answered {action} with CALLERROR {code}: {description}")
        self.error_code = code
        self.description = description


class StationSession(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """One station's connection: inbound handlers, outbound CALL bookkeeping."""

    _results: Any = call_result  # the OCPP version's call_result module (1.6 sessions: ocpp.v16's)
    _ocpp_version: str  # set by the library's ChargePoint (class attribute of ocpp.v201's / ocpp.v16's)

    def __init__(self, station_id: str, connection: ServerConnection, csms: EmbeddedCsms) -> None:
        super().__init__(station_id, connection, response_timeout=csms.response_timeout_s)
        slim_charge_point(self)  # shared route map, no idle asyncio.Queue (station.ocpp_routes)
        self._ocpp_version = use_compiled(self._ocpp_version)  # same schemas, compiled (station.ocpp_schema)
        self._csms = csms
        self._log = log.bind(station_id=station_id)
        self._pending: dict[str, tuple[str, asyncio.Future[CallResult | CallError]]] = {}

    async def serve(self) -> None:
        """Read frames until the connection closes; bad frames never end the loop."""
        try:
            async for raw in self._connection:
                try:
                    await self.route_message(raw)
                except ConnectionClosed:
                    raise
                except Exception as exc:  # our bug: keep serving, but make it visible
                    self._log.exception("csms_internal_error")
                    self._csms.internal_errors.append(exc)
        except ConnectionClosed:
            pass
        finally:
            for action, future in self._pending.values():
                if not future.done():
                    future.set_exception(ProtocolError(f"{self.id} disconnected before answering {action}"))

    async def route_message(self, raw_msg: str | bytes) -> None:
        msg = parse_frame(raw_msg)
        if isinstance(msg, FrameError):
            self._log.warning(
                "ocpp_bad_frame", error_code=msg.code, reason=msg.description, frame=raw_msg[:120]
            )
            if msg.reply:
                await self._send(msg.to_call_error().to_json())
        elif isinstance(msg, Call):
            self._log.debug("ocpp_in", kind="call", action=msg.action, message_id=msg.unique_id)
            try:
                await self._handle_call(msg)  # validates, calls our @on handler, sends the answer
            except OCPPError as error:
                cause = str(error.details.get("cause", error.description))[:200]
                self._log.warning(
                    "ocpp_call_rejected", action=msg.action, error_code=error.code, reason=cause
                )
                await self._send(msg.create_call_error(error).to_json())
                return
            self._csms._record(self.id, msg)
        else:
            pending = self._pending.get(msg.unique_id)
            self._log.debug("ocpp_in", kind=type(msg).__name__, message_id=msg.unique_id)
            if pending is None or pending[1].done():
                self._log.warning("ocpp_unexpected_response", message_id=msg.unique_id)
            else:
                pending[1].set_result(msg)

    async def _handle_call(self, msg: Call) -> None:
        """The library's `_handle_call` (route, validate, call the `@on` handler, answer, `@after`), with
        the payload keys converted through a per-key cache: the library runs two regexes per key of every
        payload, in both directions, which was the CSMS's largest cost per call (bench_ocpp_fleet.py).
        The conversions themselves are the library's, one key at a time. Raises `OCPPError` as it does."""
        handlers = self.route_map.get(msg.action, {})
        handler = handlers.get("_on_action")
        if handler is None:
            _raise_key_error(msg.action, self._ocpp_version)
        await validate_payload(msg, self._ocpp_version)
        kwargs = _keys(msg.payload, _snake_key)
        try:
            response = handler(**kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:  # as the library: an InternalError CALLERROR, logged
            self._log.exception("csms_handler_failed", action=msg.action)
            await self._send(msg.create_call_error(exc).to_json())
            return
        result = msg.create_call_result(_keys(remove_nones(serialize_as_dict(response)), _camel_key))
        await validate_payload(result, self._ocpp_version)
        await self._send(result.to_json())
        after = handlers.get("_after_action")
        if after is not None:
            pending = after(**kwargs)
            if inspect.isawaitable(pending):
                asyncio.ensure_future(pending)  # noqa: RUF006 -- as the library: after-hooks may call out

    async def _send(self, message: str) -> None:
        self._log.debug("ocpp_out", size_bytes=len(message))
        await self._connection.send(message)

    async def call_raw(self, action: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        request = Call(str(uuid.uuid4()), action, payload)
        try:
            await validate_payload(request, self._ocpp_version)
        except OCPPError as error:
            cause = error.details.get("cause", error.description)
            raise ProtocolError(f"{action} request is not schema-valid: {cause}") from None
        # OCPP-J part 4 §4.1.1: one outstanding CALL per direction and connection.
        async with self._call_lock:
            future: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
            self._pending[request.unique_id] = (action, future)
            try:
                await self._send(request.to_json())
                async with asyncio.timeout(timeout_s):
                    reply = await future
            except TimeoutError:
                raise ProtocolError(f"{self.id}: no answer to {action} in {timeout_s} s") from None
            except ConnectionClosed:
                raise ProtocolError(f"{self.id} disconnected before answering {action}") from None
            finally:
                del self._pending[request.unique_id]
        if isinstance(reply, CallError):
            raise CsmsCallError(self.id, action, reply.error_code, reply.error_description)
        try:
            await validate_payload(CallResult(reply.unique_id, reply.payload, action), self._ocpp_version)
        except OCPPError as error:
            cause = error.details.get("cause", error.description)
            raise ProtocolError(f"{self.id}: invalid {action} response: {cause}") from None
        return cast(dict[str, Any], reply.payload)

    # -- inbound handlers (payload keys arrive snake_case, see ocpp.charge_point._handle_call) --

    def _now(self) -> str:
        return ocpp_timestamp(self._csms.clock.now())

    # BootNotification and Heartbeat answer alike in 2.0.1 and 1.6; `_results` is the version's module.
    @_on("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        status, interval_s = self._csms._next_boot_answer(self.id)
        return self._results.BootNotification(current_time=self._now(), interval=interval_s, status=status)

    @_on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return self._results.Heartbeat(current_time=self._now())

    @_on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=self._csms._id_token_info(id_token))

    @_on("TransactionEvent")
    def on_transaction_event(
        self, id_token: dict[str, Any] | None = None, **_: Any
    ) -> call_result.TransactionEvent:
        # OCPP 2.0.1 part 2, TransactionEventResponse: idTokenInfo answers a request's idToken.
        info = None if id_token is None else self._csms._id_token_info(id_token)
        return call_result.TransactionEvent(id_token_info=info)

    @_on("StatusNotification")
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @_on("MeterValues")
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @_on("NotifyReport")
    def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @_on("ReportChargingProfiles")
    def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @_on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @_on("NotifyEvent")
    def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @_on("NotifyEVChargingNeeds")
    def on_ev_charging_needs(self, **_: Any) -> call_result.NotifyEVChargingNeeds:
        # Accepted = processed (K15.FR.03), not a promise to meet them; this CSMS plans nothing.
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @_on("FirmwareStatusNotification")
    def on_firmware_status(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @_on("LogStatusNotification")
    def on_log_status(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @_on("DataTransfer")
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")  # we implement no vendor
