"""What the agent is doing right now, for the local API, the dashboard and the metrics (issue #9).

`LiveState` is updated once per control step by the charging session (`step`) and by the connection
(`disconnected`); readers take a consistent snapshot (`status`, `plan`) on the same event loop, so no lock
is needed. It keeps only small, bounded things: the last step, the current plan, the last
`HISTORY_STEPS` samples for the dashboard's sparklines, and counters for the Prometheus endpoint.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bms_link.models import StopReason
from chargeagent.errors import ConfigError
from policy.plan import Plan

if TYPE_CHECKING:
    from chargeagent.config import ApiSettings
    from policy.closed_loop import CurveController
    from station.agent import StationAgent
    from station.api import ApiServer
    from station.charging import StepRecord

HISTORY_STEPS = 600  # dashboard sparklines: the last 600 control steps (a few minutes at real BMS rates)
PLAN_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


@dataclass
class LiveState:
    last: StepRecord | None = None
    plan: Plan | None = None
    history: deque[tuple[float, float, float, float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_STEPS)
    )
    binding: Counter[str] = field(default_factory=Counter)  # control steps bound by each constraint
    steps: int = 0
    disconnects: int = 0  # CSMS connections that ended (each is followed by a reconnect)
    sessions: Counter[str] = field(default_factory=Counter)  # charging sessions ended, by StopReason
    plan_latency_counts: list[int] = field(default_factory=lambda: [0] * (len(PLAN_LATENCY_BUCKETS_S) + 1))
    plan_latency_sum_s: float = 0.0
    _plans_seen: int = 0

    def step(self, record: StepRecord, controller: CurveController | None) -> None:
        self.last = record
        self.steps += 1
        self.binding[record.binding_constraint] += 1
        self.history.append((record.t_s, record.soc, record.current_a, record.cell_temp_max_c))
        if controller is None:
            self.plan = None
            return
        self.plan = controller.plan
        if controller.plans_made != self._plans_seen:  # a new plan since the last step: time it
            self._plans_seen = controller.plans_made
            self._observe_plan(controller.last_plan_s)

    def session_started(self) -> None:
        self._plans_seen = 0
        self.plan = None

    def session_ended(self, reason: str) -> None:
        self.sessions[str(reason)] += 1

    @property
    def bms_timeouts(self) -> int:
        """Sessions the charger ended because BMS messages stopped (GB/T 27930 CEM; MQTT silence)."""
        return self.sessions[StopReason.BMS_TIMEOUT]

    def _observe_plan(self, seconds: float) -> None:
        self.plan_latency_sum_s += seconds
        for i, bound in enumerate(PLAN_LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.plan_latency_counts[i] += 1
                return
        self.plan_latency_counts[-1] += 1


def local_api(agent: StationAgent, settings: ApiSettings) -> ApiServer | None:
    """The agent's local API server, or None when `[api]` is off. Imported only when enabled: aiohttp and
    prometheus-client are the [api] extra, and an edge build without the API does not load them."""
    if not settings.enabled:
        return None
    try:
        from station.api import ApiServer  # noqa: PLC0415
    except ModuleNotFoundError as exc:  # an edge build without the extra: say so, do not crash on import
        raise ConfigError(
            f"api.enabled: the local API needs the [api] extra (pip install 'chargeagent[api]'): {exc}"
        ) from exc
    return ApiServer(agent, settings)
