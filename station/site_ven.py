"""`chargeagent publish-forecast --vtn-url`: the site's forecast and metered load reported to an OpenADR VTN.

The site process has the history and the forecaster, not the stations: its VEN reports the latest forecast
(p10/p50/p90 per interval, W, reading type Projected) and the last metered interval's load, sends the
forecast at once when its p50 energy moved by more than `[grid] change_threshold` (the same rule as the MQTT
publisher, `station.grid.PublishRule`), and refuses limit events (a station agent's own VEN obeys those:
station/grid_link.py).
"""

from __future__ import annotations

import math
from typing import Any

from chargeagent.config import GridSettings
from station.grid import PublishRule, p50_energy_kwh
from station.openadr_ven import GridVen, from_settings


class SiteVen:
    def __init__(self, grid: GridSettings) -> None:
        config, rules = from_settings(grid, grid.site_id, default_max_w=math.inf)
        self._message: dict[str, Any] | None = None
        self._measured_w = 0.0
        self._rule = PublishRule(grid.publish_interval_s, grid.change_threshold)
        self.ven = GridVen(config, rules, measured_w=lambda: self._measured_w, forecast=lambda: self._message)

    async def run(self) -> None:
        await self.ven.run()

    def update(self, message: dict[str, Any], measured_kw: float, now_s: float) -> None:
        """A new forecast (and the last metered load); a significant change is reported at once."""
        self._message = message
        if math.isfinite(measured_kw):
            self._measured_w = measured_kw * 1e3
        energy = p50_energy_kwh(message)
        if self._rule.changed(energy):
            self.ven.forecast_changed()
            self._rule.published(now_s, energy)
