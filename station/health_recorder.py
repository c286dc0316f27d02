"""Battery health on the station: record each session's BMS series, store it per battery, feed the policy.

`SessionRecorder` keeps one session's samples (timestamp, pack current, pack voltage, SoC, mean cell
temperature, ambient) in a bounded buffer. `StationHealth` owns the per-battery `HealthStore` at
`<data_dir>/<station id>/health.sqlite3` (salt `health_salt` next to it; raw VINs are never written) and
answers two questions: "what SoH should the charge plan assume for this battery?" (`soh_for`: the store's
p50 capacity estimate once `health.min_sessions` sessions are stored) and "what did this session tell
us?" (`finish`: store, assess, one `battery_health` log line). `notify_event` builds the OCPP 2.0.1
NotifyEvent for health alerts. Without a data directory (in-memory agents) nothing is stored and the
assessment uses the current session alone. Method and limits: docs/health.md.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import structlog

from bms_link.models import BatteryType, PackInfo, PackTelemetry
from chargeagent.clock import ocpp_timestamp
from chargeagent.config import HealthSettings
from chargeagent.errors import ChargeAgentError
from policy.health import Alert, HealthReport, assess_estimates
from policy.health_csv import SessionData
from policy.health_estimators import HealthSpec, SessionEstimate, estimate_session
from policy.health_store import HealthStore, load_or_create_salt
from policy.physics_params import Chemistry
from station.protocol.station import Outbound

log = structlog.get_logger(__name__)

FILE_NAME = "health.sqlite3"
MAX_SAMPLES = 4096  # ≈ 3 h at 2.6 s/sample before thinning; the estimators need seconds, not ms
MIN_SAMPLES = 10
EVENT_COMPONENT = "BatteryHealth"
EVENT_VARIABLE = "Problem"
_TECH_INFO_MAX = 500  # OCPP 2.0.1 EventDataType.techInfo maxLength
# Health is advisory: a failed read, estimate or write is one warning, never a failed session.
_ADVISORY_ERRORS = (ChargeAgentError, sqlite3.Error, ValueError, FloatingPointError)


class SessionRecorder:
    """One session's BMS series, bounded: when full, every other sample goes and the stride doubles."""

    def __init__(self, ambient_c: float, max_samples: int = MAX_SAMPLES) -> None:
        self.ambient_c = ambient_c
        self.max_samples = max(max_samples, MIN_SAMPLES)
        self._rows: list[tuple[float, float, float, float, float]] = []
        self._soh: list[float] = []
        self._stride = 1
        self._seen = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, t_s: float, telemetry: PackTelemetry) -> None:
        """`t_s`: Unix seconds of the sample. The mean cell temperature is the mean of the BMS's highest
        and lowest (all GB/T 27930 BSM reports), as `policy.health_csv` expects."""
        if telemetry.soh is not None:
            self._soh.append(telemetry.soh)
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        mean_temp_c = 0.5 * (telemetry.cell_temp_max_c + telemetry.cell_temp_min_c)
        self._rows.append(
            (t_s, telemetry.pack_current_a, telemetry.pack_voltage_v, telemetry.soc, mean_temp_c)
        )
        if len(self._rows) >= self.max_samples:
            self._rows = self._rows[::2]
            self._stride *= 2

    def session(self, session_id: str) -> SessionData | None:
        """The samples as `SessionData`, or None when there are too few to say anything."""
        if len(self._rows) < MIN_SAMPLES:
            return None
        table = np.array(self._rows, dtype=np.float64)
        return SessionData(
            session_id=session_id,
            time_s=table[:, 0],
            current_a=table[:, 1],
            voltage_v=table[:, 2],
            soc=table[:, 3],
            cell_temp_c=table[:, 4],
            ambient_c=np.full(len(table), self.ambient_c),
            bms_soh=float(np.median(self._soh)) if self._soh else None,
        )


def spec_for(info: PackInfo) -> HealthSpec | None:
    """The estimator's pack description from the handshake; None for chemistries it has no model of."""
    chemistry = {BatteryType.NMC: "nmc", BatteryType.LFP: "lfp"}.get(info.battery_type)
    if chemistry is None:
        return None
    series_cells = max(1, round(info.max_pack_voltage_v / info.max_cell_voltage_v))
    return HealthSpec(
        capacity_ah=info.rated_capacity_ah, chemistry=cast(Chemistry, chemistry), series_cells=series_cells
    )


