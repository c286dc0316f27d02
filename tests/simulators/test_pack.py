"""The simulated BMS: CC then CV taper, stop reasons, faults, and telemetry that validates."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from bms_link.models import BmsFault, ChargeMode, PackInfo, PackTelemetry, StopReason
from chargeagent.errors import ConfigError
from simulators.pack import MAX_TEMP_C, PackSpec, SimulatedBms

NMC_SPEC = PackSpec(
    chemistry="nmc",
    capacity_ah=150.0,
    soh=1.0,
    series_cells=96,
    soc=0.3,
    target_soc=0.95,
    cell_temp_c=25.0,
    ambient_c=25.0,
    max_charge_current_a=250.0,
    vin="LSVAU2180N2183294",
)
LFP_SPEC = replace(NMC_SPEC, chemistry="lfp", capacity_ah=200.0, series_cells=120, vin=None)


def charge_as_requested(
    bms: SimulatedBms, dt_s: float = 0.5, max_s: float = 4 * 3600.0
) -> list[tuple[ChargeMode, float, float]]:
    """A charger that delivers exactly what the BMS asks; returns (mode, current, max cell V) per step."""
    trace = []
    elapsed_s = 0.0
    while bms.stop_reason() is None and elapsed_s < max_s:
        request = bms.request()
        bms.step(request.current_a, dt_s)
        elapsed_s += dt_s
        trace.append((request.mode, request.current_a, bms.cell_voltage_max_v))
    return trace


def test_request_is_cc_at_the_max_current_then_tapers_in_cv() -> None:
    bms = SimulatedBms(NMC_SPEC)
    trace = charge_as_requested(bms)
    modes = [mode for mode, _, _ in trace]
    assert modes[0] is ChargeMode.CC
    assert trace[0][1] == pytest.approx(NMC_SPEC.max_charge_current_a)
    first_cv = modes.index(ChargeMode.CV)
    cv_currents = [current for _, current, _ in trace[first_cv:]]
    assert all(mode is ChargeMode.CV for mode in modes[first_cv:])  # no flapping back to CC
    assert cv_currents[-1] < 0.5 * cv_currents[0]
    assert all(b <= a + 0.5 for a, b in itertools.pairwise(cv_currents))  # tapers (tiny ripple allowed)
    # CV holds the highest cell at its limit: never above it by more than numerical noise.
    assert max(v for _, _, v in trace) <= 4.20 + 0.002
    assert max(v for _, _, v in trace[first_cv:]) > 4.19


def test_session_stops_at_target_soc_and_contactors_open() -> None:
    bms = SimulatedBms(replace(NMC_SPEC, target_soc=0.6))
    charge_as_requested(bms)
    assert bms.stop_reason() is StopReason.SOC_TARGET_REACHED
    assert bms.soc == pytest.approx(0.6, abs=0.002)
    telemetry = bms.telemetry(1.0)
    assert telemetry.request.current_a == 0.0
    assert not telemetry.charging_permitted
    soc_before = bms.soc
    bms.step(200.0, 60.0)  # a charger that keeps pushing gets nothing in
    assert bms.soc == soc_before


def test_cv_current_below_c_over_20_stops_with_voltage_target_reached() -> None:
    bms = SimulatedBms(replace(NMC_SPEC, soc=0.8, target_soc=1.0))
    charge_as_requested(bms)
    assert bms.stop_reason() is StopReason.VOLTAGE_TARGET_REACHED
    assert 0.95 < bms.soc < 1.0


def test_hot_pack_raises_overtemperature_fault_and_stops() -> None:
    bms = SimulatedBms(replace(NMC_SPEC, cell_temp_c=60.0, ambient_c=35.0))
    telemetry = bms.telemetry(0.0)
    assert BmsFault.OVERTEMPERATURE in telemetry.faults
    assert bms.stop_reason() is StopReason.OVERTEMPERATURE
    assert telemetry.request.current_a == 0.0


def test_pack_heated_past_max_temp_by_the_charger_raises_overtemperature() -> None:
    bms = SimulatedBms(replace(NMC_SPEC, cell_temp_c=50.0, ambient_c=50.0))
    assert bms.stop_reason() is None
    while bms.stop_reason() is None:
        bms.step(250.0, 1.0)  # a charger that ignores the BMS's hot derating
    assert bms.stop_reason() is StopReason.OVERTEMPERATURE
    assert bms.cell_temp_max_c > MAX_TEMP_C


def test_hot_and_cold_packs_request_less_than_a_warm_one() -> None:
    warm = SimulatedBms(NMC_SPEC).request().current_a
    hot = SimulatedBms(replace(NMC_SPEC, cell_temp_c=50.0, ambient_c=50.0)).request().current_a
    cool = SimulatedBms(replace(NMC_SPEC, cell_temp_c=8.0, ambient_c=8.0)).request().current_a
    frozen = SimulatedBms(replace(NMC_SPEC, cell_temp_c=-5.0, ambient_c=-5.0))
    assert 0.0 < hot < warm
    assert 0.0 < cool < warm
    assert frozen.request().current_a == 0.0
    assert frozen.stop_reason() is None  # cold is a wait, not an end


def test_overcurrent_from_the_charger_is_flagged_and_stops() -> None:
    bms = SimulatedBms(NMC_SPEC)
    bms.step(300.0, 0.25)
    assert BmsFault.OVERCURRENT in bms.faults()
    assert bms.stop_reason() is StopReason.BMS_FAULT


def test_injected_insulation_fault_ends_with_insulation_fault() -> None:
    bms = SimulatedBms(NMC_SPEC)
    bms.inject_fault(BmsFault.INSULATION)
    assert BmsFault.INSULATION in bms.telemetry(0.0).faults
    assert bms.stop_reason() is StopReason.INSULATION_FAULT


@pytest.mark.parametrize(
    "spec",
    [NMC_SPEC, LFP_SPEC, replace(NMC_SPEC, soh=0.7, cell_temp_c=-20.0)],
    ids=["nmc", "lfp", "cold-aged"],
)
def test_info_and_telemetry_validate_and_are_consistent(spec: PackSpec) -> None:
    bms = SimulatedBms(spec)
    info = PackInfo.model_validate(bms.info().model_dump())
    assert info.battery_type.value == spec.chemistry
    assert info.max_pack_voltage_v == pytest.approx(spec.series_cells * info.max_cell_voltage_v)
    assert 300.0 < info.rated_voltage_v < 500.0
    for second in range(0, 600, 60):
        telemetry = bms.telemetry(float(second))
        again = PackTelemetry.model_validate(telemetry.model_dump())
        assert again == telemetry
        assert telemetry.soh == spec.soh
        assert telemetry.cell_voltage_min_v is not None
        assert telemetry.cell_voltage_min_v <= telemetry.cell_voltage_max_v
        assert telemetry.cell_temp_min_c <= telemetry.cell_temp_max_c
        bms.step(telemetry.request.current_a, 60.0)


def test_remaining_minutes_fall_as_the_pack_charges() -> None:
    bms = SimulatedBms(NMC_SPEC)
    first = bms.telemetry(0.0).remaining_min
    for _ in range(600):
        bms.step(bms.request().current_a, 1.0)
    later = bms.telemetry(600.0).remaining_min
    assert first is not None
    assert later is not None
    assert later < first


def test_energy_and_pack_voltage_are_reported() -> None:
    bms = SimulatedBms(NMC_SPEC)
    start_v = bms.pack_voltage_v
    for _ in range(120):
        bms.step(100.0, 1.0)
    # ≈ 100 A x 2 min at ≈ 370 V ≈ 1.2 kWh
    assert 1.0 < bms.energy_in_kwh < 1.4
    assert bms.pack_voltage_v > start_v


@pytest.mark.parametrize(
    "bad",
    [
        {"target_soc": 0.0},
        {"max_charge_current_a": 500.0},
        {"soc": 1.2},
        {"series_cells": 300},
        {"capacity_ah": 0.0},
    ],
)
def test_bad_spec_raises_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SimulatedBms(replace(NMC_SPEC, **bad))  # type: ignore[arg-type]


def test_non_finite_step_is_logged_and_ignored() -> None:
    bms = SimulatedBms(NMC_SPEC)
    bms.step(math.nan, 1.0)
    bms.step(100.0, math.inf)
    assert bms.soc == NMC_SPEC.soc
    assert bms.stop_reason() is None
