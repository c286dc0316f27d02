"""The safety envelope only ever lowers, names what bound it, and the CC-CV fallback charges gently."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms_link.models import BmsFault, ChargeMode, ChargeRequest, PackTelemetry
from chargeagent.errors import ConfigError
from policy.envelope import (
    Decision,
    EnvelopeLimits,
    cc_cv_current_a,
    decide,
    thermal_derate_fraction,
)
from simulators.pack import PackSpec, SimulatedBms

LIMITS = EnvelopeLimits(charger_max_current_a=300.0, charger_max_voltage_v=750.0)


def telemetry(**overrides: Any) -> PackTelemetry:
    """A healthy 96s NMC pack at 25 °C, mid-SoC, asking for 200 A CC."""
    request = ChargeRequest(voltage_v=403.2, current_a=overrides.pop("request_a", 200.0), mode=ChargeMode.CC)
    values: dict[str, Any] = {
        "monotonic_s": 10.0,
        "pack_voltage_v": 370.0,
        "pack_current_a": 100.0,
        "soc": 0.5,
        "soh": 0.95,
        "cell_voltage_max_v": 3.87,
        "cell_voltage_min_v": 3.84,
        "cell_temp_max_c": 30.0,
        "cell_temp_min_c": 27.0,
        "request": request,
        "max_charge_current_a": 250.0,
        "max_pack_voltage_v": 403.2,
        "max_cell_voltage_v": 4.2,
        "max_temp_c": 55.0,
        **overrides,
    }
    return PackTelemetry(**values)


def run(t: PackTelemetry, **kwargs: Any) -> Decision:
    args: dict[str, Any] = {
        "proposed_current_a": None,
        "csms_limit_a": None,
        "grid_limit_a": None,
        "previous_current_a": 200.0,
        "dt_s": 0.25,
        "limits": LIMITS,
        **kwargs,
    }
    return decide(t, **args)


# --- properties ---------------------------------------------------------------------------------

wild = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(-50.0, 500.0))


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from `usual` about 3 times in 4, so most examples reach the min() rather than a hard stop."""
    return st.one_of(usual, usual, usual, rare)


@st.composite
def telemetries(draw: st.DrawFn) -> PackTelemetry:
    """Any valid telemetry, biased towards packs inside their limits (else every answer is a hard 0)."""
    max_cell_v = draw(mostly(st.floats(3.6, 4.4), st.floats(0.0, 5.0)))
    cell_max_v = draw(mostly(st.floats(0.0, max_cell_v), st.floats(0.0, 5.0)))
    max_pack_v = draw(mostly(st.floats(300.0, 700.0), st.floats(0.0, 1000.0)))
    request_v = draw(mostly(st.just(max_pack_v), st.floats(0.0, 1000.0)))
    pack_v = draw(mostly(st.floats(0.0, 0.99 * min(max_pack_v, request_v)), st.floats(0.0, 1000.0)))
    temp_a = draw(mostly(st.floats(0.0, 60.0), st.floats(-40.0, 100.0)))
    temp_b = draw(mostly(st.floats(0.0, 60.0), st.floats(-40.0, 100.0)))
    return PackTelemetry(
        monotonic_s=draw(st.floats(0.0, 1e6)),
        pack_voltage_v=pack_v,
        pack_current_a=draw(st.floats(-400.0, 400.0)),
        soc=draw(st.floats(0.0, 1.0)),
        cell_voltage_max_v=cell_max_v,
        cell_voltage_min_v=draw(st.floats(0.0, cell_max_v)),
        cell_temp_max_c=max(temp_a, temp_b),
        cell_temp_min_c=min(temp_a, temp_b),
        request=ChargeRequest(
            voltage_v=request_v,
            current_a=draw(st.floats(0.0, 400.0)),
            mode=draw(st.sampled_from(ChargeMode)),
        ),
        max_charge_current_a=draw(st.floats(0.0, 400.0)),
        max_pack_voltage_v=max_pack_v,
        max_cell_voltage_v=max_cell_v,
        max_temp_c=draw(st.floats(-40.0, 100.0)),
        faults=draw(mostly(st.just(frozenset()), st.frozensets(st.sampled_from(BmsFault), max_size=2))),
        charging_permitted=draw(mostly(st.just(True), st.booleans())),
    )


