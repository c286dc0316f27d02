"""`chargeagent forecast`, `backtest-forecast` and `site-load`: the load forecaster on the command line.

Contract (DESIGN.md): HISTORY.csv `interval_start,load_kw` (15-min, strictly before --start), optional
SESSIONS.csv `session_id,station_id,connection_time,disconnect_time,kwh_delivered`, FORECAST.csv
`interval_start,p10_kw,p50_kw,p90_kw` over [start, start+horizon). Bad input exits 2 with one line on
stderr naming the file, row and column. `forecast --mqtt-url` and `publish-forecast` send the upstream
message over MQTT (station/grid.py); an unreachable broker exits 1 with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import numpy as np
import structlog
import typer
from rich.console import Console
from rich.table import Table

from chargeagent.clock import LoopClock
from chargeagent.errors import ChargeAgentError
from policy.forecast_features import ChargingIntervals
from policy.forecast_io import LoadHistory, format_utc, parse_utc, read_history_csv

if TYPE_CHECKING:
    from chargeagent.config import GridSettings
    from chargeagent.mqtt_connect import MqttEndpoint
    from station.grid import ForecastPublisher
    from station.site_forecast import DemandBook
    from station.site_ven import SiteVen

log = structlog.get_logger(__name__)
console = Console()
if not console.is_terminal:  # piped or in CI: don't wrap the summary lines and tables at 80 columns
    console = Console(width=140)
HISTORY_STEP_S = 900  # DESIGN.md: HISTORY.csv is 15-min
_MAX_LEAD_S = 7 * 86_400  # the weekly lag must be observed for every forecast interval


def _fail(message: str) -> NoReturn:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(2)


def _time_option(name: str, text: str) -> int:
    try:
        stamp = parse_utc(text)
    except ValueError:
        _fail(f"{name}: not an ISO 8601 time: {text!r}")
    if stamp % HISTORY_STEP_S:
        _fail(f"{name}: {text} is not on the 15-min grid")
    return int(stamp)


def _sessions(path: Path | None, station_power_kw: float) -> ChargingIntervals | None:
    if path is None:
        return None
    from simulators.arrivals import read_sessions_csv  # noqa: PLC0415

    if not (math.isfinite(station_power_kw) and station_power_kw > 0):
        _fail(f"--station-power-kw must be > 0 (got {station_power_kw})")
    replay = read_sessions_csv(path, station_power_kw)
    return ChargingIntervals(replay.connection_s, replay.charge_end_s, replay.power_kw)


HistoryOpt = Annotated[Path, typer.Option(help="HISTORY.csv: interval_start,load_kw (15-min, UTC).")]
SessionsOpt = Annotated[
    Path | None,
    typer.Option(help="SESSIONS.csv: session_id,station_id,connection_time,disconnect_time,kwh_delivered."),
]
PowerOpt = Annotated[
    float, typer.Option(help="Charging power assumed for SESSIONS.csv rows (at least kWh/dwell).")
]
MqttUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="Publish the forecast message (QoS 1, retained) to chargeagent/{site_id}/forecast on this "
        "broker: mqtt://HOST:PORT or mqtts://. Auth/TLS from the config (grid.mqtt_*)."
    ),
]


def forecast(
    history: HistoryOpt,
    start: Annotated[str, typer.Option(help="First forecast interval, ISO 8601 UTC.")],
    out: Annotated[Path, typer.Option(help="FORECAST.csv to write.")],
    sessions: SessionsOpt = None,
    horizon_h: Annotated[float, typer.Option(help="Hours to forecast.")] = 36.0,
    interval_min: Annotated[int, typer.Option(help="Output interval, a multiple of 15 min.")] = 15,
    station_power_kw: PowerOpt = 22.0,
    site_id: Annotated[str, typer.Option(help="Site id for --message-out.")] = "site",
    message_out: Annotated[
        Path | None, typer.Option(help="Also write the upstream JSON message (config/schemas/forecast).")
    ] = None,
    mqtt_url: MqttUrlOpt = None,
) -> None:
    """Forecast the site load (p10/p50/p90) from its history and the EVs plugged in at --start."""
    from policy.forecast import ForecastConfig, LoadForecaster, forecast_message  # noqa: PLC0415
    from policy.forecast_io import write_forecast_csv  # noqa: PLC0415

    start_s = _time_option("--start", start)
    endpoint = None if mqtt_url is None else _grid_endpoint(site_id, mqtt_url)
    if interval_min <= 0 or (interval_min * 60) % HISTORY_STEP_S:
        _fail(f"--interval-min must be a positive multiple of 15 (got {interval_min})")
    interval_s = interval_min * 60
    horizon_s = horizon_h * 3600
    if not (math.isfinite(horizon_s) and horizon_s > 0) or horizon_s % interval_s:
        _fail(f"--horizon-h must be > 0 and a whole number of {interval_min}-min intervals (got {horizon_h})")
    steps = int(horizon_s) // HISTORY_STEP_S
    try:
        hist = read_history_csv(history, HISTORY_STEP_S, before_s=start_s)
        known = _sessions(sessions, station_power_kw)
        lead_steps = (start_s - hist.end_s) // HISTORY_STEP_S + steps
        if lead_steps * HISTORY_STEP_S > _MAX_LEAD_S:
            _fail(f"{history}: ends {format_utc(hist.end_s)}; the forecast must end within 7 days of it")
        config = ForecastConfig(max_horizon_steps=max(144, int(lead_steps)))
        model = LoadForecaster(config).fit(hist, known)
        result = model.predict(start_s, steps).resampled(interval_s)
    except ChargeAgentError as exc:
        _fail(str(exc))
    _write(
        out,
        lambda: write_forecast_csv(
            out, result.start_s, result.step_s, result.p10_kw, result.p50_kw, result.p90_kw
        ),
    )
    doc = forecast_message(result, site_id, generated_at_s=hist.end_s)
    if message_out is not None:
        _write(message_out, lambda: message_out.write_text(json.dumps(doc, indent=1) + "\n"))
    if result.method != "quantile_gbm":
        typer.echo(
            f"chargeagent: note: {hist.days():.1f} days of history (< {config.min_history_days:g}): "
            f"{result.method} forecast (cold start)",
            err=True,
        )
    known_kwh = float(result.committed_kw.sum()) * result.step_s / 3600
    console.print(
        f"wrote {out}: {len(result.p50_kw)} intervals from {format_utc(result.start_s)}, "
        f"method {result.method}, plugged-in energy {known_kwh:.1f} kWh, "
        f"p50 energy {float(result.p50_kw.sum()) * result.step_s / 3600:.1f} kWh"
    )
    if endpoint is not None:
        _publish_once(endpoint, doc)


def backtest_forecast(
    history: HistoryOpt,
    sessions: SessionsOpt = None,
    origins: Annotated[int, typer.Option(help="Rolling origins (midnights, one day apart).")] = 14,
    horizon_h: Annotated[float, typer.Option(help="Hours forecast from each origin.")] = 36.0,
    station_power_kw: PowerOpt = 22.0,
    origin_every_h: Annotated[
        float, typer.Option(help="Hours between origins (24: midnights; 6: 00/06/12/18 h UTC).")
    ] = 24.0,
) -> None:
    """WAPE, MASE, pinball loss and p10-p90 coverage: our model vs three baselines, same origins."""
    from policy.forecast import ForecastConfig  # noqa: PLC0415
    from policy.forecast_backtest import run_backtest, wape_gain  # noqa: PLC0415

    if origins < 1:
        _fail(f"--origins must be >= 1 (got {origins})")
    horizon_s = horizon_h * 3600
    if not (math.isfinite(horizon_s) and horizon_s > 0) or horizon_s % HISTORY_STEP_S:
        _fail(f"--horizon-h must be > 0 and a whole number of 15-min intervals (got {horizon_h})")
    try:
        hist = read_history_csv(history, HISTORY_STEP_S)
        known = _sessions(sessions, station_power_kw)
        config = ForecastConfig(max_horizon_steps=int(horizon_s) // HISTORY_STEP_S)
        scores = run_backtest(hist, origins, config, known, every_h=origin_every_h)
    except ChargeAgentError as exc:
        _fail(str(exc))
    every = "midnights" if origin_every_h == 24.0 else f"every {origin_every_h:g} h"
    title = f"backtest: {origins} origins ({every}) × {horizon_h:g} h, {hist.days():.0f} days of history"
    table = Table(title=title)
    for column in ("method", "WAPE", "MASE", "pinball kW", "p10-p90 coverage", "< p10 / > p90"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for s in scores:
        coverage, tails = "—", "—"
        if s.coverage is not None:
            coverage, tails = f"{s.coverage:.3f}", f"{s.below_p10:.3f} / {s.above_p90:.3f}"
        row = (f"{s.wape:.3f}", f"{s.mase:.3f}", f"{s.pinball_kw:.2f}", coverage, tails)
        table.add_row(s.method, *row)
    console.print(table)
    console.print(f"p50 WAPE vs best baseline: {wape_gain(scores):+.1%} better")


def site_load(
    site: Annotated[Path, typer.Option(help="Site TOML (config/sites/*.toml).")],
    out: Annotated[Path, typer.Option(help="HISTORY.csv to write (15-min site load).")],
    days: Annotated[int, typer.Option(help="Days to generate.")] = 56,
    stations: Annotated[int | None, typer.Option(help="Stations (default: the site file's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 1,
    start: Annotated[str, typer.Option(help="First day, ISO 8601 UTC.")] = "2024-01-01T00:00:00Z",
    sessions_out: Annotated[Path | None, typer.Option(help="Also write SESSIONS.csv.")] = None,
) -> None:
    """Synthetic site load history from the EV arrival generator (uncontrolled charging)."""
    from policy.forecast_io import write_history_csv  # noqa: PLC0415
    from simulators.arrivals import generate_sessions, site_load_kw, write_sessions_csv  # noqa: PLC0415
    from simulators.site_config import load_site  # noqa: PLC0415

    start_s = _time_option("--start", start)
    if not 1 <= days <= 3660:
        _fail(f"--days must be 1..3660 (got {days})")
    if stations is not None and stations < 1:
        _fail(f"--stations must be >= 1 (got {stations})")
    try:
        config = load_site(site)
    except ChargeAgentError as exc:
        _fail(str(exc))
    generated = generate_sessions(config, start_s, days, stations, seed)
    load_kw = site_load_kw(generated, start_s, days * 96, HISTORY_STEP_S)
    _write(out, lambda: write_history_csv(out, LoadHistory(start_s, HISTORY_STEP_S, load_kw)))
    if sessions_out is not None:
        _write(sessions_out, lambda: write_sessions_csv(sessions_out, generated))
    console.print(
        f"wrote {out}: {days} days of {config.site.name}, {len(generated)} sessions "
        f"({generated.rejected} turned away), {float(np.sum(generated.delivered_kwh)):.0f} kWh, "
        f"peak {float(load_kw.max(initial=0.0)):.1f} kW (15-min mean)"
    )


def _write(path: Path, write: Callable[[], object]) -> None:
    """Write an output file, creating its directory; a path that cannot be written exits 2 in one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        _fail(f"{path}: cannot write: {exc.strerror or exc}")


