"""GB/T 27930 codec: golden frames written from the standard's tables, round trips, and bad input."""

from __future__ import annotations

from pathlib import Path

import cantools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_link import gbt_codec as codec
from bms_link.gbt import GbtTiming
from bms_link.models import BatteryType, ChargeMode
from chargeagent.errors import BmsLinkError

# GB/T 27930-2015 message table (REFERENCE.md): name -> 29-bit ID, data length
TABLE = {
    "CHM": (0x1826F456, 3),
    "BHM": (0x182756F4, 2),
    "CRM": (0x1801F456, 8),
    "BRM": (0x1C0256F4, 49),
    "BCP": (0x1C0656F4, 13),
    "CTS": (0x1807F456, 7),
    "CML": (0x1808F456, 8),
    "BRO": (0x100956F4, 1),
    "CRO": (0x100AF456, 1),
    "BCL": (0x181056F4, 5),
    "BCS": (0x1C1156F4, 9),
    "CCS": (0x1812F456, 8),
    "BSM": (0x181356F4, 7),
    "BST": (0x101956F4, 4),
    "CST": (0x101AF456, 4),
    "BSD": (0x181C56F4, 7),
    "CSD": (0x181DF456, 8),
    "BEM": (0x081E56F4, 4),
    "CEM": (0x081FF456, 4),
}


def test_dbc_defines_every_message_of_the_table_with_its_id_and_length() -> None:
    specs = {s.name: s for s in codec.all_specs()}
    assert set(specs) == set(TABLE)
    for name, (frame_id, length) in TABLE.items():
        assert (specs[name].frame_id, specs[name].length) == (frame_id, length), name
        assert specs[name].pgn == ((frame_id >> 16) & 0xFF) << 8
        assert specs[name].priority == frame_id >> 26
        assert codec.message_name(specs[name].pgn) == name


def test_dbc_cycle_times_match_the_timing_defaults() -> None:
    timing = GbtTiming()
    for spec in codec.all_specs():
        assert spec.period_s == pytest.approx(timing.period(spec.name)), spec.name


def test_dbc_comments_state_the_current_sign_convention() -> None:
    db = cantools.database.load_file(str(codec.dbc_path()))
    assert isinstance(db, cantools.database.can.Database)
    for message, signal in (("BCL", "current_demand"), ("BCP", "max_charge_current")):
        comment = db.get_message_by_name(message).get_signal_by_name(signal).comment
        assert isinstance(comment, str)
        assert "-400 A offset" in comment
        assert "negative" in comment
    assert "flips the sign" in codec.dbc_path().read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("message", "golden"),
    [
        # BCL: 400.0 V = 4000 = 0x0FA0; 120 A charging = -120 A on the wire = (-120+400)/0.1 = 2800
        (codec.Bcl(400.0, 120.0, ChargeMode.CC), "A0 0F F0 0A 02"),
        (codec.Bcl(350.5, 0.0, ChargeMode.CV), "B1 0D A0 0F 01"),
        # CCS: 380.0 V, 100 A (raw 3000), 25 min, SPN3929 = 01 permitted, unused bits 1
        (codec.Ccs(380.0, 100.0, 25, True), "D8 0E B8 0B 19 00 FD FF"),
        (codec.Ccs(0.0, 0.0, 0, False), "00 00 A0 0F 00 00 FC FF"),
        # CML: 750 V, 200 V, 250 A (raw 1500), 0 A (raw 4000)
        (codec.Cml(750.0, 200.0, 250.0, 0.0), "4C 1D D0 07 DC 05 A0 0F"),
        # BSM: cell #12 (offset 1), 35 °C (offset -50) at probe 3, 25 °C at probe 7, all normal, permitted
        (codec.Bsm(35.0, 25.0, 12, 3, 7), "0B 55 02 4B 06 00 D0"),
        (codec.Bsm(35.0, 25.0, overtemp_status=1, charging_permitted=0), "FF 55 FF 4B FF 40 C0"),
        # BCS: 380.0 V, 100 A, highest cell 3.95 V (395) in group 2 -> 0x218B, SoC 63 %, 30 min
        (codec.Bcs(380.0, 100.0, 3.95, 0.63, 2, 30.0), "D8 0E B8 0B 8B 21 3F 1E 00"),
        # BCP: 4.20 V, 250 A, 52.6 kWh, 403.2 V, 55 °C, SoC 20.0 %, 346.6 V
        (codec.Bcp(4.2, 250.0, 52.6, 403.2, 55.0, 0.2, 346.6), "A4 01 DC 05 0E 02 C0 0F 69 C8 00 8A 0D"),
        (codec.Chm(), "01 01 00"),
        (codec.Crm(True, 1), "AA 01 00 00 00 FF FF FF"),
        (codec.Bro(True), "AA"),
        (codec.Cem(bcl_timeout=1), "FC F0 C4 FC"),
        (codec.Bst(soc_target_reached=1), "01 00 00 F0"),
    ],
)
def test_golden_frame_encodes_and_decodes(message: codec.GbtMessage, golden: str) -> None:
    data = bytes.fromhex(golden)
    assert codec.encode(message) == data
    assert codec.decode(message.NAME, data) == message


