"""The station's own OpenADR VEN (`[grid] vtn_url`): grid events become ChargingStationExternalConstraints.

An accepted OpenADR event (station/openadr.py says which ones) is installed in the station's profile store
as external constraints on evseId 0 (`ProfileStore.install_external`), so it caps the composite schedule a
CSMS sees (GetCompositeSchedule, GetChargingProfiles with chargingLimitSource "SO") and enters the safety
envelope as its `grid_limit` candidate: it can only lower the current. A cancelled event is removed at once;
one whose time has passed simply stops applying. After a restart the VEN re-registers and the VTN sends the
active events again, so nothing of them needs to persist here.

The VEN reports the station's measured output power (the last meter sample of each EVSE with a
transaction). The site-wide load forecast is reported by the site process (`chargeagent publish-forecast
--vtn-url`), which has the history it needs.
"""

from __future__ import annotations

from typing import Any

import structlog

from chargeagent.config import Settings
from policy.price_plan import PriceSignal
from station.openadr import Price
from station.openadr_ven import GridVen, from_settings
from station.protocol.station import StationCore

log = structlog.get_logger(__name__)


class GridLink:
    def __init__(self, core: StationCore, settings: Settings) -> None:
        st = settings.station
        config, rules = from_settings(
            settings.grid,
            settings.station.id,
            default_max_w=st.charger_max_current_a * st.charger_max_voltage_v,
        )
        self.core = core
        self._keys: dict[str, list[str]] = {}  # event id -> its installed constraint keys
        self._prices: dict[str, tuple[PriceSignal, ...]] = {}  # event id -> its price signals
        self.prices_version = 0  # bumped on every change (the session's price plan re-reads them)
        self.ven = GridVen(
            config,
            rules,
            measured_w=self.measured_w,
            on_limits=self.install,
            on_cancel=self.cancel,
            on_prices=self.set_prices,
        )

    async def run(self) -> None:
        await self.ven.run()

    def measured_w(self) -> float:
        total = 0.0
        for evse_id, evse in self.core.evses.items():
            if self.core.transaction(evse_id) is not None and evse.last_sample is not None:
                total += evse.last_sample.power_w
        return total

    def install(self, event_id: str, profiles: dict[str, dict[str, Any]]) -> None:
        self.cancel(event_id, quiet=True)  # a modified event replaces its earlier constraints
        for key, profile in profiles.items():
            self.core.profiles.install_external(key, profile)
        self._keys[event_id] = list(profiles)
        log.warning("grid_constraint_installed", event_id=event_id, profiles=len(profiles))

    def set_prices(self, event_id: str, prices: tuple[Price, ...]) -> None:
        self._prices[event_id] = tuple(
            PriceSignal(p.start.timestamp(), p.end.timestamp(), p.value, p.signal_type) for p in prices
        )
        self.prices_version += 1

    def price_signals(self) -> tuple[PriceSignal, ...]:
        return tuple(signal for signals in self._prices.values() for signal in signals)

    def cancel(self, event_id: str, quiet: bool = False) -> None:
        if self._prices.pop(event_id, None) is not None:
            self.prices_version += 1
        removed = [key for key in self._keys.pop(event_id, []) if self.core.profiles.clear_external(key)]
        if removed and not quiet:
            log.warning("grid_constraint_removed", event_id=event_id)
