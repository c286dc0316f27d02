"""Device-model vocabulary: OCPP 2.0.1 enums, component/variable references, variable definitions.

A `Variable` carries what OCPP 2.0.1 part 1 calls the attribute's mutability and flags plus the
VariableCharacteristics (data type, unit, min/max, valuesList) and validates a value against them.
`Change` is what an accepted Set (or a value restored at start) hands the agent; its value never appears
in a repr because it may be a password. Sans-I/O: no ocpp import, nothing here reads a clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Mutability(StrEnum):
    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


class DataType(StrEnum):
    """DataEnumType (the ones we use)."""

    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    MEMBER_LIST = "MemberList"
    SEQUENCE_LIST = "SequenceList"


class GetStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


class ReportBase(StrEnum):
    CONFIGURATION_INVENTORY = "ConfigurationInventory"
    FULL_INVENTORY = "FullInventory"
    SUMMARY_INVENTORY = "SummaryInventory"


ACTUAL = "Actual"  # AttributeEnumType default; the only attribute this station keeps
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class ComponentRef:
    """ComponentType: name, optional instance, optional EVSE (and connector on that EVSE)."""

    name: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None

    @property
    def match_key(self) -> tuple[str, str | None, int | None, int | None]:
        instance = None if self.instance is None else self.instance.casefold()
        return self.name.casefold(), instance, self.evse_id, self.connector_id

    def to_ocpp(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.evse_id is not None:
            out["evse"] = {"id": self.evse_id}
            if self.connector_id is not None:
                out["evse"]["connectorId"] = self.connector_id
        return out

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any]) -> ComponentRef:
        evse = data.get("evse") or {}
        return cls(str(data["name"]), data.get("instance"), evse.get("id"), evse.get("connectorId"))


@dataclass(frozen=True, slots=True)
class VariableRef:
    """VariableType: name and optional instance (e.g. MessageAttempts / TransactionEvent)."""

    name: str
    instance: str | None = None

    @property
    def match_key(self) -> tuple[str, str | None]:
        return self.name.casefold(), None if self.instance is None else self.instance.casefold()

    def to_ocpp(self) -> dict[str, Any]:
        if self.instance is None:
            return {"name": self.name}
        return {"name": self.name, "instance": self.instance}

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any]) -> VariableRef:
        return cls(str(data["name"]), data.get("instance"))


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable's definition: the attribute's mutability and flags, and its characteristics."""

    component: ComponentRef
    variable: VariableRef
    data_type: DataType
    mutability: Mutability = Mutability.READ_WRITE
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None  # numbers: largest value; strings and lists: longest text (schema text)
    values_list: tuple[str, ...] = ()
    min_length: int = 0  # strings only (the schema has no field for it, so it is not reported)
    persistent: bool = False  # survives a restart (the agent stores accepted Sets)
    constant: bool = False  # never changed by the station at runtime
    reboot_required: bool = False  # an accepted Set answers RebootRequired: used from the next start
    summary: bool = False  # part of SummaryInventory

    @property
    def write_only(self) -> bool:
        return self.mutability is Mutability.WRITE_ONLY

    def validate(self, text: str) -> tuple[str | None, str | None]:
        """(canonical value, None) if `text` is valid for this variable, else (None, OCPP reasonCode)."""
        kind = self.data_type
        if kind is DataType.INTEGER or kind is DataType.DECIMAL:
            return self._validate_number(text.strip())
        if kind is DataType.BOOLEAN:
            lowered = text.strip().lower()
            return (lowered, None) if lowered in ("true", "false") else (None, "InvalidValue")
        if self.max_limit is not None and len(text) > self.max_limit:
            return None, "ValueTooLong"
        if kind is DataType.STRING:
            return (text, None) if len(text) >= self.min_length else (None, "ValueTooShort")
        members = [m.strip() for m in text.split(",")] if text.strip() else []
        if kind is DataType.OPTION_LIST and len(members) != 1:
            return None, "InvalidValue"
        if len(set(members)) != len(members) or any(m not in self.values_list for m in members):
            return None, "InvalidValue"
        return ",".join(members), None

    def _validate_number(self, text: str) -> tuple[str | None, str | None]:
        if self.data_type is DataType.INTEGER:
            if not _INTEGER.fullmatch(text):
                return None, "InvalidValue"
            number: float = int(text)
            canonical = str(int(text))
        else:
            try:
                number = float(text)
            except ValueError:
                return None, "InvalidValue"
            if not math.isfinite(number):
                return None, "InvalidValue"
            canonical = text
        if self.min_limit is not None and number < self.min_limit:
            return None, "ValueTooLow"
        if self.max_limit is not None and number > self.max_limit:
            return None, "ValueTooHigh"
        return canonical, None

    def characteristics(self) -> dict[str, Any]:
        """VariableCharacteristicsType (supportsMonitoring: no monitors in this station)."""
        out: dict[str, Any] = {"dataType": self.data_type.value, "supportsMonitoring": False}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min_limit is not None and self.data_type in (DataType.INTEGER, DataType.DECIMAL):
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list:
            out["valuesList"] = ",".join(self.values_list)
        return out


@dataclass(frozen=True, slots=True)
class Change:
    """An accepted Set (or a value restored at start) for the agent to persist and act on."""

    component: ComponentRef
    variable: VariableRef
    value: str = field(repr=False)  # never in a repr: it may be a password
    persistent: bool = False
    reboot_required: bool = False
    write_only: bool = False

    @property
    def name(self) -> str:
        """`Component.Variable[Instance]`, for log lines (never the value)."""
        return change_name(self.component, self.variable)

    @property
    def loggable_value(self) -> str:
        return "<write-only>" if self.write_only else self.value


@dataclass(frozen=True, slots=True)
class GetResult:
    status: GetStatus
    value: str | None = field(default=None, repr=False)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SetResult:
    status: SetStatus
    reason: str | None = None
    change: Change | None = None


def change_name(component: ComponentRef, variable: VariableRef) -> str:
    """`Component.Variable[Instance]`."""
    instance = f"[{variable.instance}]" if variable.instance else ""
    return f"{component.name}.{variable.name}{instance}"
