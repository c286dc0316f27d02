"""Every fault the simulated GB/T BMS can inject (`simulators/faults.py`), scheduled, against `CanBmsLink`.

Each case: the fault is scheduled 5 s into charging; the test asserts the safe reaction (0 A on the link,
a CCS at 0 A on the wire before the charger's CST/CEM, the stop/error message's content, the end reason,
the structured log line) and the time from injection to the end on the loop's clock. Sessions run on
chargeagent's virtual-time loop: protocol time, deterministic, not a wall-clock assert.

Periods are stretched 4x (`period_scale`), timeouts are not (GB/T 27930-2015 clause 10 / table A.1 values:
BCL 1 s, BCS 5 s), so the bounds below are `timeout - one period <= t <= timeout`: the last message before
the fault went out at most one period earlier.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import can
import pytest
from structlog.testing import capture_logs
from test_can import _command, _sniff  # same directory (pytest prepend import mode)

from bms_link import gbt_codec as codec
from bms_link.can import CanBmsLink
from bms_link.gbt import GbtTiming
from bms_link.models import StopReason
from chargeagent.clock import LoopClock
from chargeagent.errors import ConfigError
from chargeagent.vtime import run_virtual
from simulators.bms_can import BmsCanNode
from simulators.faults import Fault, FaultKind, FaultSchedule
from simulators.pack import PackSpec, SimulatedBms

TIMING = GbtTiming(period_scale=4.0)
SPEC = PackSpec("nmc", 150.0, 0.9, 96, 0.5, 0.52, 25.0, 25.0, 250.0)
AT_S = 5.0  # the fault, seconds into charging
BCL_S, BCS_S, BSM_S = (TIMING.period(name) for name in ("BCL", "BCS", "BSM"))
EPS = 1e-6


@dataclass(frozen=True)
class Case:
    fault: str
    reason: StopReason | None  # None: the session must go on (to the BMS's SoC target)
    within_s: tuple[float, float]  # bounds on (end - injection), loop clock
    log_event: str
    stop_message: codec.Cst | codec.Cem | None


TIMEOUT = StopReason.BMS_TIMEOUT
BCL_LOST, BCS_LOST = codec.Cem(bcl_timeout=1), codec.Cem(bcs_timeout=1)
BMS_STOPPED = codec.Cst(bms_stopped=1)
CASES = {
    # GB/T 27930 timeouts: a missing BCL ends charging after 1 s, a missing BCS after 5 s (CEM flags it).
    "silent": Case("silent", TIMEOUT, (1.0 - BCL_S, 1.0), "gbt_timeout", BCL_LOST),
    "drop_bcl": Case("drop:BCL", TIMEOUT, (1.0 - BCL_S, 1.0), "gbt_timeout", BCL_LOST),
    "drop_bcs": Case("drop:BCS", TIMEOUT, (5.0 - BCS_S, 5.0), "gbt_timeout", BCS_LOST),
    # Every BCS session loses its last TP.DT: each is aborted after T1 (logged), no BCS completes, so it
    # is the BCS timeout again.
    "truncated_tp": Case("truncated_tp", TIMEOUT, (5.0 - BCS_S, 5.0), "j1939_session_aborted", BCS_LOST),
    # A 120 °C cell is within BSM's wire range but not plausible: rejected when the next BCS completes the
    # snapshot (at most one BSM + one BCS period), never passed on, the charger stops with a fault CST.
    "out_of_range": Case(
        "out_of_range", StopReason.IMPLAUSIBLE_DATA, (0.0, BSM_S + BCS_S), "gbt_implausible_data",
        codec.Cst(fault_stop=1, fault_other=1),
    ),
    # BMS-detected faults: BSM flags them and BST carries the reason at the BMS's next tick.
    "overtemperature": Case(
        "overtemperature", StopReason.OVERTEMPERATURE, (0.0, BSM_S), "gbt_session_ended", BMS_STOPPED
    ),
    "insulation": Case(
        "insulation", StopReason.INSULATION_FAULT, (0.0, BSM_S), "gbt_session_ended", BMS_STOPPED
    ),
    # A short BCL is dropped and logged; the next good BCL keeps the session alive.
    "corrupt": Case("corrupt", None, (0.0, 0.0), "can_frame_rejected", None),
}  # fmt: skip


def _charge_with(case: Case) -> tuple[dict[str, Any], list[MutableMapping[str, Any]]]:
    """One session with `case.fault` scheduled: what happened, and the log lines."""
    channel = f"faults-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    async def main() -> None:
        clock = LoopClock()
        sniffer = can.Bus(interface="virtual", channel=channel)
        schedule = FaultSchedule([(AT_S, case.fault)])
        node = BmsCanNode(
            SimulatedBms(SPEC), interface="virtual", channel=channel, clock=clock, timing=TIMING,
            poll_interval_s=None, schedule=schedule,
        )  # fmt: skip
        link = CanBmsLink(interface="virtual", channel=channel, clock=clock, timing=TIMING)
        outputs: list[tuple[float, float]] = []
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(node.run(), name="bms")
                await link.start_session()
                async for telemetry in link.telemetry():
                    await link.command(_command(telemetry))
                    outputs.append((clock.monotonic(), link.output_current_a))
                outcome["ended_at_s"] = clock.monotonic()
        finally:
            await link.close()
            await node.close()
            outcome["frames"] = _sniff(sniffer)
            sniffer.shutdown()
        outcome.update(link=link, node=node, outputs=outputs)

    with capture_logs() as logs:
        run_virtual(main())  # protocol time: simulated seconds in milliseconds
    return outcome, logs


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_scheduled_fault_gets_the_safe_reaction_in_protocol_time(case: Case) -> None:
    outcome, logs = _charge_with(case)
    link: CanBmsLink = outcome["link"]
    node: BmsCanNode = outcome["node"]
    ((injected_at_s, fault),) = node.injected
    assert fault == Fault.parse(case.fault)
    assert node.charging_since_s is not None
    assert injected_at_s == pytest.approx(node.charging_since_s + AT_S, abs=EPS)  # on schedule
    assert any(a > 50.0 for t, a in outcome["outputs"] if t < injected_at_s)  # it was charging
    assert [e for e in logs if e["event"] == case.log_event]
    if case.reason is None:
        assert link.end_reason is StopReason.SOC_TARGET_REACHED
        assert link.rejected_frames == 1
        return
    assert link.end_reason is case.reason
    assert link.output_current_a == 0.0
    lo_s, hi_s = case.within_s
    assert lo_s - EPS <= outcome["ended_at_s"] - injected_at_s <= hi_s + EPS
    names = [name for name, _ in outcome["frames"]]
    first_stop = next(i for i, n in enumerate(names) if n in ("CST", "CEM") and i > 0)
    assert codec.decode(names[first_stop], outcome["frames"][first_stop][1]) == case.stop_message
    last_ccs = max(i for i, name in enumerate(names[:first_stop]) if name == "CCS")
    ccs = codec.decode("CCS", outcome["frames"][last_ccs][1])
    assert isinstance(ccs, codec.Ccs) and ccs.output_current_a == 0.0  # 0 A before the stop message
    ended = [e for e in logs if e["event"] == "gbt_session_ended"]
    assert [e["reason"] for e in ended] == [case.reason.value]


def test_a_truncated_tp_session_is_aborted_after_t1_and_logged() -> None:
    """The receiver's side of the truncation: each BCS session is aborted T1 after its first TP.DT."""
    _, logs = _charge_with(CASES["truncated_tp"])
    logs_seen = [e for e in logs if e["event"] == "j1939_session_aborted"]
    assert logs_seen and all(e["pgn"] == "0x1100" and e["reason"] == "TIMEOUT" for e in logs_seen)
    # BCS every 4 x 250 ms, each session dying after T1 (< the period): about one abort per period
    assert 3 <= len(logs_seen) <= 6


def test_faults_of_the_other_transport_are_refused() -> None:
    node = BmsCanNode(SimulatedBms(SPEC), interface="virtual", channel=f"refuse-{uuid.uuid4().hex[:8]}",
                      clock=LoopClock(), poll_interval_s=None)  # fmt: skip
    try:
        with pytest.raises(ConfigError, match="does not exist on CAN"):
            node.apply(Fault(FaultKind.BROKER_DISCONNECT))
    finally:
        asyncio.run(node.close())
