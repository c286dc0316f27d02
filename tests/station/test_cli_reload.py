"""SIGHUP on a running `chargeagent station`: the log format and level reload, the rest is named as
needing a restart, a broken file keeps the running configuration (issue #9, edge deployment)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from test_cli import CLI, REPO  # same directory (pytest prepend import mode)

from tests.conftest import _free_port

PORT = _free_port()  # nothing listens there: the station keeps reconnecting (and logging it)


def _config(path: Path, data_dir: Path, fmt: str, level: str, max_a: float = 250.0) -> None:
    path.write_text(
        f'[station]\nid = "CS-HUP"\ndata_dir = "{data_dir}"\ncharger_max_current_a = {max_a}\n'
        f'[ocpp]\ncsms_url = "ws://127.0.0.1:{PORT}/ocpp"\nreconnect_min_s = 0.3\n'
        f'reconnect_max_s = 0.6\nreconnect_random_s = 0.0\n[log]\nformat = "{fmt}"\nlevel = "{level}"\n'
    )


def _wait_for(lines: list[str], proc: subprocess.Popen[str], needle: str, timeout_s: float = 20.0) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not logged; last lines: {lines[-5:]}")


def test_sighup_reloads_logging_and_keeps_a_bad_file_out(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    _config(config, tmp_path / "var", "console", "info")
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "station", "--bms", "mqtt"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    lines: list[str] = []
    try:
        first = _wait_for(lines, proc, "csms_reconnect_wait")  # no CSMS there: it keeps retrying
        assert not first.startswith("{")
        _config(config, tmp_path / "var", "json", "debug", max_a=125.0)
        proc.send_signal(signal.SIGHUP)
        reloaded = json.loads(_wait_for(lines, proc, "config_reloaded"))
        assert reloaded["log_format"] == "json" and reloaded["needs_restart"] == ["station"]
        later = _wait_for(lines, proc, "csms_reconnect_wait")
        assert json.loads(later)["event"] == "csms_reconnect_wait"  # now in JSON
        config.write_text("[log\nformat = ")  # broken TOML
        proc.send_signal(signal.SIGHUP)
        failed = json.loads(_wait_for(lines, proc, "config_reload_failed"))
        assert "invalid TOML" in failed["error"]
        assert json.loads(_wait_for(lines, proc, "csms_reconnect_wait"))  # still running, still JSON
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
