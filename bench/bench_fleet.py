"""Fast-mode fleet simulation speed: station-steps per second at 1-min steps, with a same-run baseline.

    .venv/bin/python bench/bench_fleet.py [--days 7] [--stations 100 1000] [--ray]

For each site size: the uncontrolled-charging aggregator (`simulators.arrivals.site_load_kw`: no pack
physics, no envelope, no policy — the kind of model EV2Gym/ACN-Sim-style simulators run) as the baseline,
then the fast mode with plain CC-CV, with the learned curve (a plan per session), and with plain CC-CV under a
site grid cap at 60 % of the uncapped peak (site load management every step). Station-steps = stations
x 1-min steps simulated; active steps = session-minutes actually charged. Target (issue #7): >= 100,000
station-steps/s for 100 and 1,000 stations over 7 days on 2 cores (this runs on one).
"""

from __future__ import annotations

import argparse
import time

from policy.plan import CurvePolicy
from simulators.arrivals import Sessions, generate_sessions, site_load_kw
from simulators.fleet import FleetSimulator
from simulators.fleet_output import summary
from simulators.site_config import load_site
from station.cli_fleet import DEFAULT_SITE

START_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--stations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ray", action="store_true", help="also 1 and 2 Ray workers ([scale] extra)")
    args = parser.parse_args()
    site = load_site(DEFAULT_SITE)
    steps = args.days * 1440
    print(
        f"\n{'stations':>8} {'what':<32} {'sessions':>8} {'seconds':>8} "
        f"{'station-steps/s':>16} {'active/s':>10}"
    )
    for stations in args.stations:
        sessions = generate_sessions(site, START_S, args.days, stations=stations, seed=1)
        t0 = time.perf_counter()
        site_load_kw(sessions, START_S, steps, 60)
        base_s = time.perf_counter() - t0
        print(
            f"{stations:>8} {'baseline: uncontrolled aggregator':<32} {len(sessions):>8} {base_s:>8.2f} "
            f"{stations * steps / base_s:>16,.0f} {'-':>10}"
        )
        uncapped_peak_kw = None
        runs = (("fast, CC-CV", None, False), ("fast, learned curve", CurvePolicy(), False))
        runs += (("fast, CC-CV, site cap 60 % of peak", None, True),)
        for label, policy, capped in runs:
            cap_kw = 0.6 * uncapped_peak_kw if capped and uncapped_peak_kw else None
            sim = FleetSimulator(
                sessions,
                start_s=START_S,
                days=args.days,
                station_power_kw=22.0,
                policy=policy,
                grid_cap_kw=cap_kw,
            )
            t0 = time.perf_counter()
            result = sim.run()
            wall_s = time.perf_counter() - t0
            s = summary(sessions, result)
            print(
                f"{stations:>8} {label:<32} {len(sessions):>8} {wall_s:>8.2f} "
                f"{stations * steps / wall_s:>16,.0f} "
                f"{result.evse_steps / wall_s:>10,.0f}   loss/charge {s['mean_capacity_loss_ppm']:.1f} ppm, "
                f"reached {s['reached_target_share']:.1%}, peak {s['peak_site_kw']:,.0f} kW"
            )
            if policy is None and not capped:
                uncapped_peak_kw = s["peak_site_kw"]
        if args.ray:
            ray_rows(sessions, stations, args.days, steps)


def ray_rows(sessions: Sessions, stations: int, days: int, steps: int) -> None:
    """The learned-curve run partitioned over a local Ray runtime with 1 and 2 workers (the [scale]
    extra). Timed from submission to merged result; the runtime's start-up is printed apart."""
    import ray  # noqa: PLC0415

    from simulators.fleet_ray import run_on_ray  # noqa: PLC0415

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"{'':>8} (local Ray runtime started in {time.perf_counter() - t0:.1f} s)")
    try:
        for workers in (1, 2):
            _, timings = run_on_ray(
                sessions, ray_address="auto", workers=workers, policy=True,
                start_s=START_S, days=days, station_power_kw=22.0,
            )  # fmt: skip
            wall_s = timings["simulate_s"]
            label = f"ray, learned curve, {workers} worker{'s' * (workers > 1)}"
            rate = stations * steps / wall_s
            print(f"{stations:>8} {label:<32} {len(sessions):>8} {wall_s:>8.2f} {rate:>16,.0f}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
