"""SAE J1939-21 transport protocol (TP.CM / TP.DT: RTS/CTS sessions and BAM), sans-I/O, both directions.

`J1939Transport(address)` is fed received frames with `on_frame(can_id, data, now_s)` and the passage of
time with `tick(now_s)`; every call returns a `TpResult`: frames to put on the bus, complete messages
(PGN, source, payload) and errors (`TpError`, with the J1939-21 abort reason). `send(...)` turns one
message into frames: a single frame up to 8 bytes, otherwise an RTS/CTS session to a specific address or
a BAM to the global address. `next_deadline_s()` says when `tick` must run next. No I/O, no clock.

One session per direction per peer (J1939-21 5.10.3): a message for a peer we are already sending to waits
in a queue (latest payload per PGN wins -- GB/T messages are periodic, the newest value is what matters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

PGN_TP_CM = 0xEC00
PGN_TP_DT = 0xEB00
GLOBAL_ADDRESS = 0xFF
TP_PRIORITY = 7  # J1939-21 default priority for TP.CM / TP.DT
CM_RTS, CM_CTS, CM_EOMA, CM_BAM, CM_ABORT = 0x10, 0x11, 0x13, 0x20, 0xFF  # J1939-21 5.10.3
MAX_TP_SIZE = 1785  # 255 packets x 7 bytes
_FILL = 0xFF
_EPS_S = 1e-6  # timers fire up to the loop's clock resolution early; count them as due


class AbortReason(IntEnum):
    """Connection abort reasons, J1939-21 table 7 (5.10.3.5)."""

    BUSY = 1  # already in a session and cannot support another
    RESOURCES = 2  # resources needed elsewhere, session terminated
    TIMEOUT = 3
    CTS_WHILE_SENDING = 4
    RETRANSMIT_LIMIT = 5
    UNEXPECTED_DT = 6
    BAD_SEQUENCE = 7
    DUPLICATE_SEQUENCE = 8
    OTHER = 250  # 'any other error', used for a malformed TP.CM (e.g. size vs packet count)


@dataclass(frozen=True, slots=True)
class TpTiming:
    """J1939-21 5.10.2.4 timeouts (seconds)."""

    tr_s: float = 0.200  # Tr: response time (we always answer immediately; kept for completeness)
    th_s: float = 0.500  # Th: hold time between CTS(0) 'wait' messages
    t1_s: float = 0.750  # T1: receiver, gap between DT packets
    t2_s: float = 1.250  # T2: receiver, after sending CTS, waiting for the first DT
    t3_s: float = 1.250  # T3: originator, after RTS / last DT, waiting for CTS or EndOfMsgAck
    t4_s: float = 1.050  # T4: originator, after CTS(0) 'hold', waiting for the next CTS
    bam_gap_s: float = 0.050  # J1939-21: BAM data packets 50..200 ms apart


@dataclass(frozen=True, slots=True)
class CanFrame:
    can_id: int  # 29-bit identifier
    data: bytes


@dataclass(frozen=True, slots=True)
class J1939Message:
    pgn: int
    source: int
    dest: int
    priority: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TpError:
    """A transport session failed; `abort_sent` says whether we put a TP.CM Abort on the bus."""

    pgn: int
    peer: int
    reason: AbortReason
    detail: str
    abort_sent: bool = False


class TpResult(NamedTuple):
    frames: Sequence[CanFrame] = ()
    messages: Sequence[J1939Message] = ()
    errors: Sequence[TpError] = ()


EMPTY = TpResult()


def make_id(priority: int, pgn: int, dest: int, source: int) -> int:
    """29-bit ID: priority<<26 | PGN (PDU1: PS = destination) | source (J1939-21 5.2)."""
    pf = (pgn >> 8) & 0xFF
    ps = dest if pf < 0xF0 else pgn & 0xFF
    return (priority & 7) << 26 | (pgn & 0x30000) | pf << 16 | ps << 8 | (source & 0xFF)


def parse_id(can_id: int) -> tuple[int, int, int, int]:
    """(priority, pgn, dest, source) from a 29-bit ID; PDU2 frames are addressed to everyone."""
    pf = (can_id >> 16) & 0xFF
    ps = (can_id >> 8) & 0xFF
    if pf < 0xF0:
        return (can_id >> 26) & 7, (can_id >> 8) & 0x3FF00, ps, can_id & 0xFF
    return (can_id >> 26) & 7, (can_id >> 8) & 0x3FFFF, GLOBAL_ADDRESS, can_id & 0xFF


def _pgn_bytes(pgn: int) -> bytes:
    return pgn.to_bytes(3, "little")


def _packets(size: int) -> int:
    return (size + 6) // 7


@dataclass(slots=True)
class _Rx:
    """Inbound session (RTS/CTS when `bam` is False)."""

    pgn: int
    priority: int
    size: int
    packets: int
    max_per_cts: int
    bam: bool
    buffer: bytearray
    next_seq: int = 1
    window_end: int = 0  # last packet number allowed by our latest CTS
    deadline_s: float = 0.0


@dataclass(slots=True)
class _Tx:
    """Outbound session (RTS/CTS, or BAM when `dest` is global)."""

    pgn: int
    priority: int
    dest: int
    data: bytes
    packets: int
    deadline_s: float
    next_seq: int = 1  # BAM: next packet to send


class J1939Transport:
    """Transport protocol endpoint for one source address (e.g. charger 0x56, BMS 0xF4)."""

    def __init__(self, address: int, timing: TpTiming | None = None, max_packets_per_cts: int = 255):
        self.address = address
        self.timing = timing or TpTiming()
        self.max_packets_per_cts = max(1, min(255, max_packets_per_cts))
        self._rx: dict[int, _Rx] = {}  # RTS/CTS sessions by originator
        self._bam_rx: dict[int, _Rx] = {}  # BAM sessions by originator
        self._tx: dict[int, _Tx] = {}  # by destination (GLOBAL_ADDRESS for BAM)
        self._queued: dict[int, dict[int, tuple[int, bytes]]] = {}  # dest -> pgn -> (prio, data)

    # --- sending -----------------------------------------------------------------------------

    def send(self, pgn: int, data: bytes, *, dest: int, priority: int, now_s: float) -> TpResult:
        """Frames for one message; a multi-packet message to a busy peer waits for its turn."""
        if len(data) <= 8:
            return TpResult(frames=(CanFrame(make_id(priority, pgn, dest, self.address), data),))
        if len(data) > MAX_TP_SIZE:
            raise ValueError(f"{len(data)} bytes exceed the J1939 TP maximum of {MAX_TP_SIZE}")
        if dest in self._tx:
            self._queued.setdefault(dest, {})[pgn] = (priority, bytes(data))
            return EMPTY
        return TpResult(frames=self._open_tx(pgn, bytes(data), dest, priority, now_s))

    def _open_tx(self, pgn: int, data: bytes, dest: int, priority: int, now_s: float) -> list[CanFrame]:
        size, packets = len(data), _packets(len(data))
        head = size.to_bytes(2, "little") + bytes((packets,))
        if dest == GLOBAL_ADDRESS:
            self._tx[dest] = _Tx(pgn, priority, dest, data, packets, now_s + self.timing.bam_gap_s)
            cm = bytes((CM_BAM,)) + head + bytes((_FILL,)) + _pgn_bytes(pgn)
        else:
            self._tx[dest] = _Tx(pgn, priority, dest, data, packets, now_s + self.timing.t3_s)
            cm = bytes((CM_RTS,)) + head + bytes((_FILL,)) + _pgn_bytes(pgn)
        return [self._frame(PGN_TP_CM, dest, cm)]

    def _frame(self, pgn: int, dest: int, data: bytes) -> CanFrame:
        return CanFrame(make_id(TP_PRIORITY, pgn, dest, self.address), data)

    def _dt(self, tx: _Tx, seq: int) -> CanFrame:
        chunk = tx.data[(seq - 1) * 7 : seq * 7]
        return self._frame(PGN_TP_DT, tx.dest, bytes((seq,)) + chunk.ljust(7, b"\xff"))

    def _abort(self, pgn: int, dest: int, reason: AbortReason) -> CanFrame:
        data = bytes((CM_ABORT, int(reason), _FILL, _FILL, _FILL)) + _pgn_bytes(pgn)
        return self._frame(PGN_TP_CM, dest, data)

    def _close_tx(self, dest: int, now_s: float) -> list[CanFrame]:
        """End the session to `dest` and start the next queued message, if any."""
        self._tx.pop(dest, None)
        queue = self._queued.get(dest)
        if not queue:
            return []
        pgn = next(iter(queue))
        priority, data = queue.pop(pgn)
        return self._open_tx(pgn, data, dest, priority, now_s)

    # --- receiving ---------------------------------------------------------------------------

    def on_frame(self, can_id: int, data: bytes, now_s: float) -> TpResult:
        """Feed one received frame (29-bit ID). Frames for other nodes are ignored."""
        priority, pgn, dest, source = parse_id(can_id)
        if source == self.address or dest not in (self.address, GLOBAL_ADDRESS):
            return EMPTY
        if pgn == PGN_TP_CM:
            return self._on_cm(source, dest, data, now_s)
        if pgn == PGN_TP_DT:
            return self._on_dt(source, dest, data, now_s)
        return TpResult(messages=(J1939Message(pgn, source, dest, priority, bytes(data)),))

    def _on_cm(self, source: int, dest: int, data: bytes, now_s: float) -> TpResult:
        if len(data) != 8:
            return self._bad(0, source, f"TP.CM with {len(data)} bytes")
        control, pgn = data[0], int.from_bytes(data[5:8], "little")
        if control in (CM_RTS, CM_BAM):
            return self._on_announce(control, source, dest, data, pgn, now_s)
        if control in (CM_CTS, CM_EOMA) and dest != self.address:
            return self._bad(pgn, source, f"TP.CM 0x{control:02X} must be addressed")
        if control == CM_CTS:
            return self._on_cts(source, data, pgn, now_s)
        if control == CM_EOMA:
            tx = self._tx.get(source)
            if tx is None or tx.pgn != pgn or tx.dest == GLOBAL_ADDRESS:
                return self._bad(pgn, source, "EndOfMsgAck without a session")
            return TpResult(frames=self._close_tx(source, now_s))
        if control == CM_ABORT:
            return self._on_abort(source, data, pgn, now_s)
        return self._bad(pgn, source, f"unknown TP.CM control byte 0x{control:02X}")

    def _on_announce(
        self, control: int, source: int, dest: int, data: bytes, pgn: int, now_s: float
    ) -> TpResult:
        size, packets = int.from_bytes(data[1:3], "little"), data[3]
        bam = control == CM_BAM
        if bam != (dest == GLOBAL_ADDRESS):
            return self._bad(pgn, source, "BAM must be global, RTS must be addressed")
        if not 9 <= size <= MAX_TP_SIZE or packets != _packets(size):
            detail = f"announced {size} bytes in {packets} packets"
            if bam:  # no aborts in answer to a broadcast (J1939-21 5.10.3.5)
                return self._bad(pgn, source, detail)
            err = TpError(pgn, source, AbortReason.OTHER, detail, abort_sent=True)
            return TpResult(frames=(self._abort(pgn, source, AbortReason.OTHER),), errors=(err,))
        sessions = self._bam_rx if bam else self._rx
        errors: tuple[TpError, ...] = ()
        old = sessions.get(source)
        if old is not None:  # the originator gave up on the old one and started again
            errors = (TpError(old.pgn, source, AbortReason.RESOURCES, "superseded by a new TP.CM"),)
        max_per_cts = data[4] if not bam and data[4] != 0 else 255
        rx = _Rx(pgn, TP_PRIORITY, size, packets, max_per_cts, bam, bytearray())
        sessions[source] = rx
        if bam:
            rx.window_end, rx.deadline_s = packets, now_s + self.timing.t1_s
            return TpResult(errors=errors)
        return TpResult(frames=(self._cts(rx, source, now_s),), errors=errors)

    def _cts(self, rx: _Rx, source: int, now_s: float) -> CanFrame:
        count = min(rx.packets - rx.next_seq + 1, rx.max_per_cts, self.max_packets_per_cts)
        rx.window_end = rx.next_seq + count - 1
        rx.deadline_s = now_s + self.timing.t2_s
        data = bytes((CM_CTS, count, rx.next_seq, _FILL, _FILL)) + _pgn_bytes(rx.pgn)
        return self._frame(PGN_TP_CM, source, data)

    def _on_dt(self, source: int, dest: int, data: bytes, now_s: float) -> TpResult:
        rx = (self._bam_rx if dest == GLOBAL_ADDRESS else self._rx).get(source)
        if rx is None:
            return self._bad(0, source, "TP.DT without a session", AbortReason.UNEXPECTED_DT)
        if len(data) != 8:
            return self._fail_rx(rx, source, AbortReason.OTHER, f"TP.DT with {len(data)} bytes")
        seq = data[0]
        if seq < rx.next_seq:
            return self._fail_rx(rx, source, AbortReason.DUPLICATE_SEQUENCE, f"packet {seq} again")
        if seq != rx.next_seq or seq > rx.window_end:
            detail = f"packet {seq}, expected {rx.next_seq}"
            return self._fail_rx(rx, source, AbortReason.BAD_SEQUENCE, detail)
        rx.buffer += data[1:8]
        rx.next_seq += 1
        rx.deadline_s = now_s + self.timing.t1_s
        if rx.next_seq <= rx.packets:
            if rx.next_seq > rx.window_end:  # window used up: grant the next one
                return TpResult(frames=(self._cts(rx, source, now_s),))
            return EMPTY
        del (self._bam_rx if rx.bam else self._rx)[source]
        message = J1939Message(rx.pgn, source, dest, rx.priority, bytes(rx.buffer[: rx.size]))
        if rx.bam:
            return TpResult(messages=(message,))
        head = rx.size.to_bytes(2, "little") + bytes((rx.packets, _FILL))
        ack = self._frame(PGN_TP_CM, source, bytes((CM_EOMA,)) + head + _pgn_bytes(rx.pgn))
        return TpResult(frames=(ack,), messages=(message,))

    def _on_cts(self, source: int, data: bytes, pgn: int, now_s: float) -> TpResult:
        tx = self._tx.get(source)
        if tx is None or tx.pgn != pgn:
            return self._bad(pgn, source, "CTS without a session")
        count, first = data[1], data[2]
        if count == 0:  # 'hold the connection open' (J1939-21 5.10.3.2)
            tx.deadline_s = now_s + self.timing.t4_s
            return EMPTY
        if first < 1 or first + count - 1 > tx.packets:
            return self._fail_tx(tx, AbortReason.OTHER, f"CTS for packets {first}+{count}", now_s)
        frames = [self._dt(tx, seq) for seq in range(first, first + count)]
        tx.deadline_s = now_s + self.timing.t3_s
        return TpResult(frames=frames)

    def _on_abort(self, source: int, data: bytes, pgn: int, now_s: float) -> TpResult:
        reason = _reason(data[1])
        tx, rx = self._tx.get(source), self._rx.get(source)
        if tx is not None and tx.pgn == pgn:
            err = TpError(pgn, source, reason, "aborted by peer")
            return TpResult(frames=self._close_tx(source, now_s), errors=(err,))
        if rx is not None and rx.pgn == pgn:
            del self._rx[source]
            return TpResult(errors=(TpError(pgn, source, reason, "aborted by peer"),))
        return EMPTY

    def _bad(self, pgn: int, peer: int, detail: str, reason: AbortReason = AbortReason.OTHER) -> TpResult:
        """A frame that belongs to no session: report it, do not answer (J1939-21 ignores them)."""
        return TpResult(errors=(TpError(pgn, peer, reason, detail),))

    def _fail_rx(self, rx: _Rx, source: int, reason: AbortReason, detail: str) -> TpResult:
        sessions = self._bam_rx if rx.bam else self._rx
        sessions.pop(source, None)
        if rx.bam:
            return TpResult(errors=(TpError(rx.pgn, source, reason, detail),))
        err = TpError(rx.pgn, source, reason, detail, abort_sent=True)
        return TpResult(frames=(self._abort(rx.pgn, source, reason),), errors=(err,))

    def _fail_tx(self, tx: _Tx, reason: AbortReason, detail: str, now_s: float) -> TpResult:
        frames = [self._abort(tx.pgn, tx.dest, reason)]
        frames += self._close_tx(tx.dest, now_s)
        err = TpError(tx.pgn, tx.dest, reason, detail, abort_sent=True)
        return TpResult(frames=frames, errors=(err,))

    # --- time --------------------------------------------------------------------------------

    def tick(self, now_s: float) -> TpResult:
        """Send due BAM packets and expire sessions whose J1939-21 timer ran out."""
        if not (self._tx or self._rx or self._bam_rx):
            return EMPTY
        frames: list[CanFrame] = []
        errors: list[TpError] = []
        for dest, tx in list(self._tx.items()):
            if now_s < tx.deadline_s - _EPS_S:
                continue
            if dest == GLOBAL_ADDRESS:
                frames.append(self._dt(tx, tx.next_seq))
                tx.next_seq += 1
                tx.deadline_s = now_s + self.timing.bam_gap_s
                if tx.next_seq > tx.packets:
                    frames += self._close_tx(dest, now_s)
                continue
            result = self._fail_tx(tx, AbortReason.TIMEOUT, "no CTS/EndOfMsgAck in time", now_s)
            frames += result.frames
            errors += result.errors
        for sessions in (self._rx, self._bam_rx):
            for source, rx in list(sessions.items()):
                if now_s >= rx.deadline_s - _EPS_S:
                    result = self._fail_rx(rx, source, AbortReason.TIMEOUT, "no TP.DT in time")
                    frames += result.frames
                    errors += result.errors
        return TpResult(frames=frames, errors=errors) if frames or errors else EMPTY

    def next_deadline_s(self) -> float | None:
        """When `tick` has something to do next (None when no session is open)."""
        if not (self._tx or self._rx or self._bam_rx):
            return None
        deadlines = [s.deadline_s for s in self._tx.values()]
        deadlines += [s.deadline_s for s in self._rx.values()]
        deadlines += [s.deadline_s for s in self._bam_rx.values()]
        return min(deadlines) if deadlines else None

    @property
    def busy(self) -> bool:
        """True while any session is open or queued."""
        return bool(self._tx or self._rx or self._bam_rx or any(self._queued.values()))


def _reason(code: int) -> AbortReason:
    try:
        return AbortReason(code)
    except ValueError:
        return AbortReason.OTHER
