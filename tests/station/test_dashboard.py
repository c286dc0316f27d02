"""The dashboard page (station/dashboard.py) rendered in headless Chromium while the agent charges a
simulated pack (embedded CSMS, virtual CAN bus): the live values from /api/status must be in the DOM."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from station.status import Status, status
from tests.e2e.test_charging_session import Run, charge, pack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SID = "CS-E2E"  # the station id tests.e2e.test_charging_session uses


def _chromium(profile: Path, *args: str) -> str:
    """One headless Chromium run (blocking: called in an executor thread, which holds the virtual clock
    still, so the agent charges in real time while the page loads and polls)."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it as root)"
)
def test_dashboard_renders_the_live_charge_in_headless_chromium(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    shot = tmp_path / "dashboard.png"

    async def render(run: Run) -> None:
        await asyncio.wait_for(run.agent.api.ready.wait(), 10)
        await asyncio.sleep(180)  # virtual: the model plans, the sparklines fill
        loop = asyncio.get_running_loop()
        url = f"http://127.0.0.1:{run.agent.api.port}/"
        seen["before"] = status(run.agent)
        seen["dom"] = await loop.run_in_executor(None, _chromium, tmp_path / "p1", "--dump-dom", url)
        seen["after"] = status(run.agent)
        await loop.run_in_executor(
            None, _chromium, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1280,900", url
        )
        tx_id = run.tx_events()[0]["transactionInfo"]["transactionId"]
        assert await run.csms.request_stop_transaction(SID, tx_id) == "Accepted"

    charge(
        pack(soc=0.2, target_soc=0.9),
        render,
        settings_overrides={"api": {"enabled": True, "port": 0}},
    )
    if os.environ.get("CHARGEAGENT_KEEP_SCREENSHOT") and shot.exists():  # a path to copy it to, to look at
        shutil.copy(shot, os.environ["CHARGEAGENT_KEEP_SCREENSHOT"])
    dom: str = seen["dom"]
    before: Status = seen["before"]
    after: Status = seen["after"]
    assert f"<h1>{SID}</h1>" in dom and "CSMS connected" in dom
    assert before.control is not None and after.control is not None
    assert re.search(f'id="tx"[^>]*>{before.evses[0].transaction_id}<', dom)
    assert 'id="connector">Occupied<' in dom
    # the SoC on the page is the agent's, read while the page polled (it charges meanwhile)
    soc_pct = float(re.search(r'id="soc">([0-9.]+) %<', dom).group(1))  # type: ignore[union-attr]
    lo, hi = sorted(100 * e.meter.soc for e in (before.evses[0], after.evses[0]) if e.meter and e.meter.soc)
    assert lo - 0.05 <= soc_pct <= hi + 0.05
    assert 20.0 < soc_pct < 90.0
    current_a = float(re.search(r'id="current">([0-9.]+) A<', dom).group(1))  # type: ignore[union-attr]
    assert current_a > 0
    binding = re.search(r'id="binding">([a-z_]+)<', dom)
    assert binding is not None and binding.group(1) != ""
    assert re.search(r'id="plan"[^>]*>model: ', dom)  # the charge plan from /api/plan
    assert re.search(r'id="plan-line" [^>]*points="[0-9]', dom)  # its predicted temperature, drawn
    assert re.search(r'id="soc-line" [^>]*points="[0-9]', dom)  # the SoC sparkline, drawn
    assert shot.exists() and shot.stat().st_size > 10_000
