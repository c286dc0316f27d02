"""Benchmark: N station agents on one machine against the embedded CSMS over loopback (issue #4).

Each station boots, reports its status, then runs one transaction: TransactionEvent Started, `--meter-values`
Updated events 10 s apart (virtual time) and Ended. Two kinds, each in its own subprocess so their memory
does not mix, both on the virtual-time loop (`chargeagent.vtime`: idle waits cost nothing, so wall time is
processing time) against the same embedded CSMS in that process:

- agent:    our `StationAgent` (OCPP adapter, core, outbox in memory, device model, policy objects);
            the transaction is driven through `StationCore` as the charging session would (no BMS).
- baseline: a plain `ocpp` library `ocpp.v201.ChargePoint` per station sending the same messages
            (payloads prepared beforehand) with the library's defaults.

Printed per N and kind: calls/s (all station->CSMS calls / wall time of the whole run), p50/p99 call latency
(send -> CallResult, wall clock), RSS per station (RSS growth from before the stations were created to when
all had booted, / N; the CSMS's per-connection state is in both), failed calls. Ratio = agent / baseline.

A second table (skip with --no-split) runs the same stations with the embedded CSMS in its own process
(`chargeagent csms`), both in real time with a 1 s meter period, staggered: the station process's CPU time
per call and its RSS growth per station are then the stations' alone, without the shared CSMS's cost.

    .venv/bin/python bench/bench_ocpp_fleet.py                    # N = 100 and 1000
    .venv/bin/python bench/bench_ocpp_fleet.py --agents 100 --meter-values 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)
METER_PERIOD_S = 10.0  # virtual time (in-process runs)
SPLIT_PERIOD_S = 1.0  # real time (--split: the CSMS in its own process keeps wall-clock time)
STEP_PAST_S = 0.001  # a meter step lands past the core's TxUpdatedInterval despite float rounding


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Timings:
    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.failed = 0

    async def timed(self, send: Callable[[], Awaitable[Any]]) -> None:
        began = time.perf_counter()
        try:
            await send()
        except Exception:  # a failed call is counted, not fatal: the benchmark reports it
            self.failed += 1
            return
        self.latencies_s.append(time.perf_counter() - began)


def start_offsets(n: int, staggered: bool, period_s: float = METER_PERIOD_S) -> list[float]:
    """When each station boots and starts its transaction (virtual s): all at 0 ("burst": a CSMS restart,
    every station reconnecting at once), or spread evenly over one meter period ("staggered": stations
    that booted and plugged in at different times, as in a real fleet)."""
    return [i * period_s / n if staggered else 0.0 for i in range(n)]


def transaction_messages(station_id: str, k: int, period_s: float = METER_PERIOD_S) -> list[Any]:
    """Started, k x Updated, Ended as our core builds them (pure; used by both kinds)."""
    from station.protocol.station import StationCore, StationInfo  # noqa: PLC0415
    from station.protocol.transaction import MeterSample  # noqa: PLC0415

    core = StationCore(station_id, StationInfo("v", "m", "s", "f"), meter_interval_s=period_s)
    _, pending = core.on_request_start(
        id_token={"idToken": "B", "type": "Central"}, remote_start_id=1, evse_id=1
    )
    assert pending is not None
    out = core.start_transaction(pending, charging_profile=None, now=EPOCH, now_s=0.0)
    for i in range(1, k + 1):
        core.record_sample(1, MeterSample(i * 100.0, 50_000.0, 125.0, 400.0, 0.5, 30.0))
        out += core.meter_update(1, EPOCH, i * period_s)
    from bms_link.models import StopReason  # noqa: PLC0415

    return out + core.end_transaction(1, EPOCH, StopReason.REMOTE, None)


async def run_agents(
    csms: Any, n: int, k: int, timings: Timings, staggered: bool, period_s: float = METER_PERIOD_S
) -> int:
    from chargeagent.clock import LoopClock  # noqa: PLC0415
    from chargeagent.config import load_settings  # noqa: PLC0415
    from station import ocpp_v201  # noqa: PLC0415
    from station.agent import StationAgent  # noqa: PLC0415
    from station.protocol.transaction import MeterSample  # noqa: PLC0415

    original = ocpp_v201.OcppChargePoint.send

    async def timed_send(self: Any, message: Any) -> Any:  # bench-only instrumentation
        result: list[Any] = []

        async def go() -> None:
            result.append(await original(self, message))

        await timings.timed(go)
        if not result:
            raise RuntimeError(f"{message.action} failed")
        return result[0]

    ocpp_v201.OcppChargePoint.send = timed_send  # type: ignore[method-assign]
    clock = LoopClock(epoch=EPOCH)
    before = rss_kib()
    agents = []
    base = load_settings(  # parsed once; each station's is a copy, as the wire fleet simulator makes them
        overrides={
            "ocpp": {
                "csms_url": csms.url,
                "meter_interval_s": period_s,
                "heartbeat_interval_s": 3600,
                "compiled_validation": True,
            },  # as the wire fleet runs many agents
            "policy": {"model_enabled": False},
        }
    )
    for i in range(n):
        settings = base.model_copy(update={"station": base.station.model_copy(update={"id": f"A{i:05d}"})})
        agents.append(StationAgent(settings, clock=clock, bms_factory=lambda: None))  # type: ignore[arg-type,return-value]
    offsets = start_offsets(n, staggered, period_s)

    async def start(agent: Any, offset_s: float) -> None:
        await clock.sleep(offset_s)
        await agent.run()

    tasks = [asyncio.create_task(start(a, offsets[i])) for i, a in enumerate(agents)]
    await asyncio.gather(*(a.booted.wait() for a in agents))
    grown = rss_kib() - before

    async def transaction(agent: Any, i: int) -> None:
        await clock.sleep(offsets[i])
        await agent.booted.wait()  # run() starts from a clean (rebooted) core: transact after the boot
        core = agent.core
        _, pending = core.on_request_start(
            id_token={"idToken": "B", "type": "Central"}, remote_start_id=i, evse_id=1
        )
        agent.enqueue(
            core.start_transaction(pending, charging_profile=None, now=clock.now(), now_s=clock.monotonic())
        )
        for j in range(1, k + 1):
            await clock.sleep(period_s + STEP_PAST_S)
            core.record_sample(1, MeterSample(j * 100.0, 50_000.0, 125.0, 400.0, 0.5, 30.0))
            agent.enqueue(core.meter_update(1, clock.now(), clock.monotonic()))
        from bms_link.models import StopReason  # noqa: PLC0415

        agent.enqueue(core.end_transaction(1, clock.now(), StopReason.REMOTE, None))
        while len(agent.outbox):
            await clock.sleep(0.1)
        await clock.sleep(1.0)  # the non-queued follow-ups (StatusNotification) complete too

    await asyncio.gather(*(transaction(a, i) for i, a in enumerate(agents)))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return grown


async def run_baseline(
    csms: Any, n: int, k: int, timings: Timings, staggered: bool, period_s: float = METER_PERIOD_S
) -> int:
    import websockets  # noqa: PLC0415
    from ocpp.charge_point import camel_to_snake_case  # noqa: PLC0415
    from ocpp.v201 import ChargePoint, call  # noqa: PLC0415

    from chargeagent.clock import LoopClock  # noqa: PLC0415

    clock = LoopClock(epoch=EPOCH)
    before = rss_kib()
    stations = []
    for i in range(n):
        ws = await websockets.connect(f"{csms.url}/B{i:05d}", subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
        cp = ChargePoint(f"B{i:05d}", ws)
        reader = asyncio.create_task(cp.start())
        stations.append((cp, ws, reader))

    offsets = start_offsets(n, staggered, period_s)

    async def boot(cp: Any, offset_s: float) -> None:
        await clock.sleep(offset_s)
        await timings.timed(
            lambda: cp.call(
                call.BootNotification(charging_station={"model": "m", "vendor_name": "v"}, reason="PowerUp")
            )
        )
        await timings.timed(
            lambda: cp.call(
                call.StatusNotification(
                    timestamp="2026-06-01T00:00:00.000Z",
                    connector_status="Available",
                    evse_id=1,
                    connector_id=1,
                )
            )
        )

    await asyncio.gather(*(boot(cp, offsets[i]) for i, (cp, _, _) in enumerate(stations)))
    grown = rss_kib() - before

    async def transaction(cp: Any, messages: list[Any], offset_s: float) -> None:
        await clock.sleep(offset_s)
        for j, message in enumerate(messages):
            if 0 < j <= k:
                await clock.sleep(period_s + STEP_PAST_S)
            kwargs = camel_to_snake_case(message.payload)
            request = call.TransactionEvent(**kwargs)
            await timings.timed(functools.partial(cp.call, request))

    plans = [transaction_messages(f"B{i:05d}", k, period_s) for i in range(n)]
    await asyncio.gather(
        *(
            transaction(cp, plan, offsets[i])
            for i, ((cp, _, _), plan) in enumerate(zip(stations, plans, strict=True))
        )
    )
    for _, ws, reader in stations:
        reader.cancel()
        await ws.close()
    return grown


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_worker(kind: str, n: int, k: int) -> dict[str, Any]:
    """The stations in this process, the embedded CSMS in its own (`chargeagent csms`), both in real time
    (1 s meter period, staggered): this process's CPU time and RSS growth are the stations' alone."""
    from chargeagent.logs import configure_logging  # noqa: PLC0415

    configure_logging(level="error")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = _free_port()
    binary = Path(sys.executable).with_name("chargeagent")
    server = subprocess.Popen(
        [str(binary), "csms", "--port", str(port), "--no-auto-start"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30.0
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("chargeagent csms did not start") from None
                time.sleep(0.1)
        timings = Timings()
        csms = types.SimpleNamespace(url=f"ws://127.0.0.1:{port}")

        async def main() -> tuple[int, float]:
            cpu = time.process_time()
            run = run_agents if kind == "agent" else run_baseline
            grown = await run(csms, n, k, timings, True, SPLIT_PERIOD_S)
            return grown, time.process_time() - cpu

        grown, cpu_s = asyncio.run(main())
    finally:
        server.terminate()
        server.wait(timeout=10)
    calls = len(timings.latencies_s)
    return {
        "calls": calls,
        "failed": timings.failed,
        "cpu_us_per_call": 1e6 * cpu_s / max(calls, 1),
        "rss_kib_per_station": grown / n,
    }


def worker(kind: str, n: int, k: int, staggered: bool = False) -> dict[str, Any]:
    from chargeagent.logs import configure_logging  # noqa: PLC0415
    from chargeagent.vtime import run_virtual  # noqa: PLC0415
    from simulators.csms import EmbeddedCsms  # noqa: PLC0415

    configure_logging(level="error")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2 sockets per station in one process
    timings = Timings()

    async def main() -> tuple[int, float]:
        from chargeagent.clock import LoopClock  # noqa: PLC0415

        async with EmbeddedCsms(clock=LoopClock(epoch=EPOCH), response_timeout_s=120) as csms:
            began = time.perf_counter()
            grown = await (run_agents if kind == "agent" else run_baseline)(csms, n, k, timings, staggered)
            return grown, time.perf_counter() - began

    grown, wall_s = run_virtual(main())
    lat = sorted(timings.latencies_s)
    return {
        "calls": len(lat),
        "failed": timings.failed,
        "wall_s": wall_s,
        "calls_per_s": len(lat) / wall_s,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "rss_kib_per_station": grown / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--meter-values", type=int, default=6)
    parser.add_argument(
        "--start", choices=["staggered", "burst"], nargs="+", default=["staggered", "burst"],
        help="when stations boot and transact: spread over a meter period, or all at once",
    )  # fmt: skip
    parser.add_argument(
        "--no-split", action="store_true",
        help="skip the second table (stations in one process, the CSMS in another, real time)",
    )  # fmt: skip
    parser.add_argument("--worker", choices=["agent", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--split-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.split_worker:
            print(json.dumps(split_worker(args.worker, args.agents[0], args.meter_values)))
            return
        staggered = args.start == ["staggered"]
        print(json.dumps(worker(args.worker, args.agents[0], args.meter_values, staggered)))
        return
    k = args.meter_values
    print(f"python {sys.version.split()[0]}; {k} meter values per transaction, 10 s apart (virtual)")
    header = f"{'start':<10}{'N':>6} {'kind':<9}{'calls':>8}{'failed':>7}{'calls/s':>10}{'p50 ms':>9}"
    header += f"{'p99 ms':>9}{'KiB/station':>13}"
    print(header)
    for start in args.start:
        for n in args.agents:
            rows = {}
            for kind in ("baseline", "agent"):
                rows[kind] = r = _run_worker(kind, n, k, "--start", start)
                print(
                    f"{start:<10}{n:>6} {kind:<9}{r['calls']:>8}{r['failed']:>7}{r['calls_per_s']:>10.0f}"
                    f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['rss_kib_per_station']:>13.1f}"
                )
            a, b = rows["agent"], rows["baseline"]
            print(
                f"{start:<10}{n:>6} {'ratio':<9}{'':>8}{'':>7}{a['calls_per_s'] / b['calls_per_s']:>9.2f}x"
                f"{a['p50_ms'] / b['p50_ms']:>8.2f}x{a['p99_ms'] / b['p99_ms']:>8.2f}x"
                f"{a['rss_kib_per_station'] / max(b['rss_kib_per_station'], 1e-9):>12.2f}x"
            )

    if not args.no_split:
        split_table(args.agents, k)


def _run_worker(kind: str, n: int, k: int, *extra: str) -> dict[str, Any]:
    """One kind's run in its own process (their memory must not mix); its JSON line."""
    command = [sys.executable, __file__, "--worker", kind, "--agents", str(n), "--meter-values", str(k)]
    done = subprocess.run([*command, *extra], cwd=REPO, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def split_table(agents: list[int], k: int) -> None:
    """What the stations alone cost: the same runs with the CSMS in its own process (real time)."""
    print(
        f"\nstations only (the CSMS in its own process; real time, {k} meter values "
        f"{SPLIT_PERIOD_S:g} s apart, staggered)"
    )
    print(f"{'N':>6} {'kind':<9}{'calls':>8}{'failed':>7}{'station CPU us/call':>21}{'KiB/station':>13}")
    for n in agents:
        rows = {}
        for kind in ("baseline", "agent"):
            rows[kind] = r = _run_worker(kind, n, k, "--split-worker")
            print(
                f"{n:>6} {kind:<9}{r['calls']:>8}{r['failed']:>7}{r['cpu_us_per_call']:>21.0f}"
                f"{r['rss_kib_per_station']:>13.1f}"
            )
        a, b = rows["agent"], rows["baseline"]
        print(
            f"{n:>6} {'ratio':<9}{'':>8}{'':>7}{a['cpu_us_per_call'] / b['cpu_us_per_call']:>20.2f}x"
            f"{a['rss_kib_per_station'] / max(b['rss_kib_per_station'], 1e-9):>12.2f}x"
        )


if __name__ == "__main__":
    main()
