#!/usr/bin/env bash
# Install chargeagent with its dev extra into .venv, then lint, type-check and run the whole test suite.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
bash scripts/mosquitto.sh  # the MQTT BMS tests start their own broker
bash scripts/chromium.sh   # the dashboard test renders the page headless
.venv/bin/ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