@settings(max_examples=250, deadline=None)
@given(
    t=telemetries(),
    proposal=wild,
    csms=wild,
    grid=wild,
    previous=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.0, 400.0)),
    dt_s=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.0, 1.0)),
    charger_max_a=st.floats(0.0, 1000.0),
    capacity_ah=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_output_never_exceeds_any_limit_and_is_never_negative_or_nan(
    t: PackTelemetry,
    proposal: float | None,
    csms: float | None,
    grid: float | None,
    previous: float,
    dt_s: float,
    charger_max_a: float,
    capacity_ah: float | None,
) -> None:
    limits = replace(LIMITS, charger_max_current_a=charger_max_a)
    d = decide(
        t,
        proposed_current_a=proposal,
        csms_limit_a=csms,
        grid_limit_a=grid,
        previous_current_a=previous,
        dt_s=dt_s,
        limits=limits,
        capacity_ah=capacity_ah,
    )
    assert math.isfinite(d.current_a)
    assert d.current_a >= 0.0
    assert d.current_a <= t.request.current_a
    assert d.current_a <= t.max_charge_current_a
    assert d.current_a <= charger_max_a
    for given_limit in (csms, grid):
        if given_limit is not None:
            assert d.current_a == 0.0 or d.current_a <= given_limit
    if proposal is not None and math.isfinite(proposal) and proposal >= 0.0:
        assert d.current_a <= proposal
    if math.isfinite(previous) and math.isfinite(dt_s) and dt_s >= 0.0:
        assert d.current_a <= max(previous, 0.0) + limits.ramp_up_a_per_s * dt_s + 1e-9
    if t.faults or not t.charging_permitted:
        assert d.current_a == 0.0
    assert d.binding_constraint
    assert d.explanation
    # The site's share is asked with the demand: never below what is drawn, never above a non-grid limit.
    assert math.isfinite(d.demand_a) and d.demand_a >= d.current_a
    assert d.demand_a <= min(t.request.current_a, t.max_charge_current_a, charger_max_a)


@settings(max_examples=200, deadline=None)
@given(cooler_c=st.floats(40.0, 60.0), delta_c=st.floats(0.0, 20.0))
def test_hot_side_derating_is_monotone_in_temperature(cooler_c: float, delta_c: float) -> None:
    hotter_c = min(cooler_c + delta_c, 100.0)
    outputs = [
        run(
            telemetry(cell_temp_max_c=temp_c, cell_temp_min_c=30.0, request_a=250.0), previous_current_a=250.0
        )
        for temp_c in (cooler_c, hotter_c)
    ]
    assert outputs[1].current_a <= outputs[0].current_a


def test_thermal_derate_fraction_shape() -> None:
    assert thermal_derate_fraction(-0.1, 20.0, LIMITS) == 0.0
    assert thermal_derate_fraction(0.0, 0.0, LIMITS) == pytest.approx(LIMITS.cold_derate_floor_fraction)
    assert thermal_derate_fraction(7.5, 7.5, LIMITS) == pytest.approx(0.6)
    assert thermal_derate_fraction(15.0, 45.0, LIMITS) == 1.0
    assert thermal_derate_fraction(30.0, 50.0, LIMITS) == pytest.approx(0.55)
    assert thermal_derate_fraction(30.0, 55.0, LIMITS) == 0.0


# --- hard stops ----------------------------------------------------------------------------------


def test_below_zero_celsius_blocks_charging_without_ending_the_session() -> None:
    d = run(telemetry(cell_temp_min_c=-0.5, cell_temp_max_c=2.0), proposed_current_a=100.0)
    assert (d.current_a, d.binding_constraint, d.stop) == (0.0, "cold_block", False)
    assert "-0.5 °C" in d.explanation


@pytest.mark.parametrize("hottest_c", [55.0, 61.0])
def test_at_or_above_stop_temperature_outputs_zero_and_stops(hottest_c: float) -> None:
    d = run(telemetry(cell_temp_max_c=hottest_c))
    assert (d.current_a, d.binding_constraint, d.stop) == (0.0, "overtemperature_stop", True)


