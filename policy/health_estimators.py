"""Per-session battery-health estimators from charging data alone: capacity, resistance, heating.

Each returns a value with a standard deviation (NaN when the session cannot tell) and is normalised to
25 °C. The models are the surrogate's (policy/physics.py, policy/physics_params.py): the same OCV table,
2-RC time constants, Arrhenius resistance factor and lumped thermal model.

- Capacity, coulomb counting between SoC points: SoC at rest from the OCV table (before the current
  starts the car has been parked, so the voltage is the OCV; after it stops, the rest tail is fitted with
  the RC relaxation exp(-t/τ1), exp(-t/τ2) and extrapolated to t → ∞), Ah counted in between:
  Q = ∫I dt / ΔSoC. The BMS's own SoC is not used for this: it is coulomb counted with the BMS's capacity
  belief, so ∫I dt / ΔSoC_BMS only returns that belief (kept as `bms_capacity_soh`, the naive baseline).
- Capacity, constant-current segments against the OCV curve: during CC the voltage is
  V = n·OCV(SoC0 + q/Q) + c0 + c1·exp(-t/τ2) + c2·I·Arrhenius(T); profiling the squared error over Q
  (the c's by least squares) gives Q and, from the curvature, its uncertainty. Combined with the above by
  inverse variance. Informative on NMC; on LFP's flat plateau both carry large uncertainty by design.
- Resistance from voltage steps at current changes from or to rest (the start and the end of the current):
  R = (ΔV - n·ΔOCV) / ΔI over one sampling interval,
  divided by the Arrhenius factor (`policy.physics.resistance_factor`) at the cell temperature, relative
  to a new cell's step response over the same interval (R0 + the RC branches' rise, averaged over where
  the step falls inside the interval: the charger is not synchronised to the logger).
- Temperature-rise coefficient: dT/dt = k·I²·Arrhenius(T) - c·(T - T_ambient), fitted by least squares;
  k in °C per A² per minute at 25 °C, c in 1/min. `heating_ratio` compares the rise of a reference charge
  (1C, 20 min) with (k, c) against a healthy cell of the estimated resistance: ≫ 1 is abnormal heating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from policy.health_csv import SessionData
from policy.physics import FloatArray, resistance_factor
from policy.physics_params import CellParams, Chemistry, cell_params

_REST_C_RATE = 0.02  # |I| below this x capacity is rest
_STEP_C_RATE = 0.2  # current changes at least this large are resistance steps
_REF_RISE_MIN = 20.0  # reference charge for the heating ratio: 1C for 20 min
_Q_GRID = np.linspace(0.5, 1.15, 66)
_DELAY_FRACTIONS = np.linspace(0.0, 1.0, 31)  # capacity candidates (x rated) for the CC-segment fit


@dataclass(frozen=True)
class HealthSpec:
    """What the estimator must know about the pack (defaults: config/default.toml [sim])."""

    capacity_ah: float = 150.0  # rated pack capacity
    chemistry: Chemistry = "nmc"
    series_cells: int = 96
    voltage_noise_v: float = 0.2  # σ of one pack-voltage sample (floor; the data may show more)
    current_noise_a: float = 0.3
    # Capacity temperature coefficient (per °C from 25 °C). 0: the surrogate's capacity does not depend on
    # temperature; set a data-sheet value for real cells (usable capacity falls in the cold).
    capacity_temp_coeff_per_c: float = 0.0

    @cached_property
    def params(self) -> CellParams:
        return cell_params(self.chemistry, self.capacity_ah)


@dataclass(frozen=True)
class SessionEstimate:
    """One session's estimates (NaN where the session carries no information)."""

    session_id: str
    start_s: float
    ah_in: float
    efc_recorded: float  # from the CSV's efc column, NaN without one
    mean_temp_c: float
    capacity_soh: float
    capacity_sd: float
    bms_capacity_soh: float  # ∫I dt / ΔSoC_BMS: the BMS's own capacity belief (naive baseline)
    resistance_growth: float
    resistance_sd: float
    resistance_steps: int
    heating_coeff_c_per_a2_min: float
    heating_sd: float
    cooling_per_min: float
    heating_ratio: float
    bms_soh: float


