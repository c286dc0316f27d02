"""GB/T 27930 charger-side state machine, driven by plain calls (no bus, no clock)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from bms_link import gbt_codec as codec
from bms_link.gbt import (
    TRANSITIONS,
    ChargingStarted,
    Event,
    FrameRejected,
    GbtCharger,
    GbtTiming,
    Output,
    Phase,
    Send,
    SessionClosed,
    SessionEnded,
    SessionInfo,
    bsm_faults,
    bst_stop_reason,
    next_phase,
)
from bms_link.models import BatteryType, BmsFault, ChargeCommand, ChargeMode, PackTelemetry, StopReason
from chargeagent.errors import InvalidTransition

BRM = codec.Brm(BatteryType.NMC, 150.0, 350.0, vin="LSVAB4BR5GN123456")
BCP = codec.Bcp(4.2, 200.0, 52.5, 403.2, 55.0, 0.2, 346.6)
BCL = codec.Bcl(400.0, 120.0, ChargeMode.CC)
BCS = codec.Bcs(380.0, 100.0, 3.95, 0.63, 0, 30.0)
BSM = codec.Bsm(35.0, 25.0)


def phase_of(charger: GbtCharger) -> Phase:
    return charger.phase  # a call, so mypy does not keep an earlier narrowing of `phase`


def sent(outputs: list[Output]) -> list[str]:
    return [o.name for o in outputs if isinstance(o, Send)]


def last(outputs: list[Output], name: str) -> codec.GbtMessage:
    payloads = [o.data for o in outputs if isinstance(o, Send) and o.name == name]
    assert payloads, f"no {name} in {sent(outputs)}"
    return codec.decode(name, payloads[-1])


def charging(charger: GbtCharger | None = None) -> tuple[GbtCharger, float]:
    """A charger walked through handshake and parameter configuration into CHARGING; returns (it, now)."""
    ch = charger or GbtCharger(GbtTiming())
    assert sent(ch.start(0.0)) == ["CHM"]
    assert sent(ch.on_message("BHM", codec.Bhm(403.2), 0.1)) == ["CRM"]
    assert sent(ch.on_message("BRM", BRM, 0.2)) == ["CRM"]
    out = ch.on_message("BCP", BCP, 0.3)
    assert sent(out) == ["CTS", "CML"]
    assert ch.on_message("BRO", codec.Bro(False), 0.4) == []
    assert sent(ch.on_message("BRO", codec.Bro(True), 0.5)) == ["CRO"]
    cro_aa_s = 0.5 + ch.timing.period("CRO")  # 0x00 first (pre-charge), 0xAA one period later
    assert last(ch.tick(cro_aa_s), "CRO") == codec.Cro(True)
    now = cro_aa_s + 0.05
    out = ch.on_message("BCL", BCL, now)
    assert ch.phase is Phase.CHARGING
    assert any(isinstance(o, ChargingStarted) for o in out)
    ch.on_message("BSM", BSM, now + 0.01)
    return ch, now


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "target"), sorted(TRANSITIONS.items()))
def test_every_table_entry_is_a_transition(key: tuple[Phase, Event], target: Phase) -> None:
    assert next_phase(*key) is target


def test_event_a_phase_does_not_accept_raises_invalid_transition() -> None:
    with pytest.raises(InvalidTransition) as excinfo:
        next_phase(Phase.IDLE, Event.BCL)
    assert (excinfo.value.state, excinfo.value.event) == ("idle", "BCL")
    with pytest.raises(InvalidTransition):
        next_phase(Phase.CHARGING, Event.START)


def test_wire_input_never_raises_even_when_the_table_refuses_it() -> None:
    ch = GbtCharger()
    assert ch.on_message("BHM", codec.Bhm(400.0), 0.0) == []  # IDLE does not accept BHM
    assert ch.phase is Phase.IDLE


def test_starting_twice_is_an_invalid_transition() -> None:
    ch = GbtCharger()
    ch.start(0.0)
    with pytest.raises(InvalidTransition):
        ch.start(1.0)


def test_every_phase_is_reachable_and_every_active_phase_can_stop() -> None:
    assert set(TRANSITIONS.values()) == set(Phase)
    for phase in (Phase.HANDSHAKE, Phase.RECOGNITION, Phase.PARAMETER, Phase.CHARGING):
        assert (phase, Event.STOP) in TRANSITIONS


# --- a whole session --------------------------------------------------------------------------


def test_happy_session_from_handshake_to_statistics() -> None:
    ch = GbtCharger(GbtTiming())
    infos = [
        o for o in ch.start(0.0) + ch.on_message("BHM", codec.Bhm(403.2), 0.1) if isinstance(o, SessionInfo)
    ]
    assert infos == []
    assert last(ch.on_message("BRM", BRM, 0.2), "CRM") == codec.Crm(True, 1)
    out = ch.on_message("BCP", BCP, 0.3)
    (info,) = [o for o in out if isinstance(o, SessionInfo)]
    assert (info.pack.vin, info.pack.max_charge_current_a, info.pack.soc) == ("LSVAB4BR5GN123456", 200.0, 0.2)
    assert last(out, "CML") == codec.Cml(750.0, 150.0, 250.0, 0.0)
    ch.on_message("BRO", codec.Bro(True), 0.5)
    assert last(ch.tick(0.75), "CRO") == codec.Cro(True)
    ch.on_message("BCL", BCL, 0.8)
    ch.on_message("BSM", BSM, 0.81)
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=100.0))
    telemetry = [o for o in ch.on_message("BCS", BCS, 0.82) if isinstance(o, PackTelemetry)]
    assert len(telemetry) == 1
    assert (telemetry[0].soc, telemetry[0].request.current_a, telemetry[0].cell_temp_max_c) == (
        0.63,
        120.0,
        35.0,
    )
    assert last(ch.tick(0.85), "CCS") == codec.Ccs(380.0, 100.0, 0, True)
    # the BMS reaches its target: CCS 0 A first, then CST "BMS stopped"
    out = ch.on_message("BST", codec.Bst(soc_target_reached=1), 10.0)
    assert sent(out) == ["CCS", "CST"]
    assert last(out, "CCS") == codec.Ccs(380.0, 0.0, 0, False)
    assert last(out, "CST") == codec.Cst(bms_stopped=1)
    assert SessionEnded(StopReason.SOC_TARGET_REACHED) in out
    assert sent(ch.tick(10.01)) == ["CST"]
    out = ch.on_message("BSD", codec.Bsd(0.8, 3.9, 4.1, 25.0, 36.0), 10.5)
    assert ch.phase is Phase.STATISTICS
    csd = last(out, "CSD")
    assert isinstance(csd, codec.Csd)
    assert csd.energy_kwh == pytest.approx(380 * 100 * (10.0 - 0.85) / 3.6e6, abs=0.05)
    assert sent(ch.tick(10.75) + ch.tick(11.0)) == ["CSD", "CSD"]
    assert phase_of(ch) is Phase.ENDED
    assert ch.next_deadline_s() is None
    assert ch.end_reason is StopReason.SOC_TARGET_REACHED


def test_bms_that_stops_sending_bcl_gets_output_zero_and_cem_within_one_second() -> None:
    ch, now = charging()
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=100.0))
    last_bcl = 2.0
    t = now
    while t < last_bcl:  # BCL every 50 ms, BCS/BSM every 250 ms, until 2.0 s
        t = round(t + 0.05, 3)
        ch.on_message("BCL", BCL, t)
        if round(t * 100) % 25 == 0:
            ch.on_message("BCS", BCS, t)
    assert ch.output_current_a == 100.0
    outputs: list[Output] = []
    while t < last_bcl + 1.5 and ch.phase is Phase.CHARGING:
        t = min(ch.next_deadline_s() or t + 0.05, t + 0.05)
        outputs += ch.tick(t)
    assert t <= last_bcl + 1.0 + 1e-6
    assert ch.phase is Phase.ERROR
    assert ch.output_current_a == 0.0
    names = sent(outputs)
    assert names[-2:] == ["CCS", "CEM"]
    assert last(outputs, "CCS") == codec.Ccs(380.0, 0.0, 0, False)
    assert last(outputs, "CEM") == codec.Cem(bcl_timeout=1)
    assert SessionEnded(StopReason.BMS_TIMEOUT) in outputs
    tail = ch.tick(t + 0.25) + ch.tick(t + 0.5)
    assert sent(tail) == ["CEM", "CEM"]
    assert SessionClosed("error") in tail
    assert ch.next_deadline_s() is None


@pytest.mark.parametrize(
    ("missing", "after", "cem"),
    [
        ("BHM", "start", codec.Cem(brm_timeout=1)),
        ("BRM", "BHM", codec.Cem(brm_timeout=1)),
        ("BCP", "BRM", codec.Cem(bcp_timeout=1)),
        ("BRO", "BCP", codec.Cem(bro_timeout=1)),
    ],
)
def test_handshake_timeouts_send_cem_with_the_right_code(missing: str, after: str, cem: codec.Cem) -> None:
    ch = GbtCharger()
    steps = {"BHM": codec.Bhm(403.2), "BRM": BRM, "BCP": BCP}
    out = ch.start(0.0)
    for name in ("BHM", "BRM", "BCP"):
        if after == "start" or name == missing:
            break
        out = ch.on_message(name, steps[name], 0.0)
        if name == after:
            break
    out = ch.tick(5.0)
    assert last(out, "CEM") == cem
    assert ch.end_reason is StopReason.BMS_TIMEOUT


def test_bro_not_ready_allows_sixty_seconds() -> None:
    ch = GbtCharger()
    ch.start(0.0)
    ch.on_message("BHM", codec.Bhm(403.2), 0.0)
    ch.on_message("BRM", BRM, 0.0)
    ch.on_message("BCP", BCP, 0.0)
    ch.on_message("BRO", codec.Bro(False), 1.0)
    assert "CEM" not in sent(ch.tick(59.0))
    assert ch.phase is Phase.PARAMETER
    assert last(ch.tick(61.0), "CEM") == codec.Cem(bro_timeout=1)


def test_missing_bcs_for_five_seconds_ends_the_session() -> None:
    ch, now = charging()
    ch.on_message("BCS", BCS, now)
    for i in range(1, 120):
        ch.on_message("BCL", BCL, now + i * 0.05)
    assert ch.phase is Phase.CHARGING
    ch.on_message("BCL", BCL, now + 5.0)
    assert last(ch.tick(now + 5.0), "CEM") == codec.Cem(bcs_timeout=1)


def test_our_stop_sends_ccs_zero_then_cst_and_waits_for_bst_and_bsd() -> None:
    ch, now = charging()
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=50.0))
    out = ch.stop(StopReason.REMOTE, now + 1.0)
    assert sent(out) == ["CCS", "CST"]
    assert last(out, "CCS") == codec.Ccs(380.0, 0.0, 0, False)
    assert last(out, "CST") == codec.Cst(manual_stop=1)
    assert ch.stop(StopReason.LOCAL, now + 1.001) == []  # idempotent, reason kept
    assert ch.end_reason is StopReason.REMOTE
    ch.on_message("BST", codec.Bst(charger_stopped=1), now + 1.1)
    ch.on_message("BSD", codec.Bsd(0.8, 3.9, 4.1, 25.0, 36.0), now + 1.2)
    assert ch.phase is Phase.STATISTICS
    assert ch.end_reason is StopReason.REMOTE


def test_stop_without_bst_times_out_after_five_seconds() -> None:
    ch, now = charging()
    ch.stop(StopReason.REMOTE, now)
    assert last(ch.tick(now + 5.0), "CEM") == codec.Cem(bst_timeout=1)
    assert ch.end_reason is StopReason.REMOTE


def test_bem_from_the_bms_ends_with_charger_timeout() -> None:
    ch, now = charging()
    out = ch.on_message("BEM", codec.Bem(ccs_timeout=1), now + 0.1)
    assert SessionEnded(StopReason.CHARGER_TIMEOUT) in out
    assert SessionClosed("error") in out
    assert ch.output_current_a == 0.0


# --- BMS content ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bst", "reason"),
    [
        (codec.Bst(soc_target_reached=1), StopReason.SOC_TARGET_REACHED),
        (codec.Bst(total_voltage_reached=1), StopReason.VOLTAGE_TARGET_REACHED),
        (codec.Bst(cell_voltage_reached=1), StopReason.VOLTAGE_TARGET_REACHED),
        (codec.Bst(fault_insulation=1), StopReason.INSULATION_FAULT),
        (codec.Bst(fault_pack_overtemp=1), StopReason.OVERTEMPERATURE),
        (codec.Bst(fault_connector_overtemp=1), StopReason.OVERTEMPERATURE),
        (codec.Bst(fault_bms_overtemp=1), StopReason.OVERTEMPERATURE),
        (codec.Bst(fault_hv_relay=1), StopReason.BMS_FAULT),
        (codec.Bst(fault_other=2), StopReason.BMS_FAULT),  # 'not credible' still a fault
        (codec.Bst(error_overcurrent=1), StopReason.BMS_FAULT),
        (codec.Bst(soc_target_reached=1, fault_insulation=1), StopReason.INSULATION_FAULT),
        (codec.Bst(), StopReason.STOPPED_BY_EV),
        (codec.Bst(soc_target_reached=2), StopReason.STOPPED_BY_EV),
    ],
)
def test_bst_maps_to_stop_reason(bst: codec.Bst, reason: StopReason) -> None:
    assert bst_stop_reason(bst) is reason
    ch, now = charging()
    assert SessionEnded(reason) in ch.on_message("BST", bst, now + 0.1)


@pytest.mark.parametrize(
    ("bsm", "faults"),
    [
        (codec.Bsm(30.0, 25.0), set()),
        (codec.Bsm(30.0, 25.0, cell_voltage_status=1), {BmsFault.CELL_VOLTAGE_HIGH}),
        (codec.Bsm(30.0, 25.0, cell_voltage_status=2), {BmsFault.CELL_VOLTAGE_LOW}),
        (codec.Bsm(30.0, 25.0, soc_status=2), {BmsFault.SOC_LOW}),
        (
            codec.Bsm(30.0, 25.0, overtemp_status=1, insulation_status=2),
            {BmsFault.OVERTEMPERATURE, BmsFault.INSULATION},
        ),
        (
            codec.Bsm(30.0, 25.0, overcurrent_status=1, connector_status=1),
            {BmsFault.OVERCURRENT, BmsFault.CONNECTOR},
        ),
        (codec.Bsm(30.0, 25.0, overcurrent_status=3), set()),  # 11 = not available
    ],
)
def test_bsm_status_becomes_faults_on_telemetry(bsm: codec.Bsm, faults: set[BmsFault]) -> None:
    assert bsm_faults(bsm) == faults
    ch, now = charging()
    ch.on_message("BSM", bsm, now + 0.1)
    (telemetry,) = [o for o in ch.on_message("BCS", BCS, now + 0.2) if isinstance(o, PackTelemetry)]
    assert telemetry.faults == faults


def test_bsm_forbidding_charge_suspends_the_output() -> None:
    ch, now = charging()
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=100.0))
    assert ch.output_current_a == 100.0
    ch.on_message("BCS", BCS, now + 0.05)
    out = ch.on_message("BSM", codec.Bsm(35.0, 25.0, charging_permitted=0), now + 0.1)
    (telemetry,) = [o for o in out if isinstance(o, PackTelemetry)]
    assert telemetry.charging_permitted is False
    assert ch.output_current_a == 0.0
    assert last(ch.tick(now + 0.15), "CCS") == codec.Ccs(380.0, 0.0, 0, False)
    ch.on_message("BSM", codec.Bsm(35.0, 25.0), now + 0.2)
    assert ch.output_current_a == 100.0
    assert ch.phase is Phase.CHARGING


def test_output_never_exceeds_the_bms_demand_or_limits() -> None:
    ch, now = charging()
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=300.0))
    assert ch.output_current_a == 120.0  # BCL demand
    ch.on_message("BCL", codec.Bcl(400.0, 250.0, ChargeMode.CC), now + 0.05)
    assert ch.output_current_a == 200.0  # BCP max charge current
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=50.0, charging_permitted=False))
    assert ch.output_current_a == 0.0


# --- bad input --------------------------------------------------------------------------------


def test_corrupt_payload_is_rejected_and_the_session_continues() -> None:
    ch, now = charging()
    out = ch.on_payload(0x1000, bytes.fromhex("A0 0F F0"), now + 0.1)  # BCL with 3 bytes
    assert len(out) == 1
    assert isinstance(out[0], FrameRejected)
    assert "3 bytes" in out[0].reason
    assert ch.phase is Phase.CHARGING
    assert isinstance(ch.on_payload(0x4200, b"\x00", now + 0.2)[0], FrameRejected)
    assert ch.on_payload(0x1500, b"\x00" * 20, now + 0.3) == []  # BMV: optional, ignored quietly
    assert ch.phase is Phase.CHARGING


def test_implausible_cell_temperature_ends_the_session_and_is_never_telemetry() -> None:
    ch, now = charging()
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=100.0))
    ch.on_message("BSM", codec.Bsm(120.0, 25.0), now + 0.1)  # within the DBC range, not a real cell
    with capture_logs() as logs:
        out = ch.on_message("BCS", BCS, now + 0.2)
    assert not any(isinstance(o, PackTelemetry) for o in out)
    assert SessionEnded(StopReason.IMPLAUSIBLE_DATA) in out
    assert sent(out) == ["CCS", "CST"]
    assert last(out, "CCS") == codec.Ccs(380.0, 0.0, 0, False)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["gbt_implausible_data"]
    assert ch.output_current_a == 0.0


def test_soc_above_100_percent_on_the_wire_is_implausible_data() -> None:
    ch, now = charging()
    with capture_logs() as logs:
        out = ch.on_payload(0x1100, bytes.fromhex("D8 0E B8 0B 8B 21 78 1E 00"), now + 0.1)  # 120 %
    assert SessionEnded(StopReason.IMPLAUSIBLE_DATA) in out
    assert len([e for e in logs if e["event"] == "gbt_implausible_data"]) == 1


def test_out_of_phase_message_is_logged_once_and_ignored() -> None:
    ch = GbtCharger()
    ch.start(0.0)
    with capture_logs() as logs:
        assert ch.on_message("BCL", BCL, 0.1) == []
        assert ch.on_message("BCL", BCL, 0.15) == []
        assert ch.on_message("CCS", codec.Ccs(1.0, 1.0, 0, True), 0.2) == []
    assert [(e["event"], e["message"]) for e in logs] == [
        ("gbt_message_ignored", "BCL"),
        ("gbt_message_ignored", "CCS"),
    ]
    assert ch.phase is Phase.HANDSHAKE


# --- timing -----------------------------------------------------------------------------------


def test_period_scale_stretches_send_periods_not_timeouts() -> None:
    timing = GbtTiming(period_scale=4.0)
    assert timing.period("CCS") == pytest.approx(0.2)
    assert timing.bcl_timeout_s == 1.0
    ch, now = charging(GbtCharger(timing))
    ch.set_output(ChargeCommand(output_voltage_v=380.0, output_current_a=10.0))
    assert sent(ch.tick(now + 0.1)) == []
    assert sent(ch.tick(now + 0.2)) == ["CCS"]


@pytest.mark.parametrize(("scale", "field"), [(5.0, "bcp_period_s"), (10.0, "bhm_period_s")])
def test_period_scale_that_would_trip_a_receiver_timeout_is_refused(scale: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GbtTiming(period_scale=scale)


def test_a_slow_custom_period_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="bcl_period_s"):
        GbtTiming(bcl_period_s=0.6)
    with pytest.raises(ValueError, match="period_scale"):
        GbtTiming(period_scale=0.0)
