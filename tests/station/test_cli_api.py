"""`chargeagent station --api-port`: the local API comes up with the agent even while the CSMS is down, a
POST needs the token, and the token never reaches the log (issue #9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from test_cli import CLI, REPO  # same directory (pytest prepend import mode)
from test_cli_reload import _wait_for

from tests.conftest import _free_port

TOKEN = "cli-api-token-5f0c9e1d2b"  # a test token
TOKEN_ENV = "CHARGEAGENT_TEST_CLI_API_TOKEN"


def _call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)  # loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text.startswith("{") else text
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def test_station_serves_its_api_with_the_csms_down_and_never_logs_the_token(tmp_path: Path) -> None:
    csms_port, api_port = _free_port(), _free_port()  # nothing listens on the CSMS port
    config = tmp_path / "station.toml"
    config.write_text(
        f'[station]\nid = "CS-API"\ndata_dir = "{tmp_path / "var"}"\n'
        f'[ocpp]\ncsms_url = "ws://127.0.0.1:{csms_port}/ocpp"\nreconnect_min_s = 0.3\n'
        f'reconnect_max_s = 0.6\nreconnect_random_s = 0.0\n[api]\ntoken_env = "{TOKEN_ENV}"\n'
    )
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--log-level", "debug", "station", "--bms", "mqtt",
         "--api-port", str(api_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, TOKEN_ENV: TOKEN},
    )  # fmt: skip
    lines: list[str] = []
    base = f"http://127.0.0.1:{api_port}"
    try:
        assert "127.0.0.1" in _wait_for(lines, proc, "api_listening")  # loopback by default
        code, status = _call(f"{base}/api/status")
        assert code == 200 and status["station_id"] == "CS-API"
        assert status["connected"] is False and status["booted"] is False
        code, metrics = _call(f"{base}/metrics")
        assert code == 200 and 'chargeagent_csms_connected{station_id="CS-API"} 0.0' in metrics
        assert _call(f"{base}/api/override", {"paused": True}, token="wrong")[0] == 401
        code, body = _call(f"{base}/api/override", {"paused": True, "max_current_a": 20}, token=TOKEN)
        assert (code, body) == (200, {"model_enabled": True, "max_current_a": 20.0, "paused": True})
        _wait_for(lines, proc, "api_override")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = "".join(lines) + proc.stderr.read()
    assert "api_unauthorized" in log and "operator_override" in log
    assert TOKEN not in log  # not at debug level either
