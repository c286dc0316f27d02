"""GB/T 27930-2015 message codec: typed messages <-> payload bytes, driven by our DBC (config/gbt27930.dbc).

The DBC is loaded once with cantools; cantools does the bit packing, this module does the scaling, the
range checks and the conversion to our units. Payloads are whole messages: BRM/BCP/BCS (> 8 bytes) are
encoded/decoded as one block and framed by `bms_link.j1939`. Each dataclass field names its DBC signal
and a conversion `kind` in its metadata, so the field tables below read like the standard's tables.

Sign convention: GB/T current fields (BCP max charge current, CML output currents, BCL demand, BCS measured
current, CCS output current) are 0.1 A/bit with a -400 A offset and the standard's data range is
-400..0 A, i.e. charging current is NEGATIVE on the wire. The dataclasses use chargeagent's convention,
positive INTO the battery, and the codec flips the sign (rule: every DBC signal in A with a -400 A
offset). So BCL 400.0 V / 120.0 A / CC encodes to `A0 0F F0 0A 02`.

Errors: `decode` raises only `BmsLinkError` -- its subclass `ImplausibleValue` when the frame is well
formed but a field is outside the DBC data range or a required field is 'not available', the base class
for structural problems (unknown message, wrong length). Unused bits are sent as 1 (GB/T 27930-2015
clause 7.9); an all-ones field of 8 bits or more decodes as 'not available' (SAE J1939-71 convention).
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import cantools
from cantools.database.can import Database
from cantools.database.errors import Error as CantoolsError

from bms_link.models import BatteryType, ChargeMode
from chargeagent.errors import BmsLinkError

ENV_DBC = "CHARGEAGENT_DBC"
READY = 0xAA  # SPN2560 recognised / SPN2829 BRO / SPN2830 CRO ready
NOT_READY = 0x00
_CURRENT_OFFSET_A = -400.0
_RANGE_EPS = 1e-6
# SPN2566 battery type codes (GB/T 27930-2015 table 11); codes we do not model decode as OTHER.
_BATTERY = {
    0x01: BatteryType.LEAD_ACID,
    0x03: BatteryType.LFP,
    0x04: BatteryType.LMO,
    0x06: BatteryType.NMC,
    0x08: BatteryType.LTO,
}
_BATTERY_CODE = {v: k for k, v in _BATTERY.items()} | {BatteryType.OTHER: 0xFF}
_MODE = {0x01: ChargeMode.CV, 0x02: ChargeMode.CC}  # SPN3074
_MODE_CODE = {v: k for k, v in _MODE.items()}


class ImplausibleValue(BmsLinkError):
    """A well-formed frame carries a value the standard does not allow (or lacks a required one)."""


def dbc_path() -> Path:
    """Where our DBC is: $CHARGEAGENT_DBC, else config/gbt27930.dbc next to the installed packages."""
    override = os.environ.get(ENV_DBC)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "config" / "gbt27930.dbc"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """Static facts about one message, read from the DBC."""

    name: str
    pgn: int
    priority: int
    frame_id: int
    length: int
    min_length: int
    sender: str
    period_s: float


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    scale: float
    offset: float
    minimum: float
    maximum: float
    na_raw: int | None  # all-ones raw value = 'not available' (fields of 8 bits or more)
    flip: bool  # current field: negative on the wire when charging
    identity: bool  # scale 1, offset 0: keep Python ints exact (64-bit VIN parts, IDs)
    digits: int  # decimals of the resolution: 0.1 V/bit decodes to 403.2, not 403.20000000000005


def _sig(signal: str, kind: str = "num", default: Any = MISSING) -> Any:
    return field(default=default, metadata={"sig": signal, "kind": kind})


class _Message:
    """One cached cantools message plus what we need to scale it quickly."""

    def __init__(self, message: Any) -> None:
        self.db_message = message
        frame_id = int(message.frame_id)
        name = str(message.name)
        self.spec = MessageSpec(
            name=name,
            pgn=((frame_id >> 16) & 0xFF) << 8,
            priority=(frame_id >> 26) & 0x7,
            frame_id=frame_id,
            length=int(message.length),
            # The standard's message list says BRM is 41 bytes, its field table adds up to 49 (the last
            # 8 are the BMS software version): accept both, pad the short form with 'not available'.
            min_length=41 if name == "BRM" else int(message.length),
            sender=message.senders[0] if message.senders else "",
            period_s=(message.cycle_time or 0) / 1000.0,
        )
        self.signals = tuple(
            _Signal(
                name=s.name,
                scale=float(s.scale),
                offset=float(s.offset),
                minimum=float(s.minimum if s.minimum is not None else 0),
                maximum=float(s.maximum if s.maximum is not None else (1 << s.length) - 1),
                na_raw=(1 << s.length) - 1 if s.length >= 8 else None,
                flip=s.unit == "A" and float(s.offset) == _CURRENT_OFFSET_A,
                identity=s.scale == 1 and s.offset == 0,
                digits=max(0, round(-math.log10(float(s.scale)))),
            )
            for s in message.signals
        )

    def decode(self, data: bytes) -> dict[str, Any]:
        name = self.spec.name
        if len(data) < self.spec.min_length:
            raise BmsLinkError(f"{name}: {len(data)} bytes, expected {self.spec.length}")
        if len(data) < self.spec.length:
            data = bytes(data) + b"\xff" * (self.spec.length - len(data))
        raw = self.db_message.decode(data, decode_choices=False, scaling=False)
        out: dict[str, Any] = {}
        for sig in self.signals:
            value = raw[sig.name]
            if value == sig.na_raw:
                out[sig.name] = None
                continue
            phys = value if sig.identity else round(value * sig.scale + sig.offset, sig.digits)
            if not sig.minimum - _RANGE_EPS <= phys <= sig.maximum + _RANGE_EPS:
                lo, hi = sig.minimum, sig.maximum
                raise ImplausibleValue(f"{name}.{sig.name}={phys:g} outside [{lo:g}, {hi:g}]")
            out[sig.name] = -phys if sig.flip else phys
        return out

    def encode(self, values: dict[str, Any]) -> bytes:
        raw: dict[str, int] = {}
        for sig in self.signals:
            value = values.get(sig.name)
            if value is None:
                raw[sig.name] = sig.na_raw if sig.na_raw is not None else 3
                continue
            if sig.identity and isinstance(value, int):
                phys: float = value
            else:
                phys = -float(value) if sig.flip else float(value)
            if not sig.minimum - _RANGE_EPS <= phys <= sig.maximum + _RANGE_EPS:
                lo, hi = sig.minimum, sig.maximum
                raise BmsLinkError(
                    f"cannot encode {self.spec.name}.{sig.name}={phys:g}: outside [{lo:g}, {hi:g}]"
                )
            raw[sig.name] = phys if isinstance(phys, int) else round((phys - sig.offset) / sig.scale)
        return bytes(self.db_message.encode(raw, scaling=False, padding=True, strict=False))


@cache
def _messages() -> dict[str, _Message]:
    path = dbc_path()
    try:
        db = cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except (OSError, CantoolsError) as exc:
        raise BmsLinkError(f"cannot load GB/T DBC {path}: {exc}") from exc
    if not isinstance(db, Database):
        raise BmsLinkError(f"{path} is not a CAN database")
    return {m.name: _Message(m) for m in db.messages}


@cache
def _by_pgn() -> dict[int, str]:
    return {m.spec.pgn: name for name, m in _messages().items()}


def spec(name: str) -> MessageSpec:
    """Facts (PGN, priority, ID, length, period) about message `name` (e.g. "BCL")."""
    try:
        return _messages()[name].spec
    except KeyError:
        raise BmsLinkError(f"unknown GB/T message {name!r}") from None


def message_name(pgn: int) -> str | None:
    """The GB/T message name for a PGN, or None if the DBC does not define it."""
    return _by_pgn().get(pgn)


def all_specs() -> tuple[MessageSpec, ...]:
    """Every message of the DBC."""
    return tuple(m.spec for m in _messages().values())


# --- typed messages: field = (DBC signal, conversion); our units, current positive into the battery ---


@dataclass(frozen=True, slots=True)
class Chm:
    NAME: ClassVar[str] = "CHM"
    version_major: int = _sig("version_major", "int", 1)  # GB/T 27930-2015 is protocol V1.1
    version_minor: int = _sig("version_minor", "int", 1)


@dataclass(frozen=True, slots=True)
class Bhm:
    NAME: ClassVar[str] = "BHM"
    max_charge_voltage_v: float = _sig("max_charge_voltage")


@dataclass(frozen=True, slots=True)
class Crm:
    NAME: ClassVar[str] = "CRM"
    recognized: bool = _sig("recognition", "ready")
    charger_number: int | None = _sig("charger_number", "int", 1)
    region_code: str | None = _sig("region_code", "ascii", None)


@dataclass(frozen=True, slots=True)
class Brm:
    NAME: ClassVar[str] = "BRM"
    battery_type: BatteryType = _sig("battery_type", "battery")  # noqa: RUF009 - field() wrapper
    rated_capacity_ah: float = _sig("rated_capacity")
    rated_voltage_v: float = _sig("rated_voltage")
    vin: str | None = _sig("vin_1", "vin", None)  # 17 ASCII bytes over vin_1..vin_3
    manufacturer: str | None = _sig("manufacturer", "ascii", None)
    pack_serial: int | None = _sig("pack_serial", "int", None)
    charge_count: int | None = _sig("charge_count", "int", None)
    version_major: int | None = _sig("version_major", "int", 1)
    version_minor: int | None = _sig("version_minor", "int", 1)


@dataclass(frozen=True, slots=True)
class Bcp:
    NAME: ClassVar[str] = "BCP"
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    max_charge_current_a: float = _sig("max_charge_current")
    nominal_energy_kwh: float = _sig("nominal_energy")
    max_pack_voltage_v: float = _sig("max_charge_voltage")
    max_temp_c: float = _sig("max_temp")
    soc: float = _sig("soc", "pct")  # 0..1 (wire: 0.1 %/bit)
    pack_voltage_v: float = _sig("pack_voltage")


@dataclass(frozen=True, slots=True)
class Cts:
    """Charger local time; every byte is packed BCD on the wire."""

    NAME: ClassVar[str] = "CTS"
    year: int = _sig("year", "bcd")
    month: int = _sig("month", "bcd")
    day: int = _sig("day", "bcd")
    hour: int = _sig("hour", "bcd")
    minute: int = _sig("minute", "bcd")
    second: int = _sig("second", "bcd")

    @classmethod
    def at(cls, moment: datetime) -> Cts:
        return cls(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


@dataclass(frozen=True, slots=True)
class Cml:
    NAME: ClassVar[str] = "CML"
    max_output_voltage_v: float = _sig("max_output_voltage")
    min_output_voltage_v: float = _sig("min_output_voltage")
    max_output_current_a: float = _sig("max_output_current")
    min_output_current_a: float = _sig("min_output_current", "num", 0.0)


@dataclass(frozen=True, slots=True)
class Bro:
    NAME: ClassVar[str] = "BRO"
    ready: bool = _sig("ready", "ready")


@dataclass(frozen=True, slots=True)
class Cro:
    NAME: ClassVar[str] = "CRO"
    ready: bool = _sig("ready", "ready")


@dataclass(frozen=True, slots=True)
class Bcl:
    NAME: ClassVar[str] = "BCL"
    voltage_v: float = _sig("voltage_demand")
    current_a: float = _sig("current_demand")
    mode: ChargeMode = _sig("charge_mode", "mode")  # noqa: RUF009 - field() wrapper


@dataclass(frozen=True, slots=True)
class Bcs:
    NAME: ClassVar[str] = "BCS"
    voltage_v: float = _sig("voltage")
    current_a: float = _sig("current")
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    soc: float = _sig("soc", "pct")  # 0..1 (wire: 1 %/bit)
    max_cell_group: int = _sig("max_cell_group", "int", 0)
    remaining_min: float | None = _sig("remaining_time", "num", None)


@dataclass(frozen=True, slots=True)
class Ccs:
    NAME: ClassVar[str] = "CCS"
    output_voltage_v: float = _sig("output_voltage")
    output_current_a: float = _sig("output_current")
    charging_time_min: int = _sig("charging_time", "int", 0)
    charging_permitted: bool = _sig("charging_permitted", "bit", True)  # SPN3929 00 pause, 01 permit


@dataclass(frozen=True, slots=True)
class Bsm:
    """Status fields keep the 2-bit wire codes: 00 normal, 01 high/fault, 10 low/not credible, 11 n/a."""

    NAME: ClassVar[str] = "BSM"
    max_temp_c: float = _sig("max_temp")
    min_temp_c: float = _sig("min_temp")
    max_cell_voltage_number: int | None = _sig("max_cell_voltage_number", "int", None)
    max_temp_probe: int | None = _sig("max_temp_probe", "int", None)
    min_temp_probe: int | None = _sig("min_temp_probe", "int", None)
    cell_voltage_status: int = _sig("cell_voltage_status", "int", 0)
    soc_status: int = _sig("soc_status", "int", 0)
    overcurrent_status: int = _sig("overcurrent_status", "int", 0)
    overtemp_status: int = _sig("overtemp_status", "int", 0)
    insulation_status: int = _sig("insulation_status", "int", 0)
    connector_status: int = _sig("connector_status", "int", 0)
    charging_permitted: int = _sig("charging_permitted", "int", 1)  # SPN3096 00 forbidden, 01 ok


@dataclass(frozen=True, slots=True)
class Bst:
    """SPN3511-3513, 2-bit codes: 00 no, 01 yes/fault, 10 not credible."""

    NAME: ClassVar[str] = "BST"
    soc_target_reached: int = _sig("soc_target_reached", "int", 0)
    total_voltage_reached: int = _sig("total_voltage_reached", "int", 0)
    cell_voltage_reached: int = _sig("cell_voltage_reached", "int", 0)
    charger_stopped: int = _sig("charger_stopped", "int", 0)
    fault_insulation: int = _sig("fault_insulation", "int", 0)
    fault_connector_overtemp: int = _sig("fault_connector_overtemp", "int", 0)
    fault_bms_overtemp: int = _sig("fault_bms_overtemp", "int", 0)
    fault_connector: int = _sig("fault_connector", "int", 0)
    fault_pack_overtemp: int = _sig("fault_pack_overtemp", "int", 0)
    fault_hv_relay: int = _sig("fault_hv_relay", "int", 0)
    fault_cc2_voltage: int = _sig("fault_cc2_voltage", "int", 0)
    fault_other: int = _sig("fault_other", "int", 0)
    error_overcurrent: int = _sig("error_overcurrent", "int", 0)
    error_voltage: int = _sig("error_voltage", "int", 0)


@dataclass(frozen=True, slots=True)
class Cst:
    """SPN3521-3523, 2-bit codes: 00 no, 01 yes/fault, 10 not credible."""

    NAME: ClassVar[str] = "CST"
    charger_setpoint_reached: int = _sig("charger_setpoint_reached", "int", 0)
    manual_stop: int = _sig("manual_stop", "int", 0)
    fault_stop: int = _sig("fault_stop", "int", 0)
    bms_stopped: int = _sig("bms_stopped", "int", 0)
    fault_charger_overtemp: int = _sig("fault_charger_overtemp", "int", 0)
    fault_connector: int = _sig("fault_connector", "int", 0)
    fault_internal_overtemp: int = _sig("fault_internal_overtemp", "int", 0)
    fault_energy_not_deliverable: int = _sig("fault_energy_not_deliverable", "int", 0)
    fault_emergency_stop: int = _sig("fault_emergency_stop", "int", 0)
    fault_other: int = _sig("fault_other", "int", 0)
    error_current_mismatch: int = _sig("error_current_mismatch", "int", 0)
    error_voltage: int = _sig("error_voltage", "int", 0)


@dataclass(frozen=True, slots=True)
class Bsd:
    NAME: ClassVar[str] = "BSD"
    soc: float = _sig("soc", "pct")
    min_cell_voltage_v: float = _sig("min_cell_voltage")
    max_cell_voltage_v: float = _sig("max_cell_voltage")
    min_temp_c: float = _sig("min_temp")
    max_temp_c: float = _sig("max_temp")


@dataclass(frozen=True, slots=True)
class Csd:
    NAME: ClassVar[str] = "CSD"
    charging_time_min: int = _sig("charging_time", "int", 0)
    energy_kwh: float = _sig("energy", "num", 0.0)
    charger_number: int | None = _sig("charger_number", "int", 1)


@dataclass(frozen=True, slots=True)
class Bem:
    """Timeouts the BMS saw (SPN3901-3907): 00 normal, 01 timeout."""

    NAME: ClassVar[str] = "BEM"
    crm00_timeout: int = _sig("crm00_timeout", "int", 0)
    crmaa_timeout: int = _sig("crmaa_timeout", "int", 0)
    cml_timeout: int = _sig("cml_timeout", "int", 0)
    cro_timeout: int = _sig("cro_timeout", "int", 0)
    ccs_timeout: int = _sig("ccs_timeout", "int", 0)
    cst_timeout: int = _sig("cst_timeout", "int", 0)
    csd_timeout: int = _sig("csd_timeout", "int", 0)


@dataclass(frozen=True, slots=True)
class Cem:
    """Timeouts the charger saw (SPN3921-3927): 00 normal, 01 timeout."""

    NAME: ClassVar[str] = "CEM"
    brm_timeout: int = _sig("brm_timeout", "int", 0)
    bcp_timeout: int = _sig("bcp_timeout", "int", 0)
    bro_timeout: int = _sig("bro_timeout", "int", 0)
    bcs_timeout: int = _sig("bcs_timeout", "int", 0)
    bcl_timeout: int = _sig("bcl_timeout", "int", 0)
    bst_timeout: int = _sig("bst_timeout", "int", 0)
    bsd_timeout: int = _sig("bsd_timeout", "int", 0)


GbtMessage = (
    Chm
    | Bhm
    | Crm
    | Brm
    | Bcp
    | Cts
    | Cml
    | Bro
    | Cro
    | Bcl
    | Bcs
    | Ccs
    | Bsm
    | Bst
    | Cst
    | Bsd
    | Csd
    | Bem
    | Cem
)
_ALL_CLASSES = (Chm, Bhm, Crm, Brm, Bcp, Cts, Cml, Bro, Cro, Bcl, Bcs, Ccs, Bsm, Bst, Cst)
_CLASSES: dict[str, Any] = {c.NAME: c for c in (*_ALL_CLASSES, Bsd, Csd, Bem, Cem)}


def _plan(cls: Any) -> tuple[tuple[str, str, str, bool, Any], ...]:
    """(attribute, signal, kind, required, default) per field, computed once per class."""
    cached = _PLANS.get(cls)
    if cached is None:
        cached = tuple(
            (f.name, f.metadata["sig"], f.metadata["kind"], f.default is MISSING, f.default)
            for f in fields(cls)
        )
        _PLANS[cls] = cached
    return cached


_PLANS: dict[Any, tuple[tuple[str, str, str, bool, Any], ...]] = {}


def _to_wire(kind: str, value: Any, out: dict[str, Any], sig: str) -> None:
    if value is None or kind in ("num", "int"):
        out[sig] = value
    elif kind == "pct":
        out[sig] = value * 100.0
    elif kind == "ready":
        out[sig] = READY if value else NOT_READY
    elif kind == "bit":
        out[sig] = 1 if value else 0
    elif kind == "mode":
        out[sig] = _MODE_CODE[value]
    elif kind == "battery":
        out[sig] = _BATTERY_CODE[value]
    elif kind == "bcd":
        out[sig] = int(str(int(value)), 16)
    elif kind == "ascii":
        size = 3 if sig == "region_code" else 4
        out[sig] = int.from_bytes(value.encode("ascii", "replace")[:size].ljust(size), "little")
    elif kind == "vin":
        vin = value.encode("ascii", "replace")[:17].ljust(17, b"\xff")
        out["vin_1"], out["vin_2"] = int.from_bytes(vin[:8], "little"), int.from_bytes(vin[8:16], "little")
        out["vin_3"] = vin[16]


def _from_wire(kind: str, value: Any, s: dict[str, Any], name: str, sig: str) -> Any:
    if kind == "num":
        return value
    if kind == "int":
        return int(value)
    if kind == "pct":
        return value / 100.0
    if kind == "ready":
        if value not in (READY, NOT_READY):
            raise ImplausibleValue(f"{name}.{sig}=0x{int(value):02X} is neither 0x00 nor 0xAA")
        return value == READY
    if kind == "bit":
        return value == 1
    if kind == "mode":
        return _MODE[int(value)]  # the DBC range [1, 2] was checked already
    if kind == "battery":
        return _BATTERY.get(int(value), BatteryType.OTHER)
    if kind == "bcd":
        text = f"{int(value):x}"
        if not text.isdigit():
            raise ImplausibleValue(f"{name}.{sig}=0x{int(value):X} is not packed BCD")
        return int(text)
    if kind == "ascii":
        size = 3 if sig == "region_code" else 4
        return int(value).to_bytes(size, "little").decode("ascii", "replace").rstrip("\x00 ")
    parts = ((s["vin_1"], 8), (s["vin_2"], 8), (s["vin_3"], 1))  # kind == "vin"
    raw = b"".join(((1 << 8 * n) - 1 if v is None else v).to_bytes(n, "little") for v, n in parts)
    return None if raw == b"\xff" * 17 else raw.decode("ascii", "replace")


def encode(msg: GbtMessage) -> bytes:
    """Payload bytes for `msg` (unused bits set to 1). Raises `BmsLinkError` if a value is out of range."""
    return _encode_cached(msg)


# Periodic GB/T messages repeat the same content most of the time (CCS, BCL, BSM every 50-250 ms), so
# both directions are memoised: messages are frozen dataclasses, payloads are bytes.
@lru_cache(maxsize=1024)
def _encode_cached(msg: GbtMessage) -> bytes:
    out: dict[str, Any] = {}
    for attr, sig, kind, _required, _default in _plan(type(msg)):
        _to_wire(kind, getattr(msg, attr), out, sig)
    return _messages()[msg.NAME].encode(out)


def decode(name: str, data: bytes) -> GbtMessage:
    """Typed message from payload bytes; raises only `BmsLinkError` (see module docstring)."""
    return _decode_cached(name, bytes(data))


@lru_cache(maxsize=1024)
def _decode_cached(name: str, data: bytes) -> GbtMessage:
    message, cls = _messages().get(name), _CLASSES.get(name)
    if message is None or cls is None:
        raise BmsLinkError(f"unknown GB/T message {name!r}")
    try:
        s = message.decode(data)
        kwargs: dict[str, Any] = {}
        for attr, sig, kind, required, default in _plan(cls):
            value = s[sig]
            if value is None and kind != "vin":
                if required:
                    raise ImplausibleValue(f"{name}.{sig} is 'not available' but required")
                kwargs[attr] = default
            else:
                kwargs[attr] = _from_wire(kind, value, s, name, sig)
        result: GbtMessage = cls(**kwargs)
    except BmsLinkError:
        raise
    except Exception as exc:  # cantools/bitstruct errors on malformed payloads: map at the boundary
        raise BmsLinkError(f"{name}: undecodable payload {bytes(data).hex()}: {exc}") from exc
    return result


def decode_pgn(pgn: int, data: bytes) -> GbtMessage:
    """Like `decode`, keyed by PGN (what the J1939 layer delivers)."""
    name = message_name(pgn)
    if name is None:
        raise BmsLinkError(f"PGN 0x{pgn:04X} is not a GB/T 27930 message")
    return decode(name, data)
