"""Fleet simulation, wire mode: the same sessions as fast mode, charged by real station agents.

One `station.agent.StationAgent` per station id in the sessions, all in this process on one virtual-time
loop (`chargeagent.vtime`), each connected over a loopback websocket to the embedded CSMS and charging
through its real GB/T 27930 link on python-can's `virtual` bus (one channel per station) against a
`simulators.ev.SimulatedEv`. The CSMS gives every station its power limit over OCPP: after boot it sets a
ChargingStationMaxProfile in W (the site's `station_max_power_kw`) on evse 0, and the agent converts it
to amps at the pack voltage like any limit. Per session, at `connection_s` the EV arrives (pack from the
session's chemistry, capacity, SoH, SoC, ambient; target SoC and vehicle current as fast mode uses),
the cable is plugged in and the CSMS sends RequestStartTransaction; at `disconnect_s` the driver unplugs
(a transaction still running ends EVDisconnected).

A replayed session is stopped from the CSMS (RequestStopTransaction) once its logged energy is in.
Results are a `simulators.fleet.FleetResult` (docs/fleet.md says where each field comes from), so
`simulators.fleet_output` writes the same files; the OCPP side lives in `simulators.fleet_wire_ocpp`.

Against an external CSMS (`csms_url`, the CLI's `--csms-url`) the run is in **real time** (a CSMS in
another process keeps wall-clock time; a virtual clock would jump past its answers), and the site cannot
script the CSMS: each station's power limit is its own rating (`station.charger_max_power_kw`), and the
driver starts and ends each charge at the station by presenting the idToken `FLEET-<session>` (type
ISO14443; OCPP 2.0.1 C01/E07: Authorize, then TransactionEvent Started; the same token again stops a
replayed session once its energy is in). The CSMS must accept those tokens. Energy per session is the
agents' own meter (what they reported); the CSMS's view stays with the CSMS, so there is no journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from bms_link.gbt import GbtTiming
from chargeagent.clock import LoopClock, ocpp_timestamp
from chargeagent.config import Settings, load_settings
from chargeagent.logs import configure_logging
from chargeagent.vtime import run_virtual
from policy.aging import step_loss
from policy.physics_params import Chemistry, cell_params
from simulators.arrivals import Sessions
from simulators.csms import EmbeddedCsms, Received
from simulators.ev import SimulatedEv, can_link_factory
from simulators.fleet import (
    SERIES_CELLS,
    FleetResult,
    SessionOutcome,
    _vehicle_max_kw,
    _with_generic_vehicles,
    sample_rows,
)
from simulators.fleet_group import STEP_S
from simulators.fleet_wire_ocpp import delivered_kwh, station_max_profile
from simulators.pack import PackSpec
from station.agent import StationAgent
from station.charging import EVSE_ID, SessionResult, StepRecord

if TYPE_CHECKING:
    from station.api_fleet import FleetApiServer

log = structlog.get_logger(__name__)

# GB/T periodic sends x 4 (BCL every 200 ms, BCS every 1 s). GbtTiming refuses any scale that puts a
# period at or above half its receiver's timeout: BCP and CTS (500 ms, 5 s timeouts) cap it below 5;
# 4 keeps them at 2 s, a 20 % margin under that half (the e2e tests and the demo use 4 too).
WIRE_TIMING_SCALE = 4.0
GBT_MAX_CURRENT_A = 400.0  # GB/T 27930 current fields span -400..+400 A (0.1 A/bit, offset -400 A)
_DAY_S = 86_400.0
_START_POLL_S = 0.1  # external CSMS: how often the driver looks whether the transaction has started
_channel_runs = itertools.count()  # virtual CAN channels are process-wide: one name space per run


@dataclass
class _Tally:
    """What one session's control steps showed (plain lists: one append per step)."""

    row: int
    ev: SimulatedEv
    start_wh: float  # the station's register at plug-in
    cap_wh: float  # a replayed session's logged energy (inf for generated ones)
    cap_reached: bool = False
    t_s: list[float] = field(default_factory=list)
    current_a: list[float] = field(default_factory=list)
    soc: list[float] = field(default_factory=list)
    temp_c: list[float] = field(default_factory=list)
    result: SessionResult | None = None


