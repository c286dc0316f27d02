"""The compiled validation (station/ocpp_schema.py) against the `ocpp` library's own: they must agree.

Payloads are generated from each shipped schema (valid by construction, then often broken in one place:
a required key dropped, a wrong type, an unknown key, a value outside the enum, a string too long, an
array too short), so both the accept and the reject paths of every schema are exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, get_validator

from station.ocpp_schema import Compiled, accepts, compiled_validator, validate_payload

SCHEMA_DIRS = {"2.0.1": "v201", "1.6": "v16"}


def _schemas() -> list[tuple[str, int, str]]:
    out = []
    for version, folder in SCHEMA_DIRS.items():
        for path in sorted((Path(ocpp.__file__).parent / folder / "schemas").glob("*.json")):
            name = path.stem
            if name.endswith("Response"):
                out.append((version, MessageType.CallResult, name.removesuffix("Response")))
            else:
                out.append((version, MessageType.Call, name.removesuffix("Request")))
    return out


SCHEMAS = _schemas()


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


@st.composite
def instance(draw: st.DrawFn, schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A value valid for `schema` (draft 4 as the OCPP schemas use it)."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        optional = [k for k in props if k not in required]
        chosen = required | set(draw(st.lists(st.sampled_from(optional), unique=True)) if optional else [])
        if depth > 4:
            chosen = required
        return {k: draw(instance(props[k], root, depth + 1)) for k in sorted(chosen)}
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 2), low + 2)
        return draw(st.lists(instance(schema.get("items", {}), root, depth + 1), min_size=low, max_size=high))
    if kind == "string":
        return draw(st.text(max_size=min(schema.get("maxLength", 20), 20)))
    if kind == "integer":
        return draw(st.integers(min_value=schema.get("minimum", -(10**6)), max_value=10**6))
    if kind == "number":
        return draw(st.floats(min_value=schema.get("minimum", -1e6), max_value=1e6, allow_nan=False))
    if kind == "boolean":
        return draw(st.booleans())
    return None


def _break(draw: st.DrawFn, payload: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> None:
    """Break `payload` in one place (in place), at the top level or one level down."""
    target, node_schema = payload, _resolve(schema, root)
    nested = [k for k, v in payload.items() if isinstance(v, dict)]
    if nested and draw(st.booleans()):
        key = draw(st.sampled_from(nested))
        target, node_schema = payload[key], _resolve(node_schema["properties"][key], root)
    how = draw(st.sampled_from(["drop", "type", "extra", "enum", "long"]))
    props = node_schema.get("properties", {})
    if how == "drop" and node_schema.get("required"):
        target.pop(draw(st.sampled_from(node_schema["required"])), None)
    elif how == "type" and target:
        target[draw(st.sampled_from(sorted(target)))] = draw(st.sampled_from([None, [], {}, "x", 1.5, True]))
    elif how == "extra":
        target["notInTheSchema"] = 1
    elif how in ("enum", "long") and props:
        key = draw(st.sampled_from(sorted(props)))
        target[key] = "NotAnEnumValue" if how == "enum" else "x" * 2000


@pytest.mark.parametrize(("version", "message_type", "action"), SCHEMAS, ids=str)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_and_library_validation_agree(
    version: str, message_type: int, action: str, data: st.DataObject
) -> None:
    if compiled_validator(message_type, action, version) is None:  # the library's Decimal-float schemas
        assert (version, action) in {("1.6", "SetChargingProfile"), ("1.6", "RemoteStartTransaction"),
                                     ("1.6", "GetCompositeSchedule")}  # fmt: skip
        return  # (the library caches one validator per schema: it may be the Decimal one, see the module)
    library = get_validator(message_type, action, version)
    root = library.schema
    payload = data.draw(instance(root, root))
    if data.draw(st.booleans()):
        _break(data.draw, payload, root, root)
    payload = json.loads(json.dumps(payload))  # what arrives off the wire
    library_ok = not list(library.iter_errors(payload))
    is_call = message_type == MessageType.Call
    message = Call("1", action, payload) if is_call else CallResult("1", payload, action)
    assert accepts(message, version) == library_ok, payload


async def test_the_library_error_is_raised_for_what_the_compiled_schema_rejects() -> None:
    bad = Call("1", "BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "m"}})
    with pytest.raises(OCPPError) as compiled_error:
        await validate_payload(bad, Compiled("2.0.1"))
    with pytest.raises(OCPPError) as library_error:
        await validate_payload(bad, "2.0.1")  # a plain version string: the library's path only
    assert type(compiled_error.value) is type(library_error.value)
    assert "vendorName" in str(compiled_error.value)


def test_compiled_version_strings_are_plain_strings_to_the_library() -> None:
    version = Compiled("2.0.1")
    assert version == "2.0.1" and hash(version) == hash("2.0.1") and f"{version}" == "2.0.1"
    assert version.replace(".", "") == "v201".removeprefix("v")
