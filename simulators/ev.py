"""Simulated vehicles: a pack + BMS (simulators.pack) speaking GB/T 27930 on a CAN bus (simulators.bms_can).

A `SimulatedEv` is the peer a charger talks to in the demo, in `chargeagent station --bms sim` and in tests:
not a mock, the same frames a real BMS would send, on python-can's `virtual` interface (or any other).
Arrival generators and session replay come with the fleet-simulation issue.
"""

from __future__ import annotations

from collections.abc import Callable

from bms_link.base import BmsLink
from bms_link.can import CanBmsLink
from bms_link.gbt import GbtTiming
from bms_link.mqtt import MqttBmsLink, MqttEndpoint
from chargeagent.clock import Clock
from chargeagent.config import Settings
from simulators.bms_can import BmsCanNode
from simulators.bms_mqtt import BmsMqttNode
from simulators.faults import FaultSchedule
from simulators.pack import PackSpec, SimulatedBms


def pack_spec_from_settings(settings: Settings) -> PackSpec:
    sim = settings.sim
    return PackSpec(
        chemistry=sim.chemistry,
        capacity_ah=sim.capacity_ah,
        soh=sim.soh,
        series_cells=sim.series_cells,
        soc=sim.soc,
        target_soc=sim.target_soc,
        cell_temp_c=sim.cell_temp_c,
        ambient_c=sim.ambient_c,
        max_charge_current_a=sim.max_charge_current_a,
    )


class SimulatedEv:
    """One plugged-in vehicle: runs its BMS node on `channel` until its charging session is over."""

    def __init__(
        self,
        spec: PackSpec,
        *,
        interface: str,
        channel: str,
        clock: Clock,
        timing: GbtTiming,
        poll_interval_s: float | None,
        faults: FaultSchedule | None = None,
    ) -> None:
        self.spec = spec
        self.bms = SimulatedBms(spec)
        self.node = BmsCanNode(
            self.bms,
            interface=interface,
            channel=channel,
            clock=clock,
            timing=timing,
            poll_interval_s=poll_interval_s,
            schedule=faults.check("can") if faults is not None else None,
        )

    async def run(self) -> None:
        try:
            await self.node.run()
        finally:
            await self.node.close()


class SimulatedMqttEv:
    """One plugged-in vehicle whose BMS speaks MQTT (`simulators.bms_mqtt`) instead of CAN."""

    def __init__(
        self,
        spec: PackSpec,
        *,
        endpoint: MqttEndpoint,
        station_id: str,
        clock: Clock,
        faults: FaultSchedule | None = None,
    ) -> None:
        self.spec = spec
        self.bms = SimulatedBms(spec)
        schedule = faults.check("mqtt") if faults is not None else None
        self.node = BmsMqttNode(
            self.bms, endpoint=endpoint, station_id=station_id, clock=clock, schedule=schedule
        )

    async def run(self) -> None:
        await self.node.run()


def can_link_factory(
    settings: Settings, clock: Clock, *, poll_interval_s: float | None = 0.01
) -> Callable[[], BmsLink]:
    """A new charger-side CAN link per session, on the configured interface/channel."""
    bms = settings.bms
    timing = GbtTiming(period_scale=bms.timing_scale)

    def factory() -> BmsLink:
        return CanBmsLink(
            interface=bms.can_interface,
            channel=bms.can_channel,
            bitrate=bms.can_bitrate,
            clock=clock,
            timing=timing,
            poll_interval_s=poll_interval_s,
        )

    return factory


def mqtt_link_factory(settings: Settings, clock: Clock) -> Callable[[], BmsLink]:
    """A new charger-side MQTT link per session, to `bms.mqtt_url` (ConfigError now if the config is bad)."""
    endpoint = MqttEndpoint.from_settings(settings.bms)

    def factory() -> BmsLink:
        return MqttBmsLink(
            endpoint,
            station_id=settings.station.id,
            clock=clock,
            telemetry_timeout_s=settings.bms.mqtt_telemetry_timeout_s,
        )

    return factory
