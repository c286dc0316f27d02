"""OCPP 2.0.1 device model without I/O: variables and their Actual attribute; Get/Set/report rules.

OCPP 2.0.1 part 1 (device model) and part 2 B05 (SetVariables), B06 (GetVariables), B07 (GetBaseReport):
- a variable is addressed by component (name, instance, evse id, connector id) and variable (name, instance);
  names are case-insensitive (ComponentType/VariableType schema text);
- only the Actual attribute exists here: any other attributeType is NotSupportedAttributeType;
- WriteOnly values are never returned (GetVariables -> Rejected, reports omit the value) and never appear in
  a repr or a log line; ReadOnly values are never written by SetVariables (-> Rejected);
- a Set is validated against the data type and characteristics (min/max, valuesList, string length); an
  accepted Set returns a `Change` the caller persists and acts on; variables flagged `reboot_required` answer
  RebootRequired (stored now, used from the next start);
- DeviceDataCtrlr.ItemsPerMessage limits requests and report pages (B06.FR.05: items beyond the limit are
  answered Rejected; see `station.protocol.device_variables` for the station's table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any, TypeVar

from chargeagent.clock import ocpp_timestamp
from chargeagent.errors import ConfigError
from station.protocol.device_types import (
    ACTUAL,
    Change,
    ComponentRef,
    GetResult,
    GetStatus,
    Mutability,
    ReportBase,
    SetResult,
    SetStatus,
    Variable,
    VariableRef,
    change_name,
)

DEVICE_DATA = "DeviceDataCtrlr"

Value = str | Callable[[], str]  # a stored value, or a live reading of station state (e.g. connector status)
_Key = tuple[tuple[str, str | None, int | None, int | None], tuple[str, str | None]]
_T = TypeVar("_T")


def _key(component: ComponentRef, variable: VariableRef) -> _Key:
    return component.match_key, variable.match_key


# Definitions are immutable and the same for every station a process runs (the fleet simulator runs
# thousands): one shared instance per distinct definition and key, ~20 KiB less per agent.
_SHARED: dict[object, object] = {}


def _shared(item: _T) -> _T:
    return _SHARED.setdefault(item, item)  # type: ignore[return-value]


class DeviceModel:
    """The station's variables (definition + Actual value), in definition order (reports keep it)."""

    def __init__(self) -> None:
        self._defs: dict[_Key, Variable] = {}
        self._values: dict[_Key, Value] = {}
        self._components: AbstractSet[tuple[str, str | None, int | None, int | None]] = set()
        self._sealed = False

    def seal(self) -> None:
        """All variables are defined: share the definition table with every model in the process that has
        the same one (a fleet's stations do; ~1.6 KiB each). A later `add` copies it first."""
        table = tuple(self._defs.items())
        self._defs = _SHARED.setdefault(table, self._defs)  # type: ignore[assignment]
        self._components = _shared(frozenset(self._components))
        self._sealed = True

    def add(self, definition: Variable, value: Value) -> None:
        """Define a variable with its initial value (from configuration); ConfigError if that is invalid."""
        if self._sealed:  # copy on write: the sealed tables may be other stations' too
            self._defs, self._components, self._sealed = dict(self._defs), set(self._components), False
        definition = _shared(definition)
        key = _shared(_key(definition.component, definition.variable))
        if key in self._defs:
            raise ConfigError(f"device model: {definition.component.name}.{definition.variable.name} twice")
        if isinstance(value, str):
            canonical, reason = definition.validate(value)
            if canonical is None:
                raise ConfigError(
                    f"device model: {definition.component.name}.{definition.variable.name}: {reason}"
                )
            value = _shared(canonical)  # mostly the same defaults on every agent
        self._defs[key] = definition
        self._values[key] = value
        components = self._components if isinstance(self._components, set) else set(self._components)
        components.add(_shared(definition.component.match_key))
        self._components = components

    def definitions(self) -> list[Variable]:
        return list(self._defs.values())

    def _lookup(self, component: ComponentRef, variable: VariableRef) -> tuple[Variable | None, str]:
        """(definition, "") or (None, "UnknownComponent" | "UnknownVariable") (B05.FR.04, B06.FR.07)."""
        definition = self._defs.get(_key(component, variable))
        if definition is not None:
            return definition, ""
        known = component.match_key in self._components
        return None, "UnknownVariable" if known else "UnknownComponent"

    def definition(self, component: ComponentRef, variable: VariableRef) -> Variable | None:
        return self._lookup(component, variable)[0]

    def _read(self, definition: Variable) -> str:
        value = self._values[_key(definition.component, definition.variable)]
        return value if isinstance(value, str) else value()

    def value(self, component: ComponentRef, variable: VariableRef) -> str:
        """The Actual value for the station's own use (also WriteOnly ones); KeyError if undefined."""
        definition, _ = self._lookup(component, variable)
        if definition is None:
            raise KeyError(f"{component.name}.{variable.name}")
        return self._read(definition)

    # --- B06 GetVariables ----------------------------------------------------------------------
    def get(self, component: ComponentRef, variable: VariableRef, attribute_type: str = ACTUAL) -> GetResult:
        definition, unknown = self._lookup(component, variable)
        if definition is None:
            return GetResult(GetStatus(unknown))
        if attribute_type != ACTUAL:
            return GetResult(GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if definition.write_only:
            return GetResult(GetStatus.REJECTED, reason="WriteOnly")
        return GetResult(GetStatus.ACCEPTED, self._read(definition))

    # --- B05 SetVariables ----------------------------------------------------------------------
    def set(
        self, component: ComponentRef, variable: VariableRef, text: str, attribute_type: str = ACTUAL
    ) -> SetResult:
        definition, unknown = self._lookup(component, variable)
        if definition is None:
            return SetResult(SetStatus(unknown))
        if attribute_type != ACTUAL:
            return SetResult(SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if definition.mutability is Mutability.READ_ONLY:
            return SetResult(SetStatus.REJECTED, "ReadOnly")
        change, reason = self._assign(definition, text)
        if change is None:
            return SetResult(SetStatus.REJECTED, reason)
        status = SetStatus.REBOOT_REQUIRED if definition.reboot_required else SetStatus.ACCEPTED
        return SetResult(status, None, change)

    def _assign(self, definition: Variable, text: str) -> tuple[Change | None, str | None]:
        canonical, reason = definition.validate(text)
        if canonical is None:
            return None, reason
        self._values[_key(definition.component, definition.variable)] = canonical
        change = Change(
            definition.component,
            definition.variable,
            canonical,
            persistent=definition.persistent,
            reboot_required=definition.reboot_required,
            write_only=definition.write_only,
        )
        return change, None

    def update(self, component: ComponentRef, variable: VariableRef, text: str) -> Change:
        """The station itself changes a value (e.g. the BootNotification interval); mutability ignored."""
        definition, unknown = self._lookup(component, variable)
        if definition is None:
            raise KeyError(f"{component.name}.{variable.name}: {unknown}")
        change, reason = self._assign(definition, text)
        if change is None:
            raise ValueError(f"{change_name(component, variable)}: {reason}")
        return change

    def restore(
        self, stored: Iterable[tuple[ComponentRef, VariableRef, str]]
    ) -> tuple[list[Change], list[str]]:
        """Apply values stored by a previous run over the configured defaults.

        Only persistent, writable variables are restored; a stored value that no longer validates (the
        definition changed between versions) is skipped. Returns (changes applied, one line per skipped).
        """
        applied: list[Change] = []
        skipped: list[str] = []
        for component, variable, text in stored:
            definition, _ = self._lookup(component, variable)
            name = change_name(component, variable)
            if definition is None or not definition.persistent:
                skipped.append(f"{name}: not a persistent variable")
                continue
            if definition.mutability is Mutability.READ_ONLY:
                skipped.append(f"{name}: read-only")
                continue
            change, reason = self._assign(definition, text)
            if change is None:
                skipped.append(f"{name}: {reason}")
            else:
                applied.append(change)
        return applied, skipped

    # --- B07 GetBaseReport -> NotifyReport -----------------------------------------------------
    def report(self, base: ReportBase) -> list[dict[str, Any]]:
        """ReportDataType entries for a base report.

        ConfigurationInventory: the variables a CSMS can write (ReadWrite/WriteOnly); FullInventory: all;
        SummaryInventory: availability (the state an operator's overview shows). WriteOnly values are
        reported without a value (VariableAttributeType: 'may only be omitted when WriteOnly').
        """
        chosen = [
            d
            for d in self._defs.values()
            if base is ReportBase.FULL_INVENTORY
            or (base is ReportBase.CONFIGURATION_INVENTORY and d.mutability is not Mutability.READ_ONLY)
            or (base is ReportBase.SUMMARY_INVENTORY and d.summary)
        ]
        return [self._report_data(d) for d in chosen]

    def _report_data(self, definition: Variable) -> dict[str, Any]:
        attribute: dict[str, Any] = {"type": ACTUAL}
        if not definition.write_only:
            attribute["value"] = self._read(definition)
        attribute["mutability"] = definition.mutability.value
        attribute["persistent"] = definition.persistent
        attribute["constant"] = definition.constant
        return {
            "component": definition.component.to_ocpp(),
            "variable": definition.variable.to_ocpp(),
            "variableAttribute": [attribute],
            "variableCharacteristics": definition.characteristics(),
        }

    def items_per_message(self, instance: str) -> int:
        """DeviceDataCtrlr.ItemsPerMessage[GetReport / GetVariables / SetVariables]; no limit if undefined."""
        try:
            return int(self.value(ComponentRef(DEVICE_DATA), VariableRef("ItemsPerMessage", instance)))
        except KeyError:
            return 2**31 - 1

    # --- OCPP-shaped requests (camelCase dicts in and out) -------------------------------------
    def get_variables(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """GetVariableResult entries; B06.FR.05: beyond ItemsPerMessage[GetVariables] -> Rejected."""
        limit = self.items_per_message("GetVariables")
        results = []
        for index, item in enumerate(data):
            attribute_type = item.get("attributeType", ACTUAL)
            if index >= limit:
                result = GetResult(GetStatus.REJECTED, reason="TooManyElements")
            else:
                component = ComponentRef.from_ocpp(item["component"])
                result = self.get(component, VariableRef.from_ocpp(item["variable"]), attribute_type)
            entry = _result_entry(item, result.status.value, result.reason)
            if result.value is not None:
                entry["attributeValue"] = result.value
            results.append(entry)
        return results

    def set_variables(self, data: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Change]]:
        """SetVariableResult entries and the changes to act on.

        More items than ItemsPerMessage[SetVariables]: every item is Rejected (TooManyElements) and nothing
        is applied, so a CSMS never ends up with half a configuration it did not ask for.
        """
        too_many = len(data) > self.items_per_message("SetVariables")
        results, changes = [], []
        for item in data:
            attribute_type = item.get("attributeType", ACTUAL)
            if too_many:
                result = SetResult(SetStatus.REJECTED, "TooManyElements")
            else:
                component = ComponentRef.from_ocpp(item["component"])
                variable = VariableRef.from_ocpp(item["variable"])
                result = self.set(component, variable, str(item["attributeValue"]), attribute_type)
            entry = _result_entry(item, result.status.value, result.reason)
            if result.change is not None:
                changes.append(result.change)
            results.append(entry)
        return results, changes

    def base_report(
        self, request_id: int, base: str, generated_at: datetime
    ) -> tuple[str, list[dict[str, Any]]]:
        """GetBaseReport: (GenericDeviceModelStatus, NotifyReport payloads to send after the response)."""
        try:
            report_base = ReportBase(base)
        except ValueError:
            return "NotSupported", []
        items = self.report(report_base)
        if not items:
            return "EmptyResultSet", []
        return "Accepted", notify_report_pages(
            request_id, items, generated_at, self.items_per_message("GetReport")
        )

    # --- B08 GetReport -> NotifyReport ---------------------------------------------------------
    def custom_report(
        self,
        request_id: int,
        criteria: list[str],
        component_variables: list[dict[str, Any]],
        generated_at: datetime,
    ) -> tuple[str, list[dict[str, Any]]]:
        """GetReport (B08): the variables matching every given filter, as NotifyReport pages.

        `component_variables`: a component without a variable selects all its variables; fields left out
        (instance, EVSE, connector) match any. `criteria` (ComponentCriterionEnumType Active / Available /
        Enabled / Problem): components whose variable of that name is "true". No filter: everything. More
        componentVariable entries than ItemsPerMessage[GetReport] -> Rejected.
        """
        if len(component_variables) > self.items_per_message("GetReport"):
            return "Rejected", []
        chosen = [
            d
            for d in self._defs.values()
            if (not component_variables or any(_selects(cv, d) for cv in component_variables))
            and all(self._meets(d.component, criterion) for criterion in criteria)
        ]
        if not chosen:
            return "EmptyResultSet", []
        items = [self._report_data(d) for d in chosen]
        return "Accepted", notify_report_pages(
            request_id, items, generated_at, self.items_per_message("GetReport")
        )

    def _meets(self, component: ComponentRef, criterion: str) -> bool:
        definition, _ = self._lookup(component, VariableRef(criterion))
        return definition is not None and not definition.write_only and self._read(definition) == "true"


def _selects(selector: dict[str, Any], definition: Variable) -> bool:
    """Does a ComponentVariableType (camelCase) select `definition`? Omitted fields match anything."""
    component, want = selector["component"], definition.component
    evse = component.get("evse") or {}
    if str(component["name"]).casefold() != want.name.casefold():
        return False
    for asked, have in (
        (component.get("instance"), want.instance),
        (evse.get("id"), want.evse_id),
        (evse.get("connectorId"), want.connector_id),
    ):
        if asked is not None and (str(asked).casefold() != str(have).casefold()):
            return False
    variable = selector.get("variable")
    if variable is None:
        return True
    asked_instance = variable.get("instance")
    return str(variable["name"]).casefold() == definition.variable.name.casefold() and (
        asked_instance is None
        or str(asked_instance).casefold() == str(definition.variable.instance).casefold()
    )


def notify_report_pages(
    request_id: int, items: list[dict[str, Any]], generated_at: datetime, per_page: int
) -> list[dict[str, Any]]:
    """NotifyReportRequest payloads: seqNo from 0, tbc true on every page but the last (B07)."""
    per_page = max(1, per_page)
    chunks = [items[i : i + per_page] for i in range(0, len(items), per_page)]
    stamp = ocpp_timestamp(generated_at)
    return [
        {
            "requestId": request_id,
            "generatedAt": stamp,
            "seqNo": seq_no,
            "tbc": seq_no < len(chunks) - 1,
            "reportData": chunk,
        }
        for seq_no, chunk in enumerate(chunks)
    ]


def _result_entry(item: dict[str, Any], status: str, reason: str | None) -> dict[str, Any]:
    """The common part of a GetVariableResult / SetVariableResult: what was asked, and the status."""
    entry: dict[str, Any] = {
        "attributeStatus": status,
        "component": item["component"],
        "variable": item["variable"],
    }
    if "attributeType" in item:
        entry["attributeType"] = item["attributeType"]
    if reason is not None:
        entry["attributeStatusInfo"] = {"reasonCode": reason}
    return entry
