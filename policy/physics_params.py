"""Parameter tables of the battery surrogate (`policy.physics`): OCV(SoC) curves and per-chemistry cells.

`cell_params(chemistry, capacity_ah)` scales a per-Ah chemistry base (resistances, RC time constants,
mass, cooling, activation energy, voltage window) to one new cell at 25 °C and returns `CellParams`.
Every number cites where it comes from, or says it is our assumption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from chargeagent.errors import ConfigError

Chemistry = Literal["nmc", "lfp"]

# OCV(SoC) per cell at 25 °C, rounded to 10 mV. Shapes follow published curves, not a fit to one cell:
# NMC/graphite after Chen et al. 2020, J. Electrochem. Soc. 167:080534 (LG M50, NMC811);
# LFP/graphite after Prada et al. 2012, J. Electrochem. Soc. 159:A1508 (A123 LFP), with its flat
# ~3.3 V plateau. Strictly increasing, so SoC ↔ OCV is one-to-one.
_OCV_SOC = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_OCV_NMC_V = (3.30, 3.46, 3.54, 3.58, 3.61, 3.66, 3.71, 3.77, 3.85, 3.93, 4.01, 4.09, 4.13, 4.19)
_OCV_LFP_V = (2.90, 3.14, 3.20, 3.23, 3.25, 3.28, 3.29, 3.30, 3.31, 3.32, 3.33, 3.34, 3.37, 3.55)


@dataclass(frozen=True)
class CellParams:
    """Parameters of one new cell at 25 °C (resistances scale with temperature and SoH at run time)."""

    chemistry: Chemistry
    capacity_ah: float
    r0_ohm: float
    r1_ohm: float
    c1_f: float
    r2_ohm: float
    c2_f: float
    mass_kg: float
    cp_j_per_kg_k: float
    h_a_w_per_k: float
    ea_j_per_mol: float
    resistance_growth_per_soh_loss: float
    nominal_cell_voltage_v: float
    max_cell_voltage_v: float
    min_cell_voltage_v: float
    ocv_soc: tuple[float, ...]
    ocv_v: tuple[float, ...]


@dataclass(frozen=True)
class _ChemistryBase:
    """Per-Ah scalings: resistance ∝ 1/capacity (parallel area), mass and cooling ∝ capacity."""

    r0_ohm_ah: float
    r1_ohm_ah: float
    tau1_s: float
    r2_ohm_ah: float
    tau2_s: float
    mass_kg_per_ah: float
    ea_j_per_mol: float
    nominal_v: float
    max_v: float
    min_v: float
    ocv_v: tuple[float, ...]


# Per-Ah resistances are assumptions sized to large-format EV cells (R ∝ 1/capacity); RC time constants
# 10 s / 200 s separate charge transfer from diffusion, as in usual 2-RC fits.
_BASES: dict[str, _ChemistryBase] = {
    # 150 Ah NMC prismatic: R0 ≈ 0.8 mΩ, ≈ 2.4 kg (≈ 230 Wh/kg); 4.2 V / 3.0 V window is standard NMC.
    "nmc": _ChemistryBase(0.12, 0.05, 10.0, 0.05, 200.0, 0.016, 30_000.0, 3.65, 4.20, 3.00, _OCV_NMC_V),
    # 200 Ah LFP prismatic: R0 ≈ 0.5 mΩ, heavier per Ah (≈ 170 Wh/kg), 3.65 V / 2.5 V window (usual
    # LFP data-sheet limits); a larger activation energy makes it more sensitive to cold (assumption).
    "lfp": _ChemistryBase(0.10, 0.04, 10.0, 0.04, 200.0, 0.019, 35_000.0, 3.20, 3.65, 2.50, _OCV_LFP_V),
}
# Li-ion cell heat capacity ≈ 0.8-1.1 kJ/(kg·K): Maleki et al. 1999, J. Electrochem. Soc. 146:947.
_CP_J_PER_KG_K = 1000.0
# Liquid-cooled pack, per cell: chosen so the thermal time constant m·cp/hA is ≈ 800 s (NMC), the
# order of magnitude of EV packs under fast charge (tens of K rise over a 20-30 min 1.5-2C charge).
_H_A_W_PER_K_PER_AH = 0.02
# Resistance growth with capacity fade: R = R_new·(1 + k·(1 - SoH)). k = 2.5 gives +50 % at SoH 0.8,
# an assumption in the range cycling studies report at 80 % capacity (e.g. Schmalstieg et al. 2014,
# J. Power Sources 257:325, NMC 18650s).
_RESISTANCE_GROWTH = 2.5


def cell_params(chemistry: Chemistry, capacity_ah: float) -> CellParams:
    """Parameters for a new cell of the given chemistry and nominal capacity."""
    base = _BASES.get(chemistry)
    if base is None:
        raise ConfigError(f"chemistry must be 'nmc' or 'lfp', got {chemistry!r}")
    if not (math.isfinite(capacity_ah) and capacity_ah > 0.0):
        raise ConfigError(f"capacity_ah must be a positive number, got {capacity_ah!r}")
    r1 = base.r1_ohm_ah / capacity_ah
    r2 = base.r2_ohm_ah / capacity_ah
    return CellParams(
        chemistry=chemistry,
        capacity_ah=capacity_ah,
        r0_ohm=base.r0_ohm_ah / capacity_ah,
        r1_ohm=r1,
        c1_f=base.tau1_s / r1,
        r2_ohm=r2,
        c2_f=base.tau2_s / r2,
        mass_kg=base.mass_kg_per_ah * capacity_ah,
        cp_j_per_kg_k=_CP_J_PER_KG_K,
        h_a_w_per_k=_H_A_W_PER_K_PER_AH * capacity_ah,
        ea_j_per_mol=base.ea_j_per_mol,
        resistance_growth_per_soh_loss=_RESISTANCE_GROWTH,
        nominal_cell_voltage_v=base.nominal_v,
        max_cell_voltage_v=base.max_v,
        min_cell_voltage_v=base.min_v,
        ocv_soc=_OCV_SOC,
        ocv_v=base.ocv_v,
    )
