"""Fleet simulation, fast mode: many stations' sessions on the pack physics, vectorised, on simulated time.

Sessions come from the arrival generator (`simulators.arrivals`) or a replayed SESSIONS.csv. Each session
is one row of a `PackBatch` (one batch per vehicle model: one cell type each), charged at 1-min steps
from plug-in until its target SoC or departure with the current the station would apply:

    min(station power / V, vehicle max power / V, BMS CV rule, envelope thermal derating, curve)

where the curve is the learned charge curve (`policy.plan.CurvePolicy`, planned at plug-in, as the agent
does at session start) or plain CC-CV (`--policy cc-cv`: no curve term). The CV rule and the derating are
the same vectorised rules the teacher scores (`policy.charge_sim`); aging per step is `policy.aging`.
Sessions are simulated in chunks by plug-in day (rows only live for their own day and night), which is
what makes it fast; chunks are independent because this slice has no site-wide cap coupling them (the
site load management of issue #8 will). No OCPP traffic in this mode: that is `--mode wire`
(`simulators.fleet_wire`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from policy.aging import step_loss
from policy.charge_sim import CV_GAIN_A_PER_V_AH, CV_MARGIN_V, N_STAGES, default_limits, thermal_fraction
from policy.physics import FloatArray, PackBatch
from policy.physics_params import Chemistry, cell_params
from policy.plan import CurvePolicy, PlanRequest
from simulators.arrivals import Sessions

STEP_S = 60.0
_DAY_S = 86_400.0
SERIES_CELLS: dict[str, int] = {"nmc": 96, "lfp": 108}  # ~350 V packs, the common 400 V class
_LIMIT_NAMES = ("station_power", "vehicle_power", "bms_cv", "thermal_derate", "curve")
_REF_AH = 100.0


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


@dataclass
class FleetResult:
    start_s: float
    step_s: float
    site_load_kw: FloatArray  # mean over each 1-min step
    outcome: SessionOutcome
    binding: Counter[str] = field(default_factory=Counter)  # row-steps bound by each limit
    evse_steps: int = 0
    chunks_done: int = 0
    chunks_total: int = 0


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
    ) -> None:
        # Replayed sessions stop at their logged energy (at the terminals); generated ones at their SoC.
        self.energy_cap_kwh = np.where(np.isfinite(sessions.soc_arrival), np.inf, sessions.energy_kwh)
        self.sessions = sessions = _with_generic_vehicles(sessions)
        self.start_s = start_s
        self.days = days
        self.station_power_kw = station_power_kw
        self.policy = policy
        self.preference = preference
        self.limits = default_limits()
        n = len(sessions)
        self.result = FleetResult(
            start_s=start_s,
            step_s=STEP_S,
            site_load_kw=np.zeros(int(days * _DAY_S / STEP_S)),
            outcome=SessionOutcome(
                np.zeros(n),
                np.asarray(sessions.soc_arrival, dtype=np.float64).copy(),
                np.asarray(sessions.soc_arrival, dtype=np.float64).copy(),
                np.zeros(n),
                np.full(n, np.nan),
                np.zeros(n),
                np.zeros(n, dtype=bool),
                [""] * n,
            ),
        )
        day = np.floor((sessions.connection_s - start_s) / _DAY_S).astype(np.int64)
        self._chunks = [np.flatnonzero(day == d) for d in range(days) if np.any(day == d)]
        self.result.chunks_total = len(self._chunks)

    def run(self, on_chunk: Callable[[int, int], None] | None = None) -> FleetResult:
        for i, rows in enumerate(self._chunks[self.result.chunks_done :], start=self.result.chunks_done):
            for chemistry, group in _group_rows(self.sessions, rows).items():
                self._simulate_group(chemistry, group)  # type: ignore[arg-type]
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

    def _simulate_group(self, chemistry: Chemistry, rows: np.ndarray) -> None:
        """One chemistry's sessions of one chunk. Every pack is simulated as `series` cells of a 100 Ah
        reference cell carrying the same C-rate: the surrogate's parameters scale per Ah (R ∝ 1/Q, mass
        and cooling ∝ Q), so C-rates, voltages, temperatures and aging are those of the real size, and
        currents and energies scale by Q_real / Q_ref."""
        s, res = self.sessions, self.result
        series = SERIES_CELLS[chemistry]
        cell = cell_params(chemistry, _REF_AH)
        nominal_v = series * cell.nominal_cell_voltage_v
        scale = np.asarray(s.capacity_kwh[rows], dtype=np.float64) * 1000.0 / nominal_v / _REF_AH
        soc0 = np.asarray(s.soc_arrival[rows], dtype=np.float64)
        soh = np.asarray(s.soh[rows], dtype=np.float64)
        ambient = np.asarray(s.ambient_c[rows], dtype=np.float64)
        target = np.minimum(soc0 + s.energy_kwh[rows] / (s.capacity_kwh[rows] * soh), 1.0)
        vehicle_c = _vehicle_max_kw(s, rows) * 1000.0 / nominal_v / (scale * _REF_AH)
        station_c = self.station_power_kw * 1000.0 / nominal_v / (scale * _REF_AH)
        max_c = np.clip(np.minimum(vehicle_c, station_c), 0.3, 4.0)
        rates = self._plans(rows, chemistry, max_c, target)
        span = np.maximum(target - soc0, 1e-9)
        pack = PackBatch(cell, series, soc0, soh, ambient, ambient, max_substep_s=STEP_S)
        conn, disc = s.connection_s[rows], s.disconnect_s[rows]
        cap_kwh = self.energy_cap_kwh[rows]
        first = int(max(0, math.floor((conn.min() - self.start_s) / STEP_S)))
        last = int(min(res.site_load_kw.size, math.ceil((disc.max() - self.start_s) / STEP_S)))
        previous_a = np.zeros(rows.size)
        idx = np.arange(rows.size)
        minutes, loss = np.zeros(rows.size), np.zeros(rows.size)
        peak = np.full(rows.size, -np.inf)
        q = _REF_AH
        for step in range(first, last):
            t = self.start_s + step * STEP_S
            active = (conn <= t) & (t < disc) & (pack.soc < target - 1e-4)
            active &= pack.energy_in_kwh * scale < cap_kwh
            if not active.any():
                if t > conn.max():
                    break
                continue
            v_ratio = nominal_v / np.maximum(pack.pack_voltage_v, 1.0)  # power limits: I = P / V
            stage = np.clip(((pack.soc - soc0) / span * N_STAGES).astype(np.int64), 0, N_STAGES - 1)
            limits = np.stack(
                [
                    station_c * q * v_ratio,
                    vehicle_c * q * v_ratio,
                    np.maximum(previous_a, 0.0)
                    + CV_GAIN_A_PER_V_AH
                    * q
                    * (cell.max_cell_voltage_v - CV_MARGIN_V - pack.cell_voltage_max_v),
                    thermal_fraction(pack.cell_temp_min_c, pack.cell_temp_max_c, self.limits) * max_c * q,
                    rates[idx, stage] * q,
                ]
            )
            which = np.argmin(limits, axis=0)
            current = np.where(active, np.maximum(limits[which, idx], 0.0), 0.0)
            res.binding.update(_LIMIT_NAMES[k] for k in which[active])
            loss += np.where(
                active, step_loss(cell, current, pack.soc, pack.cell_temp_c, soh, STEP_S).total, 0.0
            )
            before_kwh = pack.energy_in_kwh.copy()
            pack.step(current, STEP_S)
            previous_a = pack.current_a
            res.site_load_kw[step] += (
                float(np.sum((pack.energy_in_kwh - before_kwh) * scale)) * 3600.0 / STEP_S
            )
            minutes += np.where(active & (current > 0), STEP_S / 60.0, 0.0)
            peak = np.where(active, np.maximum(peak, pack.cell_temp_max_c), peak)
            res.evse_steps += int(active.sum())
        self._store(rows, pack, scale, (minutes, loss, peak), target, cap_kwh)

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
