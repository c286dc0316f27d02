"""The BMS-over-MQTT wire protocol: payload models (the published JSON Schemas) and the sans-I/O charger core.

Topics, for one station `{station_id}` (MQTT 3.1.1, QoS 1 everywhere):

- `bms/{station_id}/telemetry` — BMS → charger, `BmsMessage` JSON:
  `{"schema_version": 1, "kind": "info", "info": {PackInfo}}` repeated every period until the charger
  answers with its first command (the handshake, like GB/T BRM/BCP repeated until CRM/CML);
  `{"schema_version": 1, "kind": "telemetry", "telemetry": {...}}` every period while charging (the
  fields of `PackTelemetry` without `monotonic_s`: the charger stamps receipt time on its own clock);
  `{"schema_version": 1, "kind": "stop", "reason": "soc_target_reached"}` when the BMS ends the session.
- `bms/{station_id}/command` — charger → BMS, `ChargerMessage` JSON:
  `{"schema_version": 1, "kind": "command", "command": {ChargeCommand}}` every control step;
  `{"schema_version": 1, "kind": "stop", "reason": "remote"}` when the charger ends the session (always
  preceded by a 0 A, not-permitted command).
- `bms/{station_id}/charger/status` — retained `online` / `offline`; `offline` is also the charger's
  last will, so a BMS learns within the broker's keepalive that the charger is gone.

Validation at the boundary (`parse_bms_message`): a payload that is not JSON or not the schema (unknown
kind, missing or extra fields, wrong types) is *garbage* — rejected, logged, the session goes on (one bad
message is not a reason to stop charging). A payload of the right shape whose values are outside the
models' plausibility ranges or not finite (cell 120 °C, SoC 1.7, NaN) is *implausible* — rejected and the
session ends with `StopReason.IMPLAUSIBLE_DATA` (issue 5 item 5: a lying BMS is a fault).

`MqttChargerCore` holds the session state as a transition table and the telemetry watchdog; it is fed
payloads and `now_s` and returns what to publish. The asyncio shell is `bms_link.mqtt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from bms_link.models import (
    ChargeCommand,
    PackInfo,
    PackTelemetry,
    PackTelemetryBody,
    StopReason,
)
from chargeagent.config import config_dir
from chargeagent.errors import InvalidTransition

SCHEMA_VERSION = 1
QOS = 1
ONLINE, OFFLINE = b"online", b"offline"
# pydantic error types that mean "right shape, impossible value" (ranges, NaN/inf) rather than garbage.
_RANGE_ERRORS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)


def telemetry_topic(station_id: str) -> str:
    return f"bms/{station_id}/telemetry"


def command_topic(station_id: str) -> str:
    return f"bms/{station_id}/command"


def status_topic(station_id: str) -> str:
    return f"bms/{station_id}/charger/status"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1] = 1


class TelemetryBody(PackTelemetryBody):
    """`PackTelemetry` as a BMS sends it: the same fields and ranges, minus the receiver's `monotonic_s`."""

    @classmethod
    def of(cls, telemetry: PackTelemetry) -> TelemetryBody:
        return cls.model_validate(telemetry.model_dump(exclude={"monotonic_s"}))

    def stamped(self, monotonic_s: float) -> PackTelemetry:
        return PackTelemetry.model_validate({**self.model_dump(), "monotonic_s": monotonic_s})


class InfoMessage(_Wire):
    kind: Literal["info"] = "info"
    info: PackInfo


class TelemetryMessage(_Wire):
    kind: Literal["telemetry"] = "telemetry"
    telemetry: TelemetryBody


class StopMessage(_Wire):
    kind: Literal["stop"] = "stop"
    reason: StopReason


class CommandMessage(_Wire):
    kind: Literal["command"] = "command"
    command: ChargeCommand


class BmsMessage(
    RootModel[Annotated[InfoMessage | TelemetryMessage | StopMessage, Field(discriminator="kind")]]
):
    """Everything a BMS publishes on `bms/{station_id}/telemetry`."""

    model_config = ConfigDict(frozen=True, title="bms_telemetry")


class ChargerMessage(RootModel[Annotated[CommandMessage | StopMessage, Field(discriminator="kind")]]):
    """Everything the charger publishes on `bms/{station_id}/command`."""

    model_config = ConfigDict(frozen=True, title="bms_command")


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas, by file name in `config/schemas/` (a test keeps the files equal to these).

    Regenerate: `python -c "from bms_link.mqtt_protocol import write_json_schemas; write_json_schemas()"`.
    """
    dialect = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    return {
        "bms_telemetry.schema.json": dialect | BmsMessage.model_json_schema(),
        "bms_command.schema.json": dialect | ChargerMessage.model_json_schema(),
    }


def write_json_schemas(directory: Path | None = None) -> None:
    target = directory or config_dir() / "schemas"
    for name, schema in json_schemas().items():
        (target / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


def encode(message: _Wire) -> bytes:
    return message.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload we could not use; `implausible` ones end the session."""

    reason: str
    implausible: bool


def _parse(payload: bytes, model: type[BmsMessage] | type[ChargerMessage]) -> Any:
    try:
        obj = json.loads(payload)  # accepts NaN/Infinity, so they fail as implausible values below
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejected(f"not JSON: {exc}", implausible=False)
    try:
        return model.model_validate(obj).root
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        implausible = all(e["type"] in _RANGE_ERRORS for e in errors)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        return Rejected(f"{where}: {first['msg']} ({len(errors)} error(s))", implausible=implausible)


