"""The safety envelope: the one place that decides the output current each step; plus the CC-CV fallback.

Plain Python, no model inside. Every candidate limit below is computed, the output is the smallest, and
the one that set it is named (`binding_constraint`) and explained. Hard stops come first: a fault, a
BMS that does not permit charging, any non-finite input, a cell at/above the stop temperature, a cell
below 0 °C. The envelope only ever LOWERS: a proposal (learned curve or CC-CV fallback), the CSMS and
the grid can ask for less than the BMS, never for more.

Temperature rules (REFERENCE.md "Battery physics", typical BMS practice against lithium plating and
thermal runaway): no charging below 0 °C, strong derating 0-15 °C, normal 15-45 °C, derating above 45 °C,
stop at 55 °C. Cold rules use the coldest cell (it plates first); hot rules use the hottest cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from bms_link.models import PackTelemetry
from chargeagent.errors import ConfigError


@dataclass(frozen=True)
class EnvelopeLimits:
    """The charger's own limits and the envelope's rules (defaults: REFERENCE.md "Battery physics")."""

    charger_max_current_a: float
    charger_max_voltage_v: float
    # Soft start: increases are rate-limited (decreases are immediate). 20 A/s takes a 0-200 A start
    # in 10 s, gentle on contactors and on the BMS's current control loop.
    ramp_up_a_per_s: float = 20.0
    cold_block_below_c: float = 0.0  # no charging below (plating risk)
    cold_derate_full_c: float = 15.0  # full rate from here up
    cold_derate_floor_fraction: float = 0.2  # fraction of the BMS max at cold_block_below_c
    hot_derate_start_c: float = 45.0  # derating starts above
    stop_temp_c: float = 55.0  # session ends at/above
    hot_derate_floor_fraction: float = 0.1  # fraction of the BMS max just below stop_temp_c
    # CV guard: at/above a voltage limit (less this band) the current may not rise; above the limit it
    # tapers by (overshoot / span) per step, reaching 0 at span (1 % ≈ 42 mV on a 4.2 V cell). The band
    # is 0 by default so a BMS holding CV just under its limit (and asking for more as the pack warms)
    # is not held back; the BMS's own CV request is the primary taper, this is the backstop.
    voltage_hold_band_fraction: float = 0.0
    voltage_taper_span_fraction: float = 0.01
    # A DC charger's power stage is rated in kW as well as A: 50 kW at 125 A holds only up to 400 V; an
    # 800 V pack gets 62.5 A. None: current-limited only.
    charger_max_power_w: float | None = None

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        checks = (
            (_finite(*(v for v in values if v is not None)), "every limit must be finite"),
            (self.charger_max_power_w is None or self.charger_max_power_w > 0.0, "charger_max_power_w > 0"),
            (
                self.charger_max_current_a >= 0.0 and self.charger_max_voltage_v > 0.0,
                "charger maxima must be > 0",
            ),
            (self.ramp_up_a_per_s > 0.0, "ramp_up_a_per_s must be > 0"),
            (
                self.cold_block_below_c
                < self.cold_derate_full_c
                <= self.hot_derate_start_c
                < self.stop_temp_c,
                "temperature breakpoints must increase",
            ),
            (0.0 <= self.cold_derate_floor_fraction <= 1.0, "cold_derate_floor_fraction within [0, 1]"),
            (0.0 <= self.hot_derate_floor_fraction <= 1.0, "hot_derate_floor_fraction within [0, 1]"),
            (self.voltage_hold_band_fraction >= 0.0, "voltage_hold_band_fraction must be >= 0"),
            (self.voltage_taper_span_fraction > 0.0, "voltage_taper_span_fraction must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"envelope limits: {message} ({self})")


@dataclass(frozen=True)
class Decision:
    """The output current for this step, which constraint set it, and why (one sentence with numbers)."""

    current_a: float
    binding_constraint: str
    explanation: str
    stop: bool = False
    # What this EVSE would draw without the grid's limit, once ramped up: every other limit applied. A
    # site's load manager shares its cap by these (station/site_link.py); it never sets the current.
    demand_a: float = 0.0


def charger_max_a(limits: EnvelopeLimits, pack_voltage_v: float) -> float:
    """The charger's current rating, and its power rating at the pack's voltage when it has one."""
    if limits.charger_max_power_w is None or pack_voltage_v <= 0.0:
        return limits.charger_max_current_a
    return min(limits.charger_max_current_a, limits.charger_max_power_w / pack_voltage_v)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def thermal_derate_fraction(cell_temp_min_c: float, cell_temp_max_c: float, limits: EnvelopeLimits) -> float:
    """Fraction of the BMS max current allowed by temperature (0 below the cold block / at stop)."""
    cold_c, hot_c = min(cell_temp_min_c, cell_temp_max_c), max(cell_temp_min_c, cell_temp_max_c)
    if cold_c < limits.cold_block_below_c or hot_c >= limits.stop_temp_c:
        return 0.0
    fraction = 1.0
    if cold_c < limits.cold_derate_full_c:
        span = (cold_c - limits.cold_block_below_c) / (limits.cold_derate_full_c - limits.cold_block_below_c)
        floor = limits.cold_derate_floor_fraction
        fraction = floor + (1.0 - floor) * span
    if hot_c > limits.hot_derate_start_c:
        span = (hot_c - limits.hot_derate_start_c) / (limits.stop_temp_c - limits.hot_derate_start_c)
        fraction = min(fraction, 1.0 - (1.0 - limits.hot_derate_floor_fraction) * span)
    return fraction


def _voltage_guard(telemetry: PackTelemetry, previous_a: float, limits: EnvelopeLimits) -> float:
    """Hold/taper so neither the highest cell nor the pack exceeds its limit (math.inf if far below)."""
    pack_limit_v = min(
        telemetry.max_pack_voltage_v, telemetry.request.voltage_v, limits.charger_max_voltage_v
    )
    cell_limit_v = telemetry.max_cell_voltage_v
    if pack_limit_v <= 0.0 or cell_limit_v <= 0.0:
        return 0.0
    # Relative overshoot (positive = above the limit) of whichever is closest to its limit.
    over = max(
        telemetry.pack_voltage_v / pack_limit_v - 1.0,
        telemetry.cell_voltage_max_v / cell_limit_v - 1.0,
    )
    if over < -limits.voltage_hold_band_fraction:
        return math.inf
    return previous_a * max(0.0, 1.0 - max(over, 0.0) / limits.voltage_taper_span_fraction)


def decide(
    telemetry: PackTelemetry,
    *,
    proposed_current_a: float | None,
    csms_limit_a: float | None,
    grid_limit_a: float | None,
    previous_current_a: float,
    dt_s: float,
    limits: EnvelopeLimits,
    capacity_ah: float | None = None,
    proposal_name: str = "proposal",
    operator_limit_a: float | None = None,
    price_limit_a: float | None = None,
) -> Decision:
    """The output current for this step: the minimum of every limit, never negative, never NaN.

    A missing or invalid (NaN, inf, negative) proposal is replaced by `cc_cv_current_a` when the pack
    capacity is known (`capacity_ah`, from PackInfo), else it constrains nothing (the BMS request, itself
    the vehicle's CC-CV, then governs). The caller logs the invalid proposal; this stays pure.
    `proposal_name` is how a binding proposal is named (e.g. "model_curve", "thermal_trajectory").
    `operator_limit_a`: the station operator's cap (0 = paused; station.protocol.override).
    `price_limit_a`: the price plan's current (policy.price_plan.PricePlan: 0 while cheaper hours wait).
    """
    t = telemetry
    inputs = (csms_limit_a, grid_limit_a, operator_limit_a, price_limit_a, previous_current_a, dt_s)
    stop = _hard_stop(t, inputs, limits)
    if stop is not None:
        return stop
    previous_a = max(previous_current_a, 0.0)
    fraction = thermal_derate_fraction(t.cell_temp_min_c, t.cell_temp_max_c, limits)
    proposal_a = proposed_current_a
    if proposal_a is None or not math.isfinite(proposal_a) or proposal_a < 0.0:
        proposal_name = "fallback_cc_cv"
        proposal_a = None if capacity_ah is None else cc_cv_current_a(t, capacity_ah)
    # Order breaks ties: the first (most fundamental) constraint at the minimum is named.
    candidates: list[tuple[str, float | None]] = [
        ("bms_request", t.request.current_a),
        ("bms_max_current", t.max_charge_current_a),
        ("thermal_derate", fraction * t.max_charge_current_a),
        ("voltage_guard", _voltage_guard(t, previous_a, limits)),
        ("charger_max", charger_max_a(limits, t.pack_voltage_v)),
        ("csms_limit", csms_limit_a),
        ("grid_limit", grid_limit_a),
        ("operator_limit", operator_limit_a),
        ("price_plan", price_limit_a),
        (proposal_name, proposal_a),
        ("ramp", previous_a + limits.ramp_up_a_per_s * max(dt_s, 0.0)),
    ]
    name, value = "bms_request", math.inf
    demand = math.inf
    for cand_name, cand_a in candidates:
        if cand_a is not None and cand_a < value:
            name, value = cand_name, cand_a
        if cand_a is not None and cand_name not in _NOT_DEMAND:
            demand = min(demand, cand_a)
    current_a = max(value, 0.0)
    explanation = _explain(name, current_a, t, fraction, previous_a, dt_s, limits)
    return Decision(current_a, name, explanation, demand_a=max(demand, 0.0))


# A demand is what the EVSE could draw before these: the grid's share, the soft start, and the price plan
# (the plan's own input: the power it may defer; the site link reports the deferred want separately).
_NOT_DEMAND = frozenset({"grid_limit", "ramp", "price_plan"})


def _hard_stop(t: PackTelemetry, inputs: tuple[float | None, ...], limits: EnvelopeLimits) -> Decision | None:
    """The rules that force 0 A whatever else is asked, in order of severity; None if none applies."""
    if t.faults:
        names = ", ".join(sorted(f.value for f in t.faults))
        return Decision(0.0, "fault", f"0 A: BMS reports {names}; session must end.", stop=True)
    measured = (
        t.pack_voltage_v,
        t.cell_voltage_max_v,
        t.cell_temp_max_c,
        t.cell_temp_min_c,
        t.soc,
        t.request.current_a,
        t.request.voltage_v,
        t.max_charge_current_a,
        t.max_pack_voltage_v,
        t.max_cell_voltage_v,
    )
    # NaN anywhere -> 0 A. Limits may be +/-inf (no limit / nothing allowed), never NaN.
    if not _finite(*measured) or any(v is not None and math.isnan(v) for v in inputs):
        return Decision(0.0, "invalid_input", "0 A: a NaN or non-finite input was given.")
    if not t.charging_permitted:
        return Decision(0.0, "not_permitted", "0 A: the BMS does not permit charging.")
    hot_c = max(t.cell_temp_max_c, t.cell_temp_min_c)
    cold_c = min(t.cell_temp_max_c, t.cell_temp_min_c)
    if hot_c >= limits.stop_temp_c:
        return Decision(
            0.0,
            "overtemperature_stop",
            f"0 A: hottest cell {hot_c:.1f} °C >= stop limit {limits.stop_temp_c:.1f} °C; session must end.",
            stop=True,
        )
    if cold_c < limits.cold_block_below_c:
        return Decision(
            0.0,
            "cold_block",
            f"0 A: coldest cell {cold_c:.1f} °C is below {limits.cold_block_below_c:.1f} °C "
            "(lithium plating risk); waiting for the pack to warm.",
        )
    return None


def _explain(
    name: str,
    current_a: float,
    t: PackTelemetry,
    fraction: float,
    previous_a: float,
    dt_s: float,
    limits: EnvelopeLimits,
) -> str:
    """One human sentence for the binding constraint (built only for the winner: it runs every step)."""
    head = f"{current_a:.1f} A"
    request = t.request
    if name == "bms_request":
        return f"{head}: the BMS requests {request.current_a:.1f} A ({request.mode.value.upper()})."
    if name == "thermal_derate":
        return (
            f"{head}: temperature derating to {fraction:.0%} of the BMS maximum "
            f"{t.max_charge_current_a:.1f} A (cells {t.cell_temp_min_c:.1f}-{t.cell_temp_max_c:.1f} °C)."
        )
    if name == "voltage_guard":
        return (
            f"{head}: holding the voltage limit (highest cell {t.cell_voltage_max_v:.3f} V of "
            f"{t.max_cell_voltage_v:.3f} V, pack {t.pack_voltage_v:.1f} V)."
        )
    if name == "ramp":
        rate = limits.ramp_up_a_per_s
        return f"{head}: soft start, up from {previous_a:.1f} A at {rate:.1f} A/s over {dt_s:.2f} s."
    text = {
        "bms_max_current": f"BMS maximum charge current {t.max_charge_current_a:.1f} A",
        "charger_max": _charger_max_text(limits, t.pack_voltage_v),
        "csms_limit": "the CSMS charging profile limit",
        "grid_limit": "the grid operator limit",
        "operator_limit": "the station operator's override (cap or pause)",
        "price_plan": "the price plan (cheaper hours still to come before the departure)",
        "proposal": "the charge curve proposal",
        "model_curve": "the learned charge curve (policy model)",
        "thermal_trajectory": "the charge curve, derated: cells run hotter than the plan predicted",
        "fallback_cc_cv": "the CC-CV fallback curve",
    }
    return f"{head}: {text.get(name, name)}."


def _charger_max_text(limits: EnvelopeLimits, pack_voltage_v: float) -> str:
    current_a = charger_max_a(limits, pack_voltage_v)
    if current_a < limits.charger_max_current_a and limits.charger_max_power_w is not None:
        return f"charger maximum power {limits.charger_max_power_w / 1000:.1f} kW at {pack_voltage_v:.1f} V"
    return f"charger maximum output current {limits.charger_max_current_a:.1f} A"


def cc_cv_current_a(
    telemetry: PackTelemetry,
    info_capacity_ah: float,
    *,
    c_rate: float = 1.0,
    cv_margin_v: float = 0.02,
    cv_gain_a_per_v_ah: float = 1.5,
    soc_taper_start: float = 0.8,
    soc_taper_floor_fraction: float = 0.3,
) -> float:
    """Conservative CC-CV fallback: `c_rate` x capacity, tapered at high SoC and at the cell voltage limit.

    CC: c_rate x rated capacity (1C is conservative for EV cells rated 2-3C); above `soc_taper_start`
    it falls linearly to `soc_taper_floor_fraction` at 100 % SoC, where plating risk is highest
    (REFERENCE.md "Battery physics"). CV without a model: an integral step on the measured current,
    I = I_measured + k·Q·(V_max_cell - margin - V_highest_cell), which settles the highest cell at the
    limit minus `cv_margin_v`. Cell resistance scales as 1/Q (≈ 0.1 Ω·Ah), so the loop gain k·Q·R ≈ 0.2
    at 25 °C and stays < 1 down to 0 °C: no oscillation whatever the pack size.
    """
    values = (info_capacity_ah, c_rate, cv_margin_v, cv_gain_a_per_v_ah)
    if not (_finite(*values) and info_capacity_ah > 0.0 and c_rate > 0.0):
        return 0.0
    soc_fraction = 1.0
    if telemetry.soc > soc_taper_start:
        progress = (telemetry.soc - soc_taper_start) / max(1.0 - soc_taper_start, 1e-9)
        soc_fraction = 1.0 - (1.0 - soc_taper_floor_fraction) * min(progress, 1.0)
    error_v = telemetry.max_cell_voltage_v - cv_margin_v - telemetry.cell_voltage_max_v
    cv_a = max(telemetry.pack_current_a, 0.0) + cv_gain_a_per_v_ah * info_capacity_ah * error_v
    return max(min(c_rate * info_capacity_ah * soc_fraction, cv_a), 0.0)
