"""A simulated traction pack and its BMS's own decisions (BHM/BRM/BCP, BCL, BCS/BSM, BST), transport-free.

The CAN/MQTT BMS emulators wrap `SimulatedBms`; the charger side never sees this class directly. Physics
is `policy.physics.Pack` (the scalar path of the same model as `PackBatch`). What the BMS decides:

- CC request (BCL, mode CC) from its own derating map: C-rate by coldest cell, by hottest cell and by
  SoC (the vehicle's map; the charger's safety envelope applies its own on top);
- CV near the cell voltage limit (mode CV): the current that puts the highest cell exactly at its limit
  after the next step, given the RC polarisation the BMS "knows", so the request tapers smoothly;
- faults (BSM): over-temperature above `max_temp_c`, cell over-voltage, over-current, injected faults;
- stop (BST), latched: fault, SoC target, or CV current below C/20; after a stop the contactors are open
  and no current flows whatever the charger does.
Max/min cell values come from the physics' documented deterministic spread.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from bms_link.models import (
    BatteryType,
    BmsFault,
    ChargeMode,
    ChargeRequest,
    PackInfo,
    PackTelemetry,
    StopReason,
)
from chargeagent.errors import ConfigError
from policy.physics import (
    CELL_V_SPREAD_AGE_GAIN,
    CELL_V_SPREAD_BASE_V,
    CELL_V_SPREAD_PER_C_RATE_V,
    Pack,
    cell_params,
)

log = structlog.get_logger(__name__)

# BCP "max allowable temperature": the BMS flags over-temperature above it. 55 °C is the usual cell
# stop temperature (REFERENCE.md "Battery physics": stop near 55-60 °C).
MAX_TEMP_C = 55.0
# BSM "cell voltage too high" trips this far above the charge limit (measurement + transient margin).
CELL_OVERVOLTAGE_MARGIN_V = 0.05
# BSM over-current: above the BCP max charge current by 5 % + 1 A (sensor accuracy, GB/T 18487.1
# allows ±1 A / ±1 % output current error, so a small excess is not a fault).
OVERCURRENT_FRACTION = 1.05
OVERCURRENT_OFFSET_A = 1.0
# The CV plan aims this far below the limit: the OCV rise within the step is neglected in the plan.
CV_TARGET_MARGIN_V = 0.001
# CC-CV termination current C/20, the usual cell data-sheet cut-off.
CV_CUTOFF_C_RATE = 0.05
# Step assumed for CV planning before the charger has stepped us once (GB/T BCL period is 50 ms,
# control loops run 50-250 ms).
DEFAULT_STEP_S = 0.25

# The vehicle's own charge map (C-rate vs temperature and SoC). Illustrative of OEM maps: nothing at or
# below 0 °C (plating, REFERENCE.md), ramping to full rate by 25 °C; reduced above 45 °C, zero at 55 °C.
_COLD_MAP = ((0.0, 0.0), (2.0, 0.3), (5.0, 0.5), (10.0, 0.8), (15.0, 1.2), (25.0, 2.0))
_HOT_MAP = ((45.0, 2.0), (50.0, 1.0), (55.0, 0.0))
_SOC_FACTOR = ((0.0, 1.0), (0.6, 1.0), (0.8, 0.75), (0.9, 0.5), (1.0, 0.3))


def _interp(x: float, table: tuple[tuple[float, float], ...]) -> float:
    """Piecewise-linear lookup, clamped at both ends (plain floats: this runs every control step)."""
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return table[-1][1]


@dataclass(frozen=True)
class PackSpec:
    """What a simulated vehicle arrives with."""

    chemistry: Literal["nmc", "lfp"]
    capacity_ah: float
    soh: float
    series_cells: int
    soc: float
    target_soc: float
    cell_temp_c: float
    ambient_c: float
    max_charge_current_a: float
    vin: str | None = None
    # A vehicle that states its charging needs (ISO 15118 style: when it leaves, and `target_soc`);
    # None: it states none, as over GB/T 27930.
    departure: datetime | None = None


class SimulatedBms:
    """One pack + BMS. Feed it what the charger delivers (`step`); read what the BMS says."""

    def __init__(self, spec: PackSpec) -> None:
        if not 0.0 < spec.target_soc <= 1.0:
            raise ConfigError(f"target_soc must be within (0, 1], got {spec.target_soc}")
        if not 0.0 < spec.max_charge_current_a <= 400.0:
            # GB/T 27930 current fields span -400..+400 A (0.1 A/bit, offset -400 A).
            raise ConfigError(
                f"max_charge_current_a must be within (0, 400], got {spec.max_charge_current_a}"
            )
        self.spec = spec
        self.params = cell_params(spec.chemistry, spec.capacity_ah)
        self.max_pack_voltage_v = spec.series_cells * self.params.max_cell_voltage_v
        if self.max_pack_voltage_v > 1000.0:
            raise ConfigError(f"series_cells={spec.series_cells} exceeds the 1000 V pack range")
        self.pack = Pack(self.params, spec.series_cells, spec.soc, spec.soh, spec.cell_temp_c, spec.ambient_c)
        self._r1_per_r0 = self.params.r1_ohm / self.params.r0_ohm
        self._r2_per_r0 = self.params.r2_ohm / self.params.r0_ohm
        self._last_dt_s = DEFAULT_STEP_S
        self._injected: set[BmsFault] = set()
        self._request: ChargeRequest | None = None
        self._cv_current_a = math.inf
        self._stop: StopReason | None = None
        self._evaluate_stop()

    # --- what the BMS says -------------------------------------------------------------------
    def info(self) -> PackInfo:
        """Handshake/parameter content (BHM, BRM, BCP)."""
        rated_voltage_v = self.spec.series_cells * self.params.nominal_cell_voltage_v
        return PackInfo(
            battery_type=BatteryType(self.spec.chemistry),
            rated_capacity_ah=self.spec.capacity_ah,
            rated_voltage_v=rated_voltage_v,
            vin=self.spec.vin,
            max_cell_voltage_v=self.params.max_cell_voltage_v,
            max_charge_current_a=self.spec.max_charge_current_a,
            nominal_energy_kwh=rated_voltage_v * self.spec.capacity_ah / 1000.0,
            max_pack_voltage_v=self.max_pack_voltage_v,
            max_temp_c=MAX_TEMP_C,
            soc=self.pack.soc,
            pack_voltage_v=_clip(self.pack.pack_voltage_v, 0.0, 1000.0),
            departure=self.spec.departure,
            target_soc=self.spec.target_soc if self.spec.departure is not None else None,
        )

    def request(self) -> ChargeRequest:
        """The BMS's current demand (BCL): CC from its derating map, CV taper near the cell limit."""
        if self._request is None:
            self._request = self._compute_request()
        return self._request

    def _compute_request(self) -> ChargeRequest:
        if self._stop is not None:
            return ChargeRequest(voltage_v=self.max_pack_voltage_v, current_a=0.0, mode=ChargeMode.CC)
        pack = self.pack
        c_rate = min(
            _interp(pack.cell_temp_min_c, _COLD_MAP),
            _interp(pack.cell_temp_max_c, _HOT_MAP),
        ) * _interp(pack.soc, _SOC_FACTOR)
        cc_a = min(c_rate * self.spec.capacity_ah, self.spec.max_charge_current_a)
        self._cv_current_a = cv_a = self._cv_current()
        mode = ChargeMode.CV if cv_a < cc_a else ChargeMode.CC
        current_a = _clip(min(cc_a, cv_a), 0.0, 400.0)
        return ChargeRequest(voltage_v=self.max_pack_voltage_v, current_a=current_a, mode=mode)

    def _cv_current(self) -> float:
        """Current that brings the highest cell to its limit at the end of the next step.

        Highest cell after a step of h at current I (exact RC update, OCV change over h neglected,
        covered by aiming `CV_TARGET_MARGIN_V` low):
            OCV + Σ v_k·a_k + I·Σ R_k·(1 - a_k) + I·R0 + spread(I),  a_k = exp(-h / (R_k·C_k))
        which is linear in I, so it is solved directly.
        """
        pack, p, h = self.pack, self.params, self._last_dt_s
        r0 = pack.resistance_ohm
        r1, r2 = r0 * self._r1_per_r0, r0 * self._r2_per_r0
        a1 = math.exp(-h / (r1 * p.c1_f))
        a2 = math.exp(-h / (r2 * p.c2_f))
        age = 1.0 + CELL_V_SPREAD_AGE_GAIN * (1.0 - pack.soh)
        base_v = pack.ocv_v + pack.v1_v * a1 + pack.v2_v * a2 + CELL_V_SPREAD_BASE_V * age
        per_a = r0 + r1 * (1.0 - a1) + r2 * (1.0 - a2) + CELL_V_SPREAD_PER_C_RATE_V * age / p.capacity_ah
        return (p.max_cell_voltage_v - CV_TARGET_MARGIN_V - base_v) / per_a

    def telemetry(self, monotonic_s: float) -> PackTelemetry:
        """Status snapshot (BCS + BSM); values are clipped into the models' plausibility ranges."""
        pack = self.pack
        request = self.request()
        remaining_min: float | None = None
        if request.current_a > 0.0 and pack.soc < self.spec.target_soc:
            to_go_ah = (self.spec.target_soc - pack.soc) * pack.capacity_ah
            remaining_min = min(to_go_ah / request.current_a * 60.0, 600.0)
        return PackTelemetry(
            monotonic_s=monotonic_s,
            pack_voltage_v=_clip(pack.pack_voltage_v, 0.0, 1000.0),
            pack_current_a=_clip(pack.current_a, -400.0, 400.0),
            soc=pack.soc,
            soh=self.spec.soh,
            cell_voltage_max_v=_clip(pack.cell_voltage_max_v, 0.0, 5.0),
            cell_voltage_min_v=_clip(pack.cell_voltage_min_v, 0.0, 5.0),
            cell_temp_max_c=_clip(pack.cell_temp_max_c, -40.0, 100.0),
            cell_temp_min_c=_clip(pack.cell_temp_min_c, -40.0, 100.0),
            request=request,
            max_charge_current_a=self.spec.max_charge_current_a,
            max_pack_voltage_v=self.max_pack_voltage_v,
            max_cell_voltage_v=self.params.max_cell_voltage_v,
            max_temp_c=MAX_TEMP_C,
            remaining_min=remaining_min,
            faults=self.faults(),
            charging_permitted=self._stop is None,
        )

    def faults(self) -> frozenset[BmsFault]:
        """What BSM would flag now: sensed conditions plus injected faults."""
        pack = self.pack
        found = set(self._injected)
        if pack.cell_temp_max_c > MAX_TEMP_C:
            found.add(BmsFault.OVERTEMPERATURE)
        if pack.cell_voltage_max_v > self.params.max_cell_voltage_v + CELL_OVERVOLTAGE_MARGIN_V:
            found.add(BmsFault.CELL_VOLTAGE_HIGH)
        limit_a = self.spec.max_charge_current_a * OVERCURRENT_FRACTION + OVERCURRENT_OFFSET_A
        if pack.current_a > limit_a:
            found.add(BmsFault.OVERCURRENT)
        return frozenset(found)

    def stop_reason(self) -> StopReason | None:
        """Why the BMS ended the session (BST), latched; None while it still wants charge."""
        return self._stop

    # --- what happens to the BMS ---------------------------------------------------------------
    def step(self, charger_current_a: float, dt_s: float) -> None:
        """Advance the pack by `dt_s` with what the charger actually delivers (A, positive = charging)."""
        if not (math.isfinite(charger_current_a) and math.isfinite(dt_s) and dt_s >= 0.0):
            log.warning("bms_sim_bad_step", current_a=charger_current_a, dt_s=dt_s, reason="non-finite")
            return
        # After BST the BMS opens its contactors: nothing flows, the pack only cools.
        current_a = 0.0 if self._stop is not None else charger_current_a
        self.pack.step(current_a, dt_s)
        if dt_s > 0.0:
            self._last_dt_s = dt_s
        self._request = None
        if self._stop is None:
            self._evaluate_stop()

    def inject_fault(self, fault: BmsFault) -> None:
        """Fault injection for tests and demos: the BMS reports `fault` and stops the session."""
        self._injected.add(fault)
        self._request = None
        self._evaluate_stop()

    def _evaluate_stop(self) -> None:
        faults = self.faults()
        if BmsFault.OVERTEMPERATURE in faults:
            self._stop = StopReason.OVERTEMPERATURE
        elif BmsFault.INSULATION in faults:
            self._stop = StopReason.INSULATION_FAULT
        elif faults:
            self._stop = StopReason.BMS_FAULT
        elif self.pack.soc >= self.spec.target_soc:
            self._stop = StopReason.SOC_TARGET_REACHED
        else:
            request = self.request()
            cutoff_a = CV_CUTOFF_C_RATE * self.spec.capacity_ah
            if request.mode is ChargeMode.CV and self._cv_current_a < cutoff_a:
                self._stop = StopReason.VOLTAGE_TARGET_REACHED
        if self._stop is not None:
            self._request = None
            log.info("bms_sim_stop", reason=self._stop.value, soc=round(self.pack.soc, 4))

    # --- convenience views -------------------------------------------------------------------
    @property
    def soc(self) -> float:
        return self.pack.soc

    @property
    def energy_in_kwh(self) -> float:
        return self.pack.energy_in_kwh

    @property
    def cell_temp_max_c(self) -> float:
        return self.pack.cell_temp_max_c

    @property
    def cell_voltage_max_v(self) -> float:
        return self.pack.cell_voltage_max_v

    @property
    def pack_voltage_v(self) -> float:
        return self.pack.pack_voltage_v


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)