def estimate_session(session: SessionData, spec: HealthSpec) -> SessionEstimate:
    """All estimators on one session."""
    p = spec.params
    t, i_a = session.time_s, session.current_a
    temp = session.cell_temp_c
    dt = np.diff(t)
    dt_nominal = float(np.median(dt)) if dt.size else 30.0
    ok = dt <= 2.5 * dt_nominal  # gaps in the log are not integrated
    ah_steps = np.where(ok, 0.5 * (i_a[1:] + i_a[:-1]) * dt, 0.0) / 3600.0
    charging = i_a > _REST_C_RATE * spec.capacity_ah
    arrhenius = resistance_factor(p, temp, 1.0)  # once per session: every estimator needs it
    growth, growth_sd, n_steps = _resistance(session, spec, dt, dt_nominal, arrhenius)
    charge = np.flatnonzero(charging)
    mean_temp = float(np.mean(temp[charge])) if charge.size else float(np.mean(temp))
    cap, cap_sd = math.nan, math.nan
    bms_cap = math.nan
    if charge.size >= 3:
        first, last = int(charge[0]), int(charge[-1])
        lo, hi = max(first - 1, 0), min(last + 1, t.size - 1)
        ah = float(np.sum(ah_steps[lo:hi]))
        d_soc_bms = float(session.soc[hi] - session.soc[lo])
        if d_soc_bms > 0.05:
            bms_cap = ah / d_soc_bms / spec.capacity_ah
        cap, cap_sd = _capacity(session, spec, growth, lo, hi, ah_steps, dt_nominal, arrhenius)
        temp_factor = 1.0 + spec.capacity_temp_coeff_per_c * (mean_temp - 25.0)
        cap, cap_sd = cap / temp_factor, cap_sd / temp_factor
    k, k_sd, c, ratio = _heating(session, spec, dt, dt_nominal, growth, arrhenius)
    return SessionEstimate(
        session_id=session.session_id,
        start_s=session.start_s,
        ah_in=float(np.sum(np.maximum(ah_steps, 0.0))),
        efc_recorded=math.nan if session.efc is None else session.efc,
        mean_temp_c=mean_temp,
        capacity_soh=cap / spec.capacity_ah,
        capacity_sd=cap_sd / spec.capacity_ah,
        bms_capacity_soh=bms_cap,
        resistance_growth=growth,
        resistance_sd=growth_sd,
        resistance_steps=n_steps,
        heating_coeff_c_per_a2_min=k,
        heating_sd=k_sd,
        cooling_per_min=c,
        heating_ratio=ratio,
        bms_soh=math.nan if session.bms_soh is None else session.bms_soh,
    )


def _ocv_v(p: CellParams, soc: FloatArray | float) -> FloatArray:
    return np.asarray(np.interp(soc, p.ocv_soc, p.ocv_v), dtype=np.float64)


def _soc_from_ocv(p: CellParams, cell_v: float) -> tuple[float, float]:
    """SoC of a rest cell voltage, and dOCV/dSoC there (V per unit SoC) for the uncertainty."""
    soc = float(np.interp(cell_v, p.ocv_v, p.ocv_soc))
    j = int(np.clip(np.searchsorted(p.ocv_soc, soc), 1, len(p.ocv_soc) - 1))
    slope = (p.ocv_v[j] - p.ocv_v[j - 1]) / (p.ocv_soc[j] - p.ocv_soc[j - 1])
    return soc, slope


