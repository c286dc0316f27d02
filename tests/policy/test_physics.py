"""Known trends of the surrogate: cold and age raise resistance, energy closes, heat ∝ I², batch == scalar."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeagent.errors import ConfigError
from policy.physics import (
    CellParams,
    Pack,
    PackBatch,
    cell_params,
    plating_margin_v,
    resistance_factor,
)

NMC = cell_params("nmc", 150.0)
LFP = cell_params("lfp", 200.0)


def batch(params: CellParams, n: int = 1, **overrides: float | np.ndarray) -> PackBatch:
    values: dict[str, float | np.ndarray] = {
        "soc": 0.5,
        "soh": 1.0,
        "cell_temp_c": 25.0,
        "ambient_c": 25.0,
        **overrides,
    }
    arrays = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for k, v in values.items()}
    return PackBatch(params, 96, arrays["soc"], arrays["soh"], arrays["cell_temp_c"], arrays["ambient_c"])


def stored_kwh_from_table(
    params: CellParams, soc_from: float, soc_to: float, soh: float, cells: int
) -> float:
    """∫OCV dq computed independently of the model: dense grid over the published table."""
    grid = np.linspace(soc_from, soc_to, 20001)
    ocv = np.interp(grid, params.ocv_soc, params.ocv_v)
    mean_ocv = float(np.mean(0.5 * (ocv[1:] + ocv[:-1])))
    return mean_ocv * (soc_to - soc_from) * params.capacity_ah * soh * cells / 1000.0


def test_colder_pack_has_higher_resistance_and_terminal_voltage_at_same_current() -> None:
    temps = np.array([-10.0, 0.0, 15.0, 25.0, 40.0])
    packs = batch(NMC, 5, cell_temp_c=temps, ambient_c=temps)
    packs.step(150.0, 1.0)
    assert np.all(np.diff(packs.resistance_ohm) < 0.0)
    assert np.all(np.diff(packs.cell_voltage_v) < 0.0)
    # Arrhenius with tens of kJ/mol: 0 °C is ≈ 2-5x the 25 °C resistance.
    ratio = packs.resistance_ohm[1] / packs.resistance_ohm[3]
    assert 2.0 < ratio < 5.0


def test_lower_soh_means_less_capacity_and_more_resistance() -> None:
    packs = batch(NMC, 3, soc=0.3, soh=np.array([1.0, 0.9, 0.8]))
    assert np.allclose(packs.capacity_ah, [150.0, 135.0, 120.0])
    assert np.all(np.diff(packs.resistance_ohm) > 0.0)
    packs.step(100.0, 600.0)
    # The same charge lifts a smaller (faded) capacity further.
    assert np.all(np.diff(packs.soc) > 0.0)
    assert np.allclose(packs.charge_in_ah, 100.0 * 600.0 / 3600.0)


@pytest.mark.parametrize("params", [NMC, LFP], ids=["nmc", "lfp"])
@pytest.mark.parametrize("dt_s", [1.0, 30.0])
def test_energy_balance_closes_within_one_percent(params: CellParams, dt_s: float) -> None:
    soh = 0.85
    pack = batch(params, soc=0.2, soh=soh, cell_temp_c=10.0, ambient_c=10.0)
    for _ in range(round(1200.0 / dt_s)):
        pack.step(200.0, dt_s)
    for _ in range(round(7200.0 / 30.0)):  # rest: the RC capacitors give their energy up as heat
        pack.step(0.0, 30.0)
    soc_end = float(pack.soc[0])
    stored = stored_kwh_from_table(params, 0.2, soc_end, soh, 96)
    energy_in = float(pack.energy_in_kwh[0])
    heat = float(pack.heat_kwh[0])
    assert soc_end > 0.55
    assert heat > 0.01 * energy_in  # the check below is not trivially dominated by storage
    assert energy_in == pytest.approx(stored + heat, rel=0.01)
    assert float(pack.stored_kwh[0]) == pytest.approx(stored, rel=0.005)


def test_temperature_rise_grows_with_current_squared() -> None:
    packs = batch(NMC, 2)
    packs.step(np.array([100.0, 200.0]), 60.0)
    rise = packs.cell_temp_c - 25.0
    assert rise[0] > 0.0
    # Slightly under 4x: the warmer pack's resistance has already dropped a little.
    assert 3.5 < rise[1] / rise[0] <= 4.0


def test_temperature_relaxes_to_ambient_at_zero_current_with_its_time_constant() -> None:
    pack = batch(NMC, cell_temp_c=45.0, ambient_c=20.0)
    tau_s = NMC.mass_kg * NMC.cp_j_per_kg_k / NMC.h_a_w_per_k
    pack.step(0.0, tau_s)
    assert float(pack.cell_temp_c[0]) - 20.0 == pytest.approx(25.0 * math.exp(-1.0), rel=1e-6)
    previous = float(pack.cell_temp_c[0])
    for _ in range(60):
        pack.step(0.0, 180.0)
        assert float(pack.cell_temp_c[0]) < previous
        previous = float(pack.cell_temp_c[0])
    assert previous == pytest.approx(20.0, abs=0.05)


def test_vectorised_batch_equals_scalar_runs() -> None:
    soc = [0.1, 0.5, 0.9, 0.3]
    soh = [1.0, 0.8, 0.7, 0.95]
    temp = [-5.0, 25.0, 40.0, 10.0]
    ambient = [0.0, 20.0, 30.0, 10.0]
    cells = [100, 96, 108, 120]
    packs = PackBatch(
        LFP,
        np.array(cells, dtype=np.float64),
        np.array(soc),
        np.array(soh),
        np.array(temp),
        np.array(ambient),
    )
    singles = [Pack(LFP, cells[i], soc[i], soh[i], temp[i], ambient[i]) for i in range(4)]
    rng = np.random.default_rng(7)
    for _ in range(300):
        current = rng.uniform(-50.0, 350.0, size=4)
        packs.step(current, 2.5)
        for i, single in enumerate(singles):
            single.step(float(current[i]), 2.5)
    for name in (
        "soc",
        "cell_voltage_v",
        "cell_voltage_max_v",
        "pack_voltage_v",
        "cell_temp_c",
        "cell_temp_max_c",
        "cell_temp_min_c",
        "energy_in_kwh",
        "heat_kwh",
        "charge_in_ah",
    ):
        expected = [getattr(single, name) for single in singles]
        np.testing.assert_allclose(getattr(packs, name), expected, rtol=1e-9, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(
    soc=st.floats(0.0, 1.0),
    soh=st.floats(0.5, 1.0),
    temp_c=st.floats(-30.0, 60.0),
    steps=st.lists(st.tuples(st.floats(-2000.0, 2000.0), st.floats(0.0, 120.0)), min_size=1, max_size=20),
)
def test_soc_stays_within_zero_and_one_for_bounded_inputs(
    soc: float, soh: float, temp_c: float, steps: list[tuple[float, float]]
) -> None:
    packs = batch(NMC, 2, soc=soc, soh=soh, cell_temp_c=temp_c, ambient_c=temp_c)
    for current_a, dt_s in steps:
        packs.step(np.array([current_a, -current_a]), dt_s)
        assert np.all((packs.soc >= 0.0) & (packs.soc <= 1.0))
        assert np.all(np.isfinite(packs.cell_voltage_v))
        assert np.all(np.isfinite(packs.cell_temp_c))


def test_full_pack_refuses_charge_and_the_balance_still_closes() -> None:
    pack = batch(NMC, soc=0.999)
    pack.step(300.0, 60.0)
    assert float(pack.soc[0]) == 1.0
    assert float(pack.current_a[0]) == 0.0  # the last sub-step found the pack full
    assert float(pack.charge_in_ah[0]) == pytest.approx(0.001 * 150.0)
    pack.step(0.0, 3600.0)
    stored = stored_kwh_from_table(NMC, 0.999, 1.0, 1.0, 96)
    assert float(pack.energy_in_kwh[0]) == pytest.approx(stored + float(pack.heat_kwh[0]), rel=0.01)


def test_cell_spread_brackets_the_mean_and_grows_with_current() -> None:
    packs = batch(NMC, 2, cell_temp_c=35.0, ambient_c=25.0)
    packs.step(np.array([10.0, 300.0]), 0.1)
    assert np.all(packs.cell_voltage_max_v > packs.cell_voltage_v)
    assert np.all(packs.cell_voltage_min_v < packs.cell_voltage_v)
    spread = packs.cell_voltage_max_v - packs.cell_voltage_v
    assert spread[1] > spread[0]
    assert np.all(packs.cell_temp_max_c > packs.cell_temp_c)
    assert np.all(packs.cell_temp_min_c < packs.cell_temp_c)
    # The coldest cell sits nearer ambient than the hottest sits from the mean.
    assert np.all(packs.cell_temp_c - packs.cell_temp_min_c < packs.cell_temp_max_c - packs.cell_temp_c)


def test_plating_margin_falls_with_current_cold_and_state_of_charge() -> None:
    assert plating_margin_v(NMC, 0.5, 25.0, 1.0) > 0.0
    assert plating_margin_v(NMC, 0.5, 25.0, 2.0) < plating_margin_v(NMC, 0.5, 25.0, 1.0)
    assert plating_margin_v(NMC, 0.5, 0.0, 1.0) < plating_margin_v(NMC, 0.5, 25.0, 1.0)
    assert plating_margin_v(NMC, 0.9, 25.0, 1.0) < plating_margin_v(NMC, 0.3, 25.0, 1.0)
    assert plating_margin_v(NMC, 0.9, -10.0, 1.5) < 0.0
    assert resistance_factor(NMC, 25.0, 1.0) == pytest.approx(1.0)


def test_non_finite_current_or_step_is_ignored_not_raised() -> None:
    packs = batch(NMC, 2)
    packs.step(np.array([math.nan, 100.0]), 10.0)
    assert float(packs.soc[0]) == 0.5
    assert float(packs.soc[1]) > 0.5
    before = packs.soc.copy()
    packs.step(100.0, math.inf)
    packs.step(100.0, -1.0)
    np.testing.assert_array_equal(packs.soc, before)
    single = Pack(NMC, 96, 0.5, 1.0, 25.0, 25.0)
    single.step(math.nan, 1.0)
    assert single.soc == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"soc": 1.5}, "soc"),
        ({"soh": 0.0}, "soh"),
        ({"cell_temp_c": math.nan}, "cell_temp_c"),
    ],
)
def test_invalid_pack_parameters_raise_config_error(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        batch(NMC, 1, **overrides)


def test_unknown_chemistry_or_bad_capacity_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="chemistry"):
        cell_params("nca", 100.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="capacity"):
        cell_params("nmc", -1.0)
    with pytest.raises(ConfigError, match="shape"):
        PackBatch(
            NMC, 96, np.array([0.5, 0.5]), np.array([1.0, 1.0, 1.0]), np.array([25.0]), np.array([25.0])
        )
