"""Fault injection for the simulated BMS peers: what can go wrong on the link, on command or on a schedule.

A `Fault` is one thing going wrong. `BmsCanNode.apply(fault)` and `BmsMqttNode.apply(fault)` carry it out
at once ("on command"); both nodes also take `schedule=FaultSchedule(...)`, whose `(at_s, fault)` entries
count seconds from the start of charging (CAN: the BMS enters its CHARGING phase after CRO 0xAA; MQTT: the
charger's first command), and apply each entry when its time comes ("on schedule"). Each applied fault is
logged (`bms_sim_fault_injected`) and recorded with the node's clock time in `node.injected`.

| fault             | CAN (GB/T 27930 node)                           | MQTT node                           |
|-------------------|-------------------------------------------------|-------------------------------------|
| silent            | nothing is sent any more                        | nothing is published any more       |
| drop:NAME         | one message type stops (BCL, BCS, BSM, ...)     | one type stops (telemetry, info)    |
| out_of_range      | the next BSM reads a 120 °C cell                | the next telemetry: a 120 °C cell   |
| corrupt           | one BCL with 3 data bytes (DLC 3, BCL has 5)    | one non-JSON payload                |
| truncated_tp      | multi-packet sessions (BCS) keep only TP.DT 1   | (not an MQTT fault)                 |
| overtemperature   | the BMS flags it (BSM) and stops (BST)          | the BMS stops with that reason      |
| insulation        | the BMS flags it (BSM) and stops (BST)          | the BMS stops with that reason      |
| broker_disconnect | (not a CAN fault)                               | the BMS leaves the broker           |
| restore           | undoes silent, drop and truncated_tp            | undoes silent, drop, disconnect     |

The text form (`Fault.parse`, `FaultSchedule.parse`) is `KIND[:NAME]` and `AT_S:KIND[:NAME],...`, e.g.
`"5:drop:BCS,20:restore"`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from chargeagent.errors import ConfigError

# Above the models' 100 °C plausibility limit (bms_link.models), inside GB/T's BSM range (-50..200 °C).
OUT_OF_RANGE_CELL_TEMP_C = 120.0


class FaultKind(StrEnum):
    SILENT = "silent"
    DROP = "drop"
    OUT_OF_RANGE = "out_of_range"
    CORRUPT = "corrupt"
    TRUNCATED_TP = "truncated_tp"
    OVERTEMPERATURE = "overtemperature"
    INSULATION = "insulation"
    BROKER_DISCONNECT = "broker_disconnect"
    RESTORE = "restore"


# What each simulated transport cannot do (the table above).
NOT_ON = {"can": {FaultKind.BROKER_DISCONNECT}, "mqtt": {FaultKind.TRUNCATED_TP}}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault; `message` names the message type for `drop` (and only for it)."""

    kind: FaultKind
    message: str | None = None

    def __post_init__(self) -> None:
        if (self.kind is FaultKind.DROP) != bool(self.message):
            raise ConfigError(f"fault {self.kind.value!r}: a message name goes with 'drop' and only with it")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`silent`, `drop:BCS`, `insulation`, ... (see the module docstring)."""
        kind, _, message = text.strip().partition(":")
        try:
            return cls(FaultKind(kind.strip().lower()), message.strip() or None)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ConfigError(f"unknown fault {text!r} (known: {known})") from None

    def __str__(self) -> str:
        return self.kind.value if self.message is None else f"{self.kind.value}:{self.message}"


class FaultSchedule:
    """`(at_s, fault)` entries handed out in time order (ties in the order given) once they are due."""

    def __init__(self, entries: Iterable[tuple[float, Fault | str]] = ()) -> None:
        self._heap: list[tuple[float, int, Fault]] = []
        self._order = itertools.count()
        for at_s, fault in entries:
            self.add(at_s, fault)

    @classmethod
    def parse(cls, text: str) -> FaultSchedule:
        """`"5:drop:BCS,20:restore"`: comma-separated `AT_S:FAULT` entries."""
        entries: list[tuple[float, Fault | str]] = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            at, _, fault = item.partition(":")
            try:
                entries.append((float(at), fault))
            except ValueError:
                raise ConfigError(f"fault schedule entry {item!r}: expected AT_S:FAULT") from None
        return cls(entries)

    def add(self, at_s: float, fault: Fault | str) -> None:
        if not at_s >= 0.0:  # also refuses NaN
            raise ConfigError(f"fault schedule time must be >= 0 s, got {at_s}")
        parsed = Fault.parse(fault) if isinstance(fault, str) else fault
        heapq.heappush(self._heap, (at_s, next(self._order), parsed))

    def due(self, elapsed_s: float) -> list[Fault]:
        """Remove and return the faults whose time has come, `elapsed_s` after charging began."""
        out = []
        while self._heap and self._heap[0][0] <= elapsed_s:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_at_s(self) -> float | None:
        """When the next fault is due (seconds after charging began); None when none is left."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def check(self, transport: str) -> FaultSchedule:
        """Raise `ConfigError` up front for a fault the `transport` ("can" or "mqtt") cannot carry out."""
        foreign = NOT_ON[transport]
        bad = sorted({str(fault) for _, _, fault in self._heap if fault.kind in foreign})
        if bad:
            raise ConfigError(f"fault(s) {', '.join(bad)} do not exist on {transport.upper()}")
        return self
