"""The `chargeagent` command line: demo, station, csms."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from chargeagent.clock import LoopClock
from chargeagent.config import Settings, load_settings
from chargeagent.errors import ChargeAgentError, ConfigError
from chargeagent.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Smart-charging OCPP charge-point agent.")
console = Console()
if not console.is_terminal:  # piped or in CI: don't squeeze the summary table into 80 columns
    console = Console(width=140)
log = structlog.get_logger(__name__)

LogFormat = Literal["console", "json"]
AUTO_START_ID_TOKEN = "CLI-AUTO-START"  # noqa: S105 - an idToken value, not a secret


class _State:
    config: Path | None = None
    log_format: str | None = None
    log_level: str | None = None


_state = _State()


@app.callback()
def main(
    config: Annotated[Path | None, typer.Option(help="TOML config file (over config/default.toml).")] = None,
    log_format: Annotated[str | None, typer.Option(help="console | json")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error")] = None,
) -> None:
    _state.config, _state.log_format, _state.log_level = config, log_format, log_level
    # Logs go to stderr from the first line on, so `--json` output on stdout stays parseable; commands
    # that load the settings reconfigure with the configured format and level.
    fmt = log_format if log_format in ("console", "json") else "console"
    level = log_level if log_level in ("debug", "info", "warning", "error") else "info"
    configure_logging(fmt, level)  # type: ignore[arg-type]


def _settings(overrides: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Load config or exit 2 with one line naming the bad key."""
    try:
        settings = load_settings(config or _state.config, _with_log_flags(overrides or {}))
    except ConfigError as exc:
        typer.echo(f"chargeagent: config error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log.format, settings.log.level)
    return settings


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for report.html.")] = Path("out"),
    timing_scale: Annotated[
        float, typer.Option(help="GB/T message periods × this (1 = the standard's timing; slower to run).")
    ] = 4.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="STATION=AT_S:FAULT[,AT_S:FAULT...]: that station's BMS misbehaves AT_S simulated seconds "
            "into charging, e.g. CS-LFP-HOT=300:drop:BCS (faults: silent, drop:NAME, out_of_range, "
            "corrupt, truncated_tp, overtemperature, insulation, restore). Repeatable."
        ),
    ] = None,
) -> None:
    """Embedded CSMS + 3 stations charging simulated packs over CAN, on a virtual clock; writes a report."""
    from chargeagent.vtime import run_virtual  # noqa: PLC0415
    from simulators.demo import parse_faults, run_demo, summary_row, write_demo_report  # noqa: PLC0415

    overrides: dict[str, Any] = {} if _state.log_level else {"log": {"level": "warning"}}
    settings = _settings(overrides)
    try:
        faults = parse_faults(fault or [])
    except ConfigError as exc:
        typer.echo(f"chargeagent: {exc}", err=True)
        raise typer.Exit(2) from None
    wall_start = time.perf_counter()
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("SoC {task.completed:>5.1f} %"),
        console=console,
        transient=False,
    ) as progress:
        bars: dict[str, Any] = {}

        def on_progress(station_id: str, soc: float) -> None:
            if station_id not in bars:
                bars[station_id] = progress.add_task(station_id, total=100.0)
            progress.update(bars[station_id], completed=soc * 100)

        result = run_virtual(
            run_demo(timing_scale=timing_scale, base_settings=settings, progress=on_progress, faults=faults)
        )
    wall_s = time.perf_counter() - wall_start
    table = Table(title=f"chargeagent demo — {result.virtual_minutes:.0f} simulated min in {wall_s:.1f} s")
    rows = [summary_row(t) for t in result.traces]
    table.add_column("station")
    for key in rows[0]:
        table.add_column(key, justify="right" if key != "binding constraints" else "left")
    for trace, row in zip(result.traces, rows, strict=True):
        table.add_row(trace.station.station_id, *(str(v) for v in row.values()))
    console.print(table)
    csms_line = ", ".join(f"{action} ×{n}" for action, n in sorted(result.csms_actions.items()))
    console.print(f"CSMS received: {csms_line}")
    report = write_demo_report(result, out / "report.html")
    console.print(f"Report: {report}")
    failed = [t.station.station_id for t in result.traces if t.result is None or t.result.energy_wh <= 0]
    if failed:
        console.print(f"[red]no energy delivered at {', '.join(failed)}[/red]")
        raise typer.Exit(1)


