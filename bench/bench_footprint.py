"""Edge footprint of one station agent: start-up time, RSS and CPU idle and while charging, disk writes.

Runs the embedded CSMS in this process (real time) and `chargeagent station --bms sim` as a child process
with a fresh data directory, then reads the child's /proc files:

- start-up: process spawn -> BootNotification received by the CSMS;
- idle: RSS and CPU share over `--idle-s` seconds after the boot (connected, heartbeating, no EV);
- charging: peak RSS, CPU share and bytes written to storage (/proc/<pid>/io write_bytes: what reaches the
  block layer, fsyncs included) over `--charge-s` seconds of a remote-started transaction, scaled to one
  charging hour. The int8 charge-curve model is loaded at start and plans during the charge.

Baseline, in the same run: a plain `ocpp` library 2.0.1 ChargePoint (no BMS, no model, no storage) that
boots against the same CSMS and idles. The ratio column says what the agent costs on top of that.

    .venv/bin/python bench/bench_footprint.py            # about 3 minutes
    .venv/bin/python bench/bench_footprint.py --idle-s 10 --charge-s 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chargeagent.logs import configure_logging
from simulators.csms import EmbeddedCsms

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

BASELINE = """
import asyncio, sys
import websockets
from ocpp.v201 import ChargePoint, call

async def main(url):
    async with websockets.connect(url, subprotocols=["ocpp2.0.1"]) as ws:
        cp = ChargePoint("BASE-1", ws)
        reader = asyncio.create_task(cp.start())
        await cp.call(call.BootNotification(
            charging_station={"model": "m", "vendor_name": "v"}, reason="PowerUp"))
        await reader

asyncio.run(main(sys.argv[1]))
"""


@dataclass
class Sample:
    rss_kib: int
    cpu_s: float
    write_bytes: int


def sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime (fields 14, 15 of stat)
    io = Path(f"/proc/{pid}/io").read_text()
    written = next(int(line.split()[1]) for line in io.splitlines() if line.startswith("write_bytes:"))
    return Sample(rss, cpu, written)


async def watch(pid: int, seconds: float) -> tuple[Sample, Sample, int]:
    """(first, last, peak RSS KiB) over `seconds`, sampled every 0.5 s."""
    first = sample(pid)
    peak = first.rss_kib
    end = time.monotonic() + seconds
    last = first
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        last = sample(pid)
        peak = max(peak, last.rss_kib)
    return first, last, peak


async def spawn_station(
    csms: EmbeddedCsms, station_id: str, data_dir: Path, bms: str
) -> asyncio.subprocess.Process:
    env = {**os.environ, "CHARGEAGENT_STATION__DATA_DIR": str(data_dir)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "station.cli", "station", "--csms-url", csms.url, "--station-id", station_id,
        "--bms", bms, "--can-interface", "virtual", "--can-channel", f"{station_id}-{os.getpid()}",
        cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def measure_agent(
    csms: EmbeddedCsms, data_dir: Path, idle_s: float, charge_s: float
) -> dict[str, float]:
    """Idle: the agent alone (`--bms can`, nobody plugged in). Charging: `--bms sim`, whose simulated EV
    (BMS emulator + pack physics, GB/T frames every 50-250 ms) runs in the same process: python-can's
    `virtual` bus only connects buses of one process. Its cost is in the charging figures."""
    spawned = time.monotonic()
    proc = await spawn_station(csms, "FOOT-IDLE", data_dir / "idle", "can")
    try:
        await csms.wait_for("FOOT-IDLE", "BootNotification", timeout_s=60)
        startup_s = time.monotonic() - spawned
        await csms.wait_for("FOOT-IDLE", "StatusNotification")
        first, last, _ = await watch(proc.pid, idle_s)
    finally:
        proc.terminate()
        await proc.wait()
    result = {
        "startup_s": startup_s,
        "idle_rss_mib": last.rss_kib / 1024,
        "idle_cpu_pct": 100 * (last.cpu_s - first.cpu_s) / idle_s,
    }
    proc = await spawn_station(csms, "FOOT-1", data_dir / "charging", "sim")
    try:
        await csms.wait_for("FOOT-1", "StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
        assert await csms.request_start_transaction("FOOT-1", id_token="FOOT", evse_id=1) == "Accepted"
        await csms.wait_for("FOOT-1", "TransactionEvent", lambda p: p["eventType"] == "Started")
        first, last, peak = await watch(proc.pid, charge_s)
    finally:
        proc.terminate()
        await proc.wait()
    return result | {
        "charging_rss_mib": peak / 1024,
        "charging_cpu_pct": 100 * (last.cpu_s - first.cpu_s) / charge_s,
        "disk_mib_per_charging_hour": (last.write_bytes - first.write_bytes) / 2**20 * 3600 / charge_s,
    }


async def measure_baseline(csms: EmbeddedCsms, idle_s: float) -> dict[str, float]:
    spawned = time.monotonic()
    url = f"{csms.url}/BASE-1"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BASELINE, url, cwd=REPO)
    try:
        await csms.wait_for("BASE-1", "BootNotification", timeout_s=60)
        startup_s = time.monotonic() - spawned
        first, last, _ = await watch(proc.pid, idle_s)
        return {
            "startup_s": startup_s,
            "idle_rss_mib": last.rss_kib / 1024,
            "idle_cpu_pct": 100 * (last.cpu_s - first.cpu_s) / idle_s,
        }
    finally:
        proc.terminate()
        await proc.wait()


async def main(idle_s: float, charge_s: float) -> None:
    configure_logging(level="warning")  # the CSMS's per-message debug lines are not the table
    async with EmbeddedCsms() as csms:
        baseline = await measure_baseline(csms, idle_s)
        with tempfile.TemporaryDirectory() as data_dir:
            agent = await measure_agent(csms, Path(data_dir), idle_s, charge_s)
    cores = os.cpu_count()
    print(f"python {sys.version.split()[0]}, {cores} cores; idle {idle_s:.0f} s, charging {charge_s:.0f} s")
    print(f"{'what':<34}{'agent':>12}{'plain ocpp CP':>16}{'ratio':>8}")
    for key, unit in (
        ("startup_s", "s"),
        ("idle_rss_mib", "MiB"),
        ("idle_cpu_pct", "%"),
        ("charging_rss_mib", "MiB"),
        ("charging_cpu_pct", "%"),
        ("disk_mib_per_charging_hour", "MiB"),
    ):
        base = baseline.get(key)
        ratio = f"{agent[key] / base:.1f}x" if base else "—"
        base_text = f"{base:.2f}" if base is not None else "—"
        print(f"{key + ' (' + unit + ')':<34}{agent[key]:>12.2f}{base_text:>16}{ratio:>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--charge-s", type=float, default=120.0)
    args = parser.parse_args()
    asyncio.run(main(args.idle_s, args.charge_s))