def parse_bms_message(payload: bytes) -> InfoMessage | TelemetryMessage | StopMessage | Rejected:
    result: InfoMessage | TelemetryMessage | StopMessage | Rejected = _parse(payload, BmsMessage)
    return result


def parse_charger_message(payload: bytes) -> CommandMessage | StopMessage | Rejected:
    result: CommandMessage | StopMessage | Rejected = _parse(payload, ChargerMessage)
    return result


# --- the charger's session core ----------------------------------------------------------------


class LinkPhase(StrEnum):
    IDLE = "idle"
    WAITING_INFO = "waiting_info"
    CHARGING = "charging"
    ENDED = "ended"


class LinkEvent(StrEnum):
    START = "start"
    INFO = "info"
    END = "end"


_TRANSITIONS: dict[tuple[LinkPhase, LinkEvent], LinkPhase] = {
    (LinkPhase.IDLE, LinkEvent.START): LinkPhase.WAITING_INFO,
    (LinkPhase.ENDED, LinkEvent.START): LinkPhase.WAITING_INFO,
    (LinkPhase.WAITING_INFO, LinkEvent.INFO): LinkPhase.CHARGING,
    (LinkPhase.CHARGING, LinkEvent.INFO): LinkPhase.CHARGING,  # a repeated info: harmless
    (LinkPhase.WAITING_INFO, LinkEvent.END): LinkPhase.ENDED,
    (LinkPhase.CHARGING, LinkEvent.END): LinkPhase.ENDED,
}


@dataclass(frozen=True, slots=True)
class Publish:
    """Send this on the command topic (QoS 1)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class SessionStarted:
    pack: PackInfo


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: StopReason
    detail: str


Output = Publish | SessionStarted | SessionEnded | PackTelemetry | Rejected


def zero_command(voltage_v: float = 0.0, *, permitted: bool = False) -> ChargeCommand:
    return ChargeCommand(output_voltage_v=voltage_v, output_current_a=0.0, charging_permitted=permitted)


class MqttChargerCore:
    """Charger side of one BMS-over-MQTT session: handshake, watchdog, stop. No I/O, no clock."""

    def __init__(self, *, telemetry_timeout_s: float, info_timeout_s: float) -> None:
        self.telemetry_timeout_s, self.info_timeout_s = telemetry_timeout_s, info_timeout_s
        self.phase = LinkPhase.IDLE
        self.end_reason: StopReason | None = None
        self.pack: PackInfo | None = None
        self.output = zero_command()  # what the power stage delivers now (0 A unless charging)
        self._deadline_s: float | None = None

    def _go(self, event: LinkEvent) -> None:
        try:
            self.phase = _TRANSITIONS[(self.phase, event)]
        except KeyError:
            raise InvalidTransition("mqtt_link", self.phase.value, event.value) from None

    def next_deadline_s(self) -> float | None:
        return self._deadline_s

    def start(self, now_s: float) -> None:
        self._go(LinkEvent.START)
        self.end_reason, self.pack, self.output = None, None, zero_command()
        self._deadline_s = now_s + self.info_timeout_s

    def on_payload(self, payload: bytes, now_s: float) -> list[Output]:
        message = parse_bms_message(payload)
        if isinstance(message, Rejected):
            if message.implausible and self.phase in (LinkPhase.WAITING_INFO, LinkPhase.CHARGING):
                return [message, *self._end(StopReason.IMPLAUSIBLE_DATA, message.reason)]
            return [message]
        if self.phase not in (LinkPhase.WAITING_INFO, LinkPhase.CHARGING):
            return []  # no session: a BMS talking to nobody
        if isinstance(message, StopMessage):
            return self._end(message.reason, "stopped by the BMS", notify_bms=False)
        self._deadline_s = now_s + self.telemetry_timeout_s  # the BMS is alive (watchdog fed)
        if isinstance(message, InfoMessage):
            if self.phase is LinkPhase.CHARGING:
                return []
            self._go(LinkEvent.INFO)
            self.pack = message.info
            # The first command is the handshake's answer: the BMS switches from info to telemetry.
            return [SessionStarted(message.info), Publish(encode(CommandMessage(command=self.output)))]
        if self.phase is not LinkPhase.CHARGING:
            return []  # telemetry before info (a BMS still in its previous session): wait for info
        return [message.telemetry.stamped(now_s)]

    def command(self, command: ChargeCommand) -> list[Output]:
        if self.phase is not LinkPhase.CHARGING:
            return []
        self.output = command
        return [Publish(encode(CommandMessage(command=command)))]

    def stop(self, reason: StopReason) -> list[Output]:
        """Charger-initiated end; idempotent."""
        if self.phase not in (LinkPhase.WAITING_INFO, LinkPhase.CHARGING):
            return []
        return self._end(reason, "stopped by the charger")

    def tick(self, now_s: float) -> list[Output]:
        if self._deadline_s is None or now_s < self._deadline_s:
            return []
        detail = f"no BMS message for {self.telemetry_timeout_s} s"
        if self.phase is LinkPhase.WAITING_INFO:
            detail = f"no info message within {self.info_timeout_s} s"
        return self._end(StopReason.BMS_TIMEOUT, detail)

    def _end(self, reason: StopReason, detail: str, *, notify_bms: bool = True) -> list[Output]:
        self._go(LinkEvent.END)
        self.end_reason, self._deadline_s = reason, None
        self.output = zero_command(self.output.output_voltage_v)
        outputs: list[Output] = [Publish(encode(CommandMessage(command=self.output)))]
        if notify_bms:
            outputs.append(Publish(encode(StopMessage(reason=reason))))
        return [*outputs, SessionEnded(reason, detail)]
