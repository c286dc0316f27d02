"""The operator's override over OCPP (SetVariables on ChargeAgentCtrlr) during a real charge (issue #9):
model off takes effect within one control step, a cap and a pause bind, the envelope still decides."""

from __future__ import annotations

import asyncio

from test_charging_session import Run, charge, pack  # same directory

SID = "CS-E2E"
MODEL_BINDINGS = {"model_curve", "thermal_trajectory"}


def test_model_off_cap_and_pause_from_the_csms_take_effect_at_the_next_step() -> None:
    marks: dict[str, float] = {}

    async def override(run: Run) -> None:
        await asyncio.sleep(90)
        assert any(s.binding_constraint in MODEL_BINDINGS for s in run.steps)  # the model was steering
        for name, value in (("ModelEnabled", "false"), ("MaxCurrent", "40"), ("Paused", "true")):
            results = await run.csms.set_variables(SID, [("ChargeAgentCtrlr", name, value)])
            assert [r["attributeStatus"] for r in results] == ["Accepted"]
            marks[name] = run.clock.monotonic()
            await asyncio.sleep(30)
        await run.csms.set_variables(SID, [("ChargeAgentCtrlr", "MaxCurrent", "abc")])  # rejected, no effect
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        assert await run.csms.request_stop_transaction(SID, tx_id) == "Accepted"

    run = charge(pack(soc=0.2, target_soc=0.9), override)
    off, cap, pause = marks["ModelEnabled"], marks["MaxCurrent"], marks["Paused"]
    step_s = 0.25 * 4  # at most one control period (BCL 50 ms x SCALE 4 = 200 ms) plus margin
    after_off = [s for s in run.steps if s.t_s > off + step_s]
    assert after_off and not any(s.binding_constraint in MODEL_BINDINGS for s in after_off)
    capped = [s for s in run.steps if cap + step_s < s.t_s < pause]
    assert capped and max(s.current_a for s in capped) <= 40.0 + 1e-9
    assert any(s.binding_constraint == "operator_limit" for s in capped)
    paused = [s for s in run.steps if s.t_s > pause + step_s]
    assert paused and max(s.current_a for s in paused) == 0.0
    assert run.tx_events()[-1]["transactionInfo"]["stoppedReason"] == "Remote"
    assert run.agent.core.override.paused  # persisted state of the device model (in memory here)
