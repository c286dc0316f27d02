"""The OCPP adapter against a hand-driven CSMS peer on a real loopback websocket: bad frames are survived."""

from __future__ import annotations

import asyncio
import json

import structlog
import websockets

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from station.agent import StationAgent


def _never_called():
    raise AssertionError("no BMS session expected")


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

    async with websockets.serve(csms, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(overrides={"ocpp": {"csms_url": f"ws://127.0.0.1:{port}/ocpp"}})
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=_never_called)
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(agent.run())
            await asyncio.wait_for(done.wait(), timeout=10)
            assert not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    error = seen["call_error"]
    assert error[0] == 4 and error[1] == "bad-1"  # CALLERROR for the schema-invalid CALL
    assert seen["status"][0] == "StatusNotification"
    bad = [entry for entry in logs if entry["event"] == "ocpp_bad_frame"]
    rejected = [entry for entry in logs if entry["event"] == "ocpp_call_rejected"]
    assert len(bad) == 1 and "not json" in bad[0]["frame"]
    assert len(rejected) == 1 and rejected[0]["action"] == "RequestStartTransaction"
