"""Fuzzing the station's OCPP 2.0.1 frame handling over a real loopback websocket (issue #4).

One real `StationAgent` runs in a background event loop against a hand-driven CSMS peer; hypothesis feeds it
thousands of frames: random text, random JSON, CALL arrays with real and invented action names and random
payloads, and CALLRESULT / CALLERROR frames for ids the station never used. Every well-formed CALL must be
answered exactly once, by a CALLRESULT or by a CALLERROR whose code is one OCPP-J (part 4, 4.2.3) defines
for a bad request; the agent must keep running and answer a normal request afterwards. `InternalError` /
`GenericError` would be a handler crash and fails the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v201 import call
from websockets.typing import Subprotocol

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.errors import BmsLinkError
from station.agent import StationAgent

ACTIONS = sorted(n for n, o in inspect.getmembers(call, inspect.isclass) if dataclasses.is_dataclass(o))
BAD_REQUEST_CODES = {
    "FormatViolation",
    "FormationViolation",
    "ProtocolError",
    "NotImplemented",
    "NotSupported",
    "TypeConstraintViolation",
    "PropertyConstraintViolation",
    "OccurrenceConstraintViolation",
}
REPLY_TIMEOUT_S = 10.0


class _NoBms:
    """A BMS link that fails its handshake: a start the fuzzer happens to trigger ends cleanly."""

    end_reason = None

    async def start_session(self) -> Any:
        raise BmsLinkError("no BMS in the fuzz test")

    async def close(self) -> None:
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(
    st.sampled_from(["evseId", "type", "requestId", "idToken", "chargingProfile", "x"])
    | st.text(max_size=10),
    json_values,
    max_size=5,
)
calls = st.tuples(st.sampled_from(ACTIONS) | st.text(max_size=30), payloads)
# ("call", action, payload) are sent as [2, <fresh id>, action, payload] and must be answered;
# ("raw", text) frames may or may not be parseable and need no answer.
noise = (
    st.text(max_size=60)
    | json_values.map(json.dumps)
    | st.tuples(st.sampled_from([3, 4]), st.text(max_size=10), json_values).map(lambda t: json.dumps(list(t)))
    | st.lists(json_values, max_size=6).map(json.dumps)
)
call_frames = calls.map(lambda c: ("call", *c))
frames = st.one_of(call_frames, call_frames, noise.map(lambda text: ("raw", text)))


class FuzzedStation:
    """The CSMS peer and the agent, running in their own thread's loop; `exchange` is called from tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ids = (f"fz-{i}" for i in itertools.count())
        self.ready = threading.Event()
        self.replies: dict[str, asyncio.Future[list[Any]]] = {}
        self.raw_sent = 0
        self.answers: Counter[str] = Counter()  # CALLRESULT/CALLERROR frames per message id
        self.ws: Any = None
        self.agent_task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        self.server = await websockets.serve(
            self._peer, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]
        )
        port = self.server.sockets[0].getsockname()[1]
        settings = load_settings(
            overrides={"station": {"id": "FUZZ-1"}, "ocpp": {"csms_url": f"ws://127.0.0.1:{port}/ocpp"}}
        )
        no_bms: Any = _NoBms
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=no_bms)
        self.agent_task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.booted.wait(), timeout=20)

    async def _peer(self, ws: Any) -> None:
        self.ws = ws
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] == 2:  # the station's own CALLs: answer them
                answer: dict[str, Any] = {}
                if msg[2] == "BootNotification":
                    answer = {
                        "currentTime": "2026-01-01T00:00:00.000Z",
                        "interval": 300,
                        "status": "Accepted",
                    }
                elif msg[2] == "Heartbeat":
                    answer = {"currentTime": "2026-01-01T00:00:00.000Z"}
                await ws.send(json.dumps([3, msg[1], answer]))
            else:
                self.answers[msg[1]] += 1
                future = self.replies.get(msg[1])
                if future is not None and not future.done():
                    future.set_result(msg)

    async def _exchange(self, batch: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
        answered = []
        for frame in batch:
            if frame[0] == "raw":
                self.raw_sent += 1
                await self.ws.send(frame[1])
                continue
            unique_id = next(self.ids)
            self.replies[unique_id] = self.loop.create_future()
            await self.ws.send(json.dumps([2, unique_id, frame[1], frame[2]]))
            reply = await asyncio.wait_for(self.replies[unique_id], REPLY_TIMEOUT_S)
            answered.append((str(frame[1]), reply))
        return answered

    def exchange(self, batch: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
        return asyncio.run_coroutine_threadsafe(self._exchange(batch), self.loop).result(timeout=120)

    def alive(self) -> bool:
        return self.agent_task is not None and not self.agent_task.done()

    def stop(self) -> None:
        async def _stop() -> None:
            if self.agent_task is not None:
                self.agent_task.cancel()
                await asyncio.gather(self.agent_task, return_exceptions=True)
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def station() -> Iterator[FuzzedStation]:
    fuzzed = FuzzedStation()
    fuzzed.start()
    try:
        yield fuzzed
    finally:
        fuzzed.stop()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames, min_size=1, max_size=16))
def test_random_frames_never_crash_the_station_and_every_call_gets_one_answer(
    station: FuzzedStation, batch: list[tuple[Any, ...]]
) -> None:
    for action, reply in station.exchange(batch):
        assert reply[0] in (3, 4), reply
        if reply[0] == 4:
            assert reply[2] in BAD_REQUEST_CODES, (action, reply)
        if action not in ACTIONS:
            assert reply[0] == 4 and reply[2] in ("NotImplemented", "NotSupported"), (action, reply)
    assert station.alive()


def test_after_the_fuzzing_the_station_still_answers_normally(station: FuzzedStation) -> None:
    heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    request = {"getVariableData": [heartbeat]}
    ((_, reply),) = station.exchange([("call", "GetVariables", request)])
    assert reply[0] == 3 and reply[2]["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert station.alive()
    assert set(station.answers) >= set(station.replies)  # every CALL we sent was answered ...
    assert max(station.answers[k] for k in station.replies) == 1  # ... exactly once
