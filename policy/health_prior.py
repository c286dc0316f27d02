"""The parametric battery population behind the health forecast's prior (and the simulator's true paths).

Capacity fade against equivalent full cycles (EFC), per battery (Schmalstieg et al. 2014, J. Power
Sources 257:325: cycle fade ∝ √(charge throughput); a linear term stands for the throughput-linear SEI
part of Wang et al. 2011, J. Power Sources 196:3942, as in config/aging.toml):

    capacity_soh(e) = c0 - a·√e - b·e - knee(e)
    knee(e)         = s·ramp(e - e_knee, w)    0 before the knee, slope rising 0 → s over w EFC, then s
    resistance(e)   = m0 · (1 + 2.5·(1 - capacity_soh(e)))   (policy.physics_params: +50 % at SoH 0.8)

c0, a, b, m0 vary per battery (log-normal a, b); a fraction of batteries gets a knee ("knees in lithium-
ion aging trajectories", Attia et al. 2022, J. Electrochem. Soc. 169:060517: a late, sudden acceleration
of fade, often from lithium plating) with random onset and post-knee slope. The coefficients below are
our assumptions, sized so the median NMC battery reaches 80 % near 2,000-2,500 EFC (the order of
config/aging.toml and of EV-grade cells in Schmalstieg 2014); LFP lasts longer.

`sample_population` is the prior generator the forecast fits (`policy.health_forecast.fit_prior`); any
other generator with the same output (`Population`), e.g. one driven by `policy.aging`, can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.physics import FloatArray
from policy.physics_params import Chemistry

# Resistance growth per unit of capacity loss of the surrogate (policy/physics_params.py _RESISTANCE_GROWTH).
RESISTANCE_PER_SOH_LOSS = 2.5
_KNEE_WIDTH_EFC = 40.0


@dataclass(frozen=True)
class DegradationLaw:
    """One battery's true degradation path against EFC (see the module docstring for the formula)."""

    c0: float = 1.0
    a: float = 0.0025
    b: float = 3.0e-5
    knee_efc: float | None = None
    knee_slope_per_efc: float = 4.0e-4
    knee_width_efc: float = _KNEE_WIDTH_EFC
    resistance_multiplier: float = 1.0

    def capacity_soh(self, efc: FloatArray | float) -> FloatArray:
        e = np.maximum(np.asarray(efc, dtype=np.float64), 0.0)
        soh = self.c0 - self.a * np.sqrt(e) - self.b * e
        if self.knee_efc is not None:
            soh = soh - self.knee_slope_per_efc * _ramp(e - self.knee_efc, self.knee_width_efc)
        return np.asarray(np.clip(soh, 0.05, 1.0), dtype=np.float64)

    def resistance_growth(self, efc: FloatArray | float) -> FloatArray:
        """Resistance at 25 °C relative to a new nominal cell (jumps are added by the simulator)."""
        fade = 1.0 - self.capacity_soh(efc)
        return np.asarray(self.resistance_multiplier * (1.0 + RESISTANCE_PER_SOH_LOSS * fade))


def _ramp(x: FloatArray, width: float) -> FloatArray:
    """∫ of a slope rising linearly from 0 to 1 over `width`: 0, then x²/2w, then x - w/2."""
    x = np.maximum(x, 0.0)
    w = max(width, 1e-9)
    return np.asarray(np.where(x < w, x * x / (2.0 * w), x - 0.5 * w), dtype=np.float64)


@dataclass(frozen=True)
class _LawSpread:
    """Population spread of the law's coefficients for one chemistry (all assumptions, see module doc)."""

    a_median: float
    b_median: float
    log_sd: float
    knee_fraction: float
    knee_efc_range: tuple[float, float]
    knee_slope_median: float


_SPREADS: dict[str, _LawSpread] = {
    "nmc": _LawSpread(0.0025, 3.0e-5, 0.3, 0.25, (500.0, 2500.0), 4.0e-4),
    # LFP: slower SEI fade, later knees (Wang 2011's LFP cells keep > 80 % for several thousand cycles).
    "lfp": _LawSpread(0.0018, 1.5e-5, 0.3, 0.2, (1000.0, 4000.0), 3.0e-4),
}


def _draw(chemistry: Chemistry, rng: np.random.Generator, n: int, knee: bool | None) -> dict[str, FloatArray]:
    """n batteries' coefficients (arrays); `knee` forces (True) or forbids (False) a knee."""
    spread = _SPREADS[chemistry]
    has_knee = rng.random(n) < spread.knee_fraction if knee is None else np.full(n, knee)
    return {
        # New cells ship at or slightly below rated capacity here (SoH <= 1 keeps the surrogate valid).
        "c0": np.minimum(1.0, rng.normal(0.995, 0.004, n)),
        "a": spread.a_median * np.exp(rng.normal(0.0, spread.log_sd, n)),
        "b": spread.b_median * np.exp(rng.normal(0.0, spread.log_sd, n)),
        "knee_efc": np.where(has_knee, rng.uniform(*spread.knee_efc_range, n), np.nan),
        "knee_slope": spread.knee_slope_median * np.exp(rng.normal(0.0, 0.3, n)),
        "m0": rng.normal(1.0, 0.04, n),
    }


def sample_law(chemistry: Chemistry, rng: np.random.Generator, *, knee: bool | None = None) -> DegradationLaw:
    """One random battery of the population; `knee` forces (True) or forbids (False) a knee."""
    d = {key: float(value[0]) for key, value in _draw(chemistry, rng, 1, knee).items()}
    return DegradationLaw(
        c0=d["c0"],
        a=d["a"],
        b=d["b"],
        knee_efc=None if np.isnan(d["knee_efc"]) else d["knee_efc"],
        knee_slope_per_efc=d["knee_slope"],
        resistance_multiplier=d["m0"],
    )


@dataclass(frozen=True)
class Population:
    """Many batteries' true paths on one EFC grid: what a prior generator hands to `fit_prior`.

    `knee_efc` holds each battery's knee onset (NaN: none); a generator that cannot say where its knees
    are may pass all NaN, the prior then has no knee hazard (documented in docs/health.md).
    """

    efc: FloatArray  # (G,)
    capacity_soh: FloatArray  # (M, G)
    resistance_growth: FloatArray  # (M, G)
    knee_efc: FloatArray  # (M,)


def sample_population(
    chemistry: Chemistry, n: int, seed: int, efc_max: float = 5000.0, points: int = 251
) -> Population:
    """`n` batteries of the parametric population, sampled on `points` EFC values in [0, efc_max]."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, efc_max, points)
    d = _draw(chemistry, rng, n, None)
    e = grid[None, :]
    knee = np.nan_to_num(d["knee_efc"], nan=np.inf)[:, None]
    ramp = _ramp(e - np.where(np.isfinite(knee), knee, 0.0), _KNEE_WIDTH_EFC) * np.isfinite(knee)
    soh = (
        d["c0"][:, None]
        - d["a"][:, None] * np.sqrt(e)
        - d["b"][:, None] * e
        - d["knee_slope"][:, None] * ramp
    )
    soh = np.clip(soh, 0.05, 1.0)
    return Population(
        efc=grid,
        capacity_soh=soh,
        resistance_growth=d["m0"][:, None] * (1.0 + RESISTANCE_PER_SOH_LOSS * (1.0 - soh)),
        knee_efc=d["knee_efc"],
    )
