"""Schemathesis against the running local API (issue #9): every operation in /openapi.json, with generated
valid and invalid requests, must answer as the document says (status codes, content types, response
schemas) and never with a server error. The API is the real one: `chargeagent station --api-port`.
Bounded: 40 examples per operation and mode (API_FUZZ_EXAMPLES=N for a longer run; 2,000 passed)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from test_cli import CLI, REPO  # same directory (pytest prepend import mode)

from tests.conftest import _free_port

TOKEN = "fuzz-api-token-8c1e0b7a55"  # a test token
TOKEN_ENV = "CHARGEAGENT_TEST_FUZZ_API_TOKEN"


@pytest.fixture(scope="module")
def api_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api-fuzz")
    csms_port, api_port = _free_port(), _free_port()  # no CSMS: the API must work without one
    config = tmp / "station.toml"
    config.write_text(
        f'[station]\nid = "CS-FUZZ"\ndata_dir = "{tmp / "var"}"\n'
        f'[ocpp]\ncsms_url = "ws://127.0.0.1:{csms_port}/ocpp"\n[api]\ntoken_env = "{TOKEN_ENV}"\n'
    )
    with (tmp / "station.log").open("w") as log:
        proc = subprocess.Popen(
            [*CLI, "--config", str(config), "--log-level", "warning", "station", "--bms", "mqtt",
             "--api-port", str(api_port)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env={**os.environ, TOKEN_ENV: TOKEN},
        )  # fmt: skip
        base = f"http://127.0.0.1:{api_port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError((tmp / "station.log").read_text()[-2000:]) from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert "Traceback" not in (tmp / "station.log").read_text()


OPERATIONS = ("GET /", "GET /api/status", "GET /api/plan", "POST /api/override", "GET /metrics")
# (schemathesis leaves out the document's own route, GET /openapi.json, when loading it from the URL)


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Negative cases need something to violate: only the override takes input (a JSON body).
CASES = [(label, POSITIVE) for label in OPERATIONS] + [("POST /api/override", NEGATIVE)]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_every_operation_answers_as_its_openapi_document_says(api_base: str, label: str, mode: Any) -> None:
    """Schema-valid (positive) or schema-violating (negative) requests for one operation: valid ones
    must be accepted, invalid ones refused with a documented 4xx; the document must list every route."""
    schema = schemathesis.openapi.from_url(f"{api_base}/openapi.json")
    operations = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
    assert set(operations) == set(OPERATIONS)
    operation = operations[label]
    headers = {"Authorization": f"Bearer {TOKEN}"} if operation.method.upper() == "POST" else None
    seen = []

    @settings(
        max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "40")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call(base_url=api_base, headers=headers, timeout=10)
        seen.append(response.status_code)
        case.validate_response(response)

    check()
    assert seen and all(code < 500 for code in seen)


def test_state_changes_without_the_token_are_refused_by_the_documented_401(api_base: str) -> None:
    request = urllib.request.Request(
        f"{api_base}/api/override", data=b'{"paused": true}', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
