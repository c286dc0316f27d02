"""Sans-I/O OCPP-J pieces of the embedded CSMS: frame parsing, station identity, the journal record.

`parse_frame` turns one websocket message into an `ocpp` Call/CallResult/CallError or a `FrameError`
saying which CALLERROR to answer (OCPP-J part 4 §4.2-4.3); `station_id_from_path` reads the station
identity from the URL (§3.1.1); `Received` is what `simulators.csms.EmbeddedCsms` records for every
valid CALL, and `format_received` renders one as a line for `chargeagent csms`. No sockets here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from ocpp.messages import Call, CallError, CallResult

from chargeagent.clock import ocpp_timestamp

OCPP_VERSION = "2.0.1"
SUBPROTOCOL = "ocpp2.0.1"
_MAX_MESSAGE_ID_LEN = 36  # OCPP-J part 4 §4.1.4: messageId is string[36]
_MAX_IDENTITY_LEN = 48  # OCPP-J part 4 §3.1.1


@dataclass(frozen=True)
class Received:
    """One CALL a station sent us, as it was on the wire (camelCase JSON payload)."""

    station_id: str
    action: str
    payload: dict[str, Any]
    at: datetime
    unique_id: str


@dataclass(frozen=True)
class FrameError:
    """Why a frame is unusable; `reply` is False for broken responses (nothing to answer)."""

    message_id: str
    code: str
    description: str
    reply: bool = True

    def to_call_error(self) -> CallError:
        return CallError(self.message_id, self.code, self.description, {})


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError | FrameError:
    """Decode one OCPP-J frame; error codes per OCPP-J part 4 §4.3 (table "Valid Error Codes").

    §4.2.3: when the messageId of a corrupt message cannot be read, the CALLERROR uses "-1".
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        frame = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return FrameError("-1", "RpcFrameworkError", "Frame is not valid UTF-8 JSON")
    if not isinstance(frame, list) or not frame:
        return FrameError("-1", "RpcFrameworkError", "Frame is not an OCPP-J array")
    kind = frame[0] if type(frame[0]) is int else None  # JSON true is not MessageTypeId 1
    # A broken CALLRESULT/CALLERROR is dropped: OCPP 2.0.1 has no error answer to a response.
    reply = kind not in (3, 4)
    message_id = frame[1] if len(frame) > 1 else None
    if not isinstance(message_id, str) or not 0 < len(message_id) <= _MAX_MESSAGE_ID_LEN:
        return FrameError("-1", "RpcFrameworkError", "MessageId could not be read", reply)
    if kind == 2:
        if len(frame) != 4 or not isinstance(frame[2], str):
            return FrameError(message_id, "RpcFrameworkError", "CALL needs [2, id, action, {}]")
        if not isinstance(frame[3], dict):
            return FrameError(message_id, "FormatViolation", "CALL payload is not a JSON object")
        return Call(message_id, frame[2], frame[3])
    if kind == 3:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            return FrameError(message_id, "RpcFrameworkError", "Malformed CALLRESULT", False)
        return CallResult(message_id, frame[2])
    if kind == 4:
        # errorDetails is mandatory, but a missing one costs nothing to tolerate.
        if len(frame) not in (4, 5) or not all(isinstance(x, str) for x in frame[2:4]):
            return FrameError(message_id, "RpcFrameworkError", "Malformed CALLERROR", False)
        return CallError(message_id, frame[2], frame[3], frame[4] if len(frame) == 5 else {})
    return FrameError(message_id, "MessageTypeNotSupported", f"MessageTypeId {str(frame[0])[:20]}")


def station_id_from_path(path: str) -> str | None:
    """Station identity = last, percent-decoded path segment of the URL, or None if unusable.

    OCPP-J part 4 §3.1.1: at most 48 characters and no ":" (it is the Basic-auth user name).
    """
    identity = unquote(urlsplit(path).path.rsplit("/", 1)[-1])
    return identity if 0 < len(identity) <= _MAX_IDENTITY_LEN and ":" not in identity else None


def format_received(item: Received, max_chars: int = 200) -> str:
    """One human line per message, for `chargeagent csms`."""
    body = json.dumps(item.payload, separators=(",", ":"))
    if len(body) > max_chars:
        body = body[: max_chars - 1] + "…"
    return f"{ocpp_timestamp(item.at)} {item.station_id} {item.action} {body}"
