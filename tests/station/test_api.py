"""The local API over real HTTP against a charging agent (embedded CSMS, simulated pack on the virtual CAN
bus): status, plan, OpenAPI, metrics, and the override with its bearer token (issue #9)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate

from chargeagent.clock import LoopClock
from simulators.csms import EmbeddedCsms
from station.agent import StationAgent
from station.status import PlanView, Status
from tests.e2e.test_charging_session import Run, charge, pack
from tests.station.test_device_model_e2e import running

TOKEN = "test-token-0123456789abcdef"
TOKEN_ENV = "CHARGEAGENT_TEST_API_TOKEN"
MODEL_BINDINGS = {"model_curve", "thermal_trajectory"}


@asynccontextmanager
async def _agent_with_api(**api: Any) -> AsyncIterator[StationAgent]:
    """An idle agent (real time) with its local API up on a free loopback port."""
    clock = LoopClock()
    settings = {"enabled": True, "port": 0, **api}
    async with EmbeddedCsms(clock=clock) as csms, running(csms, clock, api=settings) as agent:
        await asyncio.wait_for(agent.api.ready.wait(), 10)
        yield agent


async def _request(run_or_port: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    port = run_or_port if isinstance(run_or_port, int) else run_or_port.agent.api.port
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"http://127.0.0.1:{port}{path}", **kwargs) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


def _conforms(document: dict[str, Any], path: str, method: str, body: Any) -> None:
    """`body` validates against the 200 response schema the OpenAPI document gives for `path`."""
    content = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    schema = {**content["schema"], "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_status_plan_metrics_and_an_authorized_override_during_a_charge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    marks: dict[str, float] = {}
    seen: dict[str, Any] = {}

    async def operate(run: Run) -> None:
        await asyncio.wait_for(run.agent.api.ready.wait(), 10)
        await asyncio.sleep(90)  # charging for a while: the model is planning
        code, body = await _request(run, "GET", "/api/status")
        assert code == 200
        seen["status"], seen["status_body"] = Status.model_validate(body), body
        seen["plan"] = await _request(run, "GET", "/api/plan")
        seen["openapi"] = (await _request(run, "GET", "/openapi.json"))[1]
        seen["metrics"] = (await _request(run, "GET", "/metrics"))[1]
        seen["no_token"] = await _request(run, "POST", "/api/override", json={"model_enabled": False})
        wrong = {"Authorization": "Bearer not-the-token"}
        seen["wrong_token"] = await _request(
            run, "POST", "/api/override", json={"paused": True}, headers=wrong
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        seen["bad_body"] = await _request(run, "POST", "/api/override", data=b"{not json", headers=auth)
        seen["too_high"] = await _request(
            run, "POST", "/api/override", json={"max_current_a": 1e6}, headers=auth
        )
        seen["off"] = await _request(
            run, "POST", "/api/override", json={"model_enabled": False}, headers=auth
        )
        marks["off"] = run.clock.monotonic()
        await asyncio.sleep(30)
        seen["cap"] = await _request(run, "POST", "/api/override", json={"max_current_a": 40}, headers=auth)
        marks["cap"] = run.clock.monotonic()
        await asyncio.sleep(30)
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        assert await run.csms.request_stop_transaction(SID_E2E, tx_id) == "Accepted"

    run = charge(
        pack(soc=0.2, target_soc=0.9),
        operate,
        settings_overrides={"api": {"enabled": True, "port": 0, "token_env": TOKEN_ENV}},
    )
    status: Status = seen["status"]
    assert status.connected and status.booted and status.station_id == SID_E2E
    (evse,) = status.evses
    assert evse.transaction_id is not None and evse.connector_status == "Occupied"
    assert evse.id_token is not None and "TAG-1" not in evse.id_token  # a pseudonym, never the token
    assert status.control is not None and status.control.current_a > 0 and status.history
    code, plan_body = seen["plan"]
    plan = PlanView.model_validate(plan_body)
    assert code == 200 and plan.source == "model" and plan.segments
    assert len(plan.predicted_temp_c) == len(plan.segments) and plan.model_sha256
    assert len(plan.horizon_temp_c) == len(plan.horizon_min) > 0
    document = seen["openapi"]
    validate(document)  # a valid OpenAPI 3.1 document
    _conforms(document, "/api/status", "get", seen["status_body"])  # the responses match its schemas
    _conforms(document, "/api/plan", "get", plan_body)
    _conforms(document, "/api/override", "post", seen["off"][1])
    metrics = seen["metrics"]
    assert f'chargeagent_csms_connected{{station_id="{SID_E2E}"}} 1.0' in metrics
    assert (
        "chargeagent_envelope_steps_total{" in metrics and "chargeagent_model_plan_seconds_bucket{" in metrics
    )
    grafana = (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    for name in set(re.findall(r"chargeagent_[a-z_]+", grafana)):  # the sample dashboard graphs real series
        assert f"\n{name}{{" in metrics, name
    assert seen["no_token"][0] == 401 and seen["wrong_token"][0] == 401
    assert seen["bad_body"][0] == 400 and seen["too_high"][0] == 400
    assert seen["off"] == (200, {"model_enabled": False, "max_current_a": None, "paused": False})
    assert seen["cap"][0] == 200 and seen["cap"][1]["max_current_a"] == 40.0
    step_s = 1.0  # one control period (BCL 50 ms x 4) plus margin
    after_off = [s for s in run.steps if s.t_s > marks["off"] + step_s]
    assert after_off and not any(s.binding_constraint in MODEL_BINDINGS for s in after_off)
    capped = [s for s in run.steps if s.t_s > marks["cap"] + step_s]
    assert capped and max(s.current_a for s in capped) <= 40.0 + 1e-9
    assert not run.agent.core.override.model_enabled  # through the device model, like SetVariables


SID_E2E = "CS-E2E"


def test_without_a_token_state_changes_are_refused_and_reads_work() -> None:
    async def main() -> None:
        async with _agent_with_api() as agent:
            assert agent.api.settings.host == "127.0.0.1"  # loopback unless configured
            code, body = await _request(agent.api.port, "POST", "/api/override", json={"paused": True})
            assert code == 403 and "no API token configured" in body["error"]
            code, body = await _request(agent.api.port, "GET", "/api/status")
            assert code == 200 and body["control"] is None and body["connected"] is True
            assert (await _request(agent.api.port, "GET", "/api/plan"))[0] == 404
            assert not agent.core.override.paused

    asyncio.run(main())


def test_override_cli_pauses_through_the_api_and_reports_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    async def cli(port: int, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        if token is not None:
            env[TOKEN_ENV] = token
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station.cli", "override", "--api-url", f"http://127.0.0.1:{port}",
            "--token-env", TOKEN_ENV, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def main() -> None:
        async with _agent_with_api(token_env=TOKEN_ENV) as agent:
            port = agent.api.port
            code, out, _ = await cli(port, "--pause", "--max-current-a", "32")
            assert code == 0 and '"paused": true' in out
            assert agent.core.override.paused and agent.core.override.max_current_a == 32.0
            code, _, err = await cli(port, "--resume", "--no-cap")
            assert code == 0 and not agent.core.override.paused and agent.core.override.max_current_a is None
            code, _, err = await cli(port, "--no-model", token="wrong-token")
            assert code == 1 and "override refused (401)" in err
            assert agent.core.override.model_enabled  # refused: nothing changed
            code, _, err = await cli(port, "--no-model", token=None)
            assert code == 2 and f"{TOKEN_ENV} (the API token) is not set" in err

    asyncio.run(main())
