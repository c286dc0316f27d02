"""GB/T 27930-2015 message codec: typed messages <-> payload bytes, driven by our DBC (config/gbt27930.dbc).

The DBC is loaded once with cantools; cantools does the bit packing, this module does the scaling, the
range checks and the conversion to our units. Payloads are whole messages: BRM/BCP/BCS (> 8 bytes) are
encoded/decoded as one block and framed by `bms_link.j1939`. The typed messages live in
`bms_link.gbt_messages` (re-exported here): each field names its DBC signal and a conversion `kind`.

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
from dataclasses import MISSING, dataclass, fields
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import cantools
from cantools.database.can import Database
from cantools.database.errors import Error as CantoolsError

from bms_link.gbt_messages import (
    Bcl,
    Bcp,
    Bcs,
    Bem,
    Bhm,
    Brm,
    Bro,
    Bsd,
    Bsm,
    Bst,
    Ccs,
    Cem,
    Chm,
    Cml,
    Crm,
    Cro,
    Csd,
    Cst,
    Cts,
    GbtMessage,
)
from bms_link.models import BatteryType, ChargeMode
from chargeagent.errors import BmsLinkError

# The message dataclasses moved to `bms_link.gbt_messages`; they stay importable from here.
__all__ = [
    "ENV_DBC",
    "NOT_READY",
    "READY",
    "Bcl",
    "Bcp",
    "Bcs",
    "Bem",
    "Bhm",
    "Brm",
    "Bro",
    "Bsd",
    "Bsm",
    "Bst",
    "Ccs",
    "Cem",
    "Chm",
    "Cml",
    "Crm",
    "Cro",
    "Csd",
    "Cst",
    "Cts",
    "GbtMessage",
    "ImplausibleValue",
    "MessageSpec",
    "all_specs",
    "dbc_path",
    "decode",
    "decode_pgn",
    "encode",
    "message_name",
    "spec",
]

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