def _step_reference_ohm(p: CellParams, n: int, dt_s: float, slow: FloatArray | float = 1.0) -> FloatArray:
    """A new pack's step response at 25 °C over one interval, averaged over the step's position inside it.

    `slow` scales the RC time constants (τ = R·C grows with the resistance factor: cold, age) so a warm
    pack's faster RC1 is not mistaken for more resistance.
    """
    delay = _DELAY_FRACTIONS[None, :] * dt_s
    scale = np.asarray(slow, dtype=np.float64).reshape(-1, 1)
    tau1, tau2 = p.r1_ohm * p.c1_f * scale, p.r2_ohm * p.c2_f * scale
    response = p.r0_ohm + p.r1_ohm * (1.0 - np.exp(-delay / tau1)) + p.r2_ohm * (1.0 - np.exp(-delay / tau2))
    return np.asarray(n * np.mean(response, axis=1), dtype=np.float64)


@lru_cache(maxsize=64)
def _phase_spread(p: CellParams, dt_s: float) -> float:
    """Relative spread of one step's response over the step's position: the scatter of one step."""
    delay = _DELAY_FRACTIONS * dt_s
    tau1, tau2 = p.r1_ohm * p.c1_f, p.r2_ohm * p.c2_f
    response = p.r0_ohm + p.r1_ohm * (1.0 - np.exp(-delay / tau1)) + p.r2_ohm * (1.0 - np.exp(-delay / tau2))
    return float(np.std(response) / np.mean(response))


def _resistance(
    s: SessionData, spec: HealthSpec, dt: FloatArray, dt_nominal: float, arrhenius_all: FloatArray
) -> tuple[float, float, int]:
    p, n = spec.params, spec.series_cells
    d_i = np.diff(s.current_a)
    rest = -_REST_C_RATE * spec.capacity_ah
    steps = np.flatnonzero(
        (np.abs(d_i) >= _STEP_C_RATE * spec.capacity_ah)
        & (dt <= 1.5 * dt_nominal)
        & (np.minimum(s.current_a[1:], s.current_a[:-1]) >= rest)
        # One side at rest: steps between two currents ride on an unsettled RC2 and read ~8 % high.
        & (np.minimum(s.current_a[1:], s.current_a[:-1]) <= -rest)
    )
    if steps.size == 0:
        return math.nan, math.nan, 0
    ocv = _ocv_v(p, s.soc)
    d_v = s.voltage_v[steps + 1] - s.voltage_v[steps] - n * (ocv[steps + 1] - ocv[steps])
    r_ohm = d_v / d_i[steps]
    arrhenius = 0.5 * (arrhenius_all[steps + 1] + arrhenius_all[steps])
    r25 = r_ohm / arrhenius
    phase_rel = _phase_spread(p, dt_nominal)
    growth = r25 / _step_reference_ohm(p, n, dt_nominal, arrhenius)
    # Once more with the time constants of the resistance just found (τ ∝ R).
    first = float(np.median(growth))
    growth = r25 / _step_reference_ohm(p, n, dt_nominal, arrhenius * max(first, 0.3))
    noise_rel = math.sqrt(2.0) * spec.voltage_noise_v / np.maximum(np.abs(d_v), 1e-9)
    sd = np.abs(growth) * np.sqrt(phase_rel**2 + noise_rel**2)
    w = 1.0 / sd**2
    mean = float(np.sum(w * growth) / np.sum(w))
    mean_sd = float(1.0 / math.sqrt(float(np.sum(w))))
    if steps.size >= 3:  # trust the data's own scatter when it is larger than the model's
        mean_sd = max(mean_sd, float(np.std(growth, ddof=1)) / math.sqrt(steps.size))
    return mean, mean_sd, int(steps.size)