def test_brm_carries_vin_and_battery_type_and_accepts_the_41_byte_form() -> None:
    brm = codec.Brm(BatteryType.LFP, 150.0, 400.0, vin="LSVAB4BR5GN123456", manufacturer="CATL")
    data = codec.encode(brm)
    assert len(data) == 49
    assert data[3] == 0x03  # SPN2566: 03 = LFP
    assert data[24:41] == b"LSVAB4BR5GN123456"
    assert codec.decode("BRM", data) == brm
    assert codec.decode("BRM", data[:41]) == brm  # the message list's 41 bytes, without SW version


def test_cts_is_packed_bcd_seconds_first() -> None:
    cts = codec.Cts(2026, 3, 14, 15, 9, 26)
    assert codec.encode(cts) == bytes.fromhex("26 09 15 14 03 26 20")
    assert codec.decode("CTS", codec.encode(cts)) == cts


@pytest.mark.parametrize(
    ("name", "payload", "implausible"),
    [
        ("BCL", "A0 0F F0", False),  # wrong length (DLC 3)
        ("BCS", "D8 0E B8 0B 8B 21 3F 1E", False),  # 8 of 9 bytes
        ("XYZ", "00", False),  # unknown message
        ("BCS", "D8 0E B8 0B 8B 21 65 1E 00", True),  # SoC 101 % outside 0..100
        ("BCL", "A0 0F 10 27 02", True),  # current raw 10000 -> +600 A: outside -400..0
        ("BCL", "A0 0F F0 0A 07", True),  # charge mode 7
        ("BCL", "FF FF F0 0A 02", True),  # required voltage 'not available'
        ("BRO", "12", True),  # neither 0x00 nor 0xAA
        ("CTS", "5A 09 15 14 03 26 20", True),  # not BCD
    ],
)
def test_bad_payload_raises_bms_link_error(name: str, payload: str, implausible: bool) -> None:
    with pytest.raises(BmsLinkError) as excinfo:
        codec.decode(name, bytes.fromhex(payload))
    assert isinstance(excinfo.value, codec.ImplausibleValue) == implausible


def test_unknown_pgn_raises_bms_link_error() -> None:
    with pytest.raises(BmsLinkError, match="0x1500"):
        codec.decode_pgn(0x1500, b"\x00" * 8)


def test_encoding_a_value_outside_the_dbc_range_raises() -> None:
    with pytest.raises(BmsLinkError, match=r"CCS\.output_voltage"):
        codec.encode(codec.Ccs(800.0, 10.0, 0, True))


def test_dbc_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(codec.ENV_DBC, str(tmp_path / "x.dbc"))
    assert codec.dbc_path() == tmp_path / "x.dbc"
    monkeypatch.delenv(codec.ENV_DBC)
    assert codec.dbc_path().is_file()


@given(st.sampled_from(sorted(TABLE)), st.binary(max_size=60))
def test_decoding_arbitrary_bytes_raises_only_bms_link_error(name: str, data: bytes) -> None:
    try:
        decoded = codec.decode(name, data)
    except BmsLinkError:
        return
    assert name == decoded.NAME


def _volts(hi: float = 750.0) -> st.SearchStrategy[float]:
    return st.floats(0.0, hi, allow_nan=False)


