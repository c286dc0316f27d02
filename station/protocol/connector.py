"""Connector status state machine (OCPP 2.0.1 ConnectorStatusEnumType) as a transition table."""

from __future__ import annotations

from enum import StrEnum

from chargeagent.errors import InvalidTransition


class ConnectorStatus(StrEnum):
    """OCPP 2.0.1 ConnectorStatusEnumType values (sent verbatim in StatusNotification)."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ConnectorEvent(StrEnum):
    """What can happen to a connector."""

    PLUG_IN = "plug_in"
    UNPLUG = "unplug"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    DISABLE = "disable"
    ENABLE = "enable"


_S = ConnectorStatus
_E = ConnectorEvent

# (state, event) -> next state. OCPP 2.0.1 part 2, G01/G03/G04 (status notifications): a cable can be
# plugged into an Available or Reserved connector; a cable plugged into an Unavailable or Faulted connector
# leaves the status as it is (the cable is still recorded); a fault can happen in any state; clearing a
# fault or enabling returns to Available (`Connector.fire` then re-plugs if a cable is still present).
TRANSITIONS: dict[tuple[ConnectorStatus, ConnectorEvent], ConnectorStatus] = {
    (_S.AVAILABLE, _E.PLUG_IN): _S.OCCUPIED,
    (_S.RESERVED, _E.PLUG_IN): _S.OCCUPIED,
    (_S.OCCUPIED, _E.UNPLUG): _S.AVAILABLE,
    (_S.AVAILABLE, _E.DISABLE): _S.UNAVAILABLE,
    (_S.OCCUPIED, _E.DISABLE): _S.UNAVAILABLE,
    (_S.UNAVAILABLE, _E.ENABLE): _S.AVAILABLE,
    (_S.UNAVAILABLE, _E.UNPLUG): _S.UNAVAILABLE,
    (_S.UNAVAILABLE, _E.PLUG_IN): _S.UNAVAILABLE,
    (_S.FAULTED, _E.PLUG_IN): _S.FAULTED,
    (_S.FAULTED, _E.FAULT_CLEARED): _S.AVAILABLE,
    (_S.FAULTED, _E.UNPLUG): _S.FAULTED,
    **{(state, _E.FAULT): _S.FAULTED for state in ConnectorStatus},
}


class Connector:
    """One connector's status; `fire` applies an event or raises `InvalidTransition`."""

    def __init__(self, evse_id: int, connector_id: int = 1) -> None:
        self.evse_id = evse_id
        self.connector_id = connector_id
        self.status = ConnectorStatus.AVAILABLE
        self.cable_plugged = False

    def fire(self, event: ConnectorEvent) -> ConnectorStatus:
        try:
            self.status = TRANSITIONS[(self.status, event)]
        except KeyError:
            raise InvalidTransition("connector", self.status.value, event.value) from None
        if event is ConnectorEvent.PLUG_IN:
            self.cable_plugged = True
        elif event is ConnectorEvent.UNPLUG:
            self.cable_plugged = False
        elif self.status is ConnectorStatus.AVAILABLE and self.cable_plugged:
            self.status = ConnectorStatus.OCCUPIED  # enabled / fault cleared with a cable still in
        return self.status
