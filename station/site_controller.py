"""The site controller (`chargeagent site-controller`, docs/site.md): shares one grid cap among the stations.

It subscribes to every station's demand (`chargeagent/{site_id}/demand/+`) and to the site's cap topic
(`chargeagent/{site_id}/cap`, retained, e.g. from an EMS or an operator: `{"cap_kw": 80}`), and every
`period_s` runs `SiteAllocator.step` (station/site_protocol.py) and publishes each station's grant
(QoS 1). Bad messages are logged (`site_demand_invalid`, `site_cap_invalid`) and ignored: a station whose
demands are garbage is treated as not heard from, and keeps its reservation. A lost broker is retried
with back-off; meanwhile no grants go out, so the stations fall back to their failsafes as their grants end.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from chargeagent.clock import Clock
from chargeagent.mqtt_connect import MqttEndpoint
from station.site_link import stay_on_site_broker
from station.site_protocol import (
    CapMessage,
    Grant,
    SiteAllocator,
    SiteMessageError,
    cap_topic,
    demand_topic,
    encode,
    limit_topic,
    parse,
    parse_demand,
)

log = structlog.get_logger(__name__)
QOS = 1


class SiteController:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        site_id: str,
        cap_w: float,
        clock: Clock,
        period_s: float = 2.0,
        valid_s: float = 10.0,
        failsafe_budget_w: float = 0.0,
        clock_skew_s: float = 1.0,
    ) -> None:
        self.endpoint, self.site_id, self.clock, self.period_s = endpoint, site_id, clock, period_s
        self.allocator = SiteAllocator(
            cap_w,
            valid_s=valid_s,
            clock_skew_s=clock_skew_s,
            stale_after_s=valid_s,
            failsafe_budget_w=failsafe_budget_w,
        )
        self.connected = asyncio.Event()
        self.rounds = 0
        self._log = log.bind(site_id=site_id, broker=endpoint.url)
        self._warned_failsafe = False

    async def run(self) -> None:
        identifier = f"chargeagent-site-controller-{self.site_id}"
        await stay_on_site_broker(
            self.endpoint, identifier, self._session, self.connected, self.clock, self._log
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(demand_topic(self.site_id, "+"), qos=QOS)
        await client.subscribe(cap_topic(self.site_id), qos=QOS)
        self.connected.set()
        self._log.info("site_controller_connected", cap_kw=round(self.allocator.cap_w / 1000.0, 3))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._rounds(client))
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                self.on_message(str(message.topic), bytes(payload))

    def on_message(self, topic: str, payload: bytes) -> None:
        """One demand or cap message (sans-I/O; tests call it directly)."""
        now_s = self.clock.now().timestamp()
        if topic == cap_topic(self.site_id):
            try:
                cap = parse(CapMessage, payload)
            except SiteMessageError as exc:
                self._log.error("site_cap_invalid", problem=str(exc), reaction="the cap in force stays")
                return
            self._log.warning("site_cap_changed", cap_kw=cap.cap_kw, was_kw=self.allocator.cap_w / 1000.0)
            self.allocator.cap_w = cap.cap_kw * 1000.0
            return
        try:
            demand = parse_demand(topic, payload)
        except SiteMessageError as exc:
            self._log.error(
                "site_demand_invalid",
                station_id=topic.rsplit("/", 1)[-1],
                problem=str(exc),
                reaction="ignored",
            )
            return
        self.allocator.update(demand, now_s)

    async def _rounds(self, client: aiomqtt.Client) -> None:
        while True:
            for grant in self.step():
                await client.publish(limit_topic(self.site_id, grant.station_id), encode(grant), qos=QOS)
            await self.clock.sleep(self.period_s)

    def step(self) -> list[Grant]:
        grants = self.allocator.step(self.clock.now().timestamp())
        self.rounds += 1
        failsafe = self.allocator.failsafe_w()
        if failsafe > self.allocator.cap_w and not self._warned_failsafe:
            self._warned_failsafe = True
            self._log.warning(
                "site_failsafe_over_cap",
                failsafe_kw=round(failsafe / 1000.0, 3),
                cap_kw=round(self.allocator.cap_w / 1000.0, 3),
                meaning="if the controller is lost the stations' failsafes together exceed the cap",
            )
        if grants:
            self._log.debug(
                "site_round",
                stations=len(grants),
                granted_kw=round(sum(g.limit_w for g in grants) / 1000.0, 3),
                cap_kw=round(self.allocator.cap_w / 1000.0, 3),
            )
        return grants
