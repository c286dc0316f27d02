"""Aging of the battery surrogate: capacity lost per charging step (SEI growth + lithium-plating proxy).

Per cell, as a fraction of nominal capacity, for a step of `dt_s` at constant `current_a`:

    SEI, cycle:    L_cyc = k_cyc · A(T, C) · (I·dt / Q_nom)         A ∝ exp(-(Ea - b·C)/(R·T)), 1 at 1C/25 °C
    SEI, calendar: L_cal = k_cal · exp(-Ea_cal/R·(1/T - 1/T_ref)) · (1 + g·soc) · dt
    plating:       L_pl  = k_pl  · σ(-margin/s) · (I·dt / Q_nom)    margin = anode potential (physics.py)

The cycle term is Wang et al. 2011's rate-dependent Arrhenius law in differential form; the plating term
is the issue's "plating-risk integral": the share of the current that plates (a logistic in the anode
potential) times the charge passed, of which a fixed fraction is lost for good. Parameters and their
sources are in `config/aging.toml`. Warm speeds SEI but slows plating; high current, cold and high SoC
speed plating: the trade-off a charge curve has to find.

Everything is NumPy over arrays of packs (scalars broadcast), so the teacher can score thousands of
candidate curves at once.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache

import numpy as np

from chargeagent.config import config_dir
from chargeagent.errors import ConfigError
from policy.physics import R_GAS_J_PER_MOL_K, T_REF_C, FloatArray, plating_margin_v
from policy.physics_params import CellParams

_KELVIN = 273.15
_T_REF_K = T_REF_C + _KELVIN


@dataclass(frozen=True)
class AgingParams:
    """The coefficients of the three loss terms (see `config/aging.toml` for sources)."""

    sei_ea_j_per_mol: float
    sei_ea_per_c_rate_j_per_mol: float
    sei_loss_per_full_charge_ref: float
    calendar_loss_per_hour_ref: float
    calendar_high_soc_gain: float
    calendar_ea_j_per_mol: float
    plating_margin_sigma_v: float
    plating_irreversible_fraction: float


@cache
def aging_params() -> AgingParams:
    """The parameters from `config/aging.toml` (read once)."""
    path = config_dir() / "aging.toml"
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        sei, plating = raw["sei"], raw["plating"]
        params = AgingParams(
            sei_ea_j_per_mol=float(sei["ea_j_per_mol"]),
            sei_ea_per_c_rate_j_per_mol=float(sei["ea_per_c_rate_j_per_mol"]),
            sei_loss_per_full_charge_ref=float(sei["loss_per_full_charge_ref"]),
            calendar_loss_per_hour_ref=float(sei["calendar_loss_per_hour_ref"]),
            calendar_high_soc_gain=float(sei["calendar_high_soc_gain"]),
            calendar_ea_j_per_mol=float(sei["calendar_ea_j_per_mol"]),
            plating_margin_sigma_v=float(plating["margin_sigma_v"]),
            plating_irreversible_fraction=float(plating["irreversible_fraction"]),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not all(math.isfinite(v) and v >= 0.0 for v in vars(params).values()):
        raise ConfigError(f"{path}: aging parameters must be finite and >= 0")
    return params


def _arrhenius(ea_j_per_mol: FloatArray | float, temp_c: FloatArray) -> FloatArray:
    inv = 1.0 / (temp_c + _KELVIN) - 1.0 / (T_REF_C + _KELVIN)
    return np.asarray(np.exp(-np.asarray(ea_j_per_mol) / R_GAS_J_PER_MOL_K * inv), dtype=np.float64)


def plating_fraction(
    cell: CellParams,
    soc: FloatArray | float,
    cell_temp_c: FloatArray | float,
    c_rate: FloatArray | float,
    soh: FloatArray | float,
    params: AgingParams | None = None,
) -> FloatArray:
    """Share (0-1) of the charging current that plates lithium: logistic in the anode potential."""
    p = params or aging_params()
    margin = plating_margin_v(cell, soc, cell_temp_c, c_rate, soh)
    # Clip the exponent: beyond ±50 the logistic is 0/1 to double precision anyway.
    z = np.clip(margin / p.plating_margin_sigma_v, -50.0, 50.0)
    return np.asarray(1.0 / (1.0 + np.exp(z)), dtype=np.float64)


@dataclass(frozen=True)
class StepLoss:
    """Capacity lost in one step by each mechanism (fractions of nominal capacity, arrays per pack)."""

    sei_cycle: FloatArray
    sei_calendar: FloatArray
    plating: FloatArray

    @property
    def total(self) -> FloatArray:
        return np.asarray(self.sei_cycle + self.sei_calendar + self.plating, dtype=np.float64)


def step_loss(
    cell: CellParams,
    current_a: FloatArray | float,
    soc: FloatArray | float,
    cell_temp_c: FloatArray | float,
    soh: FloatArray | float,
    dt_s: float,
    params: AgingParams | None = None,
) -> StepLoss:
    """Capacity lost by each pack over a step at constant current (charging; discharge counts |I| for SEI)."""
    p = params or aging_params()
    current = np.asarray(current_a, dtype=np.float64)
    temp = np.asarray(cell_temp_c, dtype=np.float64)
    soc_arr = np.asarray(soc, dtype=np.float64)
    c_rate = np.abs(current) / cell.capacity_ah
    throughput = c_rate * (dt_s / 3600.0)  # equivalent full charges passed in this step
    # Wang 2011: exp(-(Ea - b·C)/(R·T)), the activation energy falling by b = 370.3 J/mol per C of rate
    # (faster -> more loss per Ah), normalised to 1 at 1C and 25 °C where the coefficient is given.
    temp_k = temp + _KELVIN
    rate_gain = np.exp(p.sei_ea_per_c_rate_j_per_mol / R_GAS_J_PER_MOL_K * (c_rate / temp_k - 1.0 / _T_REF_K))
    sei_cycle = p.sei_loss_per_full_charge_ref * _arrhenius(p.sei_ea_j_per_mol, temp) * rate_gain * throughput
    sei_calendar = (
        p.calendar_loss_per_hour_ref
        * _arrhenius(p.calendar_ea_j_per_mol, temp)
        * (1.0 + p.calendar_high_soc_gain * soc_arr)
        * (dt_s / 3600.0)
    )
    charging_rate = np.maximum(current, 0.0) / cell.capacity_ah
    plated = plating_fraction(cell, soc_arr, temp, charging_rate, soh, p) * charging_rate * (dt_s / 3600.0)
    plating = p.plating_irreversible_fraction * plated
    shape = np.broadcast_shapes(current.shape, temp.shape, soc_arr.shape)
    return StepLoss(
        np.broadcast_to(sei_cycle, shape).astype(np.float64),
        np.broadcast_to(sei_calendar, shape).astype(np.float64),
        np.broadcast_to(plating, shape).astype(np.float64),
    )