def test_any_fault_outputs_zero_and_stops() -> None:
    d = run(telemetry(faults=frozenset({BmsFault.INSULATION})))
    assert (d.current_a, d.binding_constraint, d.stop) == (0.0, "fault", True)
    assert "insulation" in d.explanation


def test_charging_not_permitted_outputs_zero_without_stop() -> None:
    d = run(telemetry(charging_permitted=False))
    assert (d.current_a, d.binding_constraint, d.stop) == (0.0, "not_permitted", False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"csms_limit_a": math.nan},
        {"grid_limit_a": math.nan},
        {"previous_current_a": math.nan},
        {"dt_s": math.nan},
    ],
)
def test_nan_input_outputs_zero(kwargs: dict[str, float]) -> None:
    d = run(telemetry(), **kwargs)
    assert (d.current_a, d.binding_constraint) == (0.0, "invalid_input")


def test_nan_smuggled_into_telemetry_outputs_zero() -> None:
    t = telemetry().model_copy(update={"cell_temp_max_c": math.nan})  # bypasses validation
    assert run(t).binding_constraint == "invalid_input"


# --- which constraint binds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "kwargs", "name", "current_a"),
    [
        ({"request_a": 150.0}, {}, "bms_request", 150.0),
        ({"request_a": 300.0}, {"previous_current_a": 260.0}, "bms_max_current", 250.0),
        ({"cell_temp_max_c": 50.0}, {}, "thermal_derate", 250.0 * 0.55),
        ({"cell_temp_min_c": 10.0}, {}, "thermal_derate", 250.0 * (0.2 + 0.8 * 10.0 / 15.0)),
        ({}, {"csms_limit_a": 120.0}, "csms_limit", 120.0),
        ({}, {"grid_limit_a": 90.0, "csms_limit_a": 120.0}, "grid_limit", 90.0),
        ({}, {"csms_limit_a": -5.0}, "csms_limit", 0.0),
        ({}, {"csms_limit_a": math.inf}, "bms_request", 200.0),
        ({}, {"proposed_current_a": 80.0}, "proposal", 80.0),
        ({}, {"previous_current_a": 100.0}, "ramp", 105.0),
        ({}, {"previous_current_a": 0.0, "dt_s": 1.0}, "ramp", 20.0),
        ({}, {"limits": replace(LIMITS, charger_max_current_a=180.0)}, "charger_max", 180.0),
    ],
)
def test_binding_constraint_in_hand_picked_cases(
    overrides: dict[str, Any], kwargs: dict[str, Any], name: str, current_a: float
) -> None:
    d = run(telemetry(**overrides), **kwargs)
    assert d.binding_constraint == name
    assert d.current_a == pytest.approx(current_a)
    assert f"{current_a:.1f} A" in d.explanation
    assert not d.stop


def test_demand_is_the_current_without_the_grid_limit_and_the_ramp() -> None:
    capped = run(telemetry(request_a=180.0), grid_limit_a=40.0, previous_current_a=30.0, dt_s=0.5)
    assert (capped.current_a, capped.binding_constraint, capped.demand_a) == (40.0, "grid_limit", 180.0)
    ramping = run(telemetry(request_a=180.0), previous_current_a=50.0, dt_s=0.5)
    assert (ramping.current_a, ramping.demand_a) == (60.0, 180.0)
    assert run(telemetry(request_a=180.0), csms_limit_a=25.0).demand_a == 25.0  # the CSMS's limit counts


def test_ramp_limits_increases_only_decreases_are_immediate() -> None:
    up = run(telemetry(request_a=250.0), previous_current_a=50.0, dt_s=0.5)
    assert (up.current_a, up.binding_constraint) == (60.0, "ramp")
    down = run(telemetry(request_a=20.0), previous_current_a=250.0, dt_s=0.5)
    assert (down.current_a, down.binding_constraint) == (20.0, "bms_request")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -10.0, None])