def _capacity(
    s: SessionData,
    spec: HealthSpec,
    growth: float,
    lo: int,
    hi: int,
    ah_steps: FloatArray,
    dt_nominal: float,
    arrhenius: FloatArray,
) -> tuple[float, float]:
    """Capacity (Ah) by rest-anchored coulomb counting and by the CC-segment OCV fit, combined."""
    p, n = spec.params, spec.series_cells
    sigma_v = spec.voltage_noise_v
    slow = (growth if math.isfinite(growth) and growth > 0 else 1.0) * float(arrhenius[lo : hi + 1].mean())
    # Start anchor: the rest samples before the current starts.
    s0 = s0_sd = math.nan
    if lo >= 0 and s.current_a[lo] < _REST_C_RATE * spec.capacity_ah:
        rest_v = s.voltage_v[: lo + 1]
        s0, slope = _soc_from_ocv(p, float(np.mean(rest_v)) / n)
        s0_sd = sigma_v / math.sqrt(rest_v.size) / (n * slope)
    estimates: list[tuple[float, float]] = []
    end = _end_anchor(s, spec, hi, slow)
    d_i = np.diff(s.current_a[lo : hi + 1])
    ah = float(np.sum(ah_steps[lo:hi]))
    # The trapezoid cannot know where a step fell inside an interval: ±ΔI·dt/2, uniform.
    ah_sd = math.sqrt(float(np.sum((d_i * dt_nominal) ** 2)) / 12.0) / 3600.0
    if math.isfinite(s0) and end is not None and end[0] - s0 > 0.1:
        d_soc = end[0] - s0
        rel = math.sqrt((ah_sd / ah) ** 2 + (s0_sd**2 + end[1] ** 2) / d_soc**2)
        estimates.append((ah / d_soc, ah / d_soc * rel))
    cc = _cc_fit(s, spec, lo, hi, ah_steps, s0 if math.isfinite(s0) else float(s.soc[lo]), slow, arrhenius)
    if cc is not None:
        estimates.append(cc)
    if not estimates:
        return math.nan, math.nan
    w = np.array([1.0 / sd**2 for _, sd in estimates])
    value = float(np.sum(w * np.array([q for q, _ in estimates])) / np.sum(w))
    return value, float(1.0 / math.sqrt(float(np.sum(w))))


def _end_anchor(s: SessionData, spec: HealthSpec, hi: int, slow: float) -> tuple[float, float] | None:
    """SoC after the charge: fit the rest tail V = OCV + a1·exp(-t/τ1) + a2·exp(-t/τ2), take OCV."""
    p, n = spec.params, spec.series_cells
    tail = slice(hi, s.time_s.size)
    t = s.time_s[tail] - s.time_s[hi - 1]
    v = s.voltage_v[tail]
    if t.size < 6 or t[-1] - t[0] < 150.0 or np.any(s.current_a[tail] > _REST_C_RATE * spec.capacity_ah):
        return None
    tau1, tau2 = p.r1_ohm * p.c1_f * slow, p.r2_ohm * p.c2_f * slow
    x = np.column_stack([np.ones_like(t), np.exp(-t / tau1), np.exp(-t / tau2)])
    try:
        gram_inv = np.linalg.inv(x.T @ x)
    except np.linalg.LinAlgError:
        return None
    coef = gram_inv @ (x.T @ v)
    resid = v - x @ coef
    sigma = max(spec.voltage_noise_v, float(np.sqrt(np.sum(resid**2) / max(t.size - 3, 1))))
    var0 = float(gram_inv[0, 0]) * sigma**2
    soc, slope = _soc_from_ocv(p, float(coef[0]) / n)
    return soc, math.sqrt(max(var0, 0.0)) / (n * slope)


