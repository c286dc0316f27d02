"""NumPy battery surrogate: OCV table + 2-RC equivalent circuit + lumped thermal model, vectorised over packs.

One `PackBatch` holds N packs (arrays of shape (N,)); `Pack` is the same model on plain floats for one
pack (≈ 10x less overhead per step). Each pack is `series_cells` identical cells in series, modelled by
one representative (mean) cell; the highest/lowest cells are derived from it by a small deterministic
spread (CELL_V_SPREAD_*, TEMP_SPREAD_* below), which is what a BMS reports as max/min.

Model, per representative cell (current positive INTO the battery):
    v_terminal = OCV(soc) + v1 + v2 + I·R0           dv_k/dt = I/C_k - v_k/(R_k·C_k)
    capacity   = capacity_nominal · SoH              (SoH realised as capacity fade)
    R_x(T, SoH) = R_x,new · exp(Ea/R·(1/T - 1/T_ref)) · (1 + k·(1 - SoH))
    m·cp·dT/dt = I²R0 + v1²/R1 + v2²/R2 - hA·(T - T_amb)
Reversible (entropic) heat is neglected: it is a few % of Joule heat at fast-charge currents.
Both the RC branches and the thermal ODE are integrated exactly for piecewise-constant input, so the
model is stable for any step; large steps are still sub-stepped so the couplings (R depends on T, OCV
on SoC) stay accurate. Energy is accounted exactly: terminal energy = stored (∫OCV dq) + heat +
energy held in the RC capacitors. Aging dynamics (SEI growth, plating loss) belong to issue 6; only a
plating-risk indicator (`plating_margin_v`) lives here now.
The parameter tables (OCV curves, per-chemistry cells, `cell_params`) are in `policy.physics_params`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
import structlog

from chargeagent.errors import ConfigError
from policy.physics_params import CellParams, Chemistry, cell_params

# The OCV and cell parameter tables live in `policy.physics_params`; they stay importable from here.
__all__ = [
    "CELL_V_SPREAD_AGE_GAIN",
    "CELL_V_SPREAD_BASE_V",
    "CELL_V_SPREAD_PER_C_RATE_V",
    "MAX_SUBSTEP_S",
    "MIN_STEP_S",
    "R_GAS_J_PER_MOL_K",
    "TEMP_SPREAD_BASE_C",
    "TEMP_SPREAD_COLD_FRACTION",
    "TEMP_SPREAD_HOT_FRACTION",
    "T_REF_C",
    "CellParams",
    "Chemistry",
    "FloatArray",
    "Pack",
    "PackBatch",
    "cell_params",
    "plating_margin_v",
    "resistance_factor",
]

log = structlog.get_logger(__name__)

FloatArray = npt.NDArray[np.float64]
X = TypeVar("X", float, FloatArray)

R_GAS_J_PER_MOL_K = 8.314462618
T_REF_C = 25.0
_KELVIN = 273.15
_T_REF_K = T_REF_C + _KELVIN
# Exact integration makes any step stable; this only bounds coupling error (R(T), OCV(SoC)).
MAX_SUBSTEP_S = 5.0
# Shorter steps are skipped: nothing physical happens in them and 1/h would overflow.
MIN_STEP_S = 1e-6

# Graphite open-circuit potential vs Li/Li+ mapped onto cell SoC (stage plateaus ~0.21/0.12/0.085 V,
# after the graphite OCP in Chen et al. 2020). Used only by the plating indicator.
_ANODE_SOC = (0.0, 0.05, 0.15, 0.25, 0.5, 0.55, 0.8, 1.0)
_ANODE_OCP_V = (0.30, 0.22, 0.18, 0.13, 0.12, 0.09, 0.085, 0.075)
# Anode overpotential per C-rate at 25 °C for a new cell: an assumption (≈1/3 of the cell's ohmic +
# charge-transfer drop), chosen so a new cell at 25 °C starts to plate near 3C at high SoC, and at 0 °C
# near 1C (REFERENCE.md "Battery physics": plating grows with current, cold and SoC).
_ANODE_OVERPOTENTIAL_V_PER_C = 0.025

# Deterministic cell-to-cell spread, applied to the mean cell to give the BMS's max/min values:
# balanced packs sit within a few mV at rest; under current the spread grows with the IR drop (cell
# resistance varies by a few %), and aged packs are less uniform.
CELL_V_SPREAD_BASE_V = 0.005
CELL_V_SPREAD_PER_C_RATE_V = 0.010
CELL_V_SPREAD_AGE_GAIN = 2.0  # spread x (1 + gain·(1 - SoH))
# Thermal gradient: the hottest (centre) cell sits above the mean by a fraction of the difference to
# ambient, the coldest (edge) cell a smaller fraction nearer ambient; plus a fixed sensor spread.
TEMP_SPREAD_BASE_C = 0.5
TEMP_SPREAD_HOT_FRACTION = 0.3
TEMP_SPREAD_COLD_FRACTION = 0.2


def _arrhenius_aging(params: CellParams, temp_c: X, soh: X, exp: Callable[[X], X]) -> X:
    temp_k = temp_c + _KELVIN
    arrhenius = exp(params.ea_j_per_mol / R_GAS_J_PER_MOL_K * (1.0 / temp_k - 1.0 / _T_REF_K))
    return arrhenius * (1.0 + params.resistance_growth_per_soh_loss * (1.0 - soh))


def resistance_factor(
    params: CellParams, cell_temp_c: FloatArray | float, soh: FloatArray | float
) -> FloatArray:
    """Multiplier on the 25 °C new-cell resistances: Arrhenius in temperature x linear growth with age."""
    temp = np.asarray(cell_temp_c, dtype=np.float64)
    return _arrhenius_aging(params, temp, np.asarray(soh, dtype=np.float64) + 0.0 * temp, np.exp)


def plating_margin_v(
    params: CellParams,
    soc: FloatArray | float,
    cell_temp_c: FloatArray | float,
    c_rate: FloatArray | float,
    soh: FloatArray | float = 1.0,
) -> FloatArray:
    """Estimated graphite potential vs Li/Li+ while charging; below 0 V lithium plating is likely.

    An uncalibrated indicator (REFERENCE.md "Battery physics": plating when the anode potential drops
    below 0 V, worse with current, cold and high SoC), kept cheap for issue 6's aging model and for
    teacher constraints. It is not used by the safety envelope.
    """
    ocp = np.interp(np.asarray(soc, dtype=np.float64), _ANODE_SOC, _ANODE_OCP_V)
    rate = np.maximum(np.asarray(c_rate, dtype=np.float64), 0.0)
    overpotential = rate * _ANODE_OVERPOTENTIAL_V_PER_C * resistance_factor(params, cell_temp_c, soh)
    return np.asarray(ocp - overpotential, dtype=np.float64)


def _interp_scalar(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """np.interp for one float, without the array round trip (≈ 10x faster for N = 1)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0 = xs[i - 1]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)