@app.command()
def station(
    csms_url: Annotated[str | None, typer.Option(help="CSMS endpoint; the station id is appended.")] = None,
    station_id: Annotated[str | None, typer.Option(help="Charging station identity.")] = None,
    ocpp_versions: Annotated[
        str | None, typer.Option(help="Subprotocols to offer, in order: ocpp2.0.1,ocpp1.6 (the CSMS picks)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
    bms: Annotated[str | None, typer.Option(help="sim | can | mqtt")] = None,
    mqtt_url: Annotated[str | None, typer.Option(help="BMS broker, mqtt://HOST:PORT or mqtts://")] = None,
    can_interface: Annotated[str | None, typer.Option(help="python-can interface, e.g. socketcan")] = None,
    can_channel: Annotated[str | None, typer.Option(help="e.g. can0")] = None,
    security_profile: Annotated[
        int | None, typer.Option(help="OCPP security profile: 1 Basic auth, 2 TLS + Basic auth, 3 mutual TLS")
    ] = None,
    password_env: Annotated[str | None, typer.Option(help="NAME of the env var with the password")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CSMS root certificate (PEM)")] = None,
    cert_file: Annotated[Path | None, typer.Option(help="station certificate chain (PEM, profile 3)")] = None,
    key_file: Annotated[Path | None, typer.Option(help="station private key (PEM, profile 3)")] = None,
    api: Annotated[
        bool | None, typer.Option("--api/--no-api", help="Local API + dashboard + /metrics ([api] extra).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="Local API port (implies --api unless --no-api).")
    ] = None,
) -> None:
    """Run a charge point against any OCPP 2.0.1 or 1.6J CSMS (real time)."""
    overrides: dict[str, Any] = {}
    if api is None and api_port is not None:
        api = True
    if ocpp_versions is not None:
        overrides["ocpp"] = {"versions": [v.strip() for v in ocpp_versions.split(",") if v.strip()]}
    for section, key, value in (
        ("ocpp", "csms_url", csms_url),
        ("station", "id", station_id),
        ("bms", "backend", bms),
        ("bms", "can_interface", can_interface),
        ("bms", "can_channel", can_channel),
        ("bms", "mqtt_url", mqtt_url),
        ("ocpp", "security_profile", security_profile),
        ("ocpp", "password_env", password_env),
        ("ocpp", "ca_file", ca_file),
        ("ocpp", "cert_file", cert_file),
        ("ocpp", "key_file", key_file),
        ("api", "enabled", api),
        ("api", "port", api_port),
    ):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    settings = _settings(overrides, config)

    def reload() -> Settings:  # SIGHUP: the same sources again (file, env, flags); ConfigError if bad
        return load_settings(config or _state.config, _with_log_flags(overrides))

    try:
        asyncio.run(_run_station(settings, reload))
    except ConfigError as exc:  # e.g. the password env var is missing: found when the agent is built
        typer.echo(f"chargeagent: config error: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_log_flags(overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` plus the global --log-format / --log-level flags (flags win over the file)."""
    log_flags = {k: v for k, v in (("format", _state.log_format), ("level", _state.log_level)) if v}
    return {**overrides, "log": log_flags} if log_flags else dict(overrides)


def _on_sighup(settings: Settings, reload: Callable[[], Settings]) -> None:
    """Reload what is safe to change while charging: the log format and level. Anything else that
    changed is named in the log as needing a restart (a CSMS URL or a BMS interface must not switch
    under a running session); a bad file keeps the running configuration."""
    try:
        new = reload()
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc), reaction="keeping the running configuration")
        return
    configure_logging(new.log.format, new.log.level)
    restart = sorted(
        name
        for name in type(new).model_fields
        if name != "log" and getattr(new, name) != getattr(settings, name)
    )
    log.warning("config_reloaded", log_format=new.log.format, log_level=new.log.level, needs_restart=restart)


async def _run_station(settings: Settings, reload: Callable[[], Settings] | None = None) -> None:
    from bms_link.gbt import GbtTiming  # noqa: PLC0415
    from simulators.ev import (  # noqa: PLC0415
        SimulatedEv,
        can_link_factory,
        mqtt_link_factory,
        pack_spec_from_settings,
    )
    from station.agent import StationAgent, default_outbox_path  # noqa: PLC0415

    clock = LoopClock()
    sessions_done: asyncio.Queue[object] = asyncio.Queue()
    agent = StationAgent(
        settings,
        clock=clock,
        # --bms mqtt: a real BMS publishes on the broker (no simulated vehicle here).
        bms_factory=(
            mqtt_link_factory(settings, clock)
            if settings.bms.backend == "mqtt"
            else can_link_factory(settings, clock)
        ),
        on_session_end=sessions_done.put_nowait,
        outbox_path=default_outbox_path(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, settings, reload)

    async def simulated_vehicles() -> None:
        """--bms sim: an EV is always waiting; after a session it leaves and a fresh one arrives."""
        while True:
            ev = SimulatedEv(
                pack_spec_from_settings(settings),
                interface=settings.bms.can_interface,
                channel=settings.bms.can_channel,
                clock=clock,
                timing=GbtTiming(period_scale=settings.bms.timing_scale),
                poll_interval_s=0.01,
            )
            await agent.booted.wait()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ev.run(), name="sim-ev")
                agent.plug_in()
                await sessions_done.get()
            await clock.sleep(5.0)
            agent.unplug()
            await clock.sleep(10.0)

    log.info(
        "station_starting",
        station_id=settings.station.id,
        csms_url=settings.ocpp.csms_url,
        bms=settings.bms.backend,
    )
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(agent.run(), name="agent")]
        if settings.bms.backend == "sim":
            tasks.append(tg.create_task(simulated_vehicles(), name="sim-vehicles"))
        await stop.wait()
        log.info("station_stopping")
        await agent.shutdown()
        for task in tasks:
            task.cancel()


@app.command()
def csms(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 9000,
    auto_start: Annotated[
        bool, typer.Option(help="Start a transaction whenever a connector reports a plugged-in cable.")
    ] = False,
    ocpp_versions: Annotated[
        str, typer.Option(help="Subprotocols served, preferred first: ocpp2.0.1, ocpp1.6 or both")
    ] = "ocpp2.0.1,ocpp1.6",
) -> None:
    """Run the embedded OCPP CSMS (2.0.1 and 1.6J; for trying stations against, not a production CSMS)."""
    _settings()
    versions = tuple(v.strip() for v in ocpp_versions.split(",") if v.strip())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_csms(host, port, auto_start, versions))


async def _serve_csms(host: str, port: int, auto_start: bool, versions: tuple[str, ...]) -> None:
    from simulators.csms import EmbeddedCsms, Received, format_received  # noqa: PLC0415

    occupied: asyncio.Queue[Received] = asyncio.Queue()

    def on_received(item: Received) -> None:
        typer.echo(format_received(item))
        plugged = (
            item.payload.get("connectorStatus") == "Occupied" or item.payload.get("status") == "Preparing"
        )
        if auto_start and item.action == "StatusNotification" and plugged:
            occupied.put_nowait(item)

    try:
        server = EmbeddedCsms(host=host, port=port, on_received=on_received, versions=versions)
    except ConfigError as exc:
        typer.echo(f"chargeagent: --ocpp-versions: {exc}", err=True)
        raise typer.Exit(2) from None
    async with server:
        typer.echo(f"CSMS listening on {server.url}/<station id> (subprotocols {', '.join(versions)})")
        while True:  # runs until Ctrl-C; starts are sent here, never from inside a handler
            item = await occupied.get()
            try:
                if "connectorStatus" in item.payload:  # OCPP 2.0.1
                    status = await server.request_start_transaction(
                        item.station_id, id_token=AUTO_START_ID_TOKEN, evse_id=item.payload["evseId"]
                    )
                else:  # OCPP 1.6
                    start = {"idTag": AUTO_START_ID_TOKEN, "connectorId": item.payload["connectorId"]}
                    status = (await server.call(item.station_id, "RemoteStartTransaction", start))["status"]
            except ChargeAgentError as exc:
                status = f"failed: {exc}"
            typer.echo(f"remote start to {item.station_id}: {status}")


def _register_command_modules() -> None:
    """Commands that live in their own modules (so cli.py stays short): each has `register(app)`."""
    # One import + register line per module, alphabetical.
    from station import cli_audit  # noqa: PLC0415

    cli_audit.register(app)
    from station import cli_health  # noqa: PLC0415

    cli_health.register(app)
    from station import cli_fleet  # noqa: PLC0415

    cli_fleet.register(app)
    from station import cli_grid  # noqa: PLC0415

    cli_grid.register(app)
    from station import cli_override  # noqa: PLC0415

    cli_override.register(app)
    from station import cli_policy  # noqa: PLC0415

    cli_policy.register(app)
    from station import cli_site  # noqa: PLC0415

    cli_site.register(app)


_register_command_modules()


if __name__ == "__main__":  # python -m station.cli (what the tests run)
    sys.exit(app())
