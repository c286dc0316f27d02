"""`chargeagent demo`: embedded CSMS + three stations charging simulated EVs over CAN on a virtual clock.

Everything is real except time: OCPP 2.0.1 JSON over loopback websockets (schema-validated on both sides),
GB/T 27930 frames on python-can's `virtual` bus, the pack physics and the safety envelope. The loop is a
`VirtualTimeLoop`, so ~45 simulated minutes per session take seconds.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bms_link.gbt import GbtTiming
from chargeagent.clock import LoopClock
from chargeagent.config import Settings, load_settings
from chargeagent.errors import ConfigError
from simulators.csms import EmbeddedCsms
from simulators.ev import SimulatedEv, can_link_factory
from simulators.faults import FaultSchedule
from simulators.pack import PackSpec
from station.agent import StationAgent
from station.charging import SessionResult, StepRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DemoStation:
    station_id: str
    title: str
    pack: PackSpec


DEFAULT_STATIONS = (
    DemoStation(
        "CS-NEW-WARM",
        "NMC 150 Ah, new pack (SoH 0.98), 25 °C",
        PackSpec("nmc", 150.0, 0.98, 96, 0.15, 0.80, 25.0, 25.0, 300.0, vin="LSIM0000000000001"),
    ),
    DemoStation(
        "CS-AGED-COLD",
        "NMC 120 Ah, aged pack (SoH 0.80), 6 °C winter morning",
        PackSpec("nmc", 120.0, 0.80, 96, 0.20, 0.80, 6.0, 2.0, 250.0, vin="LSIM0000000000002"),
    ),
    DemoStation(
        "CS-LFP-HOT",
        "LFP 200 Ah (SoH 0.90), 38 °C pack on a hot afternoon",
        PackSpec("lfp", 200.0, 0.90, 112, 0.10, 0.80, 38.0, 36.0, 300.0, vin="LSIM0000000000003"),
    ),
)


@dataclass
class StationTrace:
    station: DemoStation
    steps: list[StepRecord] = field(default_factory=list)
    result: SessionResult | None = None
    constraints: Counter[str] = field(default_factory=Counter)

    def record(self, step: StepRecord) -> None:
        self.steps.append(step)
        self.constraints[step.binding_constraint] += 1


@dataclass
class DemoResult:
    traces: list[StationTrace]
    csms_actions: Counter[str]
    transactions: dict[str, list[dict[str, object]]]
    virtual_minutes: float


ProgressFn = Callable[[str, float], None]


async def run_demo(
    *,
    stations: tuple[DemoStation, ...] = DEFAULT_STATIONS,
    timing_scale: float = 4.0,
    base_settings: Settings | None = None,
    progress: ProgressFn | None = None,
    faults: Mapping[str, FaultSchedule] | None = None,
) -> DemoResult:
    """Run the demo on the current loop (use `chargeagent.vtime.run_virtual` for faster than real time).

    `faults` maps a station id to the fault schedule its simulated BMS plays (`simulators.faults`; seconds
    after charging began, in simulated time); raises `ConfigError` for a station the demo does not have.
    """
    base = base_settings or load_settings()
    check_faults(faults or {}, stations)
    clock = LoopClock(epoch=datetime.now(UTC).replace(microsecond=0))
    traces = [StationTrace(s) for s in stations]
    with tempfile.TemporaryDirectory(prefix="chargeagent-demo-") as tmp:
        return await _run(stations, traces, clock, Path(tmp), timing_scale, base, progress, faults or {})


def parse_faults(
    items: list[str], stations: tuple[DemoStation, ...] = DEFAULT_STATIONS
) -> dict[str, FaultSchedule]:
    """`["STATION=AT_S:FAULT,...", ...]` (the CLI's `--fault`) as schedules; `ConfigError` when wrong."""
    faults: dict[str, FaultSchedule] = {}
    for item in items:
        station_id, sep, schedule = item.partition("=")
        if not sep:
            raise ConfigError(f"--fault {item!r}: expected STATION=AT_S:FAULT[,AT_S:FAULT...]")
        faults[station_id.strip()] = FaultSchedule.parse(schedule)
    check_faults(faults, stations)
    return faults


def check_faults(faults: Mapping[str, FaultSchedule], stations: tuple[DemoStation, ...]) -> None:
    unknown = sorted(set(faults) - {s.station_id for s in stations})
    if unknown:
        known = ", ".join(s.station_id for s in stations)
        raise ConfigError(f"--fault: no demo station {', '.join(unknown)} (stations: {known})")
    for schedule in faults.values():
        schedule.check("can")  # the demo's packs speak GB/T over CAN


async def _run(
    stations: tuple[DemoStation, ...],
    traces: list[StationTrace],
    clock: LoopClock,
    data_dir: Path,
    timing_scale: float,
    base: Settings,
    progress: ProgressFn | None,
    faults: Mapping[str, FaultSchedule],
) -> DemoResult:
    start_s = clock.monotonic()
    async with EmbeddedCsms(heartbeat_interval_s=300, clock=clock) as csms, asyncio.TaskGroup() as tg:
        agents = []
        scripts = []
        for number, trace in enumerate(traces, start=1):
            station = trace.station
            settings = base.model_copy(
                update={
                    "station": base.station.model_copy(update={"id": station.station_id}),
                    "ocpp": base.ocpp.model_copy(
                        update={"csms_url": csms.url, "authorize_remote_start": True}
                    ),
                    "bms": base.bms.model_copy(
                        update={
                            "can_interface": "virtual",
                            "can_channel": f"demo-{station.station_id}",
                            "timing_scale": timing_scale,
                        }
                    ),
                }
            )
            done = asyncio.Event()

            def on_end(
                result: SessionResult, trace: StationTrace = trace, done: asyncio.Event = done
            ) -> None:
                trace.result = result
                done.set()

            def on_step(step: StepRecord, trace: StationTrace = trace) -> None:
                trace.record(step)
                if progress is not None:
                    progress(trace.station.station_id, step.soc)

            # All CAN peers live in this process, so readers are woken on send; no polling timers.
            agent = StationAgent(
                settings,
                clock=clock,
                bms_factory=can_link_factory(settings, clock, poll_interval_s=None),
                on_step=on_step,
                on_session_end=on_end,
                outbox_path=data_dir / station.station_id / "outbox.sqlite3",
            )
            agents.append(tg.create_task(agent.run(), name=f"agent:{station.station_id}"))
            ev = SimulatedEv(
                station.pack,
                interface="virtual",
                channel=settings.bms.can_channel,
                clock=clock,
                timing=GbtTiming(period_scale=timing_scale),
                poll_interval_s=None,
                faults=faults.get(station.station_id),
            )
            scripts.append(
                tg.create_task(_drive_station(csms, agent, ev, done, number), name=f"ev:{station.station_id}")
            )
        await asyncio.gather(*scripts)
        for task in agents:
            task.cancel()
        transactions = {
            t.station.station_id: next(iter(csms.transactions(t.station.station_id).values()))
            for t in traces
            if csms.transactions(t.station.station_id)
        }
        actions = Counter(r.action for r in csms.received())
    return DemoResult(traces, actions, transactions, (clock.monotonic() - start_s) / 60.0)


async def _drive_station(
    csms: EmbeddedCsms, agent: StationAgent, ev: SimulatedEv, done: asyncio.Event, remote_start_id: int
) -> None:
    """The operator's script for one station: plug in, start remotely, charge to the end, unplug."""
    station_id = agent.station_id
    await agent.booted.wait()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(ev.run(), name=f"bms:{station_id}")
        agent.plug_in()
        await csms.wait_for(
            station_id,
            "StatusNotification",
            lambda payload: payload.get("connectorStatus") == "Occupied",
            timeout_s=120,
        )
        status = await csms.request_start_transaction(
            station_id, id_token=f"DEMO-{remote_start_id:04d}", evse_id=1, remote_start_id=remote_start_id
        )
        if status != "Accepted":
            raise RuntimeError(f"{station_id}: RequestStartTransaction was {status}")
        await done.wait()
    agent.unplug()
    await csms.wait_for(
        station_id,
        "TransactionEvent",
        lambda payload: payload.get("eventType") == "Ended",
        timeout_s=120,
    )
    await csms.wait_for(
        station_id,
        "StatusNotification",
        lambda payload: payload.get("connectorStatus") == "Available",
        timeout_s=120,
    )


def write_demo_report(result: DemoResult, path: Path) -> Path:
    """out/report.html: SoC, current (with the CSMS limit) and cell temperature per station."""
    from simulators.report import Series, StationRun, write_report  # noqa: PLC0415

    runs = []
    for trace in result.traces:
        steps = trace.steps
        t0 = steps[0].t_s if steps else 0.0
        t_min = [(s.t_s - t0) / 60.0 for s in steps]
        total = sum(trace.constraints.values()) or 1
        runs.append(
            StationRun(
                station_id=trace.station.station_id,
                title=trace.station.title,
                summary={**summary_row(trace), **health_summary(trace.result)},
                soc=Series(t_min, [s.soc * 100 for s in steps], "SoC", "%"),
                current_a=Series(t_min, [s.current_a for s in steps], "Output current", "A"),
                cell_temp_c=Series(t_min, [s.cell_temp_max_c for s in steps], "Hottest cell", "°C"),
                limit_a=None,
                binding_constraints={k: v / total for k, v in trace.constraints.most_common()},
            )
        )
    return write_report(
        path,
        runs,
        title="chargeagent demo",
        generated_at=datetime.now(UTC),
        notes=[
            "OCPP 2.0.1 over loopback websockets to the embedded CSMS.",
            "GB/T 27930 over the python-can virtual bus.",
            f"Virtual time: {result.virtual_minutes:.1f} simulated minutes.",
            *(
                f"{t.station.station_id} last charge plan: {t.result.plan_explanation}"
                for t in result.traces
                if t.result is not None
            ),
            "est. SoH: the station's capacity estimate from this one charge (docs/health.md), p50 and "
            "p10-p90. The station does not know a pack's age (GB/T carries no cycle count), so the level "
            "comes from this one charge; the band is the estimator's statistical uncertainty, not its bias "
            "(a single charge reads a few % high on aged packs). EFC to 80 %: the forecast of equivalent "
            "full cycles left before capacity falls below 80 %, p50 and p10-p90.",
        ],
    )


def summary_row(trace: StationTrace) -> dict[str, str | float]:
    steps = trace.steps
    pack = trace.station.pack
    result = trace.result
    shares = [(name, 100 * n / max(1, len(steps))) for name, n in trace.constraints.most_common(3)]
    top = ", ".join(f"{name} {share:.0f}%" for name, share in shares if share >= 1.0)
    return {
        "SoH": round(pack.soh, 2),
        "start SoC %": round(100 * (steps[0].soc if steps else pack.soc), 1),
        "end SoC %": round(100 * (steps[-1].soc if steps else pack.soc), 1),
        "energy kWh": round(result.energy_wh / 1000, 2) if result else 0.0,
        "minutes": round(result.duration_s / 60, 1) if result else 0.0,
        "peak cell °C": round(max((s.cell_temp_max_c for s in steps), default=pack.cell_temp_c), 1),
        "stop reason": str(result.reason) if result else "-",
        "binding constraints": top or "-",
    }


def estimated_soh(result: SessionResult | None) -> str:
    """The station's capacity SoH for the battery as "p50 (p10-p90)", or "-" without an assessment."""
    band = None if result is None or result.health is None else result.health.get("capacity_soh")
    if not band:
        return "-"
    return f"{band['p50']:.2f} ({band['p10']:.2f}-{band['p90']:.2f})"


def health_summary(result: SessionResult | None) -> dict[str, str | float]:
    """The report's health cells: capacity SoH band, forecast band (EFC to 80 %), alerts."""
    health = None if result is None else result.health
    cycles = (health or {}).get("cycles_to_80pct")
    alerts = ", ".join(a["type"] for a in (health or {}).get("alerts", [])) if health else "-"
    return {
        "est. SoH (p10-p90)": estimated_soh(result),
        "EFC to 80 % (p10-p90)": f"{cycles['p50']} ({cycles['p10']}-{cycles['p90']})" if cycles else "-",
        "health alerts": alerts or "none",
    }