def _cc_fit(
    s: SessionData,
    spec: HealthSpec,
    lo: int,
    hi: int,
    ah_steps: FloatArray,
    s0: float,
    slow: float,
    arrhenius: FloatArray,
) -> tuple[float, float] | None:
    """Profile the CC-segment model's squared error over capacity; (Q, σ_Q) from the parabola at the min."""
    p, n = spec.params, spec.series_cells
    i_a = s.current_a
    q_ah = np.concatenate([[0.0], np.cumsum(ah_steps)]) - float(np.sum(ah_steps[:lo]))
    steady = np.abs(np.diff(i_a, prepend=0.0)) < 0.03 * np.maximum(i_a, 1e-9)
    steady &= i_a > 0.3 * spec.capacity_ah
    steady[: lo + 1] = False
    steady[hi:] = False
    grid = _Q_GRID * spec.capacity_ah
    sse = np.zeros(grid.size)
    used = params = 0
    tau2 = p.r2_ohm * p.c2_f * slow
    for seg in _runs(steady):
        idx = np.arange(seg[0] + 2, seg[1])  # drop the first samples: RC1 still settling
        if idx.size < 8:
            continue
        tt = s.time_s[idx] - s.time_s[idx[0]]
        x = np.column_stack([np.ones(idx.size), np.exp(-tt / tau2), i_a[idx] * arrhenius[idx]])
        basis, _ = np.linalg.qr(x)  # residual of a least-squares fit = r - B·(Bᵀr)
        soc = s0 + q_ah[idx][None, :] / grid[:, None]
        resid = s.voltage_v[idx][None, :] - n * _ocv_v(p, soc)
        sse += np.sum(resid**2, axis=1) - np.sum((resid @ basis) ** 2, axis=1)
        used += idx.size
        params += 3
    if used < 12:
        return None
    j = int(np.argmin(sse))
    if j in (0, grid.size - 1):
        return None
    sigma2 = max(sse[j] / max(used - params - 1, 1), spec.voltage_noise_v**2)
    h = grid[1] - grid[0]
    curvature = (sse[j + 1] - 2.0 * sse[j] + sse[j - 1]) / h**2  # d²SSE/dQ²
    if curvature <= 0.0:
        return None
    shift = 0.5 * (sse[j - 1] - sse[j + 1]) / (sse[j - 1] - 2.0 * sse[j] + sse[j + 1])
    q = grid[j] + shift * h
    return float(q), float(math.sqrt(2.0 * sigma2 / curvature))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _heating(
    s: SessionData, spec: HealthSpec, dt: FloatArray, dt_nominal: float, growth: float, arrhenius: FloatArray
) -> tuple[float, float, float, float]:
    """(k °C/(A²·min) at 25 °C, σ_k, c 1/min, heating ratio vs a healthy cell of this resistance)."""
    p = spec.params
    ok = (dt > 0.0) & (dt <= 1.5 * dt_nominal)
    if int(ok.sum()) < 20 or not np.any(s.current_a > _STEP_C_RATE * spec.capacity_ah):
        return math.nan, math.nan, math.nan, math.nan
    temp = s.cell_temp_c
    mid_t = 0.5 * (temp[1:] + temp[:-1])
    y = (np.diff(temp) / (dt / 60.0))[ok]
    i2 = 0.5 * (s.current_a[1:] ** 2 + s.current_a[:-1] ** 2)
    x = np.column_stack(
        [
            (i2 * 0.5 * (arrhenius[1:] + arrhenius[:-1]))[ok],
            -(mid_t - 0.5 * (s.ambient_c[1:] + s.ambient_c[:-1]))[ok],
        ]
    )
    try:
        gram_inv = np.linalg.inv(x.T @ x)
    except np.linalg.LinAlgError:
        return math.nan, math.nan, math.nan, math.nan
    coef = gram_inv @ (x.T @ y)
    resid = y - x @ coef
    sigma2 = float(np.sum(resid**2)) / max(y.size - 2, 1)
    var_k = float(gram_inv[0, 0]) * sigma2
    k, c = float(coef[0]), float(coef[1])
    k_sd = math.sqrt(max(var_k, 0.0))
    # A healthy cell: all of R0 + R1 + R2 dissipates at steady current; cooling hA/(m·cp) (policy.physics).
    thermal_mass = p.mass_kg * p.cp_j_per_kg_k
    g = growth if math.isfinite(growth) and growth > 0 else 1.0
    k_ref = g * (p.r0_ohm + p.r1_ohm + p.r2_ohm) * 60.0 / thermal_mass
    c_ref = p.h_a_w_per_k * 60.0 / thermal_mass
    ratio = _rise(k, c) / _rise(k_ref, c_ref) if k > 0 else math.nan
    return k, k_sd, c, ratio


def _rise(k: float, c: float) -> float:
    """Temperature rise of the reference charge (1 A² scale cancels in the ratio)."""
    c = max(c, 1e-4)
    return k * (1.0 - math.exp(-c * _REF_RISE_MIN)) / c
