"""The simulated vehicle BMS: its GB/T state machine (sans-I/O) and its CAN node against CanBmsLink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import can
import pytest

from bms_link import gbt_codec as codec
from bms_link.can import CanBmsLink
from bms_link.gbt import GbtTiming, Send, SessionClosed, bst_stop_reason
from bms_link.models import ChargeCommand, StopReason
from chargeagent.clock import LoopClock
from chargeagent.errors import BmsLinkError, InvalidTransition
from simulators.bms_can import BmsCanNode
from simulators.gbt_bms import BMS_TRANSITIONS, BmsEvent, BmsPhase, GbtBms, bst_for, next_bms_phase
from simulators.pack import PackSpec, SimulatedBms

TIMING = GbtTiming(period_scale=4.0)
SPEC = PackSpec(
    chemistry="lfp", capacity_ah=100.0, soh=0.95, series_cells=108, soc=0.3, target_soc=0.9,
    cell_temp_c=25.0, ambient_c=25.0, max_charge_current_a=200.0, vin=None,
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


def sent(outputs: list[Send | SessionClosed]) -> list[str]:
    return [o.name for o in outputs if isinstance(o, Send)]


# --- sans-I/O BMS side ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "target"), sorted(BMS_TRANSITIONS.items()))
def test_every_bms_table_entry_is_a_transition(key: tuple[BmsPhase, BmsEvent], target: BmsPhase) -> None:
    assert next_bms_phase(*key) is target


def test_bms_event_its_phase_does_not_accept_raises_invalid_transition() -> None:
    with pytest.raises(InvalidTransition):
        next_bms_phase(BmsPhase.IDLE, BmsEvent.CCS)


@pytest.mark.parametrize(
    "reason",
    [
        StopReason.SOC_TARGET_REACHED,
        StopReason.VOLTAGE_TARGET_REACHED,
        StopReason.OVERTEMPERATURE,
        StopReason.INSULATION_FAULT,
        StopReason.BMS_FAULT,
        StopReason.STOPPED_BY_EV,
    ],
)
def test_bst_the_bms_sends_maps_back_to_the_same_stop_reason(reason: StopReason) -> None:
    bst = codec.decode("BST", codec.encode(bst_for(reason)))
    assert isinstance(bst, codec.Bst)
    assert bst_stop_reason(bst) is reason


def _bms_in_charging(pack: SimulatedBms | None = None) -> tuple[GbtBms, float]:
    bms = GbtBms(pack or SimulatedBms(SPEC), GbtTiming())
    assert sent(bms.on_payload(0x2600, codec.encode(codec.Chm()), 0.0)) == ["BHM"]
    assert sent(bms.on_payload(0x0100, codec.encode(codec.Crm(False)), 0.1)) == ["BRM"]
    assert sent(bms.on_payload(0x0100, codec.encode(codec.Crm(True)), 0.2)) == ["BCP"]
    assert sent(bms.on_payload(0x0800, codec.encode(codec.Cml(750.0, 150.0, 250.0)), 0.3)) == ["BRO"]
    (bro,) = [o for o in bms.tick(0.55) if isinstance(o, Send)]
    assert codec.decode("BRO", bro.data) == codec.Bro(True)
    out = bms.on_payload(0x0A00, codec.encode(codec.Cro(True)), 0.6)
    assert sent(out) == ["BCL", "BCS", "BSM"]
    assert bms.phase is BmsPhase.CHARGING
    return bms, 0.6


def test_bms_demands_what_the_pack_requests_once_charging() -> None:
    pack = SimulatedBms(SPEC)
    bms, now = _bms_in_charging(pack)
    (bcl,) = [
        codec.decode("BCL", o.data) for o in bms.tick(now + 0.05) if isinstance(o, Send) and o.name == "BCL"
    ]
    request = pack.request()
    assert bcl == codec.Bcl(round(request.voltage_v, 1), round(request.current_a, 1), request.mode)
    assert bms.charger_current_a == 0.0  # nothing delivered until a CCS says so


def test_bms_without_ccs_for_one_second_sends_bem() -> None:
    bms, now = _bms_in_charging()
    assert "BEM" not in sent(bms.tick(now + 0.99))
    out = bms.tick(now + 1.0)
    bem = next(o for o in out if isinstance(o, Send) and o.name == "BEM")
    assert codec.decode("BEM", bem.data) == codec.Bem(ccs_timeout=1)
    assert bms.phase is BmsPhase.ERROR


def test_bms_feeds_the_charger_current_into_the_pack() -> None:
    pack = SimulatedBms(SPEC)
    bms, now = _bms_in_charging(pack)
    soc_before = pack.soc
    for i in range(1, 200):  # 10 s of CCS at 100 A
        bms.on_payload(0x1200, codec.encode(codec.Ccs(350.0, 100.0, 0, True)), now + i * 0.05)
        bms.tick(now + i * 0.05)
    assert bms.charger_current_a == 100.0
    assert pack.soc > soc_before


# --- the CAN node -----------------------------------------------------------------------------


def test_silent_bms_makes_the_charger_time_out_and_both_sides_finish(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
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
                await link.start_session()
                async for telemetry in link.telemetry():
                    await link.command(
                        ChargeCommand(output_voltage_v=telemetry.pack_voltage_v, output_current_a=50.0)
                    )
                    node.go_silent()
                await node_task
        finally:
            await link.close()
            await node.close()
        assert node.faults.silent
        assert link.end_reason is StopReason.BMS_TIMEOUT
        assert node.core.phase is BmsPhase.ERROR  # it heard the CEM

    run(main())


def test_charger_stop_is_answered_with_bst_then_bsd(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
        sniffer = can.Bus(interface="virtual", channel=channel)
        bms = SimulatedBms(SPEC)
        node = BmsCanNode(
            bms, interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        link = CanBmsLink(
            interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        try:
            async with asyncio.TaskGroup() as tg:
                node_task = tg.create_task(node.run(), name="bms")
                await link.start_session()
                async for telemetry in link.telemetry():
                    await link.command(
                        ChargeCommand(output_voltage_v=telemetry.pack_voltage_v, output_current_a=80.0)
                    )
                    if bms.energy_in_kwh > 0.1:
                        await link.stop_session(StopReason.REMOTE)
                await node_task  # returns after BSD, once the charger's CSD arrived
        finally:
            await link.close()
            await node.close()
        names = {s.frame_id: s.name for s in codec.all_specs()}
        frames = []
        while (message := sniffer.recv(timeout=0)) is not None:
            frames.append((names.get(message.arbitration_id), bytes(message.data)))
        sniffer.shutdown()
        order = [name for name, _ in frames]
        assert order.index("CST") < order.index("BST") < order.index("CSD")
        bst = codec.decode("BST", next(data for name, data in frames if name == "BST"))
        assert bst == codec.Bst(charger_stopped=1)
        assert node.core.phase is BmsPhase.ENDED
        assert node.core.stop_reason is None
        assert link.end_reason is StopReason.REMOTE

    run(main())


def test_dropping_bcl_only_suppresses_bcl(channel: str) -> None:
    async def main() -> None:
        clock = LoopClock()
        sniffer = can.Bus(interface="virtual", channel=channel)
        node = BmsCanNode(
            SimulatedBms(SPEC),
            interface="virtual",
            channel=channel,
            clock=clock,
            timing=TIMING,
            poll_interval_s=None,
        )
        node.drop("bcl")
        link = CanBmsLink(
            interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None
        )
        node_task = asyncio.get_running_loop().create_task(node.run(), name="bms")
        try:
            with pytest.raises(BmsLinkError, match="before charging"):
                await link.start_session()  # BCL is what starts charging: without it, no charging
            await node_task  # the BMS hears the CEM and gives up as well
        finally:
            node_task.cancel()
            await link.close()
            await node.close()
        ids = {message.arbitration_id for message in iter(lambda: sniffer.recv(timeout=0), None)}
        sniffer.shutdown()
        assert codec.spec("BCL").frame_id not in ids
        assert codec.spec("BRO").frame_id in ids
        assert link.end_reason is StopReason.BMS_TIMEOUT

    run(main())


def test_node_run_returns_when_cancelled_and_close_is_idempotent(channel: str) -> None:
    async def main() -> None:
        node = BmsCanNode(
            SimulatedBms(SPEC), interface="virtual", channel=channel, clock=LoopClock(), timing=TIMING
        )
        task = asyncio.get_running_loop().create_task(node.run())
        await asyncio.sleep(0.05)
        assert node.core.phase is BmsPhase.IDLE  # waiting for a charger's CHM
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await node.close()
        await node.close()

    run(main())


def test_node_rejects_an_undecodable_charger_frame_and_keeps_going(channel: str) -> None:
    async def main() -> None:
        node = BmsCanNode(
            SimulatedBms(SPEC), interface="virtual", channel=channel, clock=LoopClock(), timing=TIMING
        )
        injector = can.Bus(interface="virtual", channel=channel)
        task = asyncio.get_running_loop().create_task(node.run())
        injector.send(
            can.Message(arbitration_id=codec.spec("CHM").frame_id, data=b"\x01", is_extended_id=True)
        )
        chm = codec.encode(codec.Chm())
        injector.send(can.Message(arbitration_id=codec.spec("CHM").frame_id, data=chm, is_extended_id=True))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await node.close()
        injector.shutdown()
        assert node.rejected_frames == 1  # the 1-byte CHM
        assert node.core.phase is BmsPhase.HANDSHAKE  # the good CHM after it was answered

    run(main())
