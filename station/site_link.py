"""The station's side of site load management (`[site]`, docs/site.md): demand out, grants in, over MQTT.

Every `report_interval_s` the station publishes its `Demand` (what its EVSE would draw without the site
limit, the energy still needed, departure, battery health, and the limit it enforces now) on
`chargeagent/{site_id}/demand/{station_id}`, and applies each `Grant` from
`chargeagent/{site_id}/limit/{station_id}` as the ChargingStationExternalConstraints profile `site`:
the grant for its validity, then the failsafe (`station.site_protocol.grant_profile`). The profile enters
the safety envelope as the `grid_limit` candidate (with any OpenADR event: the lower one binds), so the
site limit can only lower the current. The failsafe profile is installed at start, before the broker is
reached: a station that never hears the controller charges at its failsafe, never above it.

Bad grants (not JSON, not the schema, another station's id) are logged (`site_grant_invalid`) and
ignored; the profile in force stays, and falls to the failsafe when its grant ends.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog

from chargeagent.clock import Clock
from chargeagent.config import SiteSettings
from chargeagent.mqtt_connect import MqttEndpoint, stay_connected
from station.protocol.charging_profile import ProfileStore
from station.site_protocol import (
    SITE_PROFILE_KEY,
    Demand,
    Grant,
    SiteMessageError,
    StationGrant,
    demand_topic,
    encode,
    failsafe_profile,
    grant_profile,
    limit_topic,
    parse,
)

log = structlog.get_logger(__name__)
QOS = 1


class SiteEndpoint(MqttEndpoint):
    config_section = "site"


async def stay_on_site_broker(
    endpoint: MqttEndpoint,
    identifier: str,
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    connected: asyncio.Event,
    clock: Clock,
    logger: Any,
) -> None:
    """The site's MQTT connection, for stations and the controller alike: reconnect from 0.5 s to 30 s."""
    await stay_connected(
        lambda: endpoint.client(identifier=identifier, keepalive_s=30),
        session,
        connected=connected,
        clock=clock,
        log=logger,
        event_prefix="site_mqtt",
        reconnect_min_s=0.5,
        reconnect_max_s=30.0,
    )


@dataclass(frozen=True)
class EvseDemand:
    """What the charging session needs now (all zero while idle)."""

    want_w: float = 0.0
    power_w: float = 0.0
    need_wh: float = 0.0
    departure_s: float | None = None  # epoch s
    soh: float | None = None
    plan_w: float | None = None  # what its plan draws once it draws (Demand.plan_w)
    plan_from_s: float | None = None  # epoch s its plan starts drawing (None: now)


class SiteLink:
    def __init__(
        self,
        profiles: ProfileStore,
        settings: SiteSettings,
        station_id: str,
        clock: Clock,
        demand: Callable[[], EvseDemand],
    ) -> None:
        if settings.mqtt_url is None or settings.failsafe_kw is None:
            raise ValueError("SiteLink needs [site] mqtt_url and failsafe_kw")
        self.endpoint = SiteEndpoint.from_url(
            settings.mqtt_url,
            username=settings.mqtt_username,
            password_env=settings.mqtt_password_env,
            ca_file=settings.mqtt_ca_file,
        )
        self.profiles, self.settings, self.station_id, self.clock = profiles, settings, station_id, clock
        self.demand = demand
        self.grant = StationGrant(settings.failsafe_kw * 1000.0)
        self.connected = asyncio.Event()
        self.grants_applied = 0
        self._log = log.bind(station_id=station_id, site_id=settings.site_id, broker=self.endpoint.url)
        self.profiles.install_external(
            SITE_PROFILE_KEY, failsafe_profile(self.grant.failsafe_w, self.clock.now())
        )

    async def run(self) -> None:
        identifier = f"chargeagent-site-{self.station_id}"
        await stay_on_site_broker(
            self.endpoint, identifier, self._session, self.connected, self.clock, self._log
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(limit_topic(self.settings.site_id, self.station_id), qos=QOS)
        self.connected.set()
        self._log.info("site_mqtt_connected")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._report(client))
            async for message in client.messages:
                self.on_grant(
                    bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
                )

    async def _report(self, client: aiomqtt.Client) -> None:
        topic = demand_topic(self.settings.site_id, self.station_id)
        while True:
            await client.publish(topic, encode(self.current_demand()), qos=QOS)
            await self.clock.sleep(self.settings.report_interval_s)

    def current_demand(self) -> Demand:
        """This station's demand now. Never raises: a value the schema would refuse (NaN, an estimate
        above 1.2) is sent as "nothing wanted" / "unknown", which can only lower what the site gives it."""
        d, mono = self.demand(), self.clock.monotonic()
        soh = d.soh if d.soh is not None and math.isfinite(d.soh) and 0.0 < d.soh <= 1.2 else None
        return Demand(
            station_id=self.station_id,
            sent_at=self.clock.now().timestamp(),
            want_w=_watts(d.want_w),
            power_w=_watts(d.power_w),
            need_wh=_watts(d.need_wh),
            departure=_epoch(d.departure_s),
            soh=soh,
            applied_limit_w=self.grant.limit_now_w(mono),
            applied_grant_at=self.grant.applied_grant_at(mono),
            failsafe_w=self.grant.failsafe_w,
            plan_w=None if d.plan_w is None else _watts(d.plan_w),
            plan_from=_epoch(d.plan_from_s),
        )

    def on_grant(self, payload: bytes) -> None:
        """Apply one grant message (sans-I/O apart from the profile store; tests call it directly)."""
        try:
            grant = parse(Grant, payload)
        except SiteMessageError as exc:
            self._log.error(
                "site_grant_invalid", problem=str(exc), reaction="ignored; the limit in force stays"
            )
            return
        if grant.station_id != self.station_id:
            self._log.error(
                "site_grant_invalid", problem=f"station_id {grant.station_id!r}", reaction="ignored"
            )
            return
        now = self.clock.now()
        left = self.grant.receive(grant, now.timestamp(), self.clock.monotonic())
        if left <= 0.0:
            self._log.warning("site_grant_ignored", issued_at=grant.issued_at, reason="older or already over")
            return
        self.profiles.install_external(
            SITE_PROFILE_KEY, grant_profile(grant.limit_w, self.grant.failsafe_w, now, left)
        )
        self.grants_applied += 1
        self._log.debug("site_grant_applied", limit_w=round(grant.limit_w), valid_s=round(left, 1))


def _epoch(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0.0 else None


def _watts(value: float) -> float:
    return value if math.isfinite(value) and value > 0.0 else 0.0
