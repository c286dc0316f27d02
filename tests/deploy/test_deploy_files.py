"""The shipped deployment files stay in step with the code: every package is in the container image and
every option the systemd unit passes exists on `chargeagent station`."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from station.cli import app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_container_copies_every_package_and_the_config() -> None:
    containerfile = (DEPLOY / "Containerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./\1$", containerfile, flags=re.MULTILINE))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    assert "config" in copied and (REPO / "config" / "default.toml").is_file()
    assert "CHARGEAGENT_CONFIG_DIR=/opt/chargeagent/config" in containerfile  # not in site-packages


def test_systemd_unit_runs_the_station_with_options_that_exist() -> None:
    unit = (DEPLOY / "chargeagent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].endswith("/chargeagent") and argv[1] == "station"
    help_text = CliRunner().invoke(app, ["station", "--help"], terminal_width=200).output
    for option in (a for a in argv[2:] if a.startswith("--")):
        assert option in help_text, option
    assert "KillSignal=SIGTERM" in unit and "StateDirectory=chargeagent" in unit
    assert "CHARGEAGENT_STATION__DATA_DIR=/var/lib/chargeagent" in unit
