"""A grid operator's OpenADR event during a real charge: openleadr's VTN on loopback sends a maximum-power
event, the station's VEN installs it as a ChargingStationExternalConstraints profile, the envelope clamps
to it (binding constraint `grid_limit`), the CSMS sees it with chargingLimitSource SO, and cancelling the
event lifts it. Real time: openleadr keeps wall-clock time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from test_charging_session import Run, charge, pack  # same directory

from tests.conftest import _free_port
from tests.station.vtn import Vtn, vtn_url

SID = "CS-E2E"
LIMIT_KW = 20.0


def test_openadr_max_power_event_caps_the_charge_and_cancel_lifts_it() -> None:
    marks: dict[str, float] = {}
    seen: dict[str, object] = {}
    port = _free_port()

    async def grid(run: Run) -> None:
        async with Vtn(port=port) as vtn:  # up after the agent: its VEN has been retrying meanwhile
            assert run.agent.grid is not None
            await asyncio.wait_for(run.agent.grid.ven.registered.wait(), 30)
            await vtn.wait_for(lambda: any(s.current_a > 100 for s in run.steps), timeout_s=60)
            event_id = vtn.add_event(
                "LOAD_DISPATCH",
                "setpoint",
                [
                    {
                        "dtstart": datetime.now(UTC),
                        "duration": timedelta(minutes=10),
                        "signal_payload": LIMIT_KW,
                    }
                ],
            )
            await vtn.wait_for(lambda: event_id in vtn.opts)
            marks["limit"] = run.clock.monotonic()
            await asyncio.sleep(4)
            since = len(run.csms.received(SID))
            answer = await run.csms.call(SID, "GetChargingProfiles", {"requestId": 3, "chargingProfile": {}})
            assert answer["status"] == "Accepted"
            report = await run.csms.wait_for(SID, "ReportChargingProfiles", since=since, timeout_s=10)
            seen["report"] = report.payload
            vtn.server.cancel_event(ven_id="ven-under-test", event_id=event_id)
            await vtn.wait_for(lambda: not run.agent.core.profiles.installed())
            marks["lifted"] = run.clock.monotonic()
            await asyncio.sleep(4)
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        assert await run.csms.request_stop_transaction(SID, tx_id) == "Accepted"

    run = charge(
        pack(soc=0.2, target_soc=0.9),
        grid,
        realtime=True,
        settings_overrides={"grid": {"vtn_url": vtn_url(port), "ven_name": SID}},
    )
    step_s = 1.0  # one control period (BCL 50 ms x 4) plus the ramp and the VEN's hand-over, generously
    capped = [s for s in run.steps if marks["limit"] + step_s < s.t_s < marks["lifted"]]
    assert capped
    assert all(s.current_a * s.pack_voltage_v <= LIMIT_KW * 1e3 * 1.01 for s in capped)
    assert any(s.binding_constraint == "grid_limit" for s in capped)
    report = seen["report"]
    assert isinstance(report, dict) and report["chargingLimitSource"] == "SO"
    assert report["chargingProfile"][0]["chargingProfilePurpose"] == "ChargingStationExternalConstraints"
    after = [s for s in run.steps if s.t_s > marks["lifted"] + step_s]
    assert after and max(s.current_a * s.pack_voltage_v for s in after) > LIMIT_KW * 1e3 * 1.2
