"""Compiled OCPP schema validation for our ChargePoints: the `ocpp` package's own schemas, 20x faster.

The `ocpp` library validates every CALL and CALLRESULT, in both directions, with `jsonschema`'s
Draft4Validator, which walks the schema and resolves its `$ref`s on every message: ~0.65 ms for a 2.0.1
TransactionEvent on the 2-core CI machine, four validations per call round trip (request and response,
at both ends), about half of all CPU the agent and the embedded CSMS spend per call
(`bench/bench_ocpp_fleet.py`). fastjsonschema compiles each schema once into Python code (~30 µs for the
same payload). We do not write a validator of our own: fastjsonschema is a maintained draft-4
implementation, and the schema files stay the library's.

How it is wired, without changing what a message must satisfy:

- the library calls `ocpp.charge_point.validate_payload(message, ocpp_version)` from `call` and
  `_handle_call`; `install()` swaps in `validate_payload` below (once, at import);
- only ChargePoints whose `_ocpp_version` is a `Compiled` string take the compiled path (our agent's
  adapters and the embedded CSMS's sessions set it in `__init__` via `use_compiled`); any other
  ChargePoint in the process (the benchmark's plain-library baseline, a user's own) is untouched;
- the compiled validator only ever *accepts*: a payload it rejects, and every message it cannot handle,
  goes to the library's own validation, which raises the library's exact error (FormationViolation,
  OccurrenceConstraintViolation, ...). tests/station/test_ocpp_schema.py checks that the two agree on
  thousands of generated payloads for every shipped schema;
- options match Draft4Validator's defaults: no `format` checks (the library passes no format checker)
  and no default-filling (fastjsonschema would otherwise write defaults into the payload);
- the three OCPP 1.6 schemas the library validates with `decimal.Decimal` floats (SetChargingProfile and
  RemoteStartTransaction requests, the GetCompositeSchedule response: `multipleOf 0.1`) stay on the
  library's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastjsonschema
import ocpp.charge_point
from ocpp import messages as ocpp_messages
from ocpp.messages import Call, CallResult, MessageType

Validator = Callable[[Any], Any]

_library_validate_payload = ocpp_messages.validate_payload
_DECIMAL_SCHEMAS = {  # (message type, action) the library validates with Decimal floats in 1.6
    (MessageType.Call, "SetChargingProfile"),
    (MessageType.Call, "RemoteStartTransaction"),
    (MessageType.CallResult, "GetCompositeSchedule"),
}
_compiled: dict[tuple[int, str, str], Validator | None] = {}


class Compiled(str):
    """An OCPP version string ("2.0.1", "1.6") that asks for compiled validation. It compares, hashes and
    formats as the plain string, so the library's own version checks are unaffected."""

    __slots__ = ()


def use_compiled(version: str) -> Compiled:
    """What a ChargePoint subclass assigns to `self._ocpp_version` to take the compiled path."""
    return Compiled(version)


def compiled_validator(message_type_id: int, action: str, version: str) -> Validator | None:
    """The compiled validator for one schema (built on first use, then cached); None: not compiled."""
    key = (message_type_id, action, str(version))
    if key not in _compiled:
        _compiled[key] = _compile(message_type_id, action, str(version))
    return _compiled[key]


def _compile(message_type_id: int, action: str, version: str) -> Validator | None:
    if version == "1.6" and (message_type_id, action) in _DECIMAL_SCHEMAS:
        return None
    try:  # the library's own lookup: same file, same schema (and its cache)
        schema = ocpp_messages.get_validator(message_type_id, action, version).schema
    except (OSError, ValueError):
        return None  # unknown action or version: the library answers it (NotImplemented, ...)
    validator: Validator = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    return validator


def accepts(message: Call | CallResult, version: str) -> bool:
    """True when the compiled schema accepts the message's payload; False means "ask the library"."""
    validator = compiled_validator(message.message_type_id, message.action, version)
    if validator is None:
        return False
    try:
        validator(message.payload)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


async def validate_payload(message: Any, ocpp_version: str) -> None:
    """The library's `validate_payload`, with the compiled fast path for `Compiled` versions."""
    if (
        type(ocpp_version) is Compiled
        and type(message) in (Call, CallResult)
        and accepts(message, ocpp_version)
    ):
        return
    await _library_validate_payload(message, ocpp_version)


def install() -> None:
    """Route the library's ChargePoint validation through `validate_payload` (idempotent)."""
    ocpp.charge_point.validate_payload = validate_payload


install()