def _clip_scalar(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


class _PackCore(Generic[X]):
    """The model itself, written once for both backends: X is `float` (one pack) or an (N,) array.

    Only arithmetic operators and the four primitives below are used, so the scalar path (tens of
    µs per step for the per-station simulator) and the vectorised path (fleets) cannot drift apart.
    """

    params: CellParams
    max_substep_s: float = MAX_SUBSTEP_S
    series_cells: X
    soc: X
    soh: X
    cell_temp_c: X
    ambient_c: X
    capacity_ah: X
    v1_v: X
    v2_v: X
    current_a: X
    energy_in_kwh: X
    stored_kwh: X
    heat_kwh: X
    charge_in_ah: X
    ocv_v: X
    resistance_ohm: X
    cell_voltage_v: X
    pack_voltage_v: X
    cell_voltage_max_v: X
    cell_voltage_min_v: X
    cell_temp_max_c: X
    cell_temp_min_c: X

    def _exp(self, x: X) -> X:
        raise NotImplementedError

    def _interp(self, x: X, xs: tuple[float, ...], ys: tuple[float, ...]) -> X:
        raise NotImplementedError

    def _clip(self, x: X, lo: X, hi: X) -> X:
        raise NotImplementedError

    def _abs(self, x: X) -> X:
        raise NotImplementedError

    def _init_state(self, zero: X) -> None:
        p = self.params
        self.capacity_ah = p.capacity_ah * self.soh
        self._thermal_decay_per_s = p.h_a_w_per_k / (p.mass_kg * p.cp_j_per_kg_k)
        self.v1_v = self.v2_v = self.current_a = zero
        # Energy counters are per PACK (cell value x series_cells), ready for meter values; charge is
        # the same for every cell of a series string.
        self.energy_in_kwh = self.stored_kwh = self.heat_kwh = self.charge_in_ah = zero
        self._refresh()

    def _advance(self, current_a: X, dt_s: float) -> None:
        n_sub = max(1, math.ceil(dt_s / self.max_substep_s))
        h = dt_s / n_sub
        for _ in range(n_sub):
            self._substep(current_a, h)
        self._refresh()

    def _substep(self, current_a: X, h: float) -> None:
        p = self.params
        capacity_as = self.capacity_ah * 3600.0
        # Clip so the SoC cannot leave [0, 1]: the charge a full (empty) cell refuses does not flow.
        current = self._clip(current_a, -self.soc * capacity_as / h, (1.0 - self.soc) * capacity_as / h)
        factor = _arrhenius_aging(p, self.cell_temp_c, self.soh, self._exp)
        r0 = p.r0_ohm * factor
        self.v1_v, heat1_j, into1_j = self._rc_branch(self.v1_v, current, p.r1_ohm * factor, p.c1_f, h)
        self.v2_v, heat2_j, into2_j = self._rc_branch(self.v2_v, current, p.r2_ohm * factor, p.c2_f, h)
        ohmic_j = current * current * r0 * h
        heat_j = ohmic_j + heat1_j + heat2_j
        # The clip above already keeps SoC in range; this one only absorbs rounding (≈ 1e-16).
        zero = 0.0 * self.soc
        soc_new = self._clip(self.soc + current * h / capacity_as, zero, zero + 1.0)
        ocv_new = self._interp(soc_new, p.ocv_soc, p.ocv_v)
        # Trapezoid of OCV over the SoC change: exact on a piecewise-linear table unless a breakpoint
        # is crossed inside the step (then ≪ 0.1 % for sub-steps of a few seconds).
        stored_j = 0.5 * (self.ocv_v + ocv_new) * current * h
        self.soc = soc_new
        self.ocv_v = ocv_new
        # Lumped thermal, exact relaxation towards equilibrium for constant heat over the step.
        t_eq = self.ambient_c + heat_j / h / p.h_a_w_per_k
        self.cell_temp_c = t_eq + (self.cell_temp_c - t_eq) * math.exp(-h * self._thermal_decay_per_s)
        to_pack_kwh = self.series_cells / 3.6e6
        self.energy_in_kwh = self.energy_in_kwh + (stored_j + into1_j + into2_j + ohmic_j) * to_pack_kwh
        self.stored_kwh = self.stored_kwh + stored_j * to_pack_kwh
        self.heat_kwh = self.heat_kwh + heat_j * to_pack_kwh
        self.charge_in_ah = self.charge_in_ah + current * h / 3600.0
        self.current_a = current

    def _rc_branch(self, v0_v: X, current_a: X, r_ohm: X, c_f: float, h_s: float) -> tuple[X, X, X]:
        """Exact step of one RC pair at constant current: (new voltage, heat J, energy into branch J)."""
        tau_s = r_ohm * c_f
        decay = self._exp(-h_s / tau_s)
        v_inf = current_a * r_ohm
        v_new = v_inf + (v0_v - v_inf) * decay
        # ∫v dt over the step in closed form; heat = I·∫v dt - Δ(½·C·v²), what the capacitor did not keep.
        into_j = current_a * (v_inf * h_s + (v0_v - v_inf) * tau_s * (1.0 - decay))
        heat_j = into_j - 0.5 * c_f * (v_new * v_new - v0_v * v0_v)
        return v_new, heat_j, into_j

    def _refresh(self) -> None:
        """Recompute the derived outputs once per step (they are read many times per step)."""
        p = self.params
        self.ocv_v = self._interp(self.soc, p.ocv_soc, p.ocv_v)
        self.resistance_ohm = p.r0_ohm * _arrhenius_aging(p, self.cell_temp_c, self.soh, self._exp)
        self.cell_voltage_v = self.ocv_v + self.v1_v + self.v2_v + self.current_a * self.resistance_ohm
        self.pack_voltage_v = self.cell_voltage_v * self.series_cells
        # Deterministic spread (module constants above): voltage grows with |C-rate| and age;
        # temperature grows with the distance of the mean cell from ambient.
        c_rate = self._abs(self.current_a) / p.capacity_ah
        spread_v = (CELL_V_SPREAD_BASE_V + CELL_V_SPREAD_PER_C_RATE_V * c_rate) * (
            1.0 + CELL_V_SPREAD_AGE_GAIN * (1.0 - self.soh)
        )
        gradient_c = self._abs(self.cell_temp_c - self.ambient_c)
        self.cell_voltage_max_v = self.cell_voltage_v + spread_v
        self.cell_voltage_min_v = self.cell_voltage_v - spread_v
        self.cell_temp_max_c = self.cell_temp_c + TEMP_SPREAD_BASE_C + TEMP_SPREAD_HOT_FRACTION * gradient_c
        self.cell_temp_min_c = self.cell_temp_c - TEMP_SPREAD_BASE_C - TEMP_SPREAD_COLD_FRACTION * gradient_c


def _check_ranges(series_cells: float, soc: float, soh: float) -> None:
    if series_cells < 1:
        raise ConfigError(f"series_cells must be >= 1, got {series_cells}")
    if not 0.0 <= soc <= 1.0:
        raise ConfigError(f"soc must be within [0, 1], got {soc}")
    if not 0.0 < soh <= 1.0:
        raise ConfigError(f"soh must be within (0, 1], got {soh}")


class PackBatch(_PackCore[FloatArray]):
    """N packs of `series_cells` cells each; every public attribute is an array of shape (N,).

    Per cell: soc, ocv_v, cell_voltage_v (terminal, mean cell), cell_voltage_max_v/min_v, cell_temp_c
    (mean), cell_temp_max_c/min_c, resistance_ohm (R0 now), current_a (what flowed in the last step),
    v1_v/v2_v (RC polarisation). Per pack: pack_voltage_v, energy_in_kwh (at the terminals),
    stored_kwh (∫OCV dq), heat_kwh, charge_in_ah.
    """

    def __init__(
        self,
        params: CellParams,
        series_cells: int | FloatArray,
        soc: FloatArray,
        soh: FloatArray,
        cell_temp_c: FloatArray,
        ambient_c: FloatArray,
        max_substep_s: float = MAX_SUBSTEP_S,
    ) -> None:
        """`max_substep_s`: longer steps are split (coupling accuracy); fleets at 1-min steps may pass 60,
        which stays stable (exact RC and thermal integration) and keeps R(T) and OCV(SoC) within a step's
        drift (the thermal time constant is ~800 s)."""
        self.params = params
        self.max_substep_s = max_substep_s
        self.n = int(np.asarray(soc).size)
        self.series_cells = self._array("series_cells", series_cells)
        self.soc = self._array("soc", np.asarray(soc).reshape(-1))
        self.soh = self._array("soh", soh)
        self.cell_temp_c = self._array("cell_temp_c", cell_temp_c)
        self.ambient_c = self._array("ambient_c", ambient_c)
        _check_ranges(float(self.series_cells.min()), float(self.soc.min()), float(self.soh.min()))
        _check_ranges(float(self.series_cells.max()), float(self.soc.max()), float(self.soh.max()))
        self._init_state(np.zeros(self.n, dtype=np.float64))

    def _array(self, name: str, value: FloatArray | float) -> FloatArray:
        try:
            arr = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (self.n,)))
        except ValueError as exc:
            raise ConfigError(f"{name} must be a scalar or have shape ({self.n},)") from exc
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{name} must be finite, got {arr}")
        return arr

    def step(self, current_a: FloatArray | float, dt_s: float) -> None:
        """Advance every pack by `dt_s` at constant `current_a` (positive = charging).

        A full (empty) cell accepts no more charge (discharge): the current that flows is clipped so
        SoC stays in [0, 1], and `current_a` afterwards holds what really flowed. Bad input (non-finite
        current or dt) is logged and treated as 0 A / no step, never raised.
        """
        if not (math.isfinite(dt_s) and dt_s >= 0.0):
            log.warning("physics_bad_step", dt_s=dt_s, reason="dt_s must be finite and >= 0")
            return
        current = np.array(np.broadcast_to(np.asarray(current_a, dtype=np.float64), (self.n,)))
        bad = ~np.isfinite(current)
        if bad.any():
            log.warning("physics_bad_current", packs=int(bad.sum()), reason="non-finite set to 0 A")
            current[bad] = 0.0
        if dt_s >= MIN_STEP_S:
            self._advance(current, dt_s)

    def _exp(self, x: FloatArray) -> FloatArray:
        return np.exp(x)

    def _interp(self, x: FloatArray, xs: tuple[float, ...], ys: tuple[float, ...]) -> FloatArray:
        return np.interp(x, xs, ys)

    def _clip(self, x: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
        return np.minimum(np.maximum(x, lo), hi)

    def _abs(self, x: FloatArray) -> FloatArray:
        return np.abs(x)


class Pack(_PackCore[float]):
    """One pack with float attributes (same names as `PackBatch`): the scalar path of the same model."""

    def __init__(
        self,
        params: CellParams,
        series_cells: int,
        soc: float,
        soh: float,
        cell_temp_c: float,
        ambient_c: float,
    ) -> None:
        values = (series_cells, soc, soh, cell_temp_c, ambient_c)
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"pack parameters must be finite, got {values}")
        _check_ranges(series_cells, soc, soh)
        self.params = params
        self.series_cells = float(series_cells)
        self.soc = float(soc)
        self.soh = float(soh)
        self.cell_temp_c = float(cell_temp_c)
        self.ambient_c = float(ambient_c)
        self._init_state(0.0)

    def step(self, current_a: float, dt_s: float) -> None:
        """Advance by `dt_s` at `current_a` (positive = charging); bad input is logged, not raised."""
        if not (math.isfinite(dt_s) and dt_s >= 0.0 and math.isfinite(current_a)):
            log.warning("physics_bad_step", dt_s=dt_s, current_a=current_a, reason="non-finite input")
            return
        if dt_s >= MIN_STEP_S:
            self._advance(float(current_a), dt_s)

    def _exp(self, x: float) -> float:
        return math.exp(x)

    def _interp(self, x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
        return _interp_scalar(x, xs, ys)

    def _clip(self, x: float, lo: float, hi: float) -> float:
        return _clip_scalar(x, lo, hi)

    def _abs(self, x: float) -> float:
        return abs(x)
