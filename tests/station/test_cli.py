"""The command line as users run it: real subprocesses, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from simulators.csms import EmbeddedCsms

CLI = [sys.executable, "-m", "station.cli"]
REPO = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_bad_config_value_exits_2_with_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ocpp]\nmeter_interval_s = -5\n")
    result = run_cli("--config", str(bad), "csms")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "chargeagent: config error: ocpp.meter_interval_s: Input should be greater than 0 (got -5)"
    ]


def test_bad_env_value_is_reported_the_same_way():
    result = run_cli("station", env={"CHARGEAGENT_BMS__CAN_BITRATE": "fast"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("chargeagent: config error: bms.can_bitrate:")


def test_demo_charges_three_stations_and_writes_the_report(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for station in ("CS-NEW-WARM", "CS-AGED-COLD", "CS-LFP-HOT"):
        assert station in result.stdout
    assert "soc_target_reached" in result.stdout
    report = (tmp_path / "report.html").read_text()
    assert report.count("<svg") >= 9  # SoC, current, temperature per station
    # Each battery's health as the station estimated it: SoH band, forecast band, alerts (issue #10).
    assert "<th>EFC to 80 % (p10-p90)</th>" in report and "<th>health alerts</th>" in report
    assert len(re.findall(r'<td class="text">\d+ \(\d+-\d+\)</td>', report)) == 3  # a band per station
    assert "Traceback" not in result.stderr


async def start_station(csms_url: str, station_id: str, data_dir: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CHARGEAGENT_OCPP__METER_INTERVAL_S": "1",
        "CHARGEAGENT_LOG__FORMAT": "json",
        "CHARGEAGENT_STATION__DATA_DIR": str(data_dir),
    }
    return await asyncio.create_subprocess_exec(
        *CLI, "station", "--csms-url", csms_url, "--station-id", station_id, "--bms", "sim",
        "--can-channel", f"{station_id}-{os.getpid()}", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def charging_station(
    csms: EmbeddedCsms, station_id: str, data_dir: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`chargeagent station --bms sim` against `csms`, charging a transaction it started; SIGTERM on exit."""
    proc = await start_station(csms.url, station_id, data_dir)
    try:
        await csms.wait_for(
            station_id, "StatusNotification", lambda p: p["connectorStatus"] == "Occupied", timeout_s=30
        )
        assert await csms.request_start_transaction(station_id, id_token="OP-1", evse_id=1) == "Accepted"
        await csms.wait_for(
            station_id,
            "TransactionEvent",
            lambda p: p.get("triggerReason") == "MeterValuePeriodic",
            timeout_s=30,
        )
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()[-2000:]
    assert b"Traceback" not in stderr


def ended_events(csms: EmbeddedCsms, station_id: str) -> list[dict[str, Any]]:
    return [
        r.payload for r in csms.received(station_id, "TransactionEvent") if r.payload["eventType"] == "Ended"
    ]


async def test_station_command_lets_a_csms_start_and_stop_a_transaction_on_a_simulated_pack(tmp_path):
    async with EmbeddedCsms() as csms:
        async with charging_station(csms, "CLI-1", tmp_path):
            tx_id = csms.received("CLI-1", "TransactionEvent")[0].payload["transactionInfo"]["transactionId"]
            assert await csms.request_stop_transaction("CLI-1", tx_id) == "Accepted"
            await csms.wait_for(
                "CLI-1", "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=30
            )
        (ended,) = ended_events(csms, "CLI-1")
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    power = [
        v["value"]
        for r in csms.received("CLI-1", "TransactionEvent")
        for m in r.payload.get("meterValue", [])
        for v in m["sampledValue"]
        if v["measurand"] == "Power.Active.Import"
    ]
    assert max(power) > 1000  # a real pack was charging


async def test_sigterm_mid_transaction_stops_charging_and_ends_the_transaction_before_exit(tmp_path):
    async with EmbeddedCsms() as csms:
        async with charging_station(csms, "CLI-2", tmp_path):
            pass  # leaving the block sends SIGTERM while the transaction runs
        (ended,) = ended_events(csms, "CLI-2")
    assert ended["transactionInfo"]["stoppedReason"] == "Local"


async def test_transaction_events_survive_an_outage_and_kill_9_then_end_with_power_loss(tmp_path):
    first = EmbeddedCsms()
    await first.start()
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    async with charging_station(first, "CLI-3", tmp_path) as proc:
        await first.stop()  # network outage: the station keeps charging and queues its Updated events
        await asyncio.sleep(3.5)
        proc.kill()  # power cut: no chance to flush or end anything
        await proc.wait()
    async with EmbeddedCsms(port=port) as second:
        restarted = await start_station(second.url, "CLI-3", tmp_path)
        try:
            ended = await second.wait_for(
                "CLI-3", "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=30
            )
        finally:
            restarted.send_signal(signal.SIGTERM)
            await asyncio.wait_for(restarted.communicate(), timeout=30)
        events = [r.payload for c in (first, second) for r in c.received("CLI-3", "TransactionEvent")]
    assert ended.payload["transactionInfo"]["stoppedReason"] == "PowerLoss"
    seq_nos = {e["seqNo"] for e in events}  # at-least-once: a message in flight may come twice
    assert seq_nos == set(range(max(seq_nos) + 1))  # ... but none is missing
    offline = [e for e in events if e.get("offline")]
    assert len(offline) >= 2  # generated during the outage, delivered after the restart
    registers = [energy_wh(e) for e in events if "meterValue" in e]
    assert registers == sorted(registers)


def energy_wh(event: dict[str, Any]) -> float:
    values = event["meterValue"][0]["sampledValue"]
    return float(next(v["value"] for v in values if v["measurand"] == "Energy.Active.Import.Register"))


def test_demo_with_an_unknown_fault_exits_2_before_running():
    result = run_cli("demo", "--fault", "CS-NEW-WARM=30:meltdown", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("chargeagent: unknown fault 'meltdown' (known: ")
