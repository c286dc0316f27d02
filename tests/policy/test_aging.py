"""Aging model trends: the ones a battery engineer expects from SEI growth and lithium plating."""

import numpy as np
import pytest

from policy.aging import aging_params, plating_fraction, step_loss
from policy.physics_params import cell_params

CELL = cell_params("nmc", 100.0)


def test_parameters_load_from_config_with_sources() -> None:
    p = aging_params()
    assert 0 < p.plating_irreversible_fraction < 1
    assert p.sei_ea_j_per_mol == pytest.approx(31700.0)  # Wang et al. 2011


def test_colder_cell_plates_more_at_the_same_current() -> None:
    temps = np.array([0.0, 10.0, 25.0, 40.0])
    frac = plating_fraction(CELL, 0.8, temps, 1.5, 1.0)
    assert np.all(np.diff(frac) < 0)


def test_plating_rises_with_current_and_soc_and_age() -> None:
    assert np.all(np.diff(plating_fraction(CELL, 0.8, 15.0, np.array([0.5, 1.0, 2.0, 3.0]), 1.0)) > 0)
    assert np.all(np.diff(plating_fraction(CELL, np.array([0.2, 0.5, 0.9]), 15.0, 2.0, 1.0)) > 0)
    assert plating_fraction(CELL, 0.8, 15.0, 2.0, 0.8) > plating_fraction(CELL, 0.8, 15.0, 2.0, 1.0)


def test_sei_grows_with_temperature_and_rate_per_ah() -> None:
    warm = step_loss(CELL, 100.0, 0.5, 45.0, 1.0, 60.0).sei_cycle
    cool = step_loss(CELL, 100.0, 0.5, 25.0, 1.0, 60.0).sei_cycle
    assert warm > cool
    # Same charge passed (Ah) at 3C vs 1C: more SEI loss at 3C (Wang 2011 rate term).
    fast = step_loss(CELL, 300.0, 0.5, 25.0, 1.0, 20.0).sei_cycle
    slow = step_loss(CELL, 100.0, 0.5, 25.0, 1.0, 60.0).sei_cycle
    assert fast > slow


def test_no_current_means_only_calendar_loss() -> None:
    loss = step_loss(CELL, 0.0, 0.9, 25.0, 1.0, 3600.0)
    assert loss.sei_cycle == 0.0 and loss.plating == 0.0
    assert 0 < loss.sei_calendar < 1e-5
