"""Benchmark of the CAN BMS link, layer by layer, against a raw python-can baseline measured in the same run.

Run: `.venv/bin/python bench/bench_bms_link.py` (about 15 s; `--help` for options). Rows:
1. raw python-can `virtual` bus: send + recv of pre-built 8-byte frames between two buses (the baseline);
2. `bms_link.gbt_codec` encode + decode of BCL/CCS/BSM, with distinct values (the codec's LRU caches miss)
   and with repeated values (memoised, what periodic traffic mostly hits);
3. the sans-I/O cores wired directly (`GbtCharger` <-> `GbtBms` over two `J1939Transport`s), no bus and
   no asyncio, driven from deadline to deadline through a charging session;
4. the full path: `CanBmsLink` <-> `BmsCanNode` (+ `SimulatedBms`) on a `virtual` bus, on the
   virtual-time loop (`chargeagent.vtime.run_virtual`), with a minimal agent that commands what the
   BMS requests.
5. decode + validate, the charger's receive path without its state machine: every message the BMS sent in
   row 3's session (BRM/BCP once, then BCL every 50 ms, BCS and BSM every 250 ms; TP-reassembled),
   decoded by `bms_link.gbt_codec` and validated into the pydantic models the charger builds
   (`ChargeRequest` per BCL, `PackTelemetry` per BCS, `PackInfo` at BCP); 5a is the baseline for this
   table: raw cantools `Database.decode_message` of the same payloads, no scaling, no validation. 5c
   decodes and validates payloads whose values never repeat (the codec's LRU caches always miss).
Rows 3 and 4 play the same session (same pack, timing and simulated charging time), so their frame
counts match and their simulated-seconds-per-wall-second compare directly. Every row is the best of
`--repeats` runs; the ratio column is each row's rate divided by the baseline's: this machine is
noisy, so compare ratios, not absolute numbers. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import can
import cantools

from bms_link import gbt_codec as codec
from bms_link import gbt_frames
from bms_link.can import BMS_ADDRESS, CHARGER_ADDRESS, CanBmsLink
from bms_link.gbt import ChargingStarted, GbtCharger, GbtTiming, Output, Phase, Send
from bms_link.j1939 import CanFrame, J1939Transport, TpResult
from bms_link.models import ChargeCommand, ChargeMode, ChargeRequest, PackTelemetry, StopReason
from chargeagent.clock import LoopClock
from chargeagent.logs import configure_logging
from chargeagent.vtime import run_virtual
from simulators.bms_can import BmsCanNode
from simulators.gbt_bms import BmsPhase, GbtBms
from simulators.pack import PackSpec, SimulatedBms

# A 2C-capable LFP pack that is still far from its SoC target after the simulated window, so the BMS
# keeps demanding current for the whole session and our side ends it (CST) at the same point in both
# session rows.
SPEC = PackSpec(
    chemistry="lfp", capacity_ah=100.0, soh=0.95, series_cells=108, soc=0.3, target_soc=0.95,
    cell_temp_c=25.0, ambient_c=25.0, max_charge_current_a=200.0, vin="LSVAB4BR5GN123456",
)  # fmt: skip
TIMING = GbtTiming()  # the standard's periods: BCL/CCS every 50 ms, BCS/BSM every 250 ms
CTS_TIME = datetime(2026, 1, 1, tzinfo=UTC)  # CTS content only; the cores never read a clock
CODEC_VALUES = 4096  # distinct messages per type: more than the codec's 1024-entry LRU caches hold
SESSION_CAP_S = 3600.0  # a session that runs this long (simulated) is a bug, not a result


@dataclass(frozen=True, slots=True)
class Result:
    """One measured row: `count` items of `unit` in `wall_s` seconds, plus a free-text detail."""

    row: str  # the row's number in the module docstring and bench/README.md
    name: str
    count: int
    wall_s: float
    unit: str
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.wall_s


def best_of(repeats: int, measure: Callable[[], Result]) -> Result:
    """The fastest of `repeats` runs: noise only ever slows a run down."""
    return max((measure() for _ in range(repeats)), key=lambda r: r.rate)


# --- 1. baseline -----------------------------------------------------------------------------


def raw_bus(n_frames: int) -> Result:
    channel = f"bench-raw-{uuid.uuid4().hex[:8]}"
    tx = can.Bus(interface="virtual", channel=channel)
    rx = can.Bus(interface="virtual", channel=channel)
    ids = [codec.spec(name).frame_id for name in ("BCL", "CCS", "BSM")]
    frames = [
        can.Message(
            arbitration_id=ids[i % 3],
            data=bytes((i, 0x0F, 0xF0, 0x0A, 0x02, 0xFF, 0xFF, 0xFF)),
            is_extended_id=True,
        )
        for i in range(64)
    ]
    try:
        start = time.perf_counter()
        for i in range(n_frames):
            tx.send(frames[i % 64])
            if rx.recv(timeout=0) is None:
                raise RuntimeError("virtual bus lost a frame")
        wall_s = time.perf_counter() - start
    finally:
        tx.shutdown()
        rx.shutdown()
    return Result("1", "raw python-can virtual bus, send+recv", n_frames, wall_s, "frames/s")


# --- 2. codec --------------------------------------------------------------------------------


def codec_messages(distinct: int) -> list[codec.GbtMessage]:
    """BCL, CCS, BSM interleaved; `distinct` different values of each (all inside the DBC ranges)."""
    out: list[codec.GbtMessage] = []
    for i in range(distinct):
        out.append(codec.Bcl(300.0 + 0.1 * i, 10.0 + 0.1 * (i % 1900), ChargeMode.CC))
        out.append(codec.Ccs(300.0 + 0.1 * i, 0.1 * (i % 2500), i % 600, True))
        out.append(codec.Bsm(float(i % 100), float((i // 100) % 50), max_temp_probe=1 + i % 100))
    return out


def codec_round_trips(messages: Sequence[codec.GbtMessage], row: str, name: str, detail: str) -> Result:
    start = time.perf_counter()
    for msg in messages:
        codec.decode(msg.NAME, codec.encode(msg))
    wall_s = time.perf_counter() - start
    us = wall_s / len(messages) * 1e6
    return Result(row, name, len(messages), wall_s, "msgs/s", f"{us:.2f} µs/msg (encode+decode) {detail}")


def codec_cold() -> Result:
    messages = codec_messages(CODEC_VALUES)
    return codec_round_trips(messages, "2a", "codec: encode+decode, distinct values", "(LRU misses)")


def codec_memoised() -> Result:
    messages = codec_messages(1) * CODEC_VALUES
    return codec_round_trips(messages, "2b", "codec: encode+decode, repeated values", "(memoised)")


# --- 3. sans-I/O cores -----------------------------------------------------------------------


class CoreSession:
    """`GbtCharger` and `GbtBms`, each behind its own `J1939Transport`, frames handed over directly.
    `received` keeps every (reassembled) message the charger got, for the decode rows."""

    def __init__(self, sim_s: float) -> None:
        self.received: list[tuple[int, bytes]] = []
        self.sim_s = sim_s
        self.charger = GbtCharger(TIMING, wall_time=lambda: CTS_TIME)
        self.bms = GbtBms(SimulatedBms(SPEC), TIMING)
        self.tp_charger = J1939Transport(CHARGER_ADDRESS)
        self.tp_bms = J1939Transport(BMS_ADDRESS)
        self.specs = {s.name: (s.pgn, s.priority) for s in codec.all_specs()}
        self.wire: deque[tuple[J1939Transport, CanFrame]] = deque()  # (receiver, frame)
        self.frames = 0
        self.charging_since_s: float | None = None

    def _put(self, receiver: J1939Transport, result: TpResult) -> None:
        if result.errors:
            raise RuntimeError(f"J1939 error in the bench session: {result.errors}")
        self.wire.extend((receiver, frame) for frame in result.frames)

    def _send(self, out: Send, sender: J1939Transport, now_s: float) -> None:
        pgn, priority = self.specs[out.name]
        to_bms = sender is self.tp_charger
        dest, receiver = (BMS_ADDRESS, self.tp_bms) if to_bms else (CHARGER_ADDRESS, self.tp_charger)
        self._put(receiver, sender.send(pgn, out.data, dest=dest, priority=priority, now_s=now_s))

    def _from_charger(self, outputs: Sequence[Output], now_s: float) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send(out, self.tp_charger, now_s)
            elif isinstance(out, PackTelemetry):  # the "agent": deliver what the BMS asks for
                request_a = out.request.current_a
                self.charger.set_output(
                    ChargeCommand(output_voltage_v=out.pack_voltage_v, output_current_a=request_a)
                )
            elif isinstance(out, ChargingStarted):
                self.charging_since_s = now_s

    def _from_bms(self, outputs: Sequence[object], now_s: float) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send(out, self.tp_bms, now_s)

    def _deliver(self, now_s: float) -> None:
        while self.wire:
            receiver, frame = self.wire.popleft()
            self.frames += 1
            result = receiver.on_frame(frame.can_id, frame.data, now_s)
            to_charger = receiver is self.tp_charger
            self._put(self.tp_bms if to_charger else self.tp_charger, result)
            for m in result.messages:
                if to_charger:
                    self.received.append((m.pgn, bytes(m.data)))
                    self._from_charger(self.charger.on_payload(m.pgn, m.data, now_s), now_s)
                else:
                    self._from_bms(self.bms.on_payload(m.pgn, m.data, now_s), now_s)

    def run(self) -> float:
        """Play the session from plug-in to both sides ENDED; returns the simulated seconds."""
        charger, bms, now = self.charger, self.bms, 0.0
        self._from_charger(charger.start(now), now)
        self._deliver(now)
        stopped = False
        while not (bms.done and charger.phase in (Phase.ENDED, Phase.ERROR)):
            deadlines = [
                charger.next_deadline_s(),
                bms.next_deadline_s(),
                self.tp_charger.next_deadline_s(),
                self.tp_bms.next_deadline_s(),
            ]
            now = max(now, min(d for d in deadlines if d is not None))
            if now > SESSION_CAP_S:
                raise RuntimeError(f"session still {charger.phase.value}/{bms.phase.value} after {now:.0f} s")
            since_s = self.charging_since_s
            if not stopped and since_s is not None and now - since_s >= self.sim_s:
                stopped = True
                self._from_charger(charger.stop(StopReason.LOCAL, now), now)
            for tp, peer in ((self.tp_charger, self.tp_bms), (self.tp_bms, self.tp_charger)):
                if _due(tp.next_deadline_s(), now):
                    self._put(peer, tp.tick(now))
            if _due(charger.next_deadline_s(), now):
                self._from_charger(charger.tick(now), now)
            if _due(bms.next_deadline_s(), now) or bms.phase is BmsPhase.CHARGING:
                self._from_bms(bms.tick(now), now)
            self._deliver(now)
        if charger.end_reason is not StopReason.LOCAL:
            raise RuntimeError(f"session ended early: {charger.end_reason}")
        return now


def _due(deadline_s: float | None, now_s: float) -> bool:
    return deadline_s is not None and now_s >= deadline_s - 1e-6


def sans_io_session(sim_s: float) -> Result:
    session = CoreSession(sim_s)
    start = time.perf_counter()
    simulated_s = session.run()
    wall_s = time.perf_counter() - start
    detail = f"{simulated_s / wall_s:,.0f} sim-s/s; {session.frames:,} frames in {simulated_s:.0f} sim-s"
    return Result("3", "sans-I/O cores wired directly", session.frames, wall_s, "frames/s", detail)


# --- 4. full asyncio path --------------------------------------------------------------------


async def _asyncio_session(sim_s: float, channel: str) -> tuple[int, float]:
    clock = LoopClock()
    node = BmsCanNode(
        SimulatedBms(SPEC),
        interface="virtual",
        channel=channel,
        clock=clock,
        timing=TIMING,
        poll_interval_s=None,
    )
    link = CanBmsLink(interface="virtual", channel=channel, clock=clock, timing=TIMING, poll_interval_s=None)
    try:
        async with asyncio.TaskGroup() as tg:
            node_task = tg.create_task(node.run(), name="bench-bms-node")
            await link.start_session()
            charging_since_s, stopped = clock.monotonic(), False
            async for t in link.telemetry():
                await link.command(
                    ChargeCommand(output_voltage_v=t.pack_voltage_v, output_current_a=t.request.current_a)
                )
                if not stopped and clock.monotonic() - charging_since_s >= sim_s:
                    stopped = True
                    await link.stop_session(StopReason.LOCAL)
            await node_task  # returns once the BMS saw the CSD
    finally:
        await link.close()
        await node.close()
    if link.end_reason is not StopReason.LOCAL:
        raise RuntimeError(f"session ended early: {link.end_reason}")
    return link.port.frames_sent + node.port.frames_sent, clock.monotonic()


def asyncio_session(sim_s: float) -> Result:
    channel = f"bench-link-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    frames, simulated_s = run_virtual(_asyncio_session(sim_s, channel))
    wall_s = time.perf_counter() - start
    detail = f"{simulated_s / wall_s:,.0f} sim-s/s; {frames:,} frames in {simulated_s:.0f} sim-s"
    return Result("4", "CanBmsLink <-> BmsCanNode, virtual bus+loop", frames, wall_s, "frames/s", detail)


# --- 5. decode + validate ----------------------------------------------------------------------


def session_traffic(sim_s: float) -> list[tuple[int, bytes]]:
    """What the BMS sent the charger in row 3's session, in order."""
    session = CoreSession(sim_s)
    session.run()
    return session.received


