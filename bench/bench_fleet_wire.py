"""Wire-mode fleet at scale: N real agents (OCPP over loopback websockets + GB/T on virtual CAN) for one
simulated busy hour, with the fast mode on the same sessions as the same-run baseline (issue #7).

    .venv/bin/python bench/bench_fleet_wire.py [--stations 100 1000] [--hour 8] [--processes 2]

Sessions come from the workplace site's generator for one weekday; the bench keeps those that plug in
during the hour starting at `--hour` (UTC), and every car leaves by the end of it. Printed per N: sessions,
wall seconds, simulated seconds per wall second, OCPP calls (station->CSMS and CSMS->station) and calls/s,
failed calls, CPU seconds per station per simulated hour (the whole process: agents, simulated EVs and
the embedded CSMS; with --processes, theirs), peak RSS of this process (with --processes: of the parent
only); then the fast mode's wall time for the same sessions.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import numpy as np

from chargeagent.logs import configure_logging
from simulators.arrivals import Sessions, generate_sessions
from simulators.fleet import FleetSimulator
from simulators.fleet_wire import run_wire_processes
from simulators.site_config import load_site
from station.cli_fleet import DEFAULT_SITE

START_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z, a Monday
HOUR_S = 3600.0


def busy_hour(stations: int, hour: int) -> tuple[Sessions, float]:
    """The day's sessions that plug in during `hour`, departures cut at its end; and the hour's start."""
    day = generate_sessions(load_site(DEFAULT_SITE), START_S, 1, stations=stations, seed=7)
    begin = START_S + hour * HOUR_S
    rows = np.flatnonzero((day.connection_s >= begin) & (day.connection_s < begin + HOUR_S - 300.0))
    n = len(day)
    pick = {
        f: (v[rows] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else [v[r] for r in rows])
        for f, v in vars(day).items()
        if isinstance(v, np.ndarray | list) and len(v) == n
    }
    sessions = replace(day, **pick)
    return replace(sessions, disconnect_s=np.minimum(sessions.disconnect_s, begin + HOUR_S)), begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--hour", type=int, default=8, help="UTC hour simulated (workplace: morning peak)")
    parser.add_argument("--processes", type=int, default=1, help="split the stations over processes")
    args = parser.parse_args()
    configure_logging(level="error")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2 sockets per station in one process
    header = (
        f"{'stations':>8} {'sessions':>8} {'wall s':>8} {'sim-s/s':>8} {'calls':>8} {'calls/s':>8} "
        f"{'failed':>6} {'CPU s/stn/h':>11} {'RSS MiB':>8} {'fast s':>7}"
    )
    print(header)
    for stations in args.stations:
        sessions, begin = busy_hour(stations, args.hour)
        cpu0 = time.process_time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu0 = before.ru_utime + before.ru_stime
        t0 = time.perf_counter()
        wire = run_wire_processes(
            sessions, args.processes, start_s=begin, days=1, station_power_kw=22.0, policy_enabled=True
        )
        wall_s = time.perf_counter() - t0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the processes' CPU, when split
        cpu_s = time.process_time() - cpu0 + children.ru_utime + children.ru_stime - child_cpu0
        t1 = time.perf_counter()
        FleetSimulator(sessions, start_s=begin, days=1, station_power_kw=22.0, policy=None).run()
        fast_s = time.perf_counter() - t1
        calls = len(wire.received) + len(wire.sent)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{stations:>8} {len(sessions):>8} {wall_s:>8.1f} {HOUR_S / wall_s:>8.1f} {calls:>8} "
            f"{calls / wall_s:>8.0f} {len(wire.failures):>6} {cpu_s / stations:>11.3f} {rss_mib:>8.0f} "
            f"{fast_s:>7.2f}"
        )
        for failure in wire.failures[:5]:
            print(f"         failed: {failure}")


if __name__ == "__main__":
    main()
