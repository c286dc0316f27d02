"""Fast-mode fleet simulation beyond one machine: station partitions as Ray tasks, results merged.

Without a site grid cap, every station's sessions are independent of every other station's in fast mode
(`simulators.fleet`: each session is one row of elementwise pack physics; plans are per session), so the
site splits into partitions of whole stations, each simulated by the same `FleetSimulator` in a Ray task,
and the partial results add up: per-session outcomes by row, site load by sum, binding counts by sum.
The merged result equals the one-machine run (to float summation order in the site load), which
tests/simulators/test_fleet_ray.py checks on a local Ray runtime. A site cap couples all stations every
step, so a capped site runs on one machine (`ConfigError` here).

Ray is the optional `[scale]` extra and is imported only here. `ray_address` is Ray's own: "auto" joins
the cluster this machine belongs to (`ray start --head` / `ray start --address=...` on each node),
"HOST:PORT" a specific head node, "local" starts a private runtime for this run (what the test does).
Workers need chargeagent installed (same version) on every node; see docs/fleet.md.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import numpy as np

from chargeagent.errors import ConfigError
from simulators.arrivals import Sessions
from simulators.fleet import FleetResult, FleetSimulator, SessionOutcome, sample_rows


def partition(sessions: Sessions, parts: int) -> list[np.ndarray]:
    """Session rows per partition: whole stations, greedily balanced by session count (largest first)."""
    if parts < 1:
        raise ConfigError(f"workers must be >= 1 (got {parts})")
    by_station: dict[str, list[int]] = {}
    for row, station in enumerate(sessions.station_id):
        by_station.setdefault(station, []).append(row)
    heap: list[tuple[int, int]] = [(0, k) for k in range(min(parts, max(1, len(by_station))))]
    out: list[list[int]] = [[] for _ in heap]
    for station in sorted(by_station, key=lambda s: (-len(by_station[s]), s)):
        load, k = heapq.heappop(heap)
        out[k].extend(by_station[station])
        heapq.heappush(heap, (load + len(by_station[station]), k))
    return [np.asarray(sorted(rows), dtype=np.int64) for rows in out if rows]


def subset(sessions: Sessions, rows: np.ndarray) -> Sessions:
    """The sessions at `rows` (in that order), every per-session field sliced."""
    n = len(sessions)
    changes: dict[str, Any] = {}
    for f in fields(sessions):
        value = getattr(sessions, f.name)
        if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            changes[f.name] = value[rows]
        elif isinstance(value, list) and len(value) == n:
            changes[f.name] = [value[r] for r in rows]
    return replace(sessions, **changes, rejected=0)


def simulate_partition(sessions: Sessions, options: dict[str, Any]) -> FleetResult:
    """One partition on this worker; `options` are `FleetSimulator`'s, with `policy` a bool (the ONNX
    session is built on the worker, not shipped)."""
    from policy.plan import CurvePolicy  # noqa: PLC0415 - on the worker

    opts = dict(options)
    opts["policy"] = CurvePolicy() if opts.pop("policy") else None
    return FleetSimulator(sessions, **opts).run()


def merge(n: int, parts: list[tuple[np.ndarray, FleetResult]]) -> FleetResult:
    """The partial results as one: outcomes placed back at their rows, loads and counts summed."""
    first = parts[0][1]
    outcome = first.outcome
    empty: dict[str, Any] = {
        f.name: [""] * n if isinstance(getattr(outcome, f.name), list)
        else np.zeros((n, *getattr(outcome, f.name).shape[1:]), dtype=getattr(outcome, f.name).dtype)
        for f in fields(outcome)
    }  # fmt: skip
    merged = SessionOutcome(**empty)
    load = np.zeros_like(first.site_load_kw)
    binding: Counter[str] = Counter()
    evse_steps = 0
    traces: dict[int, list[tuple[float, float, float, float]]] = {}
    for rows, result in parts:
        traces.update({int(rows[local]): series for local, series in result.traces.items()})
        for f in fields(outcome):
            target, source = getattr(merged, f.name), getattr(result.outcome, f.name)
            if isinstance(target, list):
                for i, r in enumerate(rows):
                    target[r] = source[i]
            else:
                target[rows] = source
        load += result.site_load_kw
        binding.update(result.binding)
        evse_steps += result.evse_steps
    return FleetResult(
        start_s=first.start_s,
        step_s=first.step_s,
        site_load_kw=load,
        grid_cap_kw=None,
        outcome=merged,
        binding=binding,
        evse_steps=evse_steps,
        chunks_done=min(r.chunks_done for _, r in parts),
        chunks_total=max(r.chunks_total for _, r in parts),
        traces=traces,
    )


def run_on_ray(
    sessions: Sessions,
    *,
    ray_address: str,
    workers: int | None = None,
    on_part: Callable[[int, int], None] | None = None,
    **options: Any,
) -> tuple[FleetResult, dict[str, float]]:
    """Simulate `sessions` as partitions on Ray; returns the merged result and timings (seconds).

    `workers`: partitions (default: the cluster's CPUs). `options`: `FleetSimulator`'s, `policy` a bool.
    """
    if options.get("grid_cap_kw") is not None:
        raise ConfigError("a site grid cap couples every station each step: run it without --ray-address")
    import ray  # noqa: PLC0415 - the [scale] extra

    began = time.perf_counter()
    if not ray.is_initialized():
        if ray_address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
    connected = time.perf_counter()
    cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
    parts = partition(sessions, workers or max(1, int(cpus)))
    task = ray.remote(simulate_partition)
    sample = sample_rows(len(sessions))  # the site's sample, whatever the partitions

    def traced(rows: np.ndarray) -> dict[str, Any]:
        return {**options, "trace_rows": {i for i, r in enumerate(rows) if int(r) in sample}}

    pending = {task.remote(subset(sessions, rows), traced(rows)): rows for rows in parts}
    done: list[tuple[np.ndarray, FleetResult]] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        done.append((pending.pop(ready[0]), ray.get(ready[0])))
        if on_part is not None:
            on_part(len(done), len(parts))
    result = merge(len(sessions), done)
    finished = time.perf_counter()
    return result, {"connect_s": connected - began, "simulate_s": finished - connected}