@dataclass(frozen=True)
class HealthOutcome:
    """What one session added: the assessment (its `to_json()`) and whether it came from stored history."""

    report: HealthReport
    stored_sessions: int  # 0 when nothing was stored (no VIN, in-memory agent)

    @property
    def alerts(self) -> list[Alert]:
        return self.report.alerts

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "stored_sessions": self.stored_sessions}


class StationHealth:
    """The station's battery-health bookkeeping; `store_dir=None` keeps nothing between sessions."""

    def __init__(self, settings: HealthSettings, store_dir: Path | None) -> None:
        self.settings = settings
        self.store: HealthStore | None = None
        if settings.enabled and store_dir is not None:
            self.store = HealthStore(
                store_dir / FILE_NAME,
                load_or_create_salt(store_dir),
                max_sessions=settings.max_sessions_per_battery,
                retention_days=settings.retention_days,
            )

    def recorder(self, ambient_c: float) -> SessionRecorder | None:
        return SessionRecorder(ambient_c) if self.settings.enabled else None

    def soh_for(self, info: PackInfo) -> float | None:
        """The station's capacity SoH for this battery, once `min_sessions` sessions are stored: the p10 of
        its band, so a battery the station knows little about (a wide band) is planned as the worse case."""
        spec = spec_for(info)
        if self.store is None or info.vin is None or spec is None:
            return None
        try:
            estimates = [e for e in self.store.estimates_for(info.vin) if e is not None]
            if len(estimates) < self.settings.min_sessions:
                return None
            p10 = assess_estimates(estimates, spec).forecast.capacity_now.p10
        except _ADVISORY_ERRORS as exc:
            log.warning("battery_health_failed", error=str(exc), reaction="plan without the estimate")
            return None
        return p10 if math.isfinite(p10) and 0.0 < p10 <= 1.0 else None

    def finish(
        self, info: PackInfo, recorder: SessionRecorder, session_id: str, now_s: float
    ) -> HealthOutcome | None:
        """Store this session (when there is a store and a VIN), assess the battery, log `battery_health`."""
        spec = spec_for(info)
        session = recorder.session(session_id)
        if spec is None or session is None:
            return None
        try:
            estimate = estimate_session(session, spec)
            history: list[SessionEstimate] = [estimate]
            stored = 0
            if self.store is not None and info.vin is not None:
                self.store.add_session(info.vin, session, estimate, now_s=now_s)
                history = [e for e in self.store.estimates_for(info.vin) if e is not None]
                stored = len(history)
            outcome = HealthOutcome(assess_estimates(history, spec), stored)
        except _ADVISORY_ERRORS as exc:
            log.warning("battery_health_failed", error=str(exc))
            return None
        capacity = outcome.report.to_json()["capacity_soh"]
        log.info(
            "battery_health",
            capacity_soh_p10=capacity["p10"],
            capacity_soh_p50=capacity["p50"],
            capacity_soh_p90=capacity["p90"],
            sessions=outcome.report.sessions_used,
            stored_sessions=stored,
            alerts=[a.type for a in outcome.alerts],
        )
        return outcome

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def notify_event(alerts: list[Alert], now: datetime, first_event_id: int) -> Outbound:
    """OCPP 2.0.1 NotifyEvent: one Alerting event per alert on component BatteryHealth, variable Problem
    (actualValue = the alert type, techInfo = its message). Not transactional: dropped while offline."""
    stamp = ocpp_timestamp(now)
    return Outbound(
        "NotifyEvent",
        {
            "generatedAt": stamp,
            "seqNo": 0,  # the whole report fits one message (N07: tbc=false, seqNo starts at 0)
            "eventData": [
                {
                    "eventId": first_event_id + i,
                    "timestamp": stamp,
                    "trigger": "Alerting",
                    "actualValue": alert.type,
                    "techInfo": alert.message[:_TECH_INFO_MAX],
                    "eventNotificationType": "HardWiredMonitor",  # built in, not set by the CSMS
                    "component": {"name": EVENT_COMPONENT},
                    "variable": {"name": EVENT_VARIABLE},
                }
                for i, alert in enumerate(alerts)
            ],
        },
    )