def test_invalid_or_missing_proposal_falls_back_to_cc_cv(bad: float | None) -> None:
    t = telemetry(request_a=250.0)
    d = run(t, proposed_current_a=bad, capacity_ah=120.0, previous_current_a=250.0)
    assert d.binding_constraint == "fallback_cc_cv"
    assert d.current_a == pytest.approx(cc_cv_current_a(t, 120.0)) == pytest.approx(120.0)
    without_capacity = run(t, proposed_current_a=bad, previous_current_a=250.0)
    # Proposal ignored: the BMS request (itself the vehicle's CC-CV) governs; ties name the BMS first.
    assert (without_capacity.current_a, without_capacity.binding_constraint) == (250.0, "bms_request")


def test_voltage_guard_holds_at_the_limit_and_tapers_above_it() -> None:
    at_limit = run(telemetry(cell_voltage_max_v=4.2, request_a=250.0), previous_current_a=100.0)
    assert (at_limit.current_a, at_limit.binding_constraint) == (100.0, "voltage_guard")
    above = run(telemetry(cell_voltage_max_v=4.221, request_a=250.0), previous_current_a=100.0)
    assert above.binding_constraint == "voltage_guard"
    assert above.current_a == pytest.approx(50.0)  # 0.5 % over, 1 % span
    pack_over = run(telemetry(pack_voltage_v=404.0, request_a=250.0), previous_current_a=100.0)
    assert pack_over.binding_constraint == "voltage_guard"
    assert pack_over.current_a < 100.0
    small_charger = replace(LIMITS, charger_max_voltage_v=300.0)
    assert run(telemetry(), limits=small_charger).current_a == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"charger_max_current_a": -1.0},
        {"charger_max_voltage_v": math.nan},
        {"ramp_up_a_per_s": 0.0},
        {"hot_derate_start_c": 60.0},
        {"cold_derate_floor_fraction": 1.5},
    ],
)
def test_invalid_limits_raise_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        replace(LIMITS, **bad)


# --- CC-CV fallback ------------------------------------------------------------------------------


def test_cc_cv_is_constant_current_far_from_the_limits() -> None:
    assert cc_cv_current_a(telemetry(), 150.0) == pytest.approx(150.0)
    assert cc_cv_current_a(telemetry(), 150.0, c_rate=0.5) == pytest.approx(75.0)


def test_cc_cv_tapers_at_high_soc() -> None:
    currents = [cc_cv_current_a(telemetry(soc=soc), 150.0) for soc in (0.8, 0.9, 1.0)]
    assert currents == pytest.approx([150.0, 150.0 * 0.65, 150.0 * 0.3])


def test_cc_cv_steps_current_down_above_and_up_below_the_cv_target() -> None:
    above = cc_cv_current_a(telemetry(cell_voltage_max_v=4.19, pack_current_a=100.0), 150.0)
    below = cc_cv_current_a(telemetry(cell_voltage_max_v=4.17, pack_current_a=100.0), 150.0)
    assert above < 100.0 < below
    assert cc_cv_current_a(telemetry(cell_voltage_max_v=4.6, pack_current_a=10.0), 150.0) == 0.0


@pytest.mark.parametrize("capacity_ah", [0.0, -5.0, math.nan, math.inf])
def test_cc_cv_returns_zero_for_unusable_capacity(capacity_ah: float) -> None:
    assert cc_cv_current_a(telemetry(), capacity_ah) == 0.0


# --- closed loop with the simulated pack ----------------------------------------------------------

SPEC = PackSpec("nmc", 150.0, 0.9, 96, 0.2, 0.9, 30.0, 30.0, 250.0)