def distinct_traffic(n: int) -> list[tuple[int, bytes]]:
    """BCL, BSM, BCS triples whose values never repeat (inside the DBC ranges and the models' limits)."""
    out = []
    for i in range(n):
        bcl = codec.Bcl(300.0 + 0.01 * i, 10.0 + 0.01 * (i % 19000), ChargeMode.CC)
        bsm = codec.Bsm(20.0 + (i % 40), 15.0 + (i % 5), max_temp_probe=1 + i % 100)
        bcs = codec.Bcs(330.0 + 0.01 * (i % 4000), 0.01 * (i % 19000), 3.4, 0.2 + 0.01 * (i % 50), 1, i % 600)
        out.extend((codec.spec(m.NAME).pgn, codec.encode(m)) for m in (bcl, bsm, bcs))
    return out


def raw_cantools(traffic: Sequence[tuple[int, bytes]], row: str, name: str) -> Result:
    db = cantools.database.load_file(str(codec.dbc_path()), database_format="dbc", strict=True)
    ids = {pgn: codec.spec(codec.message_name(pgn) or "").frame_id for pgn, _ in traffic}
    frames = [(ids[pgn], data) for pgn, data in traffic]
    start = time.perf_counter()
    for frame_id, data in frames:
        db.decode_message(frame_id, data)
    wall_s = time.perf_counter() - start
    return Result(row, name, len(frames), wall_s, "msgs/s", f"{wall_s / len(frames) * 1e6:.2f} µs/msg")


