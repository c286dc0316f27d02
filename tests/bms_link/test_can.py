"""CanBmsLink against a real peer: the simulated BMS node on the same python-can `virtual` channel.

Sessions run on chargeagent's virtual-time loop when it is available (simulated minutes in milliseconds);
the assertions are about protocol time (the loop's clock), never about wall time. Injected faults (silent,
dropped messages, truncated TP, out-of-range, over-temperature, insulation) are in test_can_faults.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import can
import pytest
from structlog.testing import capture_logs

from bms_link import gbt_codec as codec
from bms_link.can import CanBmsLink
from bms_link.gbt import GbtTiming, Phase
from bms_link.models import ChargeCommand, PackTelemetry, StopReason
from chargeagent.clock import LoopClock
from chargeagent.errors import BmsLinkError
from simulators.bms_can import BmsCanNode
from simulators.pack import PackSpec, SimulatedBms

TIMING = GbtTiming(period_scale=4.0)
SPEC = PackSpec(
    chemistry="nmc", capacity_ah=150.0, soh=0.9, series_cells=96, soc=0.5, target_soc=0.52,
    cell_temp_c=25.0, ambient_c=25.0, max_charge_current_a=250.0, vin="LSVAB4BR5GN123456",
)  # fmt: skip


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        from chargeagent.vtime import run_virtual
    except ImportError:
        asyncio.run(main)
    else:
        run_virtual(main)


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


def _command(telemetry: PackTelemetry) -> ChargeCommand:
    current_a = min(telemetry.request.current_a, 200.0)
    return ChargeCommand(output_voltage_v=telemetry.pack_voltage_v, output_current_a=current_a)


def _sniff(bus: can.BusABC) -> list[tuple[str, bytes]]:
    names = {s.frame_id: s.name for s in codec.all_specs()}
    frames = []
    while (message := bus.recv(timeout=0)) is not None:
        frames.append((names.get(message.arbitration_id, hex(message.arbitration_id)), bytes(message.data)))
    return frames


def test_whole_session_ends_on_the_bms_soc_target(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
        bms = SimulatedBms(SPEC)
        node = BmsCanNode(
            bms, interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        link = CanBmsLink(
            interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        socs: list[float] = []
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(node.run(), name="bms")
                info = await link.start_session()
                assert (info.vin, info.rated_capacity_ah, info.battery_type) == (SPEC.vin, 150.0, "nmc")
                assert info.max_charge_current_a == pytest.approx(250.0)
                assert info.soc == pytest.approx(0.5, abs=0.001)
                async for telemetry in link.telemetry():
                    socs.append(telemetry.soc)
                    await link.command(_command(telemetry))
                assert link.end_reason is StopReason.SOC_TARGET_REACHED
                await link.stop_session(StopReason.LOCAL)  # idempotent: waits for the statistics
        finally:
            await link.close()
            await node.close()
        assert link.end_reason is StopReason.SOC_TARGET_REACHED
        assert socs[-1] > socs[0]
        assert bms.soc >= SPEC.target_soc
        assert link.core.phase is Phase.ENDED
        assert link.core.energy_kwh > 0.5
        assert link.rejected_frames == 0
        assert node.rejected_frames == 0

    run(main())


def test_corrupt_frames_are_logged_once_each_and_the_session_goes_on(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
        bms = SimulatedBms(SPEC)
        injector = can.Bus(interface="virtual", channel=channel)
        with capture_logs() as logs:
            node = BmsCanNode(
                bms, interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
            )
            link = CanBmsLink(
                interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=0.01
            )
            injected = False
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(node.run(), name="bms")
                    await link.start_session()
                    async for telemetry in link.telemetry():
                        await link.command(_command(telemetry))
                        if not injected:
                            injected = True
                            for arbitration_id, data, extended in (
                                (0x181056F4, bytes.fromhex("A0 0F F0"), True),  # BCL with DLC 3
                                (0x1CEC56F4, bytes.fromhex("42 00 11 22 33 00 11 00"), True),  # garbage TP.CM
                                (0x123, b"\x01\x02", False),  # 11-bit frame: not GB/T, ignored
                            ):
                                msg = can.Message(
                                    arbitration_id=arbitration_id, data=data, is_extended_id=extended
                                )
                                injector.send(msg)
                    await link.stop_session(StopReason.LOCAL)
            finally:
                await link.close()
                await node.close()
                injector.shutdown()
        rejected = [entry for entry in logs if entry["event"] == "can_frame_rejected"]
        assert [(e["can_id"], e["data"]) for e in rejected] == [
            ("0x181056F4", "a00ff0"),
            ("0x1CEC56F4", "4200112233001100"),
        ]
        assert all(e["reason"] for e in rejected)
        assert link.rejected_frames == 2
        assert link.end_reason is StopReason.SOC_TARGET_REACHED

    run(main())


def test_start_session_fails_with_bms_link_error_when_no_bms_answers(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
        sniffer = can.Bus(interface="virtual", channel=channel)
        link = CanBmsLink(interface="virtual", channel=channel, clock=clock, timing=TIMING)
        try:
            start_s = clock.monotonic()
            with pytest.raises(BmsLinkError, match="bms_timeout"):
                await link.start_session()
            assert clock.monotonic() - start_s == pytest.approx(TIMING.bhm_timeout_s, abs=0.02)
        finally:
            await link.close()
        names = [name for name, _ in _sniff(sniffer)]
        sniffer.shutdown()
        assert names[0] == "CHM"
        assert "CEM" in names

    run(main())


def test_unknown_interface_is_a_bms_link_error(channel: str) -> None:
    with pytest.raises(BmsLinkError, match="cannot open CAN"):
        CanBmsLink(interface="no-such-interface", channel=channel, clock=LoopClock())


class _OwnClock:
    """A Clock that is not a LoopClock: the port must sleep through it rather than use loop timers."""

    def __init__(self) -> None:
        self.sleeps = 0

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> Any:
        return LoopClock().now()

    async def sleep(self, duration_s: float) -> None:
        self.sleeps += 1
        await asyncio.sleep(duration_s)


def test_link_runs_on_any_clock_and_stops_remotely(channel: str) -> None:
    async def main() -> None:
        clock = _OwnClock()
        node = BmsCanNode(
            SimulatedBms(SPEC),
            interface="virtual",
            channel=channel,
            clock=clock,
            timing=TIMING,
            poll_interval_s=None,
        )
        link = CanBmsLink(
            interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        try:
            async with asyncio.TaskGroup() as tg:
                node_task = tg.create_task(node.run(), name="bms")
                start_s = clock.monotonic()
                await link.start_session()
                async for telemetry in link.telemetry():
                    await link.command(_command(telemetry))
                    if clock.monotonic() - start_s > 20.0:
                        await link.stop_session(StopReason.REMOTE)
                await node_task
        finally:
            await link.close()
            await node.close()
        assert clock.sleeps > 0
        assert link.end_reason is StopReason.REMOTE
        assert link.core.phase is Phase.ENDED
        assert node.core.stop_reason is None  # the BMS did not want to stop: we did

    run(main())
