"""The site forecast's known future from the stations' own plans (`publish-forecast --site-mqtt-url`).

Every station on the site's broker publishes its demand (station/site_protocol.py `Demand`, every
`[site] report_interval_s`): the energy still needed, its departure, and its plan: the power it will draw
once the plan draws (`plan_w`) and from when (`plan_from`: a price plan waiting for cheaper hours; none:
now). `DemandBook` keeps each station's latest demand and turns the ones with energy still needed into
the forecaster's `ChargingIntervals`: from `plan_from` (or now) at `plan_w` (or `want_w`) until the
energy is in or the car leaves. So the forecast reported upstream draws the plugged-in cars where their
stations plan to charge them, not "at full power from now" (a price-aware station waiting until 22:00 is
forecast at 22:00). A station not heard from for `max_age_s` is dropped (unplugged, or gone); garbage
on a demand topic is logged (`site_demand_invalid`) and ignored.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import numpy as np
import structlog

from chargeagent.clock import Clock
from chargeagent.mqtt_connect import MqttEndpoint
from policy.forecast_features import ChargingIntervals
from station.site_link import stay_on_site_broker
from station.site_protocol import Demand, SiteMessageError, demand_topic, parse_demand

log = structlog.get_logger(__name__)
QOS = 1
MIN_POWER_W = 100.0  # below this a "plan" is no plan (a car that wants nothing now and says no more)


class DemandBook:
    """The latest demand of every station on the site (sans-I/O: tests feed it messages directly)."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._latest: dict[str, tuple[float, Demand]] = {}  # station -> (received at, demand)

    def on_message(self, topic: str, payload: bytes, now_s: float) -> None:
        try:
            demand = parse_demand(topic, payload)
        except SiteMessageError as exc:
            log.error(
                "site_demand_invalid",
                station_id=topic.rsplit("/", 1)[-1],
                problem=str(exc),
                reaction="ignored",
            )
            return
        self._latest[demand.station_id] = (now_s, demand)

    def plugged_in(self, now_s: float) -> ChargingIntervals:
        """The energy the stations heard from within `max_age_s` still plan to draw, as intervals."""
        on, off, power = [], [], []
        for station_id, (heard_s, d) in list(self._latest.items()):
            if now_s - heard_s > self.max_age_s:
                del self._latest[station_id]
                continue
            plan_w = d.plan_w if d.plan_w is not None else d.want_w
            if d.need_wh <= 0.0 or plan_w < MIN_POWER_W:
                continue
            start_s = max(now_s, d.plan_from or now_s)
            end_s = start_s + d.need_wh / plan_w * 3600.0
            if d.departure is not None:
                end_s = min(end_s, max(d.departure, start_s))
            on.append(start_s)
            off.append(end_s)
            power.append(plan_w / 1000.0)
        return ChargingIntervals(np.asarray(on, float), np.asarray(off, float), np.asarray(power, float))

    def __len__(self) -> int:
        return len(self._latest)


async def follow_demands(
    endpoint: MqttEndpoint, site_id: str, book: DemandBook, clock: Clock, connected: asyncio.Event
) -> None:
    """Keep `book` fed from `chargeagent/{site_id}/demand/+` until cancelled (reconnects on its own)."""
    logger = log.bind(site_id=site_id, broker=endpoint.url)

    async def session(client: aiomqtt.Client) -> None:
        await client.subscribe(demand_topic(site_id, "+"), qos=QOS)
        connected.set()
        logger.info("site_demands_followed")
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            book.on_message(str(message.topic), bytes(payload), clock.now().timestamp())

    await stay_on_site_broker(endpoint, f"chargeagent-forecast-{site_id}", session, connected, clock, logger)
