"""`chargeagent simulate`: a site's stations and EVs on the pack physics, faster than real time."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chargeagent.errors import ChargeAgentError

if TYPE_CHECKING:
    from simulators.arrivals import Sessions
    from simulators.fleet import FleetResult
    from simulators.fleet_wire import WireResult

console = Console()
DEFAULT_SITE = Path(__file__).resolve().parent.parent / "config" / "sites" / "workplace.toml"


def simulate(
    stations: Annotated[int | None, typer.Option(help="Stations (default: the site file's).")] = None,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 7,
    start: Annotated[str, typer.Option(help="Start, ISO 8601 UTC (midnight).")] = "2026-06-01T00:00:00Z",
    seed: Annotated[int, typer.Option(help="Seed: same seed, same results.")] = 0,
    site: Annotated[Path, typer.Option(help="Site TOML (config/sites/).")] = DEFAULT_SITE,
    sessions: Annotated[Path | None, typer.Option(help="Replay this SESSIONS.csv instead.")] = None,
    mode: Annotated[str, typer.Option(help="fast | wire (real agents over OCPP and CAN)")] = "fast",
    policy: Annotated[str, typer.Option(help="model | cc-cv")] = "model",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out"),
    grid_cap_kw: Annotated[
        float | None, typer.Option(help="Site grid connection limit, kW (default: the site file's; none).")
    ] = None,
    price_aware: Annotated[
        bool, typer.Option(help="Charge in the cheapest hours before departure (the site file's [tariff]).")
    ] = False,
    api_port: Annotated[
        int | None, typer.Option(help="Wire mode: serve the site's read-only API + page on 127.0.0.1:PORT.")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Fast mode on a Ray cluster ([scale] extra): auto | HOST:PORT | local; stations are "
            "partitioned across workers and the results merged (no site grid cap)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="With --ray-address: partitions (default: the cluster's CPUs).")
    ] = None,
    processes: Annotated[
        int, typer.Option(help="Wire mode: split the stations over this many processes (one per core).")
    ] = 1,
    csms_url: Annotated[
        str | None,
        typer.Option(
            help="Wire mode against this CSMS (ws:// or wss://; the station id is appended), in REAL time; "
            "it must accept the idTokens FLEET-<session>. Default: the embedded CSMS, virtual time."
        ),
    ] = None,
) -> None:
    """Simulate a site: sessions, site load at 1/15 min, sim_report.html (wire mode: + ocpp_log.jsonl)."""
    from policy.forecast_io import InputFileError, parse_utc  # noqa: PLC0415
    from simulators.arrivals import generate_sessions, read_sessions_csv  # noqa: PLC0415
    from simulators.site_config import load_site  # noqa: PLC0415

    if mode not in ("fast", "wire"):
        _fail("--mode must be fast or wire")
    if policy not in ("model", "cc-cv") or days < 1:
        _fail("--policy must be model or cc-cv, and --days >= 1")
    try:
        start_s = parse_utc(start)
        config = load_site(site)
        power_kw = config.site.station_max_power_kw
        if sessions is not None:
            evs = read_sessions_csv(sessions, station_power_kw=power_kw)
        else:
            evs = generate_sessions(config, start_s, days, stations=stations, seed=seed)
    except (ChargeAgentError, InputFileError, ValueError) as exc:
        _fail(str(exc))
    cap_kw = _grid_cap(grid_cap_kw if grid_cap_kw is not None else config.site.grid_cap_kw, mode)
    tariff = config.tariff.tariff() if config.tariff is not None else None
    _check_mode_options(
        mode, price_aware=price_aware, has_tariff=tariff is not None, api_port=api_port, csms_url=csms_url
    )
    if processes != 1 and (mode != "wire" or api_port is not None or processes < 1):
        _fail("--processes N (>= 1) is for --mode wire, without --api-port (one process serves the API)")
    if ray_address is not None and (mode != "fast" or cap_kw is not None):
        _fail("--ray-address runs --mode fast without a site grid cap (a cap couples every station)")
    if mode == "wire":
        _simulate_wire(
            evs, start_s, days, power_kw, policy == "model", out, config.site.name, api_port, csms_url,
            processes,
        )  # fmt: skip
        return
    options: dict[str, Any] = {"start_s": start_s, "days": days, "station_power_kw": power_kw,
                               "tariff": tariff, "price_aware": price_aware}  # fmt: skip
    began = time.perf_counter()
    interrupted = False
    if ray_address is not None:
        result = _simulate_on_ray(evs, ray_address, workers, model=policy == "model", options=options)
    else:
        result, interrupted = _simulate_here(evs, model=policy == "model", cap_kw=cap_kw, options=options)
    wall_s = time.perf_counter() - began
    n_stations = stations or config.site.stations
    title = f"{config.site.name}: {n_stations} stations, {days} days" + " (interrupted)" * interrupted
    _report_fast(evs, result, out, title, n_stations * result.site_load_kw.size / max(wall_s, 1e-9))
    if interrupted:
        raise typer.Exit(130)


def _simulate_here(
    evs: Sessions, *, model: bool, cap_kw: float | None, options: dict[str, Any]
) -> tuple[FleetResult, bool]:
    """Fast mode on this machine, with a progress bar; (result, interrupted by Ctrl-C)."""
    from policy.plan import CurvePolicy  # noqa: PLC0415
    from simulators.fleet import FleetSimulator  # noqa: PLC0415

    sim = FleetSimulator(evs, policy=CurvePolicy() if model else None, grid_cap_kw=cap_kw, **options)
    columns = (TextColumn("simulating"), BarColumn(), TextColumn("day {task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("days", total=sim.result.chunks_total)
        try:
            sim.run(on_chunk=lambda done, _total: bar.update(task, completed=done))
        except KeyboardInterrupt:
            return sim.result, True
    return sim.result, False


def _report_fast(evs: Sessions, result: FleetResult, out: Path, title: str, steps_per_s: float) -> None:
    from simulators.fleet_output import summary, write_outputs  # noqa: PLC0415

    paths = write_outputs(out, evs, result)
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary(evs, result).items():
        table.add_row(key, f"{value:,.2f}")
    done = result.chunks_done / max(1, result.chunks_total)  # an interrupted run did part of the days
    table.add_row("station-steps per second (1-min steps)", f"{steps_per_s * done:,.0f}")
    console.print(table)
    console.print("outputs: " + ", ".join(str(p) for p in paths.values()))


def _simulate_on_ray(
    evs: Sessions, address: str, workers: int | None, *, model: bool, options: dict[str, Any]
) -> FleetResult:
    try:
        from simulators.fleet_ray import run_on_ray  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        _fail(f"--ray-address needs the [scale] extra (pip install 'chargeagent[scale]'): {exc}")
    columns = (TextColumn("ray"), BarColumn(), TextColumn("partitions {task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("partitions", total=None)
        try:
            result, timings = run_on_ray(
                evs, ray_address=address, workers=workers, policy=model,
                on_part=lambda done, total: bar.update(task, completed=done, total=total), **options,
            )  # fmt: skip
        except ChargeAgentError as exc:
            _fail(str(exc))
    console.print(
        f"ray: connected in {timings['connect_s']:.1f} s, simulated in {timings['simulate_s']:.1f} s"
    )
    return result


def _simulate_wire(
    evs: Sessions,
    start_s: float,
    days: int,
    power_kw: float,
    model: bool,
    out: Path,
    site_name: str,
    api_port: int | None = None,
    csms_url: str | None = None,
    processes: int = 1,
) -> None:
    """Wire mode: one real agent per station, OCPP over websockets (the embedded CSMS on loopback and
    virtual time, or `csms_url` in real time), GB/T on virtual CAN; `processes` > 1 splits the stations."""
    from simulators.fleet_output import summary, write_outputs  # noqa: PLC0415
    from simulators.fleet_wire_ocpp import write_ocpp_log  # noqa: PLC0415
    from station.cli import _settings, _state  # noqa: PLC0415

    # Thousands of agents log every session: warnings only unless --log-level says otherwise.
    settings = _settings({} if _state.log_level else {"log": {"level": "warning"}})
    options: dict[str, Any] = {
        "start_s": start_s, "days": days, "station_power_kw": power_kw, "policy_enabled": model,
        "base_settings": settings, "csms_url": csms_url,
    }  # fmt: skip
    if api_port is not None:
        console.print(f"site API and page: http://127.0.0.1:{api_port or '<free port>'}/")
    if csms_url is not None:
        console.print(f"charging against {csms_url} in real time (Ctrl-C ends the run, outputs kept)")
    began = time.perf_counter()
    if processes > 1:
        result, stations, interrupted = _wire_in_processes(evs, processes, options)
    else:
        result, stations, interrupted = _wire_in_this_process(evs, api_port, options)
    wall_s = time.perf_counter() - began
    paths = write_outputs(out, evs, result.fleet)
    if csms_url is None:  # the embedded CSMS's journal; an external CSMS keeps its own
        paths["ocpp_log"] = write_ocpp_log(out / "ocpp_log.jsonl", result.received, result.sent)
    table = Table(
        title=f"{site_name}: {stations} stations, {days} days, wire mode" + (" (interrupted)" * interrupted)
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary(evs, result.fleet).items():
        table.add_row(key, f"{value:,.2f}")
    if csms_url is None:
        table.add_row(
            "OCPP calls (station to CSMS, CSMS to station)", f"{len(result.received)}, {len(result.sent)}"
        )
    table.add_row("failed calls", str(len(result.failures)))
    table.add_row("sessions per second (wall)", f"{result.sessions_done / max(wall_s, 1e-9):,.2f}")
    console.print(table)
    for failure in result.failures[:10]:
        console.print(f"failed: {failure}")
    console.print("outputs: " + ", ".join(str(p) for p in paths.values()))
    if interrupted:
        raise typer.Exit(130)


def _wire_in_this_process(
    evs: Sessions, api_port: int | None, options: dict[str, Any]
) -> tuple[WireResult, int, bool]:
    """(result, stations, interrupted by Ctrl-C: the leading finished days are kept)."""
    import asyncio  # noqa: PLC0415

    from chargeagent.vtime import run_virtual  # noqa: PLC0415
    from simulators.fleet_wire import WireFleet  # noqa: PLC0415

    columns = (TextColumn("wire"), BarColumn(), TextColumn("sessions {task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("sessions", total=None)
        fleet = WireFleet(
            evs, api_port=api_port, **options,
            on_session=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
        try:
            if options["csms_url"] is None:
                run_virtual(fleet.run())
            else:
                asyncio.run(fleet.run())
        except KeyboardInterrupt:
            return fleet.result, len(fleet.stations), True
    return fleet.result, len(fleet.stations), False


def _wire_in_processes(
    evs: Sessions, processes: int, options: dict[str, Any]
) -> tuple[WireResult, int, bool]:
    from simulators.fleet_wire import run_wire_processes  # noqa: PLC0415

    columns = (TextColumn(f"wire, {processes} processes"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        bar.add_task("sessions", total=None)
        result = run_wire_processes(evs, processes, **options)
    return result, len(set(evs.station_id)), False


def _check_mode_options(
    mode: str, *, price_aware: bool, has_tariff: bool, api_port: int | None, csms_url: str | None = None
) -> None:
    if csms_url is not None and (mode != "wire" or not csms_url.startswith(("ws://", "wss://"))):
        _fail("--csms-url needs --mode wire and a ws:// or wss:// URL")
    if price_aware and (not has_tariff or mode == "wire"):
        _fail("--price-aware needs a [tariff] in the site file, and --mode fast")
    if api_port is not None and mode != "wire":
        _fail("--api-port needs --mode wire (fast mode runs no agents to ask)")


def _grid_cap(cap_kw: float | None, mode: str) -> float | None:
    if cap_kw is not None and not (math.isfinite(cap_kw) and cap_kw > 0):
        _fail(f"--grid-cap-kw must be > 0 (got {cap_kw})")
    if mode == "wire" and cap_kw is not None:
        _fail(
            "a site grid cap is simulated in --mode fast only (the wire mode has no site allocator yet; "
            "real agents share one with chargeagent site-controller, docs/site.md)"
        )
    return cap_kw


def _fail(message: str) -> None:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command(name="simulate")(simulate)