def decode_validate(traffic: Sequence[tuple[int, bytes]], row: str, name: str) -> Result:
    """Decode each payload and build the models the charger builds from it (bms_link/gbt.py)."""
    codec._decode_cached.cache_clear()  # each run starts cold, like a fresh agent
    brm = bcp = pack = bsm = request = None
    telemetry = 0
    start = time.perf_counter()
    for pgn, data in traffic:
        msg = codec.decode_pgn(pgn, data)
        if isinstance(msg, codec.Bcl):
            request = ChargeRequest(voltage_v=msg.voltage_v, current_a=msg.current_a, mode=msg.mode)
        elif isinstance(msg, codec.Bsm):
            bsm = msg
        elif isinstance(msg, codec.Bcs):
            if gbt_frames.pack_telemetry(0.0, msg, bsm, request, pack, charging_permitted=True) is not None:
                telemetry += 1
        elif isinstance(msg, codec.Brm):
            brm = msg
        elif isinstance(msg, codec.Bcp) and brm is not None:
            bcp = msg
            pack = gbt_frames.pack_info(brm, bcp)
    wall_s = time.perf_counter() - start
    if not telemetry:
        raise RuntimeError("no PackTelemetry was built: the traffic does not exercise validation")
    us = wall_s / len(traffic) * 1e6
    return Result(row, name, len(traffic), wall_s, "msgs/s", f"{us:.2f} µs/msg; {telemetry:,} PackTelemetry")


