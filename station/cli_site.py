"""`chargeagent site-controller`: one grid cap shared by a site's stations over MQTT (docs/site.md)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from typing import Annotated

import typer

from chargeagent.clock import LoopClock
from chargeagent.errors import ChargeAgentError


def _fail(message: str) -> None:
    typer.echo(f"chargeagent: {message}", err=True)
    raise typer.Exit(2)


def site_controller(
    cap_kw: Annotated[
        float, typer.Option(help="The site's grid cap, kW (a retained cap message overrides it).")
    ],
    site_id: Annotated[str | None, typer.Option(help="Site id (default: config site.site_id).")] = None,
    mqtt_url: Annotated[str | None, typer.Option(help="Broker (default: config site.mqtt_url).")] = None,
    period_s: Annotated[float, typer.Option(help="Seconds between allocation rounds.")] = 2.0,
    valid_s: Annotated[float, typer.Option(help="How long a grant holds on a station.")] = 10.0,
    failsafe_budget_kw: Annotated[
        float,
        typer.Option(help="Sum of every station's failsafe_kw on the site (reserved until heard from)."),
    ] = 0.0,
    clock_skew_s: Annotated[float, typer.Option(help="How far station clocks may be off (NTP).")] = 1.0,
) -> None:
    """Share the site's grid cap among its stations every round until Ctrl-C (or SIGTERM)."""
    from station.cli import _settings  # noqa: PLC0415  (cli imports this module)
    from station.site_controller import SiteController  # noqa: PLC0415
    from station.site_link import SiteEndpoint  # noqa: PLC0415

    for name, value, low in (("cap-kw", cap_kw, 0.0), ("failsafe-budget-kw", failsafe_budget_kw, 0.0)):
        if not (math.isfinite(value) and value >= low):
            _fail(f"--{name} must be a number >= 0 (got {value})")
    if not (math.isfinite(period_s) and 0.1 <= period_s <= 60.0):
        _fail(f"--period-s must be within 0.1..60 (got {period_s})")
    if not (math.isfinite(valid_s) and valid_s >= 2 * period_s):
        _fail(f"--valid-s must be at least two periods ({2 * period_s} s; got {valid_s})")
    if not (math.isfinite(clock_skew_s) and 0.0 <= clock_skew_s < valid_s):
        _fail(f"--clock-skew-s must be within [0, valid-s) (got {clock_skew_s})")
    if failsafe_budget_kw > cap_kw:
        _fail(f"--failsafe-budget-kw ({failsafe_budget_kw}) exceeds --cap-kw ({cap_kw}): lower the failsafes")
    # The broker comes apart from the settings: [site] insists on a failsafe with mqtt_url, a station's key.
    site = _settings({"site": {"site_id": site_id}} if site_id is not None else None).site
    url = mqtt_url or site.mqtt_url
    if url is None:
        _fail("--mqtt-url (or site.mqtt_url) is required: the stations' broker")
        return
    try:
        endpoint = SiteEndpoint.from_url(
            url,
            username=site.mqtt_username,
            password_env=site.mqtt_password_env,
            ca_file=site.mqtt_ca_file,
        )
    except ChargeAgentError as exc:
        _fail(str(exc))
        return

    async def main() -> None:
        task = asyncio.current_task()
        if task is not None:  # Ctrl-C and SIGTERM end it cleanly (SIGINT too: see cli_grid's publish loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        controller = SiteController(
            endpoint,
            site_id=site.site_id,
            cap_w=cap_kw * 1000.0,
            clock=LoopClock(),
            period_s=period_s,
            valid_s=valid_s,
            failsafe_budget_w=failsafe_budget_kw * 1000.0,
            clock_skew_s=clock_skew_s,
        )
        await controller.run()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
    typer.echo("site controller stopped")


def register(app: typer.Typer) -> None:
    app.command(name="site-controller")(site_controller)
