"""Fast mode partitioned over a local Ray runtime gives the one-machine result (issue #7)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import ray

from chargeagent.errors import ConfigError
from policy.plan import CurvePolicy
from simulators.arrivals import Sessions, generate_sessions
from simulators.fleet import FleetSimulator
from simulators.fleet_ray import partition, run_on_ray, subset
from simulators.site_config import load_site
from station.cli_fleet import DEFAULT_SITE

START_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sessions() -> Sessions:
    return generate_sessions(load_site(DEFAULT_SITE), START_S, 2, stations=8, seed=4)


@pytest.mark.parametrize("model", [False, True], ids=["cc-cv", "learned-curve"])
def test_two_ray_workers_merge_to_the_one_machine_result(
    local_ray: None, sessions: Sessions, model: bool
) -> None:
    options = {"start_s": START_S, "days": 2, "station_power_kw": 22.0}
    local = FleetSimulator(sessions, policy=CurvePolicy() if model else None, **options).run()
    merged, timings = run_on_ray(sessions, ray_address="auto", workers=2, policy=model, **options)
    assert timings["simulate_s"] > 0
    for name in ("delivered_kwh", "soc_end", "charge_minutes", "capacity_loss", "reached_target"):
        assert np.array_equal(getattr(merged.outcome, name), getattr(local.outcome, name)), name
    assert np.allclose(merged.outcome.peak_cell_temp_c, local.outcome.peak_cell_temp_c, equal_nan=True)
    assert merged.outcome.plan_source == local.outcome.plan_source
    assert np.allclose(merged.site_load_kw, local.site_load_kw, rtol=1e-12, atol=1e-9)  # summation order
    assert merged.binding == local.binding and merged.evse_steps == local.evse_steps
    assert merged.chunks_done == local.chunks_done == 2
    assert merged.traces.keys() == local.traces.keys() and local.traces  # the report's sampled EVs
    for row, series in local.traces.items():
        assert np.allclose(np.asarray(merged.traces[row]), np.asarray(series))


def test_partitions_keep_stations_whole_and_cover_every_session(sessions: Sessions) -> None:
    parts = partition(sessions, 3)
    rows = np.sort(np.concatenate(parts))
    assert np.array_equal(rows, np.arange(len(sessions)))
    owners = [{sessions.station_id[r] for r in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= max(sizes) // 2  # balanced to within a station or so
    part = subset(sessions, parts[0])
    assert len(part) == len(parts[0]) and part.station_id[0] == sessions.station_id[parts[0][0]]


def test_a_site_cap_is_refused_on_ray(sessions: Sessions) -> None:
    with pytest.raises(ConfigError, match="grid cap"):
        run_on_ray(sessions, ray_address="local", start_s=START_S, days=2, station_power_kw=22.0,
                   policy=False, grid_cap_kw=100.0)  # fmt: skip
