"""Availability and reset answered from the station's state (OCPP 2.0.1 part 2, G03/G04 and B11/B12).

Sans-I/O, like `station.protocol.remote`: each function takes the `StationCore` and returns the response
payload plus the messages to send after it.

Availability: the CSMS sets an *operational status* (Operative / Inoperative) on the whole station
(evseId 0 or no EVSE, G04) or on one EVSE / connector (G03). An EVSE is usable when both the station and the
EVSE are Operative. A change that would take a charging EVSE out of service answers Scheduled and applies
when its transaction ends; idle EVSEs change at once and report a StatusNotification once the change took
effect. Asking for the status an EVSE already has is Accepted. The operational status survives a restart
(the agent persists `StationCore.operative`).

Reset: Immediate ends running transactions (stoppedReason ImmediateReset) and restarts at once; OnIdle
waits until no transaction runs and answers Scheduled while one does (B11, B12). Resetting a single EVSE
is optional in the spec; this station answers Rejected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from station.protocol.connector import ConnectorEvent, ConnectorStatus
from station.protocol.station import Evse, Outbound, StationCore

STATION = 0  # evseId 0: the charging station as a whole


def on_change_availability(
    core: StationCore, operational_status: str, evse_id: int | None, now: datetime
) -> tuple[dict[str, Any], list[Outbound]]:
    """G03/G04: (response, StatusNotifications of the connectors that changed now)."""
    target = STATION if evse_id is None else evse_id
    if target != STATION and target not in core.evses:
        return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}, []
    operative = operational_status == "Operative"
    core.operative[target] = operative
    affected = list(core.evses.values()) if target == STATION else [core.evses[target]]
    waiting = [e for e in affected if _busy(core, e) and _usable(core, e.evse_id) != _in_service(e)]
    messages = apply_availability(core, now)
    return {"status": "Scheduled" if waiting else "Accepted"}, messages


def apply_availability(core: StationCore, now: datetime) -> list[Outbound]:
    """Bring every idle connector in line with the operational status; StatusNotification for each change.

    Called after a ChangeAvailability, at start-up (a stored Inoperative) and when a transaction ends (a
    Scheduled change takes effect then).
    """
    changed = []
    for evse in core.evses.values():
        if _busy(core, evse) or _usable(core, evse.evse_id) == _in_service(evse):
            continue
        if evse.connector.status is ConnectorStatus.FAULTED:
            continue  # a fault clears first; the status then follows the operational status
        usable = _usable(core, evse.evse_id)
        evse.connector.fire(ConnectorEvent.ENABLE if usable else ConnectorEvent.DISABLE)
        changed.append(evse)
    return [core.status_notification(evse, now) for evse in changed]


def on_reset(core: StationCore, reset_type: str, evse_id: int | None) -> dict[str, Any]:
    """B11/B12: Accepted (reset now), Scheduled (OnIdle while charging) or Rejected (one EVSE)."""
    if evse_id is not None:
        return {"status": "Rejected", "statusInfo": {"reasonCode": "EvseResetUnsupported"}}
    busy = any(_busy(core, evse) for evse in core.evses.values())
    if reset_type == "OnIdle" and busy:
        return {"status": "Scheduled"}
    return {"status": "Accepted"}


def _usable(core: StationCore, evse_id: int) -> bool:
    return core.operative.get(STATION, True) and core.operative.get(evse_id, True)


def _in_service(evse: Evse) -> bool:
    return evse.connector.status is not ConnectorStatus.UNAVAILABLE


def _busy(core: StationCore, evse: Evse) -> bool:
    return core.transaction(evse.evse_id) is not None
