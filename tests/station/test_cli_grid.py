"""The grid commands (site-load, forecast, backtest-forecast, publish-forecast) as users run them."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import jsonschema
import numpy as np
import pytest

from policy.forecast_io import format_utc, parse_utc

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "station.cli"]
START = "2024-01-22T00:00:00Z"  # the Monday after 21 generated days


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
    )


def read_rows(path: Path) -> list[list[str]]:
    with path.open() as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    history, sessions = out / "HISTORY.csv", out / "SESSIONS.csv"
    result = run_cli(
        "site-load", "--site", "config/sites/workplace.toml", "--days", "21", "--stations", "20",
        "--seed", "1", "--out", str(history), "--sessions-out", str(sessions),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sessions" in result.stdout
    return history, sessions


def test_site_load_is_reproducible_and_in_the_contract_format(generated, tmp_path):
    history, sessions = generated
    rows = read_rows(history)
    assert rows[0] == ["interval_start", "load_kw"]
    assert len(rows) == 1 + 21 * 96
    assert rows[1][0] == "2024-01-01T00:00:00Z"
    assert read_rows(sessions)[0] == [
        "session_id", "station_id", "connection_time", "disconnect_time", "kwh_delivered",
    ]  # fmt: skip
    again = tmp_path / "new" / "dir" / "again.csv"  # its directory is made
    assert run_cli(
        "site-load", "--site", "config/sites/workplace.toml", "--days", "21", "--stations", "20",
        "--seed", "1", "--out", str(again),
    ).returncode == 0  # fmt: skip
    assert again.read_bytes() == history.read_bytes()


def test_an_output_that_cannot_be_written_exits_2_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(
        "site-load", "--site", "config/sites/workplace.toml", "--days", "2", "--out", str(blocker / "H.csv")
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"chargeagent: {blocker / 'H.csv'}: cannot write: ")


def test_forecast_writes_36_h_of_sorted_non_negative_quantiles(generated, tmp_path):
    history, sessions = generated
    out, message = tmp_path / "FORECAST.csv", tmp_path / "forecast.json"
    result = run_cli(
        "forecast", "--history", str(history), "--sessions", str(sessions), "--start", START,
        "--horizon-h", "36", "--interval-min", "15", "--out", str(out), "--message-out", str(message),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "quantile_gbm" in result.stdout
    rows = read_rows(out)
    assert rows[0] == ["interval_start", "p10_kw", "p50_kw", "p90_kw"]
    assert len(rows) == 1 + 144
    assert rows[1][0] == START
    assert rows[-1][0] == "2024-01-23T11:45:00Z"
    values = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert np.all(np.isfinite(values))
    assert np.all(values >= 0)
    assert np.all(np.diff(values, axis=1) >= 0)
    assert values[36, 1] > values[12, 1]  # Monday 9:00 busier than 3:00
    schema = json.loads((REPO / "config" / "schemas" / "forecast.schema.json").read_text())
    jsonschema.validate(json.loads(message.read_text()), schema)


def test_hourly_output_and_cold_start_note(generated, tmp_path):
    history, _ = generated
    short = tmp_path / "short.csv"
    short.write_text("".join(history.read_text().splitlines(keepends=True)[: 1 + 5 * 96]))
    out = tmp_path / "F.csv"
    result = run_cli(
        "forecast", "--history", str(short), "--start", "2024-01-06T00:00:00Z", "--horizon-h", "24",
        "--interval-min", "60", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "seasonal_profile" in result.stderr
    rows = read_rows(out)
    assert len(rows) == 1 + 24
    assert rows[2][0] == "2024-01-06T01:00:00Z"


@pytest.mark.parametrize(
    ("edit", "args", "expected"),
    [
        (
            lambda text: text.replace("\n2024-01-03T10:00:00Z,", "\n2024-01-03T10:00:00Z,x"),
            (),
            "row 233 (line 234)",
        ),
        (
            lambda text: text.replace("\n2024-01-03T10:00:00Z,", "\n2024-01-03 10:07Z,"),
            (),
            "row 233 (line 234)",
        ),
        (lambda text: text, ("--start", "2024-01-21T00:00:00Z"), "must end by --start"),
        (lambda text: text, ("--start", "monday"), "--start: not an ISO 8601 time"),
        (lambda text: text, ("--interval-min", "20"), "--interval-min must be a positive multiple of 15"),
        (lambda text: text, ("--horizon-h", "0"), "--horizon-h must be > 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(generated, tmp_path, edit, args, expected):
    history, _ = generated
    bad = tmp_path / "HISTORY.csv"
    bad.write_text(edit(history.read_text()))
    base = {"--history": str(bad), "--start": START, "--out": str(tmp_path / "F.csv")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = run_cli("forecast", *[item for pair in base.items() for item in pair])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chargeagent: ")
    assert expected in lines[0]
    if "row" in expected:
        assert str(bad) in lines[0]
        assert "column" in lines[0]
    assert not (tmp_path / "F.csv").exists()


def test_bad_sessions_file_names_file_row_and_column(generated, tmp_path):
    history, sessions = generated
    bad = tmp_path / "S.csv"
    lines = sessions.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(",", ",,", 1)
    bad.write_text("".join(lines))
    result = run_cli("forecast", "--history", str(history), "--sessions", str(bad), "--start", START,
                     "--out", str(tmp_path / "F.csv"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"chargeagent: {bad}, row 3 (line 4), column ")
    assert "Traceback" not in result.stderr


def test_site_load_bad_config_names_the_key(tmp_path):
    site = tmp_path / "site.toml"
    text = (REPO / "config" / "sites" / "depot.toml").read_text()
    site.write_text(text.replace("station_max_power_kw = 50.0", "station_max_power_kw = -50.0"))
    result = run_cli("site-load", "--site", str(site), "--out", str(tmp_path / "H.csv"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"chargeagent: {site}: site.station_max_power_kw: Input should be greater than 0 (got -50.0)"
    )


def test_backtest_prints_every_method_from_one_run(tmp_path):
    history = tmp_path / "H.csv"
    assert run_cli(
        "site-load", "--site", "config/sites/workplace.toml", "--days", "17", "--stations", "10",
        "--out", str(history),
    ).returncode == 0  # fmt: skip
    result = run_cli("backtest-forecast", "--history", str(history), "--origins", "1", "--horizon-h", "24")
    assert result.returncode == 0, result.stderr
    for method in ("ours", "same interval last week", "mean of last 4 same weekdays", "plain GBM"):
        assert method in result.stdout
    assert "WAPE" in result.stdout
    assert "coverage" in result.stdout
    too_many = run_cli("backtest-forecast", "--history", str(history), "--origins", "5")
    assert too_many.returncode == 2
    assert "need at least" in too_many.stderr


# --- upstream over MQTT (station/grid.py) --------------------------------------------------------


REFUSED = "[Errno 111] Connection refused"


def short_history(path: Path, days: int = 5) -> Path:
    """A cold-start history (no model fit): the CLI runs in about a second."""
    with path.open("w") as handle:
        handle.write("interval_start,load_kw\n")
        for i in range(days * 96):
            stamp = np.datetime64("2024-01-01T00:00:00") + np.timedelta64(15 * i, "m")
            handle.write(f"{stamp}Z,{20 + 10 * np.sin(2 * np.pi * (i % 96) / 96):.3f}\n")
    return path


def subscribe_forecast(url: str, site_id: str, timeout_s: float = 20.0) -> tuple[dict, bool]:
    """The first message a new subscriber to chargeagent/{site_id}/forecast gets, and its retain flag."""
    host, port = url.removeprefix("mqtt://").split(":")

    async def first() -> tuple[dict, bool]:
        async with asyncio.timeout(timeout_s):
            while True:  # the publisher may not have connected yet: poll for the retained copy
                async with aiomqtt.Client(host, int(port), identifier="test-cli-subscriber") as client:
                    await client.subscribe(f"chargeagent/{site_id}/forecast", qos=1)
                    try:
                        async with asyncio.timeout(1.0):
                            async for message in client.messages:
                                return json.loads(bytes(message.payload)), message.retain
                    except TimeoutError:
                        continue

    return asyncio.run(first())


def test_forecast_with_mqtt_url_publishes_the_message_retained_on_the_site_topic(mosquitto, tmp_path):
    history = short_history(tmp_path / "HISTORY.csv")
    out, message = tmp_path / "FORECAST.csv", tmp_path / "forecast.json"
    result = run_cli(
        "forecast", "--history", str(history), "--start", "2024-01-06T00:00:00Z", "--out", str(out),
        "--message-out", str(message), "--site-id", "depot-3", "--mqtt-url", mosquitto.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"published to {mosquitto.url} chargeagent/depot-3/forecast" in result.stdout
    assert len(read_rows(out)) == 1 + 144  # --out is still written
    received, retained = subscribe_forecast(mosquitto.url, "depot-3")
    assert retained  # published before we subscribed: the broker kept it for late subscribers
    assert received == json.loads(message.read_text())
    jsonschema.validate(received, json.loads((REPO / "config/schemas/forecast.schema.json").read_text()))


def test_forecast_with_an_unreachable_broker_exits_1_with_one_line(mosquitto, tmp_path):
    mosquitto.stop()
    history = short_history(tmp_path / "HISTORY.csv")
    out = tmp_path / "FORECAST.csv"
    result = run_cli(
        "forecast", "--history", str(history), "--start", "2024-01-06T00:00:00Z", "--out", str(out),
        "--mqtt-url", mosquitto.url,
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("chargeagent: forecast")]
    assert errors == [f"chargeagent: forecast not published: MQTT broker {mosquitto.url}: {REFUSED}"]
    assert "Traceback" not in result.stderr
    assert out.exists()


def test_forecast_with_a_bad_mqtt_url_exits_2_naming_the_key(tmp_path):
    history = short_history(tmp_path / "HISTORY.csv", days=1)
    result = run_cli(
        "forecast", "--history", str(history), "--start", "2024-01-02T00:00:00Z",
        "--out", str(tmp_path / "F.csv"), "--mqtt-url", "http://broker:1883",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("chargeagent: config error: grid.mqtt_url:")


def test_publish_forecast_loop_publishes_and_stops_cleanly_on_ctrl_c(mosquitto, tmp_path):
    history = short_history(tmp_path / "HISTORY.csv")
    proc = subprocess.Popen(
        [*CLI, "publish-forecast", "--history", str(history), "--site-id", "loop-1",
         "--mqtt-url", mosquitto.url, "--interval-s", "900", "--check-s", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        received, _ = subscribe_forecast(mosquitto.url, "loop-1")
        assert received["site_id"] == "loop-1"
        assert received["generated_at"] == "2024-01-06T00:00:00Z"  # the end of the history
        assert len(received["intervals"]) == 144
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped:" in stdout


async def test_publish_forecast_reports_to_an_openadr_vtn_without_mqtt(tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.station.vtn import Vtn

    history = short_history(tmp_path / "HISTORY.csv")
    last_kw = float(read_rows(history)[-1][1])
    async with Vtn() as vtn:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "publish-forecast", "--history", str(history), "--site-id", "adr-1", "--no-mqtt",
            "--vtn-url", vtn.url, "--check-s", "0.5",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
            # reports as fast as the test VTN asks (1 s), not the 60 s default: ~45 s less waiting
            env={**os.environ, "CHARGEAGENT_GRID__REPORT_INTERVAL_S": "1"},
        )  # fmt: skip
        try:
            await vtn.wait_for(lambda: all(vtn.values.get(r) for r in ("p10", "p50", "p90", "load")), 60)
            event_id = vtn.add_event(
                "SIMPLE",
                "level",
                [{"dtstart": datetime.now(UTC), "duration": timedelta(minutes=5), "signal_payload": 2}],
            )
            await vtn.wait_for(lambda: event_id in vtn.opts, 30)
            proc.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert vtn.registrations[0]["ven_name"] == "adr-1"  # the site id names the VEN
    p10, p50, p90 = (vtn.values[q][-1] for q in ("p10", "p50", "p90"))
    assert len(p50) == 144 and p50[0][0] == datetime(2024, 1, 6, tzinfo=UTC)  # from the end of the history
    assert all(a[1] <= b[1] <= c[1] for a, b, c in zip(p10, p50, p90, strict=True))
    assert vtn.values["load"][-1][0][1] == pytest.approx(last_kw * 1e3)
    assert vtn.opts[event_id] == "optOut"  # the site process reports; it controls no station


def test_publish_forecast_without_mqtt_or_vtn_exits_2(tmp_path):
    history = short_history(tmp_path / "HISTORY.csv", days=1)
    result = run_cli("publish-forecast", "--history", str(history), "--no-mqtt")
    assert result.returncode == 2
    assert "--no-mqtt needs --vtn-url" in result.stderr


def test_publish_forecast_places_the_plugged_in_cars_where_their_stations_plan_them(mosquitto, tmp_path):
    """`--site-mqtt-url`: a station waiting for cheaper hours (its demand: 40 kWh at 40 kW from 3 h on)
    shows in the published forecast at +3 h, not now. History: 3 days at 5 kW up to the current quarter."""
    from station.site_protocol import Demand, demand_topic, encode

    now = int(time.time()) // 900 * 900
    history = tmp_path / "HISTORY.csv"
    with history.open("w") as handle:
        handle.write("interval_start,load_kw\n")
        for i in range(3 * 96, 0, -1):
            handle.write(f"{format_utc(now - i * 900)},5.0\n")
    proc = subprocess.Popen(
        [*CLI, "publish-forecast", "--history", str(history), "--site-id", "plan-1",
         "--mqtt-url", mosquitto.url, "--site-mqtt-url", mosquitto.url, "--check-s", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip

    async def until_the_plan_shows() -> dict:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-site") as client:
            await client.subscribe("chargeagent/plan-1/forecast", qos=1)
            async with asyncio.timeout(40):
                while True:
                    sent_at = time.time()
                    waiting = Demand(
                        station_id="S1", sent_at=sent_at, want_w=0.0, power_w=0.0, need_wh=40_000.0,
                        failsafe_w=0.0, plan_w=40_000.0, plan_from=now + 3 * 3600.0,
                    )  # fmt: skip
                    await client.publish(demand_topic("plan-1", "S1"), encode(waiting), qos=1)
                    try:
                        async with asyncio.timeout(1.0):
                            async for message in client.messages:
                                forecast = json.loads(bytes(message.payload))
                                if max(i["p50"] for i in forecast["intervals"]) > 30.0:
                                    return forecast
                    except TimeoutError:
                        continue

    try:
        forecast = asyncio.run(until_the_plan_shows())
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    p50 = {parse_utc(i["start"]): i["p50"] for i in forecast["intervals"]}
    assert all(p50[now + k * 900] == pytest.approx(5.0, abs=0.5) for k in range(11))  # nothing before +3 h
    planned = [p50[now + k * 900] for k in range(12, 16)]  # 40 kWh at 40 kW: the hour from +3 h
    assert all(value >= 39.0 for value in planned)
    assert p50[now + 17 * 900] == pytest.approx(5.0, abs=0.5)