def closed_loop(
    spec: PackSpec, *, use_fallback: bool, misbehaving_bms: bool = False
) -> list[tuple[float, float, str]]:
    """Charge `spec` through the envelope; returns (current A, max cell V, binding) per 0.25 s step."""
    bms = SimulatedBms(spec)
    capacity_ah = bms.info().rated_capacity_ah
    previous_a, trace = 0.0, []
    for step in range(4 * 3600 * 4):
        t = bms.telemetry(step * 0.25)
        if misbehaving_bms:  # a BMS that never leaves CC: only the envelope's voltage guard stops it
            t = t.model_copy(
                update={"request": ChargeRequest(voltage_v=403.2, current_a=200.0, mode=ChargeMode.CC)}
            )
        d = decide(
            t,
            proposed_current_a=None if use_fallback else 1e6,
            csms_limit_a=None,
            grid_limit_a=None,
            previous_current_a=previous_a,
            dt_s=0.25,
            limits=LIMITS,
            capacity_ah=capacity_ah,
        )
        if d.stop or bms.stop_reason() is not None:
            break
        assert d.current_a <= t.request.current_a
        bms.step(d.current_a, 0.25)
        previous_a = d.current_a
        trace.append((d.current_a, bms.cell_voltage_max_v, d.binding_constraint))
    assert bms.soc >= spec.target_soc
    assert bms.cell_temp_max_c < LIMITS.stop_temp_c
    return trace


def test_envelope_charges_a_simulated_pack_to_target_within_limits() -> None:
    trace = closed_loop(SPEC, use_fallback=False)
    assert max(v for _, v, _ in trace) <= 4.2 + 0.002
    assert {"ramp", "bms_request"} <= {name for _, _, name in trace}


def test_cc_cv_fallback_settles_below_the_cell_limit_without_oscillating() -> None:
    trace = closed_loop(SPEC, use_fallback=True)
    assert max(v for _, v, _ in trace) < 4.2
    currents = [current for current, _, _ in trace]
    direction_changes = sum(
        1 for a, b, c in zip(currents, currents[1:], currents[2:], strict=False) if (b - a) * (c - b) < -1e-12
    )
    assert direction_changes < 5
    assert max(abs(b - a) for a, b in itertools.pairwise(currents)) <= LIMITS.ramp_up_a_per_s * 0.25 + 1e-9


def test_voltage_guard_holds_the_cell_limit_when_the_bms_never_tapers() -> None:
    trace = closed_loop(replace(SPEC, target_soc=0.85), use_fallback=False, misbehaving_bms=True)
    assert max(v for _, v, _ in trace) <= 4.2 * (1 + 0.005)
    assert "voltage_guard" in {name for _, _, name in trace}


def test_operator_cap_and_pause_bind_and_nan_is_refused() -> None:
    def run(operator: float | None) -> Decision:
        return decide(
            telemetry(),
            proposed_current_a=150.0,
            csms_limit_a=None,
            grid_limit_a=None,
            previous_current_a=150.0,
            dt_s=1.0,
            limits=LIMITS,
            operator_limit_a=operator,
        )

    capped = run(40.0)
    assert capped.current_a == 40.0 and capped.binding_constraint == "operator_limit"
    assert "override" in capped.explanation
    paused = run(0.0)
    assert paused.current_a == 0.0 and paused.binding_constraint == "operator_limit" and not paused.stop
    assert run(None).current_a == 150.0  # no override: the proposal
    assert run(float("nan")).binding_constraint == "invalid_input"


@pytest.mark.parametrize(
    ("pack_v", "expected_a", "binding"), [(370.0, 135.1, "charger_max"), (180.0, 200.0, "bms_request")]
)
def test_a_power_rated_charger_caps_the_current_at_its_power_over_the_pack_voltage(
    pack_v: float, expected_a: float, binding: str
) -> None:
    """50 kW: 135 A into a 370 V pack (below the 300 A current rating and the 200 A request); a 180 V
    pack could take 278 A, so the BMS's 200 A request binds instead."""
    limits = replace(LIMITS, charger_max_power_w=50_000.0)
    t = telemetry(pack_voltage_v=pack_v, max_pack_voltage_v=max(403.2, pack_v))
    decision = run(t, limits=limits)
    assert decision.current_a == pytest.approx(expected_a, abs=0.1)
    assert decision.binding_constraint == binding
    if binding == "charger_max":
        assert "50.0 kW at 370.0 V" in decision.explanation


def test_a_power_rating_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="charger_max_power_w"):
        EnvelopeLimits(300.0, 750.0, charger_max_power_w=0.0)
