"""The local API for a whole simulated site (`chargeagent simulate --mode wire --api-port N`).

Read-only, on the simulator's own loop, bound to loopback: `GET /api/stations` (every agent's
`station.status.Status`), `GET /api/stations/{id}` (one), and `GET /` (one page: a table of the stations,
refreshed every second). The agents are the real ones the wire mode runs, so what the page shows is what
each agent's own API would. Nothing here changes state: operator actions go to one agent's own API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from station.status import status

if TYPE_CHECKING:
    from station.agent import StationAgent

log = structlog.get_logger(__name__)

_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>chargeagent site</title>
<style>body{font-family:system-ui,sans-serif;margin:20px;color:#111827}table{border-collapse:collapse}
td,th{border:1px solid #d1d5db;padding:3px 10px;text-align:right}th{background:#f3f4f6}
td:first-child,td:nth-child(2),td:nth-child(7){text-align:left}</style></head><body>
<h1>Site: <span id="count">0</span> stations, <span id="load">0</span> kW</h1>
<table><thead><tr><th>station</th><th>connector</th><th>A</th><th>SoC %</th><th>cell °C</th><th>kWh</th>
<th>binding</th><th>queue</th></tr></thead><tbody id="rows"></tbody></table>
<script>
async function refresh() {
  const stations = await (await fetch("/api/stations")).json();
  const body = document.getElementById("rows");
  body.replaceChildren();
  let load = 0;
  for (const s of stations) {
    const e = s.evses[0] || {}, m = e.meter, c = s.control;
    load += m && e.transaction_id ? m.power_w / 1000 : 0;
    const charging = c && e.transaction_id;
    const cells = [s.station_id, e.connector_status || "", charging ? c.current_a.toFixed(1) : "",
      m && m.soc !== null ? (m.soc * 100).toFixed(0) : "", c ? c.cell_temp_max_c.toFixed(1) : "",
      m ? (m.energy_wh / 1000).toFixed(1) : "", charging ? c.binding_constraint : "",
      String(s.queue_depth)];
    const tr = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    body.append(tr);
  }
  document.getElementById("count").textContent = String(stations.length);
  document.getElementById("load").textContent = load.toFixed(1);
}
refresh(); setInterval(refresh, 1000);
</script></body></html>"""


class FleetApiServer:
    def __init__(self, agents: Callable[[], Mapping[str, StationAgent]], host: str, port: int) -> None:
        self._agents, self.host, self.port = agents, host, port
        self.ready = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/api/stations", self._stations)
        app.router.add_get("/api/stations/{station_id}", self._station)
        self.app = app

    async def run(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            self.port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
            log.info("fleet_api_listening", host=self.host, port=self.port)
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            self.ready.clear()
            await runner.cleanup()

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def _stations(self, _: web.Request) -> web.Response:
        body = [status(agent, history=0).model_dump(mode="json") for agent in self._agents().values()]
        return web.json_response(body)

    async def _station(self, request: web.Request) -> web.Response:
        agent = self._agents().get(request.match_info["station_id"])
        if agent is None:
            return web.json_response({"error": "no such station"}, status=404)
        return web.json_response(text=status(agent).model_dump_json())
