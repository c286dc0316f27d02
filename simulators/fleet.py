"""Fleet simulation, fast mode: many stations' sessions on the pack physics, vectorised, on simulated time.

Sessions come from the arrival generator (`simulators.arrivals`) or a replayed SESSIONS.csv. Each session
is one row of a `PackBatch` (one batch per vehicle model: one cell type each), charged at 1-min steps
from plug-in until its target SoC or departure with the current the station would apply:

    min(station power / V, vehicle max power / V, BMS CV rule, envelope thermal derating, curve)

where the curve is the learned charge curve (`policy.plan.CurvePolicy`, planned at plug-in, as the agent
does at session start) or plain CC-CV (`--policy cc-cv`: no curve term). The CV rule and the derating are
the same vectorised rules the teacher scores (`policy.charge_sim`); aging per step is `policy.aging`.
Sessions are simulated in chunks by plug-in day (rows only live for their own day and night), which is
what makes it fast. With a site grid cap (`grid_cap_kw`, the site TOML's `grid_cap_kw` or `--grid-cap-kw`)
every step's wanted currents are cut to `policy.allocation.allocate`'s grants (deadlines first, then
shared by battery health; the binding limit reads `site_cap`); a chunk's room is the cap minus what the
sessions of earlier chunks still draw (a car that came first keeps its share). No OCPP traffic in this
mode: that is `--mode wire` (`simulators.fleet_wire`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from policy.allocation import allocate
from policy.charge_sim import N_STAGES, default_limits
from policy.physics import FloatArray, PackBatch
from policy.physics_params import Chemistry, cell_params
from policy.plan import CurvePolicy, PlanRequest
from policy.price_plan import PriceLadder, Tariff
from simulators.arrivals import Sessions
from simulators.fleet_group import LIMIT_NAMES, REF_AH, SITE_CAP, STEP_S, SessionGroup

_DAY_S = 86_400.0
SERIES_CELLS: dict[str, int] = {"nmc": 96, "lfp": 108}  # ~350 V packs, the common 400 V class
_Want = tuple[np.ndarray, FloatArray, np.ndarray]  # (active rows, wanted current, binding limit index)
_CAP_CHECK_MARGIN = 0.1  # within 10 % of the cap a step is tried first (a step's voltage rise is < 10 %)


@dataclass(frozen=True)
class SessionOutcome:
    """Per session (arrays aligned with the input `Sessions`)."""

    delivered_kwh: FloatArray
    soc_start: FloatArray
    soc_end: FloatArray
    charge_minutes: FloatArray  # minutes with current flowing
    peak_cell_temp_c: FloatArray
    capacity_loss: FloatArray  # fraction of nominal capacity lost in this charge
    reached_target: np.ndarray
    plan_source: list[str]
    energy_cost: FloatArray  # under the site's tariff (NaN without one)
    # The station's own battery-health estimate from the session's charging data, capacity SoH p10/p50/p90
    # (N, 3), and its alerts ("knee_onset,abnormal_heating"): wire mode, where real agents charge (the
    # agent's `station.health_recorder`); NaN / "" in fast mode, which runs no agents. `est_cycles_80`:
    # the forecast band of remaining equivalent full cycles to 80 % capacity SoH, p10/p50/p90 (N, 3).
    est_soh: FloatArray
    health_alerts: list[str]
    est_cycles_80: FloatArray

    @staticmethod
    def empty_health(n: int) -> tuple[FloatArray, list[str], FloatArray]:
        return np.full((n, 3), np.nan), [""] * n, np.full((n, 3), np.nan)


@dataclass
class FleetResult:
    start_s: float
    step_s: float
    site_load_kw: FloatArray  # mean over each 1-min step
    grid_cap_kw: float | None  # the site limit the sessions shared (None: none)
    outcome: SessionOutcome
    binding: Counter[str] = field(default_factory=Counter)  # row-steps bound by each limit
    evse_steps: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    # A sample of sessions followed step by step for the report: row -> [(epoch s, SoC, pack A, hottest
    # cell °C)] while the session charges (`sample_rows`).
    traces: dict[int, list[tuple[float, float, float, float]]] = field(default_factory=dict)


def sample_rows(n: int, k: int = 6) -> set[int]:
    """`k` sessions spread evenly over `n` (the report's per-EV charts), the same in every mode."""
    return {int(i) for i in np.linspace(0, n - 1, min(k, n)).round()} if n else set()


def _group_rows(sessions: Sessions, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows by chemistry: one reference cell type per PackBatch (sizes are scaled, see `_simulate_group`)."""
    chem = np.asarray([sessions.chemistry[r] or "nmc" for r in rows])
    return {c: rows[chem == c] for c in ("nmc", "lfp") if np.any(chem == c)}


class FleetSimulator:
    """Runs the sessions chunk by chunk; `run` can be stopped between chunks (partial results stay valid)."""

    def __init__(
        self,
        sessions: Sessions,
        *,
        start_s: float,
        days: int,
        station_power_kw: float,
        policy: CurvePolicy | None,
        preference: str = "balanced",
        grid_cap_kw: float | None = None,
        tariff: Tariff | None = None,
        price_aware: bool = False,
        trace_rows: set[int] | None = None,
    ) -> None:
        """`grid_cap_kw`: the site's connection limit, shared among the charging sessions every step
        (`policy.allocation`); None = no site limit (each station alone). `tariff`: energy prices, for
        each session's cost; `price_aware`: charge in the cheapest hours before departure
        (`policy.price_plan`; needs the tariff)."""
        if price_aware and tariff is None:
            raise ValueError("price-aware charging needs a tariff")
        # Replayed sessions stop at their logged energy (at the terminals); generated ones at their SoC.
        self.energy_cap_kwh = np.where(np.isfinite(sessions.soc_arrival), np.inf, sessions.energy_kwh)
        self.sessions = sessions = _with_generic_vehicles(sessions)
        self.start_s = start_s
        self.days = days
        self.station_power_kw = station_power_kw
        self.policy = policy
        self.preference = preference
        self.grid_cap_kw = grid_cap_kw
        self.tariff, self.price_aware = tariff, price_aware
        self.limits = default_limits()
        n = len(sessions)
        self.result = FleetResult(
            start_s=start_s,
            step_s=STEP_S,
            site_load_kw=np.zeros(int(days * _DAY_S / STEP_S)),
            grid_cap_kw=grid_cap_kw,
            outcome=SessionOutcome(
                np.zeros(n),
                np.asarray(sessions.soc_arrival, dtype=np.float64).copy(),
                np.asarray(sessions.soc_arrival, dtype=np.float64).copy(),
                np.zeros(n),
                np.full(n, np.nan),
                np.zeros(n),
                np.zeros(n, dtype=bool),
                [""] * n,
                np.zeros(n) if tariff is not None else np.full(n, np.nan),
                *SessionOutcome.empty_health(n),
            ),
        )
        self.trace_rows = sample_rows(n) if trace_rows is None else trace_rows
        day = np.floor((sessions.connection_s - start_s) / _DAY_S).astype(np.int64)
        self._chunks = [np.flatnonzero(day == d) for d in range(days) if np.any(day == d)]
        self.result.chunks_total = len(self._chunks)

    def run(self, on_chunk: Callable[[int, int], None] | None = None) -> FleetResult:
        for i, rows in enumerate(self._chunks[self.result.chunks_done :], start=self.result.chunks_done):
            self._simulate_chunk(rows)
            self.result.chunks_done = i + 1
            if on_chunk is not None:
                on_chunk(i + 1, len(self._chunks))
        return self.result

    def _plans(self, rows: np.ndarray, chemistry: str, max_c: FloatArray, target: FloatArray) -> FloatArray:
        """(N, K) planned C-rates per row; inf = no curve term (plain CC-CV).

        Departure-aware: the time budget is 90 % of the dwell time, so the plan is the gentlest curve
        that still finishes before the driver leaves (the policy clips budgets to what it was trained on).
        """
        s = self.sessions
        out = np.full((rows.size, N_STAGES), np.inf)
        if self.policy is None:
            return out
        for j, r in enumerate(rows):
            plan = self.policy.plan(
                PlanRequest(
                    soc=float(s.soc_arrival[r]),
                    target_soc=float(target[j]),
                    soh=float(s.soh[r]),
                    cell_temp_c=float(s.ambient_c[r]),
                    ambient_c=float(s.ambient_c[r]),
                    chemistry=chemistry,
                    max_c_rate=float(max_c[j]),
                    preference=self.preference,
                    budget_minutes=0.9 * float(s.disconnect_s[r] - s.connection_s[r]) / 60.0,
                )
            )
            out[j] = [seg.c_rate for seg in plan.segments]
            self.result.outcome.plan_source[r] = plan.source
        return out

    def _simulate_chunk(self, rows: np.ndarray) -> None:
        """One plug-in day's sessions, every chemistry group in lockstep so a site cap can couple them."""
        res = self.result
        groups = [self._group(chem, g) for chem, g in _group_rows(self.sessions, rows).items()]  # type: ignore[arg-type]
        first = min(g.first for g in groups)
        last = max(g.last for g in groups)
        last_plug_in = max(float(g.conn.max()) for g in groups)
        traced = [[(j, int(r)) for j, r in enumerate(g.rows) if int(r) in self.trace_rows] for g in groups]
        for step in range(first, last):
            t = self.start_s + step * STEP_S
            share_kw = np.inf
            if self.grid_cap_kw is not None and self.price_aware:  # the price plan expects its cap share
                share_kw = self._room_kw(step) / max(1, sum(int(g.plugged(t).sum()) for g in groups))
            wants = [g.want(t, step, share_kw) for g in groups]
            if not any(active.any() for active, _, _ in wants):
                if t > last_plug_in:
                    break
                continue
            if self.grid_cap_kw is not None and self._share_cap(step, t, groups, wants):
                self._hold_under_cap(step, groups, wants)  # near or at the cap: check the real step
            for g, (active, current, which), follow in zip(groups, wants, traced, strict=True):
                if not active.any():
                    continue  # a group waiting for its first car (or done) stays as it is
                res.binding.update(LIMIT_NAMES[k] for k in which[active])
                price = float(self.tariff.price(t)) if self.tariff is not None else None
                res.site_load_kw[step] += g.advance(active, current, price)
                res.evse_steps += int(active.sum())
                for j, r in follow:
                    if active[j]:  # while it charges (a row's own state: the same however the site is split)
                        p = g.pack
                        point = (
                            t,
                            float(p.soc[j]),
                            float(p.current_a[j] * g.scale[j]),
                            float(p.cell_temp_max_c[j]),
                        )
                        res.traces.setdefault(r, []).append(point)
        for g in groups:
            self._store(g.rows, g.pack, g.scale, (g.minutes, g.loss, g.peak), g.target, g.cap_kwh)
            if self.tariff is not None:
                res.outcome.energy_cost[g.rows] = g.cost

    def _room_kw(self, step: int) -> float:
        """The cap minus what sessions of earlier chunks already draw in this step (they keep it)."""
        assert self.grid_cap_kw is not None
        return float(self.grid_cap_kw - self.result.site_load_kw[step])

    def _share_cap(self, step: int, t: float, groups: list[SessionGroup], wants: list[_Want]) -> bool:
        """Site load management: cut the wanted currents to `policy.allocation.allocate`'s grants (made
        on the power each would draw at its present voltage); True when the site is within
        `_CAP_CHECK_MARGIN` of its cap, where the voltage rise during the step could carry it over."""
        want_w = np.concatenate([g.power_w(a, c) for g, (a, c, _) in zip(groups, wants, strict=True)])
        room_w = self._room_kw(step) * 1e3
        if want_w.sum() <= room_w:
            return bool(want_w.sum() > (1.0 - _CAP_CHECK_MARGIN) * room_w)
        need_wh = np.concatenate([g.need_wh() for g in groups])
        left_s = np.concatenate([g.disc - t for g in groups])
        soh = np.concatenate([g.soh for g in groups])
        grant = allocate(self._room_kw(step) * 1e3, want_w, need_wh, left_s, soh)
        offset = 0
        for g, (active, current, which) in zip(groups, wants, strict=True):
            part = slice(offset, offset + g.rows.size)
            cut = grant[part] < want_w[part] * (1.0 - 1e-9)
            ratio = np.divide(grant[part], want_w[part], where=cut, out=np.ones(g.rows.size))
            np.multiply(current, ratio, out=current)  # in place: the caller steps with it
            which[cut & active] = SITE_CAP
            offset += g.rows.size
        return True

    def _hold_under_cap(self, step: int, groups: list[SessionGroup], wants: list[_Want]) -> None:
        """The grants were made at the present voltage; the current raises it (I·R, the RC branches, the
        OCV over the step). Try the step on copies and scale every current by room / realised power when
        it would overshoot: P(kI) = kI·V(kI) ≤ k·P(I) for k ≤ 1, so the real step stays under the cap."""
        room_kw = self._room_kw(step)
        realised_kw = sum(g.trial_kw(a, c) for g, (a, c, _) in zip(groups, wants, strict=True))
        if realised_kw <= room_kw:
            return
        k = max(room_kw, 0.0) / realised_kw
        for _, current, _ in wants:
            np.multiply(current, k, out=current)

    def _group(self, chemistry: Chemistry, rows: np.ndarray) -> SessionGroup:
        """One chemistry's sessions of one chunk. Every pack is simulated as `series` cells of a 100 Ah
        reference cell carrying the same C-rate: the surrogate's parameters scale per Ah (R ∝ 1/Q, mass
        and cooling ∝ Q), so C-rates, voltages, temperatures and aging are those of the real size, and
        currents and energies scale by Q_real / Q_ref."""
        s, res = self.sessions, self.result
        series = SERIES_CELLS[chemistry]
        cell = cell_params(chemistry, REF_AH)
        nominal_v = series * cell.nominal_cell_voltage_v
        scale = np.asarray(s.capacity_kwh[rows], dtype=np.float64) * 1000.0 / nominal_v / REF_AH
        soc0 = np.asarray(s.soc_arrival[rows], dtype=np.float64)
        soh = np.asarray(s.soh[rows], dtype=np.float64)
        ambient = np.asarray(s.ambient_c[rows], dtype=np.float64)
        target = np.minimum(soc0 + s.energy_kwh[rows] / (s.capacity_kwh[rows] * soh), 1.0)
        vehicle_c = _vehicle_max_kw(s, rows) * 1000.0 / nominal_v / (scale * REF_AH)
        station_c = self.station_power_kw * 1000.0 / nominal_v / (scale * REF_AH)
        max_c = np.clip(np.minimum(vehicle_c, station_c), 0.3, 4.0)
        conn, disc = s.connection_s[rows], s.disconnect_s[rows]
        first = int(max(0, math.floor((conn.min() - self.start_s) / STEP_S)))
        last = int(min(res.site_load_kw.size, math.ceil((disc.max() - self.start_s) / STEP_S)))
        max_kw = np.minimum(_vehicle_max_kw(s, rows), self.station_power_kw)
        return SessionGroup(
            rows=rows,
            cell=cell,
            pack=PackBatch(cell, series, soc0, soh, ambient, ambient, max_substep_s=STEP_S),
            scale=scale,
            nominal_v=nominal_v,
            soc0=soc0,
            soh=soh,
            target=target,
            station_c=station_c,
            vehicle_c=vehicle_c,
            max_c=max_c,
            rates=self._plans(rows, chemistry, max_c, target),
            conn=conn,
            disc=disc,
            cap_kwh=self.energy_cap_kwh[rows],
            capacity_wh=np.asarray(s.capacity_kwh[rows], dtype=np.float64) * soh * 1000.0,
            first=first,
            last=last,
            limits=self.limits,
            max_kw=max_kw,
            prices=self._price_ladder(first, last) if self.price_aware else None,
            disc_step=np.ceil((disc - self.start_s) / STEP_S).astype(np.int64) - first,
        )

    def _price_ladder(self, first: int, last: int) -> PriceLadder:
        """The tariff over the chunk's steps [first, last), for the price-aware plan."""
        assert self.tariff is not None
        times = self.start_s + STEP_S * np.arange(first, last, dtype=np.float64)
        return PriceLadder(self.tariff.price(times))

    def _store(
        self,
        rows: np.ndarray,
        pack: PackBatch,
        scale: FloatArray,
        tallies: tuple[FloatArray, FloatArray, FloatArray],
        target: FloatArray,
        cap_kwh: FloatArray,
    ) -> None:
        out = self.result.outcome
        minutes, loss, peak = tallies
        out.delivered_kwh[rows] = pack.energy_in_kwh * scale
        out.soc_end[rows] = pack.soc
        out.charge_minutes[rows] = minutes
        out.peak_cell_temp_c[rows] = np.where(np.isfinite(peak), peak, np.nan)
        out.capacity_loss[rows] = loss
        out.reached_target[rows] = (pack.soc >= target - 1e-3) | (
            pack.energy_in_kwh * scale >= cap_kwh - 1e-6
        )


# Replayed sessions (SESSIONS.csv) carry no vehicle: a generic NMC pack, new, at 15 °C, large enough that
# the logged energy is 70 % of it at most, arriving at the SoC that makes the energy end at 90 %.
_GENERIC_CAPACITY_KWH = 60.0
_GENERIC_TARGET_SOC = 0.9
_GENERIC_AMBIENT_C = 15.0


def _with_generic_vehicles(sessions: Sessions) -> Sessions:
    missing = ~np.isfinite(sessions.soc_arrival)
    if not missing.any():
        return sessions
    energy = np.asarray(sessions.energy_kwh, dtype=np.float64)
    capacity = np.where(missing, np.maximum(_GENERIC_CAPACITY_KWH, energy / 0.7), sessions.capacity_kwh)
    return replace(
        sessions,
        chemistry=[c or "nmc" for c in sessions.chemistry],
        capacity_kwh=capacity,
        soh=np.where(missing, 1.0, sessions.soh),
        soc_arrival=np.where(missing, _GENERIC_TARGET_SOC - energy / capacity, sessions.soc_arrival),
        ambient_c=np.where(missing, _GENERIC_AMBIENT_C, sessions.ambient_c),
    )


def _vehicle_max_kw(sessions: Sessions, rows: np.ndarray) -> FloatArray:
    """The vehicle's max charge power; replayed sessions (no vehicle model) use the session's power."""
    return np.asarray(sessions.power_kw[rows], dtype=np.float64)
