"""The one exception hierarchy of chargeagent; library exceptions are mapped to these at the boundary."""

from __future__ import annotations


class ChargeAgentError(Exception):
    """Root of every error chargeagent raises on purpose."""


class ProtocolError(ChargeAgentError):
    """An OCPP or CAN protocol rule was broken by us or by the peer."""


class BmsLinkError(ChargeAgentError):
    """The BMS transport failed or delivered something unusable."""


class SafetyViolation(ChargeAgentError):
    """A value would take the charger outside the safety envelope."""


class ConfigError(ChargeAgentError):
    """A configuration value is missing or invalid; the message names the key."""


class InvalidTransition(ProtocolError):
    """A table-driven state machine was fed an event its current state does not accept."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: event {event!r} is not allowed in state {state!r}")
        self.machine = machine
        self.state = state
        self.event = event
