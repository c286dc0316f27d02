"""The charge-decision audit trail: what the model decided differently from plain CC-CV, and why.

A model that steers high-power charging must be transparent and logged (issue #9; the EU AI Act's
record-keeping for high-risk systems). Every control step whose proposal differs from what the conservative
CC-CV curve would have proposed is a candidate; one is written when its applied current or binding
constraint changed materially since the last record (> `CHANGE_A`, or another constraint), or `HEARTBEAT_S`
after it, so an hour of charging at GB/T's 4-20 steps a second costs kilobytes, not megabytes, and no
change goes unrecorded.

Each record is one JSON line: time, transaction id, the inputs (SoC, SoH, cell temperatures and voltage, BMS
request), the model (source, sha256, proposal name), the proposal, what CC-CV would have proposed, the applied
current and the envelope's binding constraint with its explanation. No VIN, no idToken: the transaction id is
the CSMS's own opaque reference.

Storage: `<data_dir>/<station id>/audit.jsonl`, append-only, rotated by size (stdlib
`logging.handlers.RotatingFileHandler`: `audit.jsonl.1` … `.N`, oldest dropped), so it is bounded;
`export` concatenates the files oldest first (`chargeagent audit-export`).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bms_link.models import PackTelemetry
from chargeagent.clock import ocpp_timestamp
from policy.envelope import Decision
from policy.plan import Plan

FILE_NAME = "audit.jsonl"
MAX_BYTES = 1_048_576  # per file
BACKUPS = 9  # at most 10 MiB of audit per station
CHANGE_A = 1.0  # a record when the applied current moved more than this since the last one
HEARTBEAT_S = 30.0  # ... or this long after the last one while the model still differs from CC-CV
DIFFERS_A = 0.5  # a proposal this far from CC-CV's counts as "differs"


@dataclass(frozen=True, slots=True)
class Step:
    """One control step as the audit sees it."""

    at: datetime
    monotonic_s: float
    transaction_id: str | None
    telemetry: PackTelemetry
    plan: Plan | None
    proposal_name: str
    proposed_a: float
    cc_cv_a: float
    decision: Decision


class AuditLog:
    """Append-only, size-rotated JSON-lines audit of charge decisions (counted only with `directory=None`)."""

    def __init__(self, directory: Path | None, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = directory / FILE_NAME if directory is not None else None
        self._last: tuple[float, float, str] | None = None  # (monotonic s, applied A, binding)
        self.records_written = 0
        self._logger: logging.Logger | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger = logging.getLogger(f"chargeagent.audit.{self.path}")
            logger.handlers[:] = [handler]
            logger.setLevel(logging.INFO)
            logger.propagate = False  # audit lines never go to the console log
            self._logger = logger

    def step(self, step: Step) -> bool:
        """Record `step` if the model's proposal differs from CC-CV and something changed; True if written."""
        if not math.isfinite(step.proposed_a) or abs(step.proposed_a - step.cc_cv_a) <= DIFFERS_A:
            self._last = None  # back to CC-CV behaviour: the next difference is recorded at once
            return False
        applied, binding = step.decision.current_a, step.decision.binding_constraint
        if self._last is not None:
            at_s, last_a, last_binding = self._last
            quiet = abs(applied - last_a) <= CHANGE_A and binding == last_binding
            if quiet and step.monotonic_s - at_s < HEARTBEAT_S:
                return False
        self._last = (step.monotonic_s, applied, binding)
        self._write(record(step))
        return True

    def _write(self, entry: dict[str, Any]) -> None:
        self.records_written += 1
        if self._logger is not None:
            self._logger.info(json.dumps(entry, separators=(",", ":"), allow_nan=False))

    def close(self) -> None:
        if self._logger is not None:
            for handler in self._logger.handlers:
                handler.close()
            self._logger.handlers.clear()


def record(step: Step) -> dict[str, Any]:
    t, d, plan = step.telemetry, step.decision, step.plan
    return {
        "at": ocpp_timestamp(step.at),
        "transaction_id": step.transaction_id,
        "inputs": {
            "soc": round(t.soc, 4),
            "soh": None if t.soh is None else round(t.soh, 4),
            "cell_temp_min_c": round(t.cell_temp_min_c, 2),
            "cell_temp_max_c": round(t.cell_temp_max_c, 2),
            "cell_voltage_max_v": round(t.cell_voltage_max_v, 4),
            "pack_voltage_v": round(t.pack_voltage_v, 2),
            "bms_request_a": round(t.request.current_a, 2),
        },
        "model": {
            "source": plan.source if plan is not None else "fallback",
            "sha256": plan.model_sha256 if plan is not None else None,
            "proposal": step.proposal_name,
        },
        "proposed_a": round(step.proposed_a, 2),
        "cc_cv_a": round(step.cc_cv_a, 2),
        "applied_a": round(d.current_a, 2),
        "binding_constraint": d.binding_constraint,
        "envelope": d.explanation,
    }


def audit_files(directory: Path) -> list[Path]:
    """The audit files oldest first (`audit.jsonl.N` … `.1`, then `audit.jsonl`)."""
    rotated = sorted(
        (p for p in directory.glob(FILE_NAME + ".*") if p.suffix.lstrip(".").isdigit()),
        key=lambda p: int(p.suffix.lstrip(".")),
        reverse=True,
    )
    current = directory / FILE_NAME
    return [*rotated, *([current] if current.is_file() else [])]


def export(directory: Path) -> Iterator[str]:
    """Every audit line, oldest first, across the rotated files."""
    for path in audit_files(directory):
        with path.open(encoding="utf-8") as lines:
            yield from (line.rstrip("\n") for line in lines if line.strip())
