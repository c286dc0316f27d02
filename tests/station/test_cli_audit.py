"""`chargeagent station` writes the audit trail of a real charge; `chargeagent audit-export` reads it back."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from test_cli import CLI, REPO, charging_station  # same directory

from simulators.csms import EmbeddedCsms


async def charge(data_dir: Path) -> None:
    async with EmbeddedCsms() as csms, charging_station(csms, "AUDIT-1", data_dir):
        await csms.wait_for(
            "AUDIT-1",
            "TransactionEvent",
            lambda p: p.get("triggerReason") == "MeterValuePeriodic" and p["seqNo"] >= 3,
            timeout_s=30,
        )


def test_a_charge_leaves_an_audit_trail_without_personal_data(tmp_path: Path) -> None:
    asyncio.run(charge(tmp_path))
    out = tmp_path / "audit.jsonl"
    done = subprocess.run(
        [*CLI, "audit-export", "--station-id", "AUDIT-1", "--data-dir", str(tmp_path), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records, "the learned curve differs from CC-CV at some point of a charge"
    assert {r["model"]["source"] for r in records} <= {"model", "fallback"}
    assert any(r["model"]["sha256"] for r in records)  # which model decided
    text = out.read_text()
    assert "OP-1" not in text  # the idToken the CSMS started with never reaches the audit
    missing = subprocess.run(
        [*CLI, "audit-export", "--station-id", "NOPE", "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "no station data" in missing.stderr