# --- upstream over MQTT (station/grid.py, docs/forecast.md "Upstream over MQTT") --------------------


def _grid_settings(overrides: dict[str, object]) -> GridSettings:
    from station.cli import _settings  # noqa: PLC0415  (cli imports this module)

    return _settings({"grid": {k: v for k, v in overrides.items() if v is not None}}).grid


def _grid_endpoint(site_id: str, mqtt_url: str) -> MqttEndpoint:
    from station.grid import GridEndpoint  # noqa: PLC0415

    grid = _grid_settings({"site_id": site_id, "mqtt_url": mqtt_url})
    try:
        return GridEndpoint.from_settings(grid)
    except ChargeAgentError as exc:
        _fail(f"config error: {exc}")


def _publish_once(endpoint: MqttEndpoint, doc: dict[str, Any]) -> None:
    from station.grid import forecast_topic, publish_once  # noqa: PLC0415

    try:
        asyncio.run(publish_once(endpoint, doc))
    except ChargeAgentError as exc:  # unreachable broker or a message that fails the schema
        typer.echo(f"chargeagent: forecast not published: {exc}", err=True)
        raise typer.Exit(1) from None
    console.print(f"published to {endpoint.url} {forecast_topic(doc['site_id'])} (QoS 1, retained)")


def publish_forecast(
    history: HistoryOpt,
    site_id: Annotated[str | None, typer.Option(help="Site id (default: config grid.site_id).")] = None,
    mqtt_url: Annotated[str | None, typer.Option(help="Broker (default: config grid.mqtt_url).")] = None,
    interval_s: Annotated[
        float | None,
        typer.Option(help="Refit and re-publish at least this often (default: grid.publish_interval_s)."),
    ] = None,
    check_s: Annotated[
        float, typer.Option(help="Re-read HISTORY.csv and predict this often; a big change publishes.")
    ] = 300.0,
    change_threshold: Annotated[
        float | None,
        typer.Option(help="Significant p50-energy change, fraction (default: grid.change_threshold)."),
    ] = None,
    horizon_h: Annotated[float, typer.Option(help="Hours to forecast from the end of the history.")] = 36.0,
    interval_min: Annotated[int, typer.Option(help="Message interval, a multiple of 15 min.")] = 15,
    vtn_url: Annotated[
        str | None, typer.Option(help="Also report to this OpenADR 2.0b VTN (default: config grid.vtn_url).")
    ] = None,
    mqtt: Annotated[bool, typer.Option(help="Publish over MQTT (--no-mqtt: OpenADR only).")] = True,
    site_mqtt_url: Annotated[
        str | None,
        typer.Option(
            help="The stations' site broker: their demands (chargeagent/{site-id}/demand/+) give the "
            "plugged-in cars' planned energy (default: config site.mqtt_url; none: history only)."
        ),
    ] = None,
) -> None:
    """Keep publishing the site load forecast upstream (MQTT and/or OpenADR) until Ctrl-C (or SIGTERM)."""
    from station.grid import GridEndpoint  # noqa: PLC0415

    grid = _grid_settings(
        {
            "site_id": site_id,
            "mqtt_url": mqtt_url,
            "publish_interval_s": interval_s,
            "change_threshold": change_threshold,
            "vtn_url": vtn_url,
        }
    )
    if not mqtt and grid.vtn_url is None:
        _fail("--no-mqtt needs --vtn-url (or grid.vtn_url): the forecast must go somewhere")
    if interval_min <= 0 or (interval_min * 60) % HISTORY_STEP_S:
        _fail(f"--interval-min must be a positive multiple of 15 (got {interval_min})")
    if not (math.isfinite(check_s) and check_s > 0):
        _fail(f"--check-s must be > 0 (got {check_s})")
    if not (math.isfinite(horizon_h) and 0 < horizon_h <= 168):
        _fail(f"--horizon-h must be in (0, 168] (got {horizon_h})")
    steps = int(horizon_h * 3600) // HISTORY_STEP_S
    if horizon_h * 3600 % (interval_min * 60):
        _fail(f"--horizon-h must be in (0, 168] and a whole number of {interval_min}-min intervals")
    try:
        GridEndpoint.from_settings(grid)
        read_history_csv(history, HISTORY_STEP_S)  # bad input: exit 2 now, not a log line per check
    except ChargeAgentError as exc:
        _fail(str(exc))
    loop = _PublishLoop(
        history, grid, steps, interval_min * 60, check_s, mqtt=mqtt, site=_site_endpoint(site_mqtt_url)
    )
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C / SIGTERM: a clean stop
        asyncio.run(loop.run())
    console.print(f"stopped: {loop.submitted} forecasts made, {loop.published} published")


