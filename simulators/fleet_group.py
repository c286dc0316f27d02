"""One chemistry's sessions of one plug-in day, stepped together by the fast fleet simulator.

Every pack is simulated as `series` cells of a 100 Ah reference cell carrying the same C-rate
(`simulators.fleet`); `want` gives the current each session would draw on its own this step — the
minimum of the stacked limits named in `LIMIT_NAMES` — and `advance` takes the step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from policy.aging import step_loss
from policy.charge_sim import CV_GAIN_A_PER_V_AH, CV_MARGIN_V, N_STAGES, thermal_fraction
from policy.envelope import EnvelopeLimits
from policy.physics import FloatArray, PackBatch
from policy.physics_params import CellParams
from policy.price_plan import PriceLadder, must_charge, power_now

STEP_S = 60.0
REF_AH = 100.0
LIMIT_NAMES = (
    "station_power",
    "vehicle_power",
    "bms_cv",
    "thermal_derate",
    "curve",
    "price_plan",
    "site_cap",
)
SITE_CAP = LIMIT_NAMES.index("site_cap")  # set by the site load management, not a stacked limit


@dataclass
class SessionGroup:
    """One chemistry's rows of one chunk, stepped by `simulators.fleet.FleetSimulator`."""

    rows: np.ndarray
    cell: CellParams
    pack: PackBatch
    scale: FloatArray  # real pack Ah / reference Ah
    nominal_v: float
    soc0: FloatArray
    soh: FloatArray
    target: FloatArray
    station_c: FloatArray
    vehicle_c: FloatArray
    max_c: FloatArray
    rates: FloatArray  # (N, K) planned C-rates
    conn: FloatArray
    disc: FloatArray
    cap_kwh: FloatArray
    capacity_wh: FloatArray  # usable now (capacity x SoH)
    first: int
    last: int
    limits: EnvelopeLimits
    max_kw: FloatArray  # min(station, vehicle) power
    prices: PriceLadder | None  # the tariff over the chunk's steps (from `first`), when price-aware
    disc_step: np.ndarray  # each session's departure as a step index from `first`
    previous_a: FloatArray = field(init=False)
    minutes: FloatArray = field(init=False)
    loss: FloatArray = field(init=False)
    peak: FloatArray = field(init=False)
    cost: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        n = self.rows.size
        self.previous_a, self.minutes, self.loss = np.zeros(n), np.zeros(n), np.zeros(n)
        self.peak = np.full(n, -np.inf)
        self.cost = np.zeros(n)

    def plugged(self, t: float) -> np.ndarray:
        """Sessions plugged in at `t` that still want energy."""
        pack = self.pack
        active = (self.conn <= t) & (t < self.disc) & (pack.soc < self.target - 1e-4)
        return active & (pack.energy_in_kwh * self.scale < self.cap_kwh)

    def want(
        self, t: float, step: int, share_kw: float = np.inf
    ) -> tuple[np.ndarray, FloatArray, np.ndarray]:
        """(active rows, the current each would draw on its own (reference-cell A), binding limit index).
        `share_kw`: what a session can expect of a site cap (for the price plan's look-ahead)."""
        pack, q = self.pack, REF_AH
        active = self.plugged(t)
        v_ratio = self.nominal_v / np.maximum(pack.pack_voltage_v, 1.0)  # power limits: I = P / V
        span = np.maximum(self.target - self.soc0, 1e-9)
        stage = np.clip(((pack.soc - self.soc0) / span * N_STAGES).astype(np.int64), 0, N_STAGES - 1)
        limits = np.stack(
            [
                self.station_c * q * v_ratio,
                self.vehicle_c * q * v_ratio,
                np.maximum(self.previous_a, 0.0)
                + CV_GAIN_A_PER_V_AH
                * q
                * (self.cell.max_cell_voltage_v - CV_MARGIN_V - pack.cell_voltage_max_v),
                thermal_fraction(pack.cell_temp_min_c, pack.cell_temp_max_c, self.limits) * self.max_c * q,
                self.rates[np.arange(self.rows.size), stage] * q,
            ]
        )
        able_kw = limits.min(axis=0) * pack.pack_voltage_v * self.scale / 1e3  # what it could draw now
        limits = np.vstack([limits, self._price_limit_a(t, step, np.minimum(able_kw, share_kw))])
        which = np.argmin(limits, axis=0)
        current = np.where(active, np.maximum(limits[which, np.arange(self.rows.size)], 0.0), 0.0)
        return active, current, which

    def _price_limit_a(self, t: float, step: int, expect_kw: FloatArray) -> FloatArray:
        """The price-aware plan as a reference-cell current cap: what the cheaper slots still to come cannot
        carry of the remaining need (`power_now`); no cap once the deadline needs every slot.
        `expect_kw`: the power a slot will deliver — what the session could draw now (lower in the CV
        taper) and its share of a site cap — never more than its rating."""
        k = step - self.first
        if self.prices is None or not 0 <= k < self.disc_step.max(initial=0):
            return np.full(self.rows.size, np.inf)  # no plan, or past every departure (none active)
        need_kwh = self.need_wh() / 1e3
        expect_kw = np.clip(expect_kw, 0.05 * self.max_kw, self.max_kw)
        plan_kw = power_now(need_kwh, expect_kw, self.prices.cheaper_after(k, self.disc_step), STEP_S)
        amps = plan_kw * 1e3 / np.maximum(self.pack.pack_voltage_v, 1.0) / self.scale
        return np.where(must_charge(need_kwh, self.disc - t, expect_kw), np.inf, amps)

    def power_w(self, active: np.ndarray, current: FloatArray) -> FloatArray:
        """The real pack's draw for `current` (reference-cell A) at its present voltage."""
        return np.where(active, current * self.pack.pack_voltage_v * self.scale, 0.0)

    def need_wh(self) -> FloatArray:
        """Energy still wanted: to the target SoC, or to a replayed session's logged energy."""
        to_target = np.maximum(self.target - self.pack.soc, 0.0) * self.capacity_wh
        return np.minimum(
            to_target, np.maximum(self.cap_kwh - self.pack.energy_in_kwh * self.scale, 0.0) * 1e3
        )

    def trial_kw(self, active: np.ndarray, current: FloatArray) -> float:
        """The mean power one step at `current` would draw, without taking it (on a copy of the packs)."""
        if not active.any():
            return 0.0
        pack = copy.deepcopy(self.pack)
        before_kwh = pack.energy_in_kwh.copy()
        pack.step(current, STEP_S)
        return float(np.sum((pack.energy_in_kwh - before_kwh) * self.scale)) * 3600.0 / STEP_S

    def advance(self, active: np.ndarray, current: FloatArray, price: float | None = None) -> float:
        """One step at `current`; returns the group's mean power over it (kW). `price`: per kWh."""
        pack = self.pack
        self.loss += np.where(
            active, step_loss(self.cell, current, pack.soc, pack.cell_temp_c, self.soh, STEP_S).total, 0.0
        )
        before_kwh = pack.energy_in_kwh.copy()
        pack.step(current, STEP_S)
        self.previous_a = pack.current_a
        self.minutes += np.where(active & (current > 0), STEP_S / 60.0, 0.0)
        self.peak = np.where(active, np.maximum(self.peak, pack.cell_temp_max_c), self.peak)
        delivered_kwh = (pack.energy_in_kwh - before_kwh) * self.scale
        if price is not None:
            self.cost += delivered_kwh * price
        return float(np.sum(delivered_kwh)) * 3600.0 / STEP_S