def _amps() -> st.SearchStrategy[float]:
    return st.floats(0.0, 400.0, allow_nan=False)


@given(_volts(), _amps(), st.sampled_from(list(ChargeMode)))
def test_bcl_round_trip_within_resolution(voltage_v: float, current_a: float, mode: ChargeMode) -> None:
    out = codec.decode("BCL", codec.encode(codec.Bcl(voltage_v, current_a, mode)))
    assert isinstance(out, codec.Bcl)
    assert out.voltage_v == pytest.approx(voltage_v, abs=0.05 + 1e-9)
    assert out.current_a == pytest.approx(current_a, abs=0.05 + 1e-9)
    assert out.mode == mode


@given(_volts(), _amps(), st.integers(0, 600), st.booleans())
def test_ccs_round_trip_within_resolution(v: float, i: float, minutes: int, permitted: bool) -> None:
    out = codec.decode("CCS", codec.encode(codec.Ccs(v, i, minutes, permitted)))
    assert isinstance(out, codec.Ccs)
    assert out.output_voltage_v == pytest.approx(v, abs=0.05 + 1e-9)
    assert out.output_current_a == pytest.approx(i, abs=0.05 + 1e-9)
    assert (out.charging_time_min, out.charging_permitted) == (minutes, permitted)


@given(_volts(), _amps(), st.floats(0.0, 24.0), st.floats(0.0, 1.0), st.integers(0, 15))
def test_bcs_round_trip_within_resolution(v: float, i: float, cell_v: float, soc: float, group: int) -> None:
    out = codec.decode("BCS", codec.encode(codec.Bcs(v, i, cell_v, soc, group, 10.0)))
    assert isinstance(out, codec.Bcs)
    assert out.voltage_v == pytest.approx(v, abs=0.05 + 1e-9)
    assert out.current_a == pytest.approx(i, abs=0.05 + 1e-9)
    assert out.max_cell_voltage_v == pytest.approx(cell_v, abs=0.005 + 1e-9)
    assert out.soc == pytest.approx(soc, abs=0.005 + 1e-9)
    assert out.max_cell_group == group


_BCP = st.tuples(
    st.floats(0.0, 24.0), _amps(), st.floats(0.0, 1000.0), _volts(), st.integers(-50, 200),
    st.floats(0.0, 1.0), _volts(),
)  # fmt: skip


@given(_BCP)
def test_bcp_round_trip_within_resolution(values: tuple[float, ...]) -> None:
    out = codec.decode("BCP", codec.encode(codec.Bcp(*values)))
    assert isinstance(out, codec.Bcp)
    resolution = (0.01, 0.1, 0.1, 0.1, 1.0, 0.001, 0.1)
    got = (
        *(out.max_cell_voltage_v, out.max_charge_current_a, out.nominal_energy_kwh),
        *(out.max_pack_voltage_v, out.max_temp_c, out.soc, out.pack_voltage_v),
    )
    for g, want, res in zip(got, values, resolution, strict=True):
        assert g == pytest.approx(want, abs=res / 2 + 1e-9)


@given(st.tuples(_volts(), _volts(), _amps(), _amps()))
def test_cml_round_trip_within_resolution(values: tuple[float, float, float, float]) -> None:
    out = codec.decode("CML", codec.encode(codec.Cml(*values)))
    assert isinstance(out, codec.Cml)
    got = (
        out.max_output_voltage_v,
        out.min_output_voltage_v,
        *(out.max_output_current_a, out.min_output_current_a),
    )
    for g, want in zip(got, values, strict=True):
        assert g == pytest.approx(want, abs=0.05 + 1e-9)


@given(st.integers(-50, 200), st.integers(-50, 200), st.lists(st.integers(0, 3), min_size=6, max_size=6))
def test_bsm_round_trip_is_exact(hi: int, lo: int, statuses: list[int]) -> None:
    names = ("cell_voltage", "soc", "overcurrent", "overtemp", "insulation", "connector")
    flags = {f"{name}_status": value for name, value in zip(names, statuses, strict=True)}
    bsm = codec.Bsm(float(hi), float(lo), 1, 1, 128, **flags, charging_permitted=statuses[0] % 2)
    assert codec.decode("BSM", codec.encode(bsm)) == bsm