def _site_endpoint(url: str | None) -> MqttEndpoint | None:
    """The stations' site broker (credentials from [site]), or None: no live known future."""
    from station.cli import _settings  # noqa: PLC0415  (cli imports this module)
    from station.site_link import SiteEndpoint  # noqa: PLC0415

    site = _settings(None).site
    url = url or site.mqtt_url
    if url is None:
        return None
    try:
        return SiteEndpoint.from_url(
            url, username=site.mqtt_username, password_env=site.mqtt_password_env, ca_file=site.mqtt_ca_file
        )
    except ChargeAgentError as exc:
        _fail(str(exc))


def _beside(stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None], name: str) -> None:
    """Run `work` as a task beside the publish loop, cancelled (and awaited) when the loop ends."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)


class _PublishLoop:
    """Re-read the history every `check_s` (new lags, no refit), refit every `publish_interval_s`, submit."""

    def __init__(
        self,
        history: Path,
        grid: GridSettings,
        steps: int,
        interval_s: int,
        check_s: float,
        mqtt: bool = True,
        site: MqttEndpoint | None = None,
    ) -> None:
        self.history, self.grid, self.steps = history, grid, steps
        self.interval_s, self.check_s, self.mqtt = interval_s, check_s, mqtt
        self.submitted = 0
        self._publisher: ForecastPublisher | None = None
        self._site = site
        self._demands: DemandBook | None = None

    async def run(self) -> None:
        from policy.forecast import ForecastConfig, LoadForecaster, forecast_message  # noqa: PLC0415
        from station.grid import ForecastPublisher  # noqa: PLC0415

        task = asyncio.current_task()
        if task is not None:  # Ctrl-C and SIGTERM (systemd stop) end the loop cleanly
            # Installed explicitly for SIGINT too: a process started in the background of a non-interactive
            # shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        clock = LoopClock()
        model: LoadForecaster | None = None
        fitted_at_s = -math.inf
        config = ForecastConfig(max_horizon_steps=max(144, self.steps))
        async with contextlib.AsyncExitStack() as stack:
            if self.mqtt:
                publisher = ForecastPublisher.from_settings(self.grid, clock=clock)
                self._publisher = await stack.enter_async_context(publisher)
            ven = await self._start_ven(stack)
            await self._follow_demands(stack, clock)
            while True:
                try:
                    hist = await asyncio.to_thread(read_history_csv, self.history, HISTORY_STEP_S)
                    if model is None or clock.monotonic() - fitted_at_s >= self.grid.publish_interval_s:
                        model = await asyncio.to_thread(LoadForecaster(config).fit, hist)
                        fitted_at_s = clock.monotonic()
                    plugged = None  # None: the model's own (the fitted sessions; none here)
                    if self._demands is not None:
                        plugged = self._demands.plugged_in(clock.now().timestamp())
                    result = model.predict(
                        hist.end_s, self.steps, history=hist, plugged_in=plugged
                    ).resampled(self.interval_s)
                except ChargeAgentError as exc:  # e.g. the file is being rewritten: keep the last forecast
                    log.warning("forecast_refresh_failed", error=str(exc), retry_in_s=self.check_s)
                else:
                    message = forecast_message(result, self.grid.site_id, generated_at_s=hist.end_s)
                    if self._publisher is not None:
                        self._publisher.submit(message)
                    if ven is not None:
                        ven.update(message, float(hist.load_kw[-1]), clock.monotonic())
                    self.submitted += 1
                await clock.sleep(self.check_s)

    async def _follow_demands(self, stack: contextlib.AsyncExitStack, clock: LoopClock) -> None:
        """The stations' demands as a task beside the loop (stopped with it), when a site broker is set."""
        if self._site is None:
            return
        from station.site_forecast import DemandBook, follow_demands  # noqa: PLC0415

        self._demands = DemandBook()
        follow = follow_demands(self._site, self.grid.site_id, self._demands, clock, asyncio.Event())
        _beside(stack, follow, "site-demands")

    async def _start_ven(self, stack: contextlib.AsyncExitStack) -> SiteVen | None:
        """The OpenADR VEN as a task beside the loop (stopped with it), when a VTN is configured."""
        if self.grid.vtn_url is None:
            return None
        from station.site_ven import SiteVen  # noqa: PLC0415

        ven = SiteVen(self.grid)
        _beside(stack, ven.run(), "openadr-ven")
        return ven

    @property
    def published(self) -> int:
        return 0 if self._publisher is None else self._publisher.published


def register(app: typer.Typer) -> None:
    app.command(name="forecast")(forecast)
    app.command(name="publish-forecast")(publish_forecast)
    app.command(name="backtest-forecast")(backtest_forecast)
    app.command(name="site-load")(site_load)