@dataclass
class _Station:
    station_id: str
    rows: list[int]
    agent: StationAgent | None = None
    tally: _Tally | None = None
    last_energy_wh: float = 0.0
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the charging session is over
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # ended, or a replayed energy is in


@dataclass
class WireResult:
    """The fleet result plus what only wire mode has: the OCPP traffic."""

    fleet: FleetResult
    received: list[Received]  # every CALL the stations sent, in arrival order (the CSMS journal)
    sent: list[dict[str, Any]]  # the CALLs the CSMS sent (RequestStartTransaction, SetChargingProfile)
    failures: list[str]  # calls refused or failed, CSMS internal errors
    sessions_done: int = 0


class WireFleet:
    """Runs `sessions` on real agents; `run()` on a virtual-time loop (see `run_wire`)."""

    def __init__(
        self,
        sessions: Sessions,
        *,
        start_s: float,
        days: int,
        station_power_kw: float,
        policy_enabled: bool = True,
        timing_scale: float = WIRE_TIMING_SCALE,
        base_settings: Settings | None = None,
        on_session: Callable[[int, int], None] | None = None,
        api_port: int | None = None,
        csms_url: str | None = None,
        session_numbers: np.ndarray | None = None,
        trace_rows: set[int] | None = None,
    ) -> None:
        """`api_port`: also serve the read-only site API (`station.api_fleet`) on loopback (0: any port).
        `csms_url`: charge against this CSMS instead of the embedded one (real time; module docstring).
        `session_numbers`: each row's number in OCPP ids (idToken FLEET-<n>, remoteStartId); default row + 1
        (a partition of a bigger site keeps the site's numbers, see `run_wire_processes`)."""
        self.csms_url = csms_url
        numbers = np.arange(1, len(sessions) + 1) if session_numbers is None else session_numbers
        self.numbers = [int(k) for k in numbers]
        self.trace_rows = sample_rows(len(sessions)) if trace_rows is None else trace_rows
        # Replayed sessions stop at their logged energy (as in fast mode); generated ones at their SoC.
        self.energy_cap_kwh = np.where(np.isfinite(sessions.soc_arrival), np.inf, sessions.energy_kwh)
        self.sessions = _with_generic_vehicles(sessions)
        self.start_s, self.end_s = start_s, start_s + days * _DAY_S
        self.station_power_kw = station_power_kw
        self.policy_enabled = policy_enabled
        self.timing = GbtTiming(period_scale=timing_scale)
        self.base = base_settings or load_settings()
        self._on_session = on_session
        self.api: FleetApiServer | None = None
        if api_port is not None:
            from station.api_fleet import FleetApiServer  # noqa: PLC0415  # the [api] extra

            self.api = FleetApiServer(self._agents, "127.0.0.1", api_port)
        s = self.sessions
        n = len(s)
        day = np.floor((s.connection_s - start_s) / _DAY_S)
        in_range = np.flatnonzero((day >= 0) & (day < days))
        self.target_soc = np.minimum(s.soc_arrival + s.energy_kwh / (s.capacity_kwh * s.soh), 1.0)
        stations: dict[str, list[int]] = {}
        for row in in_range:
            stations.setdefault(s.station_id[row], []).append(int(row))
        self.stations = [_Station(sid, rows) for sid, rows in stations.items()]
        self.total = int(in_range.size)
        soc0 = np.asarray(s.soc_arrival, dtype=np.float64)
        outcome = SessionOutcome(
            np.zeros(n), soc0.copy(), soc0.copy(), np.zeros(n), np.full(n, np.nan), np.zeros(n),
            np.zeros(n, dtype=bool), [""] * n, np.full(n, np.nan), *SessionOutcome.empty_health(n),
        )  # fmt: skip
        self.result = WireResult(
            FleetResult(start_s, STEP_S, np.zeros(int(days * _DAY_S / STEP_S)), None, outcome),
            received=[],
            sent=[],
            failures=[],
        )
        self._rows_by_day = [in_range[day[in_range] == d] for d in np.unique(day[in_range])]
        self._done = np.zeros(n, dtype=bool)
        self.result.fleet.chunks_total = len(self._rows_by_day)
        self._t0 = 0.0
        self._run_id = next(_channel_runs)
        self._csms: EmbeddedCsms | None = None

    # --- time: simulation epoch seconds <-> loop time ---------------------------------------------
    def _loop_time(self, t_s: float) -> float:
        return self._t0 + (t_s - self.start_s)

    async def _sleep_until(self, t_s: float) -> None:
        await asyncio.sleep(max(0.0, self._loop_time(t_s) - asyncio.get_running_loop().time()))

    # --- the run ----------------------------------------------------------------------------------
    async def run(self) -> WireResult:
        clock = LoopClock(epoch=datetime.fromtimestamp(self.start_s, UTC))
        clock.now()  # anchors the epoch to this loop time
        self._t0 = asyncio.get_running_loop().time()
        try:
            async with contextlib.AsyncExitStack() as stack:
                csms = None
                if self.csms_url is None:
                    csms = self._csms = await stack.enter_async_context(EmbeddedCsms(clock=clock))
                tg = await stack.enter_async_context(asyncio.TaskGroup())
                url = csms.url if csms is not None else str(self.csms_url)
                agents = []
                for st in self.stations:
                    st.agent = self._agent(st, clock, url)
                    agents.append(tg.create_task(st.agent.run(), name=f"agent:{st.station_id}"))
                if self.api is not None:
                    agents.append(tg.create_task(self.api.run(), name="fleet-api"))
                drivers = [
                    tg.create_task(self._drive(st, csms), name=f"driver:{st.station_id}")
                    for st in self.stations
                ]
                await asyncio.gather(*drivers)
                for task in agents:
                    task.cancel()
        finally:
            self.finish()
        return self.result

    def _agents(self) -> dict[str, StationAgent]:
        return {st.station_id: st.agent for st in self.stations if st.agent is not None}

    def _agent(self, st: _Station, clock: LoopClock, csms_url: str) -> StationAgent:
        base = self.base
        settings = base.model_copy(
            update={
                "station": base.station.model_copy(update={"id": st.station_id}),
                # Thousands of agents share one process: compiled schemas pay for themselves there.
                "ocpp": base.ocpp.model_copy(update={"csms_url": csms_url, "compiled_validation": True}),
                "bms": base.bms.model_copy(
                    update={
                        "backend": "can",
                        "can_interface": "virtual",
                        "can_channel": f"fleet{self._run_id}-{st.station_id}",
                        "timing_scale": self.timing.period_scale,
                    }
                ),
                "policy": base.policy.model_copy(update={"model_enabled": self.policy_enabled}),
            }
        )
        if self.csms_url is not None:  # no CSMS profile to set it: the station's own power rating
            station = settings.station.model_copy(update={"charger_max_power_kw": self.station_power_kw})
            settings = settings.model_copy(update={"station": station})

        def on_end(result: SessionResult) -> None:
            self._session_ended(st, result, clock.monotonic())

        # Every CAN peer is in this process: readers are woken on send, no polling timers.
        return StationAgent(
            settings,
            clock=clock,
            bms_factory=can_link_factory(settings, clock, poll_interval_s=None),
            on_step=lambda step: self._step(st, step),
            on_session_end=on_end,
        )

    async def _drive(self, st: _Station, csms: EmbeddedCsms | None) -> None:
        """The site's script for one station: its power limit over OCPP, then each session in turn."""
        agent = st.agent
        assert agent is not None
        await agent.booted.wait()
        if csms is not None:
            await self._call(
                csms,
                st.station_id,
                "SetChargingProfile",
                station_max_profile(self.start_s, self.station_power_kw),
            )
        for row in st.rows:
            await self._sleep_until(float(self.sessions.connection_s[row]))
            leave_s = min(float(self.sessions.disconnect_s[row]), self.end_s)
            await self._session(st, csms, row, leave_s)

    async def _session(self, st: _Station, csms: EmbeddedCsms | None, row: int, leave_s: float) -> None:
        agent = st.agent
        assert agent is not None
        ev = SimulatedEv(
            self._pack(row),
            interface="virtual",
            channel=agent.settings.bms.can_channel,
            clock=agent.clock,
            timing=self.timing,
            poll_interval_s=None,
        )
        st.tally = _Tally(row, ev, agent.energy_wh, float(self.energy_cap_kwh[row]) * 1000.0)
        st.ended, st.wake = asyncio.Event(), asyncio.Event()
        # The station's thermometer reads the session's ambient (the plan's input, as in fast mode).
        ambient_c = float(np.clip(self.sessions.ambient_c[row], -40.0, 55.0))
        policy = agent.settings.policy.model_copy(update={"ambient_c": ambient_c})
        agent.settings = agent.settings.model_copy(update={"policy": policy})
        async with asyncio.TaskGroup() as tg:
            ev_task = tg.create_task(ev.run(), name=f"ev:{st.station_id}:{row}")
            agent.plug_in()
            if csms is None:
                started = await self._start_locally(st, row, leave_s)
            else:
                number = self.numbers[row]
                start = {"idToken": {"idToken": f"FLEET-{number}", "type": "Central"}, "evseId": 1}
                answer = await self._call(
                    csms, st.station_id, "RequestStartTransaction", {**start, "remoteStartId": number}
                )
                started = answer is not None and answer.get("status") == "Accepted"
            if started:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._loop_time(leave_s)):
                        await self._charge(st, csms, row)
            await self._sleep_until(leave_s)
            # The car leaves: its BMS goes quiet (a running session's link times out) and the cable is
            # pulled (a transaction still running ends with EVDisconnected).
            ev_task.cancel()
            agent.unplug()
        if started:
            await st.ended.wait()  # the old link has closed before the next car joins the channel
        self._finish_session(st)

    async def _start_locally(self, st: _Station, row: int, leave_s: float) -> bool:
        """The driver presents the session's idToken at the station; True once a transaction runs (the
        CSMS authorized it), False when none has started by departure (refused: counted as a failure)."""
        agent = st.agent
        assert agent is not None
        agent.present_id_token(_fleet_token(self.numbers[row]))
        while agent.core.transaction(EVSE_ID) is None and not st.ended.is_set():
            if asyncio.get_running_loop().time() >= self._loop_time(leave_s):
                self.result.failures.append(
                    f"{st.station_id}: no transaction for session {self.numbers[row]}"
                )
                return False
            await asyncio.sleep(_START_POLL_S)
        return True

    async def _charge(self, st: _Station, csms: EmbeddedCsms | None, row: int) -> None:
        """Until the session ends; a replayed one is stopped once its logged energy is in: by the driver
        in the app (RequestStopTransaction from the CSMS, OCPP 2.0.1 F03) or, against an external CSMS,
        with the same idToken at the station (E07)."""
        await st.wake.wait()
        if st.ended.is_set():
            return
        if csms is None:
            assert st.agent is not None
            st.agent.present_id_token(_fleet_token(self.numbers[row]))
            await st.ended.wait()
            return
        started = [r.payload for r in csms.received(st.station_id, "TransactionEvent")]
        tx_ids = [
            p["transactionInfo"]["transactionId"]
            for p in started
            if p["eventType"] == "Started" and p["transactionInfo"].get("remoteStartId") == self.numbers[row]
        ]
        if tx_ids:
            await self._call(csms, st.station_id, "RequestStopTransaction", {"transactionId": tx_ids[-1]})
        await st.ended.wait()

    def _pack(self, row: int) -> PackSpec:
        """The session's vehicle as fast mode sees it: a string of `SERIES_CELLS` cells of its capacity.

        GB/T's BCP carries a max charge CURRENT: the vehicle's power (fast mode's `vehicle_power`, already
        capped at the station's) at the nominal pack voltage, which is also the current fast mode scales
        its thermal derating from. Fast mode applies that power at the live voltage instead, so when the
        vehicle's power binds, wire mode charges V/V_nominal (a few %) faster.
        """
        s = self.sessions
        chemistry: Chemistry = "lfp" if s.chemistry[row] == "lfp" else "nmc"
        series = SERIES_CELLS[chemistry]
        nominal_v = series * cell_params(chemistry, 100.0).nominal_cell_voltage_v
        vehicle_a = float(_vehicle_max_kw(s, np.asarray([row]))[0]) * 1000.0 / nominal_v
        return PackSpec(
            chemistry=chemistry,
            capacity_ah=float(s.capacity_kwh[row]) * 1000.0 / nominal_v,
            soh=float(s.soh[row]),
            series_cells=series,
            soc=float(s.soc_arrival[row]),
            target_soc=float(self.target_soc[row]),
            cell_temp_c=float(s.ambient_c[row]),
            ambient_c=float(s.ambient_c[row]),
            max_charge_current_a=min(vehicle_a, GBT_MAX_CURRENT_A),
        )

    async def _call(
        self, csms: EmbeddedCsms, station_id: str, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A CSMS-initiated CALL, logged; a failure is counted, never raised (the run goes on)."""
        record: dict[str, Any] = {"at": ocpp_timestamp(csms.clock.now()), "station_id": station_id}
        record |= {"action": action, "payload": payload}
        self.result.sent.append(record)
        try:
            answer = await csms.call(station_id, action, payload)
        except Exception as exc:  # ProtocolError / CsmsCallError / schema: a failed call of the run
            record["error"] = str(exc)
            self.result.failures.append(f"{station_id} {action}: {exc}")
            log.warning("fleet_call_failed", station_id=station_id, action=action, error=str(exc))
            return None
        record["response"] = answer
        if answer.get("status") not in (None, "Accepted"):
            self.result.failures.append(f"{station_id} {action}: {answer.get('status')}")
        return answer

    # --- what the agents report -------------------------------------------------------------------
    def _meter(self, st: _Station, energy_wh: float, at_s: float) -> None:
        """Energy metered since the last report, into the 1-min bin of `at_s` (loop time)."""
        delta_wh, st.last_energy_wh = energy_wh - st.last_energy_wh, energy_wh
        load = self.result.fleet.site_load_kw
        minute = math.floor((at_s - self._t0) / STEP_S)
        if delta_wh and 0 <= minute < load.size:
            load[minute] += delta_wh / 1000.0 * 3600.0 / STEP_S

    def _step(self, st: _Station, step: StepRecord) -> None:
        self._meter(st, step.energy_wh, step.t_s)
        tally = st.tally
        if tally is not None:
            tally.t_s.append(step.t_s)
            tally.current_a.append(step.current_a)
            tally.soc.append(step.soc)
            tally.temp_c.append(step.cell_temp_max_c)
            if not tally.cap_reached and step.energy_wh - tally.start_wh >= tally.cap_wh:
                tally.cap_reached = True
                st.wake.set()
        self.result.fleet.binding[step.binding_constraint] += 1

    def _session_ended(self, st: _Station, result: SessionResult, now_s: float) -> None:
        if st.agent is not None:  # the last step's metering when the session stopped before a record
            self._meter(st, st.agent.energy_wh, now_s)
        if st.tally is not None:
            st.tally.result = result
        st.ended.set()
        st.wake.set()

    def _finish_session(self, st: _Station) -> None:
        tally, st.tally = st.tally, None
        if tally is None:
            return
        row, out, s = tally.row, self.result.fleet.outcome, self.sessions
        out.soc_end[row] = tally.ev.bms.soc
        out.reached_target[row] = tally.cap_reached or tally.ev.bms.soc >= self.target_soc[row] - 1e-3
        if tally.result is not None and self.policy_enabled:
            out.plan_source[row] = tally.result.plan_source
        if self.csms_url is not None and tally.result is not None:  # no CSMS journal: the agent's meter
            out.delivered_kwh[row] = tally.result.energy_wh / 1000.0
        if row in self.trace_rows and tally.t_s:  # the report's per-EV charts, in simulation epoch seconds
            self.result.fleet.traces[row] = [
                (self.start_s + (t - self._t0), soc, a, temp)
                for t, soc, a, temp in zip(tally.t_s, tally.soc, tally.current_a, tally.temp_c, strict=True)
            ]
        health = tally.result.health if tally.result is not None else None
        if health:  # the agent's assessment of this battery (one session: no history across visits)
            band = health.get("capacity_soh") or {}
            out.est_soh[row] = [band.get(q, np.nan) for q in ("p10", "p50", "p90")]
            out.health_alerts[row] = ",".join(a["type"] for a in health.get("alerts", []))
            cycles = health.get("cycles_to_80pct") or {}
            out.est_cycles_80[row] = [cycles.get(q, np.nan) for q in ("p10", "p50", "p90")]
        if tally.t_s:
            t = np.asarray(tally.t_s)
            dt = np.diff(t, append=t[-1])  # a step's current flows until the next step
            current = np.asarray(tally.current_a)
            out.charge_minutes[row] = float(dt[current > 0].sum()) / 60.0
            out.peak_cell_temp_c[row] = max(tally.temp_c)
            loss = step_loss(tally.ev.bms.params, current, np.asarray(tally.soc), np.asarray(tally.temp_c),
                             float(s.soh[row]), 1.0).total  # fmt: skip
            out.capacity_loss[row] = float(np.sum(loss * dt))  # linear in dt_s
            self.result.fleet.evse_steps += round(float(dt.sum()) / STEP_S)
        self._done[row] = True
        self.result.sessions_done += 1
        if self._on_session is not None:
            self._on_session(self.result.sessions_done, self.total)

    def finish(self) -> None:
        """Energy per session from the CSMS journal; the days fully done (all after a normal run)."""
        csms = self._csms
        if csms is not None:
            self.result.received = csms.received()
            self.result.failures += [f"CSMS internal error: {e}" for e in csms.internal_errors]
        row_of = {number - 1: row for row, number in enumerate(self.numbers)}
        for key, kwh in delivered_kwh(self.result.received).items():
            if key in row_of:
                self.result.fleet.outcome.delivered_kwh[row_of[key]] = kwh
        # An interrupted run keeps the leading days whose sessions all finished (fleet_output writes those).
        fleet, rows_by_day = self.result.fleet, self._rows_by_day
        fleet.chunks_done = next(
            (k for k, rows in enumerate(rows_by_day) if not self._done[rows].all()), len(rows_by_day)
        )


def _fleet_token(number: int) -> dict[str, str]:
    return {"idToken": f"FLEET-{number}", "type": "ISO14443"}


def _run_partition(sessions: Sessions, rows: np.ndarray, options: dict[str, Any]) -> WireResult:
    """One process's share of `run_wire_processes`: its stations' sessions, numbered as in the site."""
    from simulators.fleet_ray import subset  # noqa: PLC0415

    settings = options.get("base_settings")  # a fresh (spawned) process: log as the parent was asked to
    if settings is not None:
        configure_logging(settings.log.format, settings.log.level)
    else:
        configure_logging(level="warning")
    sample = sample_rows(len(sessions))  # the site's sample, whatever the partitions
    traced = {i for i, r in enumerate(rows) if int(r) in sample}
    return run_wire(subset(sessions, rows), session_numbers=rows + 1, trace_rows=traced, **options)


def run_wire_processes(sessions: Sessions, processes: int, **options: Any) -> WireResult:
    """Wire mode with the stations split over `processes` processes (one per core), each with its own
    embedded CSMS and virtual clock, results merged. Stations never interact in wire mode without a
    site cap, so this is the one-process run's result (tests/simulators/test_fleet_wire.py checks it);
    the OCPP journals are concatenated, ordered by time. `processes` <= 1: `run_wire`."""
    if processes <= 1 or options.get("api_port") is not None:
        return run_wire(sessions, **options)
    from simulators.fleet_ray import merge, partition  # noqa: PLC0415

    parts = partition(sessions, processes)
    if len(parts) <= 1:  # one station, or no sessions at all: nothing to split
        return run_wire(sessions, **options)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop or sockets
    with context.Pool(len(parts)) as pool:
        results = pool.starmap(_run_partition, [(sessions, rows, options) for rows in parts])
    return WireResult(
        merge(len(sessions), [(rows, r.fleet) for rows, r in zip(parts, results, strict=True)]),
        received=sorted((x for r in results for x in r.received), key=lambda x: x.at),
        sent=sorted((x for r in results for x in r.sent), key=lambda x: str(x["at"])),
        failures=[f for r in results for f in r.failures],
        sessions_done=sum(r.sessions_done for r in results),
    )


def run_wire(sessions: Sessions, **options: Any) -> WireResult:
    """Run wire mode to the end (`WireFleet` options): on a fresh virtual-time loop with the embedded
    CSMS, in real time against an external one (`csms_url`)."""
    fleet = WireFleet(sessions, **options)
    if fleet.csms_url is not None:
        return asyncio.run(fleet.run())
    return run_virtual(fleet.run())
