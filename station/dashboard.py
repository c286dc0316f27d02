"""The dashboard page (`GET /`): one self-contained HTML page, no build step, no CDN (the edge is offline).

It polls `/api/status` every second and `/api/plan` every ten, and draws the recent SoC, current and
temperature as inline SVG sparklines. Values are inserted with `textContent`, never as HTML.
"""

from __future__ import annotations

DASHBOARD_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>chargeagent {{station_id}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#fff;padding:12px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:20px;margin:0}.pill{padding:2px 10px;border-radius:12px;font-size:13px}
.on{background:#16a34a}.off{background:#dc2626}main{padding:16px 20px;display:grid;gap:16px;align-items:start;
grid-template-columns:repeat(auto-fit,minmax(260px,1fr))}.card{background:#fff;border-radius:8px;
padding:12px 16px;box-shadow:0 1px 2px #0002}.card h2{font-size:13px;text-transform:uppercase;color:#6b7280;
margin:0 0 8px}.big{font-size:32px;font-weight:600}.row{display:flex;justify-content:space-between;
padding:2px 0;font-size:14px;gap:8px}.row span:last-child{overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;max-width:60%}.muted{color:#6b7280}svg{width:100%;height:70px;background:#f9fafb;
border-radius:4px}polyline{fill:none;stroke-width:2}.chart{display:flex;justify-content:space-between;
align-items:baseline;gap:8px}.range{font-size:12px;color:#6b7280;font-variant-numeric:tabular-nums}
.wide{grid-column:span 2}table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}
td,th{text-align:right;padding:1px 12px 1px 0;min-width:70px}th{color:#6b7280;font-weight:500}
.small{font-size:12px}
</style></head><body>
<header><h1>{{station_id}}</h1><span id="conn" class="pill off">connecting…</span>
<span class="muted" id="updated"></span></header>
<main>
<div class="card"><h2>Charging</h2><div class="big" id="current">–</div>
<div class="row"><span>connector</span><span id="connector">–</span></div>
<div class="row"><span>transaction</span><span id="tx">–</span></div>
<div class="row"><span>limit (profiles)</span><span id="limit">–</span></div>
<div class="row"><span>binding constraint</span><span id="binding">–</span></div></div>
<div class="card"><h2>Battery</h2><div class="big" id="soc">–</div>
<div class="row"><span>hottest cell</span><span id="temp">–</span></div>
<div class="row"><span>pack voltage</span><span id="voltage">–</span></div>
<div class="row"><span>energy (meter)</span><span id="energy">–</span></div></div>
<div class="card"><h2>Operator</h2>
<div class="row"><span>model</span><span id="model">–</span></div>
<div class="row"><span>current cap</span><span id="cap">–</span></div>
<div class="row"><span>paused</span><span id="paused">–</span></div>
<div class="row"><span>grid constraints</span><span id="grid">–</span></div>
<div class="row"><span>queued messages</span><span id="queue">–</span></div></div>
<div class="card"><div class="chart"><h2>State of charge (%)</h2><span class="range" id="soc-range"></span>
</div><svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="soc-line" stroke="#2563eb"/></svg>
<div class="chart"><h2>Current (A)</h2><span class="range" id="cur-range"></span></div>
<svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="cur-line" stroke="#16a34a"/></svg>
<div class="chart"><h2>Hottest cell (°C)</h2><span class="range" id="temp-range"></span></div>
<svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="temp-line" stroke="#dc2626"/></svg>
<div class="small muted" id="window"></div></div>
<div class="card wide"><h2>Charge plan</h2><div id="plan" class="muted">no plan</div>
<table><thead><tr><th>SoC from</th><th>to</th><th>C-rate</th></tr></thead><tbody id="segments"></tbody>
</table><div class="chart"><h2>Predicted cell temperature (°C)</h2><span class="range" id="plan-range"></span>
</div><svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="plan-line" stroke="#ea580c"/></svg>
<div class="small muted" id="explanation"></div></div>
</main>
<script>
const $ = (id) => document.getElementById(id);
const fmt = (v, d, unit) => (v === null || v === undefined) ? "–" : v.toFixed(d) + unit;
function line(id, values, digits) {
  const range = $(id.replace("-line", "-range"));
  if (!values.length) { $(id).setAttribute("points", ""); range.textContent = ""; return; }
  const lo = Math.min(...values), hi = Math.max(...values), span = (hi - lo) || 1;
  range.textContent = `${lo.toFixed(digits)} – ${hi.toFixed(digits)}`;
  const pts = values.map((v, i) => `${(i / Math.max(values.length - 1, 1) * 300).toFixed(1)},` +
    `${(66 - (v - lo) / span * 62).toFixed(1)}`);
  $(id).setAttribute("points", pts.join(" "));
}
async function refresh() {
  try {
    const s = await (await fetch("/api/status")).json();
    $("conn").textContent = s.connected ? "CSMS connected" : "CSMS offline";
    $("conn").className = "pill " + (s.connected ? "on" : "off");
    const e = s.evses[0] || {};
    $("connector").textContent = e.connector_status || "–";
    $("tx").textContent = e.transaction_id || "none"; $("tx").title = e.transaction_id || "";
    const c = s.control, m = e.meter;
    $("current").textContent = c && e.transaction_id ? fmt(c.current_a, 1, " A") : "idle";
    $("limit").textContent = c ? fmt(c.limit_a, 1, " A") : "–";
    $("binding").textContent = c && e.transaction_id ? c.binding_constraint : "–";
    $("soc").textContent = m && m.soc !== null ? (m.soc * 100).toFixed(1) + " %" : "–";
    $("temp").textContent = c ? fmt(c.cell_temp_max_c, 1, " °C") : "–";
    $("voltage").textContent = c ? fmt(c.pack_voltage_v, 1, " V") : "–";
    $("energy").textContent = m ? fmt(m.energy_wh / 1000, 2, " kWh") : "–";
    $("model").textContent = s.override.model_enabled ? "on" : "off (CC-CV)";
    const cap = s.override.max_current_a;
    $("cap").textContent = cap === null ? "none" : fmt(cap, 0, " A");
    $("paused").textContent = s.override.paused ? "yes" : "no";
    $("grid").textContent = String(s.grid_constraints);
    $("queue").textContent = String(s.queue_depth);
    line("soc-line", s.history.map((h) => h[1] * 100), 1);
    line("cur-line", s.history.map((h) => h[2]), 1);
    line("temp-line", s.history.map((h) => h[3]), 1);
    const n = s.history.length;
    $("window").textContent = n ? `last ${n} control steps, ` +
      `${((s.history[n - 1][0] - s.history[0][0]) / 60).toFixed(1)} min` : "no control steps yet";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) { $("conn").textContent = "agent unreachable"; $("conn").className = "pill off"; }
}
async function refreshPlan() {
  const r = await fetch("/api/plan");
  const rows = $("segments");
  if (r.status !== 200) {
    $("plan").textContent = "no plan (idle or CC-CV)"; rows.replaceChildren();
    $("explanation").textContent = ""; line("plan-line", [], 1); return;
  }
  const p = await r.json();
  $("plan").textContent = `${p.source}: ${p.segments.length} segments` +
    (p.expected_minutes === null ? "" : `, about ${p.expected_minutes.toFixed(0)} min to target`);
  rows.replaceChildren(...p.segments.map((s) => {
    const tr = document.createElement("tr");
    for (const v of [(s.soc_start * 100).toFixed(0) + " %", (s.soc_end * 100).toFixed(0) + " %",
                     s.c_rate.toFixed(2) + " C"]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  $("explanation").textContent = p.explanation;
  line("plan-line", p.predicted_temp_c, 1);
}
refresh(); refreshPlan(); setInterval(refresh, 1000); setInterval(refreshPlan, 10000);
</script></body></html>
"""
