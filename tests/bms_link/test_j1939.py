"""SAE J1939-21 transport protocol: RTS/CTS and BAM sessions, sequence errors, timeouts (sans-I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_link.j1939 import (
    GLOBAL_ADDRESS,
    PGN_TP_CM,
    PGN_TP_DT,
    AbortReason,
    CanFrame,
    J1939Message,
    J1939Transport,
    TpError,
    TpResult,
    make_id,
    parse_id,
)

BMS, CHARGER = 0xF4, 0x56
BCP_PGN, BCS_PGN, BRM_PGN = 0x0600, 0x1100, 0x0200
BCP = bytes.fromhex("A4 01 DC 05 0E 02 C0 0F 69 C8 00 8A 0D")  # 13 bytes
BCS = bytes.fromhex("D8 0E B8 0B 8B 21 3F 1E 00")  # 9 bytes


def _hex(frames: object) -> list[tuple[int, str]]:
    assert isinstance(frames, list | tuple)
    return [(f.can_id, f.data.hex(" ").upper()) for f in frames]


def _relay(src: J1939Transport, dst: J1939Transport, frames: list[CanFrame], now_s: float) -> TpResult:
    """Deliver `frames` to `dst` and every answer back and forth until both are quiet.

    Returns every frame exchanged after `frames`, every message delivered and every error, in order."""
    out_frames: list[CanFrame] = []
    messages: list[J1939Message] = []
    errors: list[TpError] = []
    for frame in frames:
        result = dst.on_frame(frame.can_id, frame.data, now_s)
        out_frames += result.frames
        messages += result.messages
        errors += result.errors
        back = _relay(dst, src, list(result.frames), now_s)
        out_frames += back.frames
        messages += back.messages
        errors += back.errors
    return TpResult(out_frames, messages, errors)


def _empty(result: TpResult) -> bool:
    return not (result.frames or result.messages or result.errors)


def test_ids_follow_the_gbt_table() -> None:
    assert make_id(6, 0x1000, CHARGER, BMS) == 0x181056F4  # BCL
    assert make_id(7, PGN_TP_CM, CHARGER, BMS) == 0x1CEC56F4  # TP.CM BMS -> charger
    assert parse_id(0x1CEB56F4) == (7, PGN_TP_DT, CHARGER, BMS)
    assert parse_id(0x18FEF100) == (6, 0xFEF1, GLOBAL_ADDRESS, 0x00)  # PDU2 is broadcast


@given(st.integers(0, 7), st.integers(0, 0xEF), st.integers(0, 255), st.integers(0, 255))
def test_pdu1_id_round_trip(priority: int, pf: int, dest: int, source: int) -> None:
    assert parse_id(make_id(priority, pf << 8, dest, source)) == (priority, pf << 8, dest, source)


def test_short_message_is_a_single_frame() -> None:
    bms = J1939Transport(BMS)
    result = bms.send(0x1000, bytes.fromhex("A0 0F F0 0A 02"), dest=CHARGER, priority=6, now_s=0.0)
    assert _hex(result.frames) == [(0x181056F4, "A0 0F F0 0A 02")]
    charger = J1939Transport(CHARGER)
    got = charger.on_frame(0x181056F4, bytes.fromhex("A0 0F F0 0A 02"), 0.0)
    assert got.messages == (J1939Message(0x1000, BMS, CHARGER, 6, bytes.fromhex("A0 0F F0 0A 02")),)


def test_bcp_13_bytes_goes_rts_cts_dt_dt_ack() -> None:
    bms, charger = J1939Transport(BMS), J1939Transport(CHARGER)
    rts = bms.send(BCP_PGN, BCP, dest=CHARGER, priority=7, now_s=0.0)
    assert _hex(rts.frames) == [(0x1CEC56F4, "10 0D 00 02 FF 00 06 00")]
    cts = charger.on_frame(rts.frames[0].can_id, rts.frames[0].data, 0.0)
    assert _hex(cts.frames) == [(0x1CECF456, "11 02 01 FF FF 00 06 00")]
    dts = bms.on_frame(cts.frames[0].can_id, cts.frames[0].data, 0.01)
    assert _hex(dts.frames) == [
        (0x1CEB56F4, "01 A4 01 DC 05 0E 02 C0"),
        (0x1CEB56F4, "02 0F 69 C8 00 8A 0D FF"),  # last packet padded with 0xFF
    ]
    assert _empty(charger.on_frame(dts.frames[0].can_id, dts.frames[0].data, 0.02))
    done = charger.on_frame(dts.frames[1].can_id, dts.frames[1].data, 0.03)
    assert _hex(done.frames) == [(0x1CECF456, "13 0D 00 02 FF 00 06 00")]
    assert done.messages == (J1939Message(BCP_PGN, BMS, CHARGER, 7, BCP),)
    assert _empty(bms.on_frame(done.frames[0].can_id, done.frames[0].data, 0.04))
    assert not bms.busy
    assert not charger.busy


def test_bcs_9_bytes_arrives_whole() -> None:
    bms, charger = J1939Transport(BMS), J1939Transport(CHARGER)
    result = _relay(
        bms, charger, list(bms.send(BCS_PGN, BCS, dest=CHARGER, priority=7, now_s=0.0).frames), 0.0
    )
    assert result.messages == [J1939Message(BCS_PGN, BMS, CHARGER, 7, BCS)]
    assert result.errors == []
    assert bms.next_deadline_s() is None


def test_cts_window_smaller_than_the_message_is_refilled() -> None:
    bms, charger = J1939Transport(BMS), J1939Transport(CHARGER, max_packets_per_cts=2)
    brm = bytes(range(49))  # 7 packets
    result = _relay(
        bms, charger, list(bms.send(BRM_PGN, brm, dest=CHARGER, priority=7, now_s=0.0).frames), 0.0
    )
    ctss = [f for f in result.frames if f.data[0] == 0x11]
    assert [(f.data[1], f.data[2]) for f in ctss] == [(2, 1), (2, 3), (2, 5), (1, 7)]
    assert result.messages == [J1939Message(BRM_PGN, BMS, CHARGER, 7, brm)]


def test_bam_is_received_without_answers() -> None:
    sender, receiver = J1939Transport(BMS), J1939Transport(CHARGER)
    first = sender.send(0xFECA, bytes(range(20)), dest=GLOBAL_ADDRESS, priority=6, now_s=0.0)
    assert _hex(first.frames) == [(0x1CECFFF4, "20 14 00 03 FF CA FE 00")]
    frames = list(first.frames)
    now = 0.0
    while (deadline := sender.next_deadline_s()) is not None:
        now = deadline
        frames += sender.tick(now).frames
    assert [f.data[0] for f in frames[1:]] == [1, 2, 3]
    assert now == pytest.approx(0.15)  # 50 ms between BAM packets (J1939-21)
    messages: list[J1939Message] = []
    for frame in frames:
        result = receiver.on_frame(frame.can_id, frame.data, now)
        assert result.frames == ()
        messages += result.messages
    assert messages == [J1939Message(0xFECA, BMS, GLOBAL_ADDRESS, 7, bytes(range(20)))]


def _open_session(charger: J1939Transport) -> None:
    rts = make_id(7, PGN_TP_CM, CHARGER, BMS)
    charger.on_frame(rts, bytes.fromhex("10 1C 00 04 FF 00 02 00"), 0.0)  # 28 bytes, 4 packets


DT = make_id(7, PGN_TP_DT, CHARGER, BMS)


def test_duplicate_sequence_number_aborts_the_session() -> None:
    charger = J1939Transport(CHARGER)
    _open_session(charger)
    charger.on_frame(DT, bytes([1]) + bytes(7), 0.1)
    result = charger.on_frame(DT, bytes([1]) + bytes(7), 0.2)
    assert _hex(result.frames) == [(0x1CECF456, "FF 08 FF FF FF 00 02 00")]
    assert [e.reason for e in result.errors] == [AbortReason.DUPLICATE_SEQUENCE]
    assert not charger.busy


def test_out_of_order_sequence_number_aborts_the_session() -> None:
    charger = J1939Transport(CHARGER)
    _open_session(charger)
    charger.on_frame(DT, bytes([1]) + bytes(7), 0.1)
    result = charger.on_frame(DT, bytes([3]) + bytes(7), 0.2)
    assert [(e.reason, e.abort_sent) for e in result.errors] == [(AbortReason.BAD_SEQUENCE, True)]
    assert result.frames[0].data[:2] == bytes([0xFF, 7])


def test_truncated_session_times_out_with_an_abort() -> None:
    charger = J1939Transport(CHARGER)
    _open_session(charger)
    charger.on_frame(DT, bytes([1]) + bytes(7), 0.1)
    assert charger.next_deadline_s() == pytest.approx(0.1 + 0.75)  # T1 after a DT
    assert _empty(charger.tick(0.8))
    result = charger.tick(0.85)
    assert _hex(result.frames) == [(0x1CECF456, "FF 03 FF FF FF 00 02 00")]
    assert [e.reason for e in result.errors] == [AbortReason.TIMEOUT]
    assert charger.next_deadline_s() is None


def test_rts_whose_size_does_not_match_the_packet_count_is_refused() -> None:
    charger = J1939Transport(CHARGER)
    rts = make_id(7, PGN_TP_CM, CHARGER, BMS)
    result = charger.on_frame(rts, bytes.fromhex("10 0D 00 03 FF 00 06 00"), 0.0)  # 13 B in 3 packets
    assert _hex(result.frames) == [(0x1CECF456, "FF FA FF FF FF 00 06 00")]
    assert [e.reason for e in result.errors] == [AbortReason.OTHER]
    assert not charger.busy


def test_data_without_a_session_is_reported_and_not_answered() -> None:
    charger = J1939Transport(CHARGER)
    result = charger.on_frame(DT, bytes([1]) + bytes(7), 0.0)
    assert result.frames == ()
    assert [e.reason for e in result.errors] == [AbortReason.UNEXPECTED_DT]


def test_sender_without_cts_aborts_after_t3() -> None:
    bms = J1939Transport(BMS)
    bms.send(BCS_PGN, BCS, dest=CHARGER, priority=7, now_s=0.0)
    assert bms.next_deadline_s() == pytest.approx(1.25)
    result = bms.tick(1.25)
    assert _hex(result.frames) == [(0x1CEC56F4, "FF 03 FF FF FF 00 11 00")]
    assert [e.reason for e in result.errors] == [AbortReason.TIMEOUT]


def test_cts_hold_extends_the_sender_deadline_to_t4() -> None:
    bms = J1939Transport(BMS)
    bms.send(BCS_PGN, BCS, dest=CHARGER, priority=7, now_s=0.0)
    hold = bms.on_frame(make_id(7, PGN_TP_CM, BMS, CHARGER), bytes.fromhex("11 00 FF FF FF 00 11 00"), 0.5)
    assert _empty(hold)
    assert bms.next_deadline_s() == pytest.approx(0.5 + 1.05)


def test_messages_for_a_busy_peer_queue_and_the_latest_wins() -> None:
    bms, charger = J1939Transport(BMS), J1939Transport(CHARGER)
    first = bms.send(BCP_PGN, BCP, dest=CHARGER, priority=7, now_s=0.0)
    assert _empty(bms.send(BCS_PGN, b"\x01" * 9, dest=CHARGER, priority=7, now_s=0.0))
    assert _empty(bms.send(BCS_PGN, BCS, dest=CHARGER, priority=7, now_s=0.0))
    result = _relay(bms, charger, list(first.frames), 0.0)
    # one session at a time: the queued BCS (newest payload only) starts after BCP's EndOfMsgAck
    assert [m.data for m in result.messages] == [BCP, BCS]
    assert [f.data[0] for f in result.frames if f.can_id == 0x1CEC56F4] == [0x10]  # BCS's RTS


def test_peer_abort_ends_our_sending_session() -> None:
    bms = J1939Transport(BMS)
    bms.send(BCS_PGN, BCS, dest=CHARGER, priority=7, now_s=0.0)
    result = bms.on_frame(make_id(7, PGN_TP_CM, BMS, CHARGER), bytes.fromhex("FF 01 FF FF FF 00 11 00"), 0.1)
    assert [(e.reason, e.detail) for e in result.errors] == [(AbortReason.BUSY, "aborted by peer")]
    assert not bms.busy


def test_frames_for_other_nodes_are_ignored() -> None:
    charger = J1939Transport(CHARGER)
    assert _empty(charger.on_frame(make_id(6, 0x1000, 0x33, BMS), b"\x00" * 5, 0.0))
    assert _empty(charger.on_frame(make_id(6, 0x1000, BMS, CHARGER), b"\x00" * 5, 0.0))


@given(st.binary(min_size=9, max_size=1785), st.integers(1, 255))
def test_any_payload_survives_rts_cts(payload: bytes, window: int) -> None:
    bms, charger = J1939Transport(BMS), J1939Transport(CHARGER, max_packets_per_cts=window)
    frames = list(bms.send(0x0200, payload, dest=CHARGER, priority=7, now_s=0.0).frames)
    result = _relay(bms, charger, frames, 0.0)
    assert [m.data for m in result.messages] == [payload]
    assert result.errors == []
    assert not bms.busy
    assert not charger.busy


@given(st.lists(st.binary(min_size=8, max_size=8), max_size=20))
def test_garbage_tp_frames_never_raise(datas: list[bytes]) -> None:
    charger = J1939Transport(CHARGER)
    for i, data in enumerate(datas):
        charger.on_frame(make_id(7, PGN_TP_CM if i % 2 else PGN_TP_DT, CHARGER, BMS), data, i * 0.1)
        charger.tick(i * 0.1)
