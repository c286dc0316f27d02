"""The one interface every BMS backend implements (CAN, MQTT, and the simulator's in-process peer).

Lifecycle per charging session, driven by the station agent:

    info = await link.start_session()          # handshake + parameter configuration
    async for telemetry in link.telemetry():   # ends when the session ends (either side)
        await link.command(ChargeCommand(...)) # every control step
    reason = link.end_reason                   # why it ended (None if still running)
    await link.stop_session(StopReason.REMOTE) # charger-initiated end; idempotent
    await link.close()                         # release the transport

Backends validate everything they receive into the models of `bms_link.models`; anything that does not
validate is logged once, counted, and reported as a fault (never yielded as telemetry).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from bms_link.models import ChargeCommand, PackInfo, PackTelemetry, StopReason


class BmsLink(ABC):
    """Charger-side view of one vehicle's BMS."""

    @abstractmethod
    async def start_session(self) -> PackInfo:
        """Run the handshake and parameter phases; raise `BmsLinkError` if the BMS does not answer."""

    @abstractmethod
    def telemetry(self) -> AsyncIterator[PackTelemetry]:
        """Telemetry during the charging phase; the iterator ends when the session ends."""

    @abstractmethod
    async def command(self, command: ChargeCommand) -> None:
        """Set what the charger reports/delivers (voltage, current limit, permitted)."""

    @abstractmethod
    async def stop_session(self, reason: StopReason) -> None:
        """End the session from the charger side (output to 0 A first); idempotent."""

    @property
    @abstractmethod
    def end_reason(self) -> StopReason | None:
        """Why the current/last session ended, or None while it runs."""

    @abstractmethod
    async def close(self) -> None:
        """Release the transport; safe to call twice."""
