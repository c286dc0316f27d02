"""The OCPP adapter against a hand-driven CSMS peer on a real loopback websocket: bad frames are survived."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import websockets

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from station.agent import StationAgent


def _never_called():
    raise AssertionError("no BMS session expected")


async def run_agent_against(csms: Callable[[Any], Awaitable[None]], done: asyncio.Event) -> None:
    """Serve `csms` (a hand-driven peer) on a loopback port, run an agent against it until `done`."""
    async with websockets.serve(csms, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(overrides={"ocpp": {"csms_url": f"ws://127.0.0.1:{port}/ocpp"}})
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=_never_called)
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(done.wait(), timeout=10)
            assert not task.done()  # the agent is still running
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_malformed_frames_from_the_csms_are_logged_once_and_the_station_keeps_going():
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def csms(ws):
        boot = json.loads(await ws.recv())
        assert boot[2] == "BootNotification"
        await ws.send("this is not json")
        await ws.send(json.dumps([2, "bad-1", "RequestStartTransaction", {"bogus": True}]))
        seen["call_error"] = json.loads(await ws.recv())
        await ws.send(
            json.dumps(
                [
                    3,
                    boot[1],
                    {"currentTime": "2026-01-01T00:00:00.000Z", "interval": 300, "status": "Accepted"},
                ]
            )
        )
        status = json.loads(await ws.recv())
        seen["status"] = status[2:]
        await ws.send(json.dumps([3, status[1], {}]))
        done.set()
        await ws.wait_closed()

    with structlog.testing.capture_logs() as logs:
        await run_agent_against(csms, done)

    error = seen["call_error"]
    assert error[0] == 4 and error[1] == "bad-1"  # CALLERROR for the schema-invalid CALL
    assert seen["status"][0] == "StatusNotification"
    bad = [entry for entry in logs if entry["event"] == "ocpp_bad_frame"]
    rejected = [entry for entry in logs if entry["event"] == "ocpp_call_rejected"]
    assert len(bad) == 1 and "not json" in bad[0]["frame"]
    assert len(rejected) == 1 and rejected[0]["action"] == "RequestStartTransaction"


async def test_csms_requests_while_the_station_waits_for_its_own_call_are_answered_no_deadlock():
    """OCPP-J allows one outstanding CALL per direction: the station must answer the CSMS's CALLs while its
    own CALL waits, and a follow-up (a triggered Heartbeat) must go out after the pending call completes."""
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def csms(ws):
        boot = json.loads(await ws.recv())  # the station now waits for this answer ...
        await ws.send(
            json.dumps(
                [2, "get-1", "GetVariables", {"getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}]
            )
        )  # fmt: skip
        seen["get"] = json.loads(await ws.recv())  # ... and answers ours meanwhile
        accepted = {"currentTime": "2026-01-01T00:00:00.000Z", "interval": 300, "status": "Accepted"}
        await ws.send(json.dumps([3, boot[1], accepted]))
        status = json.loads(await ws.recv())
        assert status[2] == "StatusNotification"  # outstanding: not answered yet
        await ws.send(json.dumps([2, "trig-1", "TriggerMessage", {"requestedMessage": "Heartbeat"}]))
        seen["trigger"] = json.loads(await ws.recv())
        await ws.send(json.dumps([3, status[1], {}]))
        seen["after"] = []
        while "Heartbeat" not in seen["after"]:  # queued messages (the start-up security event) go first
            call = json.loads(await ws.recv())
            seen["after"].append(call[2])
            answer = {"currentTime": "2026-01-01T00:00:01.000Z"} if call[2] == "Heartbeat" else {}
            await ws.send(json.dumps([3, call[1], answer]))
        done.set()
        await ws.wait_closed()

    await run_agent_against(csms, done)

    get = seen["get"]
    assert get[0] == 3 and get[1] == "get-1"
    assert get[2]["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert seen["trigger"][:2] == [3, "trig-1"] and seen["trigger"][2]["status"] == "Accepted"
    assert seen["after"][-1] == "Heartbeat"
