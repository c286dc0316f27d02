"""Truth generator for battery health: one battery's charging history with a known SoH path → CHARGES.csv.

For one battery: a prescribed true path over sessions (`policy.health_prior.DegradationLaw`: √/linear fade
in EFC, an optional injected knee, an optional resistance jump from a given session, an optional cooling
fault from a given session). Every session is simulated with `policy.physics.PackBatch`, vectorised over
sessions (one batch of N packs = N sessions, one batch per distinct resistance/cooling variant), charged
by a two-stage CC + CV law like the envelope's `cc_cv_current_a` and logged every 30 s the way a station
sees it:

- before the current starts, two samples at rest (the car has been parked: the voltage is the OCV);
  after it stops, 10-40 min of rest samples (the car stays plugged in);
- the charger changes its current at a random instant inside a sampling interval (its control loop is
  not locked to the logger);
- measurement noise: pack voltage σ 0.2 V; current gain error σ 0.2 % and offset σ 0.1 A per battery plus
  σ 0.3 A per sample; temperatures σ 0.1 °C at 0.1 °C resolution (assumptions of a good automotive
  BMS/charger meter);
- the BMS's SoC: re-anchored at rest (true SoC + σ 0.5 %), then coulomb counted with the BMS's own
  capacity belief (true SoH + a per-battery error, σ 1.5 % by default: rule-based SoH estimates lag and
  drift), reported at 0.1 % resolution. `bms_soh` (optional column) is that belief.

EFC advance by the charge of each session (the depot case: the station sees every charge).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from policy.health_csv import SessionData
from policy.health_prior import RESISTANCE_PER_SOH_LOSS, DegradationLaw, sample_law
from policy.physics import FloatArray, PackBatch, cell_params
from policy.physics_params import CellParams, Chemistry

SAMPLE_INTERVAL_S = 30.0
_PRE_REST_SAMPLES = 2
_MAX_CHARGE_SAMPLES = 260  # 2 h 10 min: ends a session whatever the BMS says
_DAY_S = 86_400.0
_SWITCH_SLOTS = 6
_SLOT_STEPS_S = (2.5, 5.0, 5.0, 5.0, 5.0, 5.0, 2.5)  # switching after step j: 2.5 + 5·j s into the interval


@dataclass(frozen=True)
class HistoryConfig:
    """What to simulate; `law=None` draws a random healthy battery of the population (seeded)."""

    sessions: int = 50
    chemistry: Chemistry = "nmc"
    capacity_ah: float = 150.0
    series_cells: int = 96
    start_efc: float = 0.0
    law: DegradationLaw | None = None
    knee_efc: float | None = None  # overrides the law's knee onset
    resistance_jump_session: int | None = None
    resistance_jump_factor: float = 1.3
    cooling_fault_session: int | None = None
    cooling_fault_factor: float = 0.3  # hA x this from that session on (a failed coolant pump)
    bms_soh_error: float | None = None  # None: random per battery (σ 1.5 %)
    write_bms_soh: bool = False
    write_efc: bool = True
    start_time_s: float = 1_704_067_200.0  # 2024-01-01T00:00:00Z
    seed: int = 0


@dataclass(frozen=True)
class SimulatedHistory:
    """The sessions as logged plus the truth per session (at the session's start)."""

    sessions: list[SessionData]
    law: DegradationLaw
    efc: FloatArray
    capacity_soh: FloatArray
    resistance_growth: FloatArray
    cooling_factor: FloatArray
    bms_soh: FloatArray = field(repr=False)


def simulate_history(config: HistoryConfig) -> SimulatedHistory:
    """Simulate one battery's charging history (deterministic for a given config, including its seed)."""
    return simulate_histories([config])[0]


@dataclass(frozen=True)
class _Battery:
    """One battery's truth and plan, fixed before any physics runs."""

    config: HistoryConfig
    law: DegradationLaw
    plan: dict[str, FloatArray]
    efc: FloatArray
    soh: FloatArray
    r_mult: FloatArray
    cooling: FloatArray
    bms_soh: FloatArray
    sensor_gain: float
    sensor_offset_a: float


def _prepare(config: HistoryConfig) -> _Battery:
    rng = np.random.default_rng(config.seed)
    law = config.law or sample_law(config.chemistry, rng, knee=False)
    # Resistance spread in steps of 4 %, so batteries share physics batches (one batch per variant).
    law = dataclasses.replace(law, resistance_multiplier=round(law.resistance_multiplier / 0.04) * 0.04)
    if config.knee_efc is not None:
        law = dataclasses.replace(law, knee_efc=config.knee_efc)
    n = config.sessions
    plan = _plan_sessions(n, rng)
    plan["start_s"] = config.start_time_s + np.cumsum(plan["gap_s"])
    # EFC per session from the planned SoC window (charge in ≈ ΔSoC x capacity): truth is fixed up front
    # so all sessions can be simulated in one vectorised batch.
    efc = np.empty(n)
    soh = np.empty(n)
    e = config.start_efc
    for i in range(n):
        efc[i] = e
        soh[i] = float(law.capacity_soh(e))
        e += (plan["target_soc"][i] - plan["start_soc"][i]) * soh[i]
    index = np.arange(n)
    jump_at = config.resistance_jump_session
    jump = np.where(index >= (jump_at if jump_at is not None else n), config.resistance_jump_factor, 1.0)
    fault_at = config.cooling_fault_session
    cooling = np.where(index >= (fault_at if fault_at is not None else n), config.cooling_fault_factor, 1.0)
    bms_error = config.bms_soh_error if config.bms_soh_error is not None else float(rng.normal(0.0, 0.015))
    return _Battery(
        config=config,
        law=law,
        plan=plan,
        efc=efc,
        soh=soh,
        r_mult=np.round(law.resistance_multiplier * jump, 6),
        cooling=cooling,
        bms_soh=np.clip(soh + bms_error, 0.3, 1.1),
        sensor_gain=float(rng.normal(0.0, 0.002)),
        sensor_offset_a=float(rng.normal(0.0, 0.1)),
    )


def simulate_histories(configs: Sequence[HistoryConfig], noise_seed: int = 0) -> list[SimulatedHistory]:
    """Many batteries at once: every (battery, session) sharing a cell variant runs in one PackBatch.

    Truth and plans depend only on each config's seed; the measurement noise comes from `noise_seed`
    and the batching, so the same list of configs always gives the same logs.
    """
    batteries = [_prepare(c) for c in configs]
    rng = np.random.default_rng(noise_seed)
    groups: dict[tuple[Chemistry, float, int, float, float], list[tuple[int, int]]] = {}
    for b, bat in enumerate(batteries):
        c = bat.config
        for i in range(c.sessions):
            key = (c.chemistry, c.capacity_ah, c.series_cells, float(bat.r_mult[i]), float(bat.cooling[i]))
            groups.setdefault(key, []).append((b, i))
    logs: list[list[SessionData | None]] = [[None] * bat.config.sessions for bat in batteries]
    for key in sorted(groups):
        chemistry, capacity_ah, series_cells, r_mult, cooling = key
        members = groups[key]
        params = _variant_params(cell_params(chemistry, capacity_ah), r_mult, cooling)
        bs = [batteries[b] for b, _ in members]
        idx = [i for _, i in members]
        lane = {
            name: np.array([bat.plan[name][i] for bat, i in zip(bs, idx, strict=True)]) for name in bs[0].plan
        }
        lane["soh"] = np.array([bat.soh[i] for bat, i in zip(bs, idx, strict=True)])
        lane["bms_capacity_ah"] = capacity_ah * np.array(
            [bat.bms_soh[i] for bat, i in zip(bs, idx, strict=True)]
        )
        lane["gain"] = np.array([bat.sensor_gain for bat in bs])
        lane["offset_a"] = np.array([bat.sensor_offset_a for bat in bs])
        ids = [f"S{i:05d}" for i in idx]
        for (b, i), log in zip(
            members, _simulate_batch(params, series_cells, capacity_ah, lane, ids, rng), strict=True
        ):
            logs[b][i] = log
    return [_assemble(bat, logs[b]) for b, bat in enumerate(batteries)]


def _assemble(bat: _Battery, logs: list[SessionData | None]) -> SimulatedHistory:
    c = bat.config
    growth = bat.r_mult * (1.0 + RESISTANCE_PER_SOH_LOSS * (1.0 - bat.soh))
    sessions = [
        dataclasses.replace(
            s,
            efc=float(bat.efc[i]) if c.write_efc else None,
            bms_soh=round(float(bat.bms_soh[i]), 3) if c.write_bms_soh else None,
        )
        for i, s in enumerate(logs)
        if s is not None
    ]
    return SimulatedHistory(sessions, bat.law, bat.efc, bat.soh, growth, bat.cooling, bat.bms_soh)


def _variant_params(base: CellParams, r_mult: float, cooling: float) -> CellParams:
    """Scale every resistance (capacitances kept, so τ = R·C grows with R, as aging does in the
    surrogate) and the cooling of the base cell."""
    return dataclasses.replace(
        base,
        r0_ohm=base.r0_ohm * r_mult,
        r1_ohm=base.r1_ohm * r_mult,
        r2_ohm=base.r2_ohm * r_mult,
        h_a_w_per_k=base.h_a_w_per_k * cooling,
    )


def _plan_sessions(n: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """Random use: start/target SoC, two CC stages (C-rates), temperatures, rest tail, start time."""
    c1 = rng.uniform(0.8, 1.6, n)
    return {
        "start_soc": rng.uniform(0.1, 0.5, n),
        "target_soc": rng.uniform(0.75, 1.0, n),
        "c1": c1,
        "c2": np.minimum(c1, rng.uniform(0.5, 1.0, n)),
        "stage_soc": rng.uniform(0.45, 0.65, n),
        "ambient_c": rng.uniform(5.0, 35.0, n),
        "warm_c": rng.uniform(0.0, 5.0, n),
        "tail_samples": rng.integers(20, 81, n).astype(np.float64),
        "anchor_error": rng.normal(0.0, 0.005, n),
        "gap_s": np.round(rng.uniform(0.5, 1.5, n) * _DAY_S),
    }


def _simulate_batch(
    params: CellParams,
    series_cells: int,
    q_ah: float,
    p: dict[str, FloatArray],
    ids: list[str],
    rng: np.random.Generator,
) -> list[SessionData]:
    m = len(ids)
    batch = PackBatch(
        params,
        series_cells,
        p["start_soc"],
        p["soh"],
        p["ambient_c"] + p["warm_c"],
        p["ambient_c"],
    )
    bms_capacity_ah = p["bms_capacity_ah"]
    soc_bms = np.clip(p["start_soc"] + p["anchor_error"], 0.0, 1.0)
    state = np.zeros(m, dtype=np.int64)  # 0 rest before, 1 charging, 2 rest after, 3 done
    stop_at = np.full(m, np.inf)
    current = np.zeros(m)
    columns: list[list[FloatArray]] = [[] for _ in range(5)]
    active: list[np.ndarray] = []
    v_cv = params.max_cell_voltage_v - 0.02
    k = 0
    while np.any(state < 3):
        # Log the sample at this instant (what flows now, the voltage it makes).
        logging = state < 3
        active.append(logging)
        true_a = batch.current_a
        columns[0].append(true_a * (1.0 + p["gain"]) + p["offset_a"] + rng.normal(0.0, 0.3, m))
        columns[1].append(batch.pack_voltage_v + rng.normal(0.0, 0.2, m))
        columns[2].append(np.round(soc_bms, 3))
        mean_temp = 0.5 * (batch.cell_temp_max_c + batch.cell_temp_min_c)
        columns[3].append(np.round(mean_temp + rng.normal(0.0, 0.1, m), 1))
        columns[4].append(np.round(batch.ambient_c + rng.normal(0.0, 0.1, m), 1))
        # Decide the next current (the BMS/charger control law), then advance with a random switch instant.
        state = np.where((state == 0) & (k >= _PRE_REST_SAMPLES - 1), 1, state)
        stage = np.where(soc_bms < p["stage_soc"], p["c1"], p["c2"]) * q_ah
        cv = np.maximum(batch.current_a, 0.0) + 1.5 * q_ah * (v_cv - batch.cell_voltage_max_v)
        command = np.maximum(np.minimum(stage, cv), 0.0)
        finished = (state == 1) & (
            (soc_bms >= p["target_soc"])
            | ((cv < stage) & (command < 0.05 * q_ah))
            | (k >= _PRE_REST_SAMPLES + _MAX_CHARGE_SAMPLES)
        )
        stop_at = np.where(finished, k + p["tail_samples"], stop_at)
        state = np.where(finished, 2, state)
        state = np.where((state == 2) & (k >= stop_at), 3, state)
        command = np.where(state == 1, command, 0.0)
        charge_before = batch.charge_in_ah.copy()
        # Each pack switches at its own instant inside the interval (midpoints of 6 slots).
        switch_slot = rng.integers(0, _SWITCH_SLOTS, m)
        for slot, dt_s in enumerate(_SLOT_STEPS_S):
            batch.step(np.where(slot <= switch_slot, current, command), dt_s)
        current = command
        soc_bms = np.clip(soc_bms + (batch.charge_in_ah - charge_before) / bms_capacity_ah, 0.0, 1.0)
        k += 1
    mask = np.stack(active, axis=1)
    stacked = [np.stack(col, axis=1) for col in columns]
    out = []
    for j in range(m):
        keep = mask[j]
        times = p["start_s"][j] + SAMPLE_INTERVAL_S * np.arange(int(keep.sum()))
        out.append(
            SessionData(
                session_id=ids[j],
                time_s=times,
                current_a=stacked[0][j, keep],
                voltage_v=stacked[1][j, keep],
                soc=stacked[2][j, keep],
                cell_temp_c=stacked[3][j, keep],
                ambient_c=stacked[4][j, keep],
            )
        )
    return out
