"""The audit trail: what gets recorded, rotation keeps it bounded, export reads it back oldest first."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bms_link.models import ChargeMode, ChargeRequest, PackTelemetry
from policy.envelope import Decision
from station.audit import HEARTBEAT_S, AuditLog, Step, audit_files, export

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TELEMETRY = PackTelemetry(
    pack_voltage_v=380.0,
    pack_current_a=100.0,
    soc=0.5,
    soh=0.9,
    cell_voltage_max_v=3.95,
    cell_temp_max_c=31.0,
    cell_temp_min_c=29.0,
    request=ChargeRequest(voltage_v=400.0, current_a=150.0, mode=ChargeMode.CC),
    max_charge_current_a=200.0,
    max_pack_voltage_v=410.0,
    max_cell_voltage_v=4.2,
    max_temp_c=55.0,
    monotonic_s=0.0,
)


def step(t_s: float, proposed: float, applied: float, cc_cv: float = 150.0, binding: str = "curve") -> Step:
    return Step(
        T0, t_s, "tx-1", TELEMETRY, None, "model_curve", proposed, cc_cv, Decision(applied, binding, "why")
    )


def test_only_decisions_that_differ_from_cc_cv_and_change_are_recorded(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path)
    assert not audit.step(step(0.0, proposed=150.2, applied=150.0))  # the model agrees with CC-CV
    assert audit.step(step(1.0, proposed=120.0, applied=120.0))  # differs: recorded at once
    assert not audit.step(step(1.2, proposed=120.4, applied=120.4))  # differs, but nothing changed
    assert audit.step(step(1.4, proposed=110.0, applied=110.0))  # the output moved 10 A
    assert audit.step(step(1.6, proposed=110.0, applied=110.0, binding="thermal_derate"))  # another binder
    assert audit.step(step(1.6 + HEARTBEAT_S, proposed=110.0, applied=110.0, binding="thermal_derate"))
    audit.close()
    records = [json.loads(line) for line in export(tmp_path)]
    assert len(records) == audit.records_written == 4
    first = records[0]
    assert first["proposed_a"] == 120.0 and first["cc_cv_a"] == 150.0 and first["applied_a"] == 120.0
    assert first["inputs"]["soh"] == 0.9 and first["model"]["proposal"] == "model_curve"
    assert first["transaction_id"] == "tx-1"


def test_rotation_keeps_the_audit_bounded_and_export_is_oldest_first(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path, max_bytes=2_000, backups=2)
    for i in range(200):  # every step differs and moves by 2 A
        audit.step(step(float(i), proposed=50.0 + 2 * i, applied=50.0 + 2 * i, cc_cv=1000.0))
    audit.close()
    files = audit_files(tmp_path)
    assert [p.name for p in files] == ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert sum(p.stat().st_size for p in files) <= 3 * 2_000 + 1_000  # bounded: oldest dropped
    applied = [json.loads(line)["applied_a"] for line in export(tmp_path)]
    assert applied == sorted(applied) and applied[-1] == 50.0 + 2 * 199  # newest kept, in order
    assert len(applied) < 200


def test_non_finite_proposals_are_not_audited_as_model_decisions(tmp_path: Path) -> None:
    audit = AuditLog(None)
    assert not audit.step(step(0.0, proposed=float("nan"), applied=0.0))
    assert not audit.step(replace(step(1.0, proposed=100.0, applied=100.0), cc_cv_a=100.2))
