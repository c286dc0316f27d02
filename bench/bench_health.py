"""Battery-health cost: one battery with 500 sessions, and a projection of the fleet's nightly update.

    .venv/bin/python bench/bench_health.py [--sessions 500] [--batteries 200] [--workers 2]

Prints a table (wall and process CPU seconds). Same-run baseline: the naive estimator (capacity =
∫I dt / ΔSoC_BMS per session, median, no uncertainty, no forecast) on the same data. Targets (issue
#10): estimate + forecast for one battery with 500 sessions < 1 s; nightly update of 10,000 batteries
< 5 min on 2 cores.

Nightly projection, method: each battery has its earlier sessions' estimates cached (policy.health_store
keeps them next to the samples) and one new session. Its update = estimate the new session + forecast and
alerts from all estimates. We time `--batteries` such updates in a process pool of `--workers` (wall
clock, including pickling each battery's cached estimates to the worker) and scale linearly to 10,000.
The batteries are replicas of 20 simulated ones (different ids, same data: the cost does not depend on
the values). SQLite reads are not included.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from policy.health import HealthSpec, SessionData, SessionEstimate, assess_estimates, estimate_sessions
from policy.health_csv import read_charges, write_charges
from policy.health_estimators import estimate_session
from policy.health_forecast import default_prior
from simulators.battery_history import HistoryConfig, simulate_histories

SPEC = HealthSpec()
FLEET = 10_000


def naive_capacity(sessions: list[SessionData]) -> float:
    """The baseline: plain coulomb count against the BMS's SoC, median over sessions."""
    values = []
    for s in sessions:
        ah = float(np.sum(0.5 * (s.current_a[1:] + s.current_a[:-1]) * np.diff(s.time_s))) / 3600.0
        d_soc = float(s.soc[-1] - s.soc[0])
        if d_soc > 0.05:
            values.append(ah / d_soc / SPEC.capacity_ah)
    return float(np.median(values))


def nightly_update(job: tuple[list[SessionEstimate], SessionData]) -> float:
    cached, new = job
    report = assess_estimates([*cached, estimate_session(new, SPEC)], SPEC)
    return report.forecast.capacity_now.p50


def naive_update(job: tuple[list[SessionEstimate], SessionData]) -> float:
    cached, new = job
    values = [e.bms_capacity_soh for e in cached if np.isfinite(e.bms_capacity_soh)]
    return float(np.median([*values, naive_capacity([new])]))


def _warm(_: int) -> None:
    default_prior(SPEC.chemistry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--batteries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--history", type=int, default=60, help="cached sessions per battery (nightly)")
    args = parser.parse_args()

    (one,) = simulate_histories([HistoryConfig(sessions=args.sessions, seed=1, start_efc=300.0)])
    rows: list[tuple[str, float, float | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "CHARGES.csv"
        write_charges(path, one.sessions)
        t0, c0 = time.perf_counter(), time.process_time()
        sessions = read_charges(path)
        t_parse, c_parse = time.perf_counter() - t0, time.process_time() - c0
    default_prior(SPEC.chemistry)  # fitted once per process (≈ 0.15 s), not per battery
    t0, c0 = time.perf_counter(), time.process_time()
    estimates = estimate_sessions(sessions, SPEC)
    t_est, c_est = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    report = assess_estimates(estimates, SPEC)
    t_fc, c_fc = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    naive = naive_capacity(sessions)
    t_naive, c_naive = time.perf_counter() - t0, time.process_time() - c0
    truth = one.capacity_soh[-1]
    q = report.forecast.capacity_now
    rows.append((f"1 battery, {len(sessions)} sessions: parse CSV", t_parse, c_parse, ""))
    rows.append(("  estimate all sessions", t_est, c_est, ""))
    rows.append(("  forecast + alerts", t_fc, c_fc, ""))
    rows.append(
        (
            "  estimate + forecast (target < 1 s)",
            t_est + t_fc,
            c_est + c_fc,
            f"SoH p50 {q.p50:.3f} [{q.p10:.3f}, {q.p90:.3f}] vs truth {truth:.3f}",
        )
    )
    rows.append(
        ("  baseline: naive coulomb count", t_naive, c_naive, f"SoH {naive:.3f} (no band, no forecast)")
    )

    templates = simulate_histories(
        [HistoryConfig(sessions=args.history + 1, seed=100 + i, start_efc=50.0 * i) for i in range(20)]
    )
    cached = [estimate_sessions(h.sessions[:-1], SPEC) for h in templates]
    jobs = [(cached[i % 20], templates[i % 20].sessions[-1]) for i in range(args.batteries)]
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(_warm, range(args.workers)))  # each worker fits its prior once, outside the timing
        t0 = time.perf_counter()
        list(pool.map(nightly_update, jobs, chunksize=8))
        t_night = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(naive_update, jobs, chunksize=8))
        t_night_naive = time.perf_counter() - t0
    scale = FLEET / args.batteries
    rows.append(
        (
            f"nightly: {args.batteries} batteries x ({args.history} cached + 1 new), {args.workers} workers",
            t_night,
            None,
            f"projected {FLEET:,}: {t_night * scale:.0f} s (target < 300 s)",
        )
    )
    rows.append(
        (
            "  baseline: naive update, same pool",
            t_night_naive,
            None,
            f"projected {FLEET:,}: {t_night_naive * scale:.0f} s; ratio {t_night / t_night_naive:.1f}x",
        )
    )
    width = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall time suffers when > CPUs)")
    print(f"{'case':<{width}}  {'wall s':>7}  {'cpu s':>7}  note")
    for name, seconds, cpu, note in rows:
        cpu_text = "-" if cpu is None else f"{cpu:.3f}"
        print(f"{name:<{width}}  {seconds:7.3f}  {cpu_text:>7}  {note}")
    print(f"(one-battery estimate+forecast vs naive baseline: {(t_est + t_fc) / t_naive:.0f}x the time)")


if __name__ == "__main__":
    main()
