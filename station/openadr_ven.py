"""The OpenADR 2.0b VEN (Virtual End Node) on openleadr: register with the grid operator's VTN, report, obey.

openleadr is the maintained Python OpenADR 2.0b implementation (the [grid] extra); we use its client for
the XML, the registration and polling handshakes and the report scheduling rather than write them, and keep
our side in `station/openadr.py` (sans-I/O: what a signal means, what a report carries).

- `GridVen.run()` registers and keeps the client running until cancelled. A VTN that cannot be reached, or
  that refuses the registration, is retried with exponential back-off (`retry_min_s` doubling up to
  `retry_max_s`); openleadr itself keeps polling once registered and re-registers when the VTN asks.
- Reports offered (report specifier ids `<resource>-load` and `<resource>-forecast`): the measured load
  (TELEMETRY_USAGE, reading type Direct Read, W, `measured_w()` sampled at the rate the VTN asks within
  [report_interval_s, 1 h]) and, when `forecast()` is given, the load forecast: TELEMETRY_USAGE with reading
  type Projected (2.0b's reading type for forecast values), one r_id per quantile (`p10`, `p50`, `p90`),
  W, every interval of the forecast. The VTN picks which it wants; `forecast_changed()` sends the forecast at
  once (a significant change) instead of waiting for the next scheduled report.
- Events: `station.openadr.decide` answers optIn/optOut; accepted limits go to `on_limits(event_id,
  profiles)` and a cancelled or completed event to `on_cancel(event_id)`. A VEN without `on_limits` only
  reports (the site's forecast process): it refuses limit events (optOut), since nothing would obey them.
No openleadr exception or log noise leaves this module: its logger is quietened to warnings, and failures
become structlog lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from chargeagent.config import GridSettings
from chargeagent.errors import ConfigError
from station.openadr import (
    QUANTILES,
    OptType,
    Price,
    SignalRules,
    decide,
    external_profiles,
    forecast_points,
)

log = structlog.get_logger(__name__)

EXTERNAL_PROFILE_ID_BASE = 1_000_000  # the grid's profile ids, apart from a CSMS's


@dataclass(frozen=True)
class VenConfig:
    vtn_url: str
    ven_name: str
    resource_id: str  # what the reports are about: the site or station id
    report_interval_s: float = 60.0
    ca_file: Path | None = None  # the VTN's CA (https)
    cert_file: Path | None = None  # the VEN's client certificate: TLS and XML signatures (2.0b security)
    key_file: Path | None = None
    vtn_fingerprint: str | None = None  # the VTN's certificate fingerprint, to check its signatures
    retry_min_s: float = 2.0
    retry_max_s: float = 300.0


class GridVen:
    """One VEN for one site or station (see the module docstring)."""

    def __init__(
        self,
        config: VenConfig,
        rules: SignalRules,
        *,
        measured_w: Callable[[], float],
        forecast: Callable[[], Mapping[str, Any] | None] | None = None,
        on_limits: Callable[[str, dict[str, dict[str, Any]]], None] | None = None,
        on_cancel: Callable[[str], None] | None = None,
        on_prices: Callable[[str, tuple[Price, ...]], None] | None = None,
    ) -> None:
        self.config, self.rules = config, rules
        self._measured_w, self._forecast = measured_w, forecast
        self._on_limits, self._on_cancel, self._on_prices = on_limits, on_cancel, on_prices
        self._client: Any = None
        self._next_profile_id = EXTERNAL_PROFILE_ID_BASE
        self.registered = asyncio.Event()
        self.decisions: list[tuple[str, OptType, str]] = []  # (event id, opt, reason), for the operator
        self.log = log.bind(vtn_url=config.vtn_url, ven_name=config.ven_name)

    async def run(self) -> None:
        """Register (retrying forever with back-off) and serve until cancelled."""
        logging.getLogger("openleadr").setLevel(logging.WARNING)
        delay_s = self.config.retry_min_s
        try:
            while True:
                self._client = self._make_client()
                await self._client.run()
                if self._client.registration_id:
                    self.registered.set()
                    self.log.info("openadr_registered", ven_id=self._client.ven_id)
                    await asyncio.Event().wait()  # openleadr's scheduler runs on this loop until we stop
                await self._stop_client()
                self.log.warning("openadr_registration_failed", retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self.config.retry_max_s)
        finally:
            await self._stop_client()

    def forecast_changed(self) -> None:
        """Send the forecast report now, to every VTN request for it (a significant change)."""
        client = self._client
        if client is None or not self.registered.is_set():
            return
        for request in client.report_requests:
            if request["report_specifier_id"] == self._forecast_specifier and request["r_ids"]:
                asyncio.get_running_loop().create_task(client.update_report(request["report_request_id"]))

    # --- openleadr wiring -------------------------------------------------------------------------
    @property
    def _forecast_specifier(self) -> str:
        return f"{self.config.resource_id}-forecast"

    def _make_client(self) -> Any:
        from openleadr import OpenADRClient  # noqa: PLC0415  # the [grid] extra, only when a VTN is set

        cfg = self.config
        client = OpenADRClient(
            ven_name=cfg.ven_name,
            vtn_url=cfg.vtn_url,
            cert=str(cfg.cert_file) if cfg.cert_file else None,
            key=str(cfg.key_file) if cfg.key_file else None,
            ca_file=str(cfg.ca_file) if cfg.ca_file else None,
            vtn_fingerprint=cfg.vtn_fingerprint,
            show_fingerprint=False,
            disable_signature=cfg.cert_file is None,
        )
        rate = timedelta(seconds=cfg.report_interval_s)
        sampling = _sampling_rate(rate)
        client.add_report(
            callback=self._measured,
            resource_id=cfg.resource_id,
            measurement="power_real",
            report_specifier_id=f"{cfg.resource_id}-load",
            r_id="load",
            unit="W",
            sampling_rate=sampling,
            report_duration=timedelta(hours=1),
        )
        if self._forecast is not None:
            for quantile in QUANTILES:
                client.add_report(
                    callback=self._forecast_callback(quantile),
                    resource_id=cfg.resource_id,
                    measurement="power_real",
                    data_collection_mode="full",
                    report_specifier_id=self._forecast_specifier,
                    r_id=quantile,
                    reading_type="Projected",
                    unit="W",
                    sampling_rate=sampling,
                    report_duration=timedelta(hours=36),
                )
        # openleadr 0.5.36 collects the requested r_ids of every report request in one oadrCreateReport into
        # one list (created once, outside its loop), so a VTN that asks for both reports at once makes it
        # look up the other report's r_ids too: those combinations answer with no values.
        specifiers = {spec for spec, _ in client.report_callbacks}
        r_ids = {r_id for _, r_id in client.report_callbacks}
        for key in ((spec, r_id) for spec in specifiers for r_id in r_ids):
            client.report_callbacks.setdefault(key, _no_values)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        return client

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        self.registered.clear()
        if client is not None:
            try:
                await client.stop()
            except Exception as exc:  # stopping must not hide why we stopped
                self.log.warning("openadr_stop_failed", error=repr(exc))

    def _measured(self) -> float:
        return round(float(self._measured_w()), 1)

    def _forecast_callback(self, quantile: str) -> Callable[..., list[tuple[datetime, float]]]:
        def points(date_from: datetime, date_to: datetime, sampling_interval: timedelta) -> list[Any]:
            message = self._forecast() if self._forecast is not None else None
            return [] if message is None else forecast_points(message, quantile)

        return points

    async def _on_event(self, event: dict[str, Any]) -> OptType:
        decision = decide(event, self.rules)
        self.decisions.append((decision.event_id, decision.opt, decision.reason))
        status = event.get("event_descriptor", {}).get("event_status")
        if status in ("cancelled", "completed"):
            self.log.info("openadr_event_ended", event_id=decision.event_id, status=status)
            if self._on_cancel is not None:
                self._on_cancel(decision.event_id)
            return decision.opt
        if decision.opt == "optOut":
            self.log.warning("openadr_event_refused", event_id=decision.event_id, reason=decision.reason)
            return decision.opt
        for price in decision.prices:
            self.log.info(
                "openadr_price", event_id=decision.event_id, start=str(price.start), value=price.value
            )
        if decision.prices and self._on_prices is not None:  # the station's price plan (policy.price_plan)
            self._on_prices(decision.event_id, decision.prices)
        if decision.limits and self._on_limits is None:  # a reporting-only VEN (publish-forecast)
            self.log.warning(
                "openadr_event_refused", event_id=decision.event_id, reason="this VEN only reports"
            )
            return "optOut"
        if decision.limits and self._on_limits is not None:
            profiles = external_profiles(decision, self._next_profile_id)
            self._next_profile_id += len(profiles)
            lows = [min(lim.max_w for lim in limits) for limits in decision.limits]
            self.log.warning("openadr_limit", event_id=decision.event_id, min_w=min(lows))
            self._on_limits(decision.event_id, profiles)
        return decision.opt


def _no_values(
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    sampling_interval: timedelta | None = None,
) -> list[tuple[datetime, float]]:
    return []


def _sampling_rate(rate: timedelta) -> Any:
    from openleadr import objects  # noqa: PLC0415

    return objects.SamplingRate(min_period=rate, max_period=max(rate, timedelta(hours=1)), on_change=False)


def from_settings(
    grid: GridSettings, resource_id: str, default_max_w: float
) -> tuple[VenConfig, SignalRules]:
    """The VEN's configuration from `[grid]`; `resource_id` names the station or site it reports on."""
    if grid.vtn_url is None:
        raise ConfigError("grid.vtn_url: no VTN configured")
    config = VenConfig(
        vtn_url=grid.vtn_url,
        ven_name=grid.ven_name or resource_id,
        resource_id=resource_id,
        report_interval_s=grid.report_interval_s,
        ca_file=grid.vtn_ca_file,
        cert_file=grid.ven_cert_file,
        key_file=grid.ven_key_file,
        vtn_fingerprint=grid.vtn_fingerprint,
    )
    site_max_w = grid.site_max_kw * 1e3 if grid.site_max_kw is not None else default_max_w
    return config, SignalRules(site_max_w, grid.simple_fractions)