def decode_rows(repeats: int, sim_s: float) -> list[Result]:
    traffic = session_traffic(sim_s)
    identity = {codec.spec("BRM").pgn, codec.spec("BCP").pgn}
    fresh = [(p, d) for p, d in traffic if p in identity][:2] + distinct_traffic(len(traffic) // 3)
    return [
        best_of(repeats, lambda: raw_cantools(traffic, "5a", "raw cantools decode_message (baseline)")),
        best_of(repeats, lambda: decode_validate(traffic, "5b", "decode + validate, session traffic")),
        best_of(repeats, lambda: decode_validate(fresh, "5c", "decode + validate, values never repeat")),
    ]


# --- report ----------------------------------------------------------------------------------


def print_table(rows: Sequence[Result]) -> None:
    baseline = rows[0].rate
    header = ("#", "path", "rate", "unit", "x baseline", "detail")
    lines = [(r.row, r.name, f"{r.rate:,.0f}", r.unit, f"{r.rate / baseline:.3f}", r.detail) for r in rows]
    widths = [max(len(row[c]) for row in (header, *lines)) for c in range(len(header))]
    right = {0, 2, 4}
    for row in (header, tuple("-" * w for w in widths), *lines):
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the fastest is kept")
    parser.add_argument("--raw-frames", type=int, default=50_000, help="frames in the baseline row")
    parser.add_argument("--sim-s", type=float, default=300.0, help="simulated charging seconds (rows 3-4)")
    args = parser.parse_args()
    configure_logging(level="warning")  # the project's logging, quiet: info lines would be I/O noise
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"python-can {can.__version__}, cantools {cantools.__version__}, {platform.machine()}"
    )
    print(f"repeats {args.repeats} (best kept); rows 3-4: {args.sim_s:g} s of charging at GB/T periods\n")
    codec.all_specs()  # load the DBC outside the timed regions
    rows = [
        best_of(args.repeats, lambda: raw_bus(args.raw_frames)),
        best_of(args.repeats, codec_cold),
        best_of(args.repeats, codec_memoised),
        best_of(args.repeats, lambda: sans_io_session(args.sim_s)),
        best_of(args.repeats, lambda: asyncio_session(args.sim_s)),
    ]
    print_table(rows)
    print("\ndecode + validate (one core; issue target >= 50,000 msgs/s):\n")
    print_table(decode_rows(args.repeats, args.sim_s))


if __name__ == "__main__":
    main()
