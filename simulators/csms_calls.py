"""CSMS-initiated OCPP 2.0.1 CALLs (RequestStartTransaction, SetChargingProfile, ...) as typed helpers.

`CsmsCalls` is a mixin for `simulators.csms.EmbeddedCsms`: each helper builds the camelCase payload,
sends it through the host's `call(station_id, action, payload)` and returns the part of the response
a test or the demo needs (usually `status`). The helpers add no rules of their own; the station's
answer and any `ProtocolError` / `CsmsCallError` from `call` reach the caller unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from simulators.csms_frames import Received


class CsmsCalls(ABC):
    """Typed CSMS-initiated CALLs; the host class provides `call` and `_remote_start_ids`."""

    _remote_start_ids: Iterator[int]  # remoteStartId values for RequestStartTransaction without one

    @abstractmethod
    async def call(self, station_id: str, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one CALL and return the raw (camelCase) response payload."""

    @abstractmethod
    def received(self, station_id: str | None = None, action: str | None = None) -> list[Received]:
        """What stations sent, in arrival order."""

    @abstractmethod
    async def wait_for(
        self,
        station_id: str,
        action: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout_s: float = 10.0,
        *,
        since: int = 0,
    ) -> Received:
        """The first matching message, waiting if none yet."""

    async def request_start_transaction(
        self,
        station_id: str,
        *,
        id_token: str,
        evse_id: int | None = 1,
        remote_start_id: int | None = None,
        charging_profile: Mapping[str, Any] | None = None,
        id_token_type: str = "Central",  # noqa: S107  # an IdTokenEnumType, not a secret
    ) -> str:
        payload: dict[str, Any] = {
            "idToken": {"idToken": id_token, "type": id_token_type},
            "remoteStartId": (next(self._remote_start_ids) if remote_start_id is None else remote_start_id),
        }
        if evse_id is not None:
            payload["evseId"] = evse_id
        if charging_profile is not None:
            payload["chargingProfile"] = dict(charging_profile)
        response = await self.call(station_id, "RequestStartTransaction", payload)
        return str(response["status"])

    async def request_stop_transaction(self, station_id: str, transaction_id: str) -> str:
        payload = {"transactionId": transaction_id}
        return str((await self.call(station_id, "RequestStopTransaction", payload))["status"])

    async def set_charging_profile(self, station_id: str, *, evse_id: int, profile: Mapping[str, Any]) -> str:
        payload = {"evseId": evse_id, "chargingProfile": dict(profile)}
        return str((await self.call(station_id, "SetChargingProfile", payload))["status"])

    async def clear_charging_profile(
        self,
        station_id: str,
        *,
        charging_profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> str:
        criteria = {
            k: v
            for k, v in (
                ("evseId", evse_id),
                ("chargingProfilePurpose", purpose),
                ("stackLevel", stack_level),
            )
            if v is not None
        }
        payload: dict[str, Any] = {}
        if charging_profile_id is not None:
            payload["chargingProfileId"] = charging_profile_id
        if criteria:
            payload["chargingProfileCriteria"] = criteria
        return str((await self.call(station_id, "ClearChargingProfile", payload))["status"])

    async def get_composite_schedule(
        self,
        station_id: str,
        *,
        evse_id: int,
        duration_s: int,
        charging_rate_unit: str | None = None,
    ) -> dict[str, Any]:
        """The whole response: `status` and, when Accepted, `schedule`."""
        payload: dict[str, Any] = {"evseId": evse_id, "duration": duration_s}
        if charging_rate_unit is not None:
            payload["chargingRateUnit"] = charging_rate_unit
        return await self.call(station_id, "GetCompositeSchedule", payload)

    async def get_variables(
        self, station_id: str, variables: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """`variables` are (component, variable) names; returns getVariableResult entries."""
        data = [{"component": {"name": c}, "variable": {"name": v}} for c, v in variables]
        response = await self.call(station_id, "GetVariables", {"getVariableData": data})
        return cast(list[dict[str, Any]], response["getVariableResult"])

    async def set_variables(
        self, station_id: str, values: Sequence[tuple[str, str, str]]
    ) -> list[dict[str, Any]]:
        """`values` are (component, variable, value); returns setVariableResult entries."""
        data = [
            {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
            for c, v, value in values
        ]
        response = await self.call(station_id, "SetVariables", {"setVariableData": data})
        return cast(list[dict[str, Any]], response["setVariableResult"])

    async def get_base_report(self, station_id: str, request_id: int, report_base: str) -> str:
        """GetBaseReport (B07); the report itself arrives as NotifyReport pages: see `report_pages`."""
        payload = {"requestId": request_id, "reportBase": report_base}
        return str((await self.call(station_id, "GetBaseReport", payload))["status"])

    async def report_pages(
        self, station_id: str, request_id: int, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """Every NotifyReport page of `request_id` in arrival order, once the last one (tbc false) came.

        The embedded CSMS answers each NotifyReport (simulators/csms_connection.py) and journals it.
        """

        def last_page(payload: dict[str, Any]) -> bool:
            return bool(payload["requestId"] == request_id and not payload.get("tbc", False))

        await self.wait_for(station_id, "NotifyReport", last_page, timeout_s)
        return [
            r.payload
            for r in self.received(station_id, "NotifyReport")
            if r.payload["requestId"] == request_id
        ]

    async def reset(
        self, station_id: str, *, reset_type: str = "Immediate", evse_id: int | None = None
    ) -> str:
        payload: dict[str, Any] = {"type": reset_type}
        if evse_id is not None:
            payload["evseId"] = evse_id
        return str((await self.call(station_id, "Reset", payload))["status"])

    async def trigger_message(
        self,
        station_id: str,
        requested_message: str,
        *,
        evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> str:
        payload: dict[str, Any] = {"requestedMessage": requested_message}
        if evse_id is not None:
            payload["evse"] = {"id": evse_id}
            if connector_id is not None:
                payload["evse"]["connectorId"] = connector_id
        return str((await self.call(station_id, "TriggerMessage", payload))["status"])
