"""Charge-plan latency on one thread: int8 vs fp32 model (+ envelope clamp), the teacher for comparison.

    .venv/bin/python bench/bench_policy.py [--plans 2000]

Prints a table: p50/p99 latency of `CurvePolicy.plan` (model inference + decoding + envelope rules)
with the int8 and the fp32 model, the raw onnxruntime call alone, the CC-CV fallback plan (the same-run
baseline: what a plan costs without a model), one teacher search for the same state, model file sizes.
Targets (issue #6): plan p99 <= 1 ms, model file <= 256 KB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from policy.charge_sim import ChargeStates
from policy.curve import DEFAULT_MODEL, FP32_MODEL, CurveModel
from policy.plan import CurvePolicy, PlanRequest, fallback_plan
from policy.teacher import ideal_minutes, solve


def _requests(n: int, seed: int = 0) -> list[PlanRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        soc = float(rng.uniform(0.05, 0.7))
        temp = float(rng.uniform(5, 40))
        out.append(
            PlanRequest(
                soc=soc,
                target_soc=min(soc + float(rng.uniform(0.2, 0.6)), 1.0),
                soh=float(rng.uniform(0.7, 1.0)),
                cell_temp_c=temp,
                ambient_c=temp,
                chemistry=str(rng.choice(["nmc", "lfp"])),
                max_c_rate=float(rng.uniform(1.0, 3.5)),
                preference=str(rng.choice(["fast", "balanced", "gentle"])),
            )
        )
    return out


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e6, p99 * 1e6


def _time_each(fn: object, items: list[object]) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", type=int, default=2000)
    args = parser.parse_args()
    reqs = _requests(args.plans)
    rows: list[tuple[str, float, float, str]] = []
    for label, path in (("plan, int8 model", DEFAULT_MODEL), ("plan, fp32 model", FP32_MODEL)):
        policy = CurvePolicy(path)
        _time_each(policy.plan, reqs[:100])  # warm-up
        p50, p99 = _percentiles(_time_each(policy.plan, reqs))
        rows.append((label, p50, p99, f"{path.stat().st_size / 1024:.1f} KiB"))
        model = CurveModel(path)
        x = np.array([[0.2, 0.8, 0.9, 25.0, 25.0, 0.0, 3.0, 0.5]])
        p50, p99 = _percentiles(_time_each(lambda _, m=model, xx=x: m.infer(xx), list(range(args.plans))))
        rows.append((f"  onnxruntime call only ({path.name.split('.')[1]})", p50, p99, ""))
    limits = CurvePolicy().limits
    p50, p99 = _percentiles(_time_each(lambda r: fallback_plan(r, limits, ["bench"]), reqs))
    rows.append(("baseline: CC-CV fallback plan (no model)", p50, p99, ""))
    r = reqs[0]
    states = ChargeStates(
        "nmc",
        *(np.array([v]) for v in (r.soc, r.target_soc, r.soh, r.cell_temp_c, r.ambient_c, r.max_c_rate)),
    )
    t0 = time.perf_counter()
    solve(states, ideal_minutes(states) * 1.6, seed=0)
    teacher_s = time.perf_counter() - t0
    rows.append(("teacher search, one state (48 x 5 CEM)", teacher_s * 1e6, teacher_s * 1e6, ""))
    int8_us = rows[0][2]
    print(f"\n{'what':<46} {'p50 µs':>10} {'p99 µs':>10}  size")
    for label, p50, p99, size in rows:
        print(f"{label:<46} {p50:>10.1f} {p99:>10.1f}  {size}")
    print(
        f"\nint8 plan p99 {int8_us / 1000:.3f} ms (target <= 1 ms); teacher / int8 plan p50 = "
        f"{teacher_s * 1e6 / rows[0][1]:.0f}x; int8 file {DEFAULT_MODEL.stat().st_size / 1024:.1f} KiB "
        f"(target <= 256 KB), fp32 {FP32_MODEL.stat().st_size / 1024:.1f} KiB"
    )


if __name__ == "__main__":
    main()
