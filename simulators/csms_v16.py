"""The embedded CSMS's OCPP 1.6J side: one station's connection when it negotiated `ocpp1.6`.

Same framing, journal and CSMS-initiated CALLs as the 2.0.1 `StationSession` (it subclasses it); the
handlers answer the 1.6 Core messages, and StartTransaction is given the next integer transaction id
(OCPP 1.6 Core 6.46: the Central System assigns it). Payloads are validated against the 1.6 schemas.
"""

from __future__ import annotations

import itertools
from typing import Any

from ocpp.v16 import call_result

from simulators.csms_connection import StationSession, _on

SUBPROTOCOL = "ocpp1.6"
_transaction_ids = itertools.count(1)  # unique across the CSMS's stations, like a real Central System's


class StationSession16(StationSession):
    """A 1.6 station's connection (the 2.0.1 session's plumbing, 1.6 handlers and validation)."""

    _ocpp_version = "1.6"
    _results = call_result  # ocpp.v16's: BootNotification and Heartbeat come from the 2.0.1 session

    def _id_tag_info(self, id_tag: str) -> dict[str, str]:
        info = self._csms._id_token_info({"id_token": id_tag, "type": "ISO14443"})  # as 2.0.1 kwargs arrive
        return {"status": info["status"]}  # 1.6 AuthorizationStatus has the same Accepted/Invalid/... values

    @_on("Authorize")
    def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:  # type: ignore[override]  # 1.6 fields
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @_on("StatusNotification")
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @_on("StartTransaction")
    def on_start_transaction(self, id_tag: str, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info=self._id_tag_info(id_tag)
        )

    @_on("MeterValues")
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @_on("StopTransaction")
    def on_stop_transaction(self, id_tag: str | None = None, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(id_tag_info=None if id_tag is None else self._id_tag_info(id_tag))

    @_on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @_on("DataTransfer")
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")
