"""The agent's status as the local API serves it (`GET /api/status`), built from a running `StationAgent`.

Pydantic models, so the OpenAPI document (`station/api.py`) carries their JSON Schemas and a test can
check every response against them. Pure reads of the agent's state: no I/O, no side effects. Personal
data never appears: the idToken of a transaction is shown as its pseudonym.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from policy.charge_sim import HORIZONS_MIN

if TYPE_CHECKING:
    from station.agent import StationAgent


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Meter(_Model):
    energy_wh: float
    power_w: float
    current_a: float
    voltage_v: float
    soc: float | None
    cell_temp_c: float | None


class EvseStatus(_Model):
    evse_id: int
    connector_status: str
    transaction_id: str | None
    id_token: str | None = Field(description="pseudonym of the idToken (never the token itself)")
    meter: Meter | None


class Control(_Model):
    """The last control step: what the envelope applied and which constraint bound it."""

    current_a: float
    limit_a: float | None = Field(description="the charging profiles' limit (CSMS and grid), if any")
    binding_constraint: str
    soc: float
    cell_temp_max_c: float
    pack_voltage_v: float


class OverrideStatus(_Model):
    model_enabled: bool
    max_current_a: float | None
    paused: bool


class Status(_Model):
    station_id: str
    connected: bool = Field(description="the CSMS connection is up and the station was accepted")
    booted: bool
    queue_depth: int = Field(description="transaction messages waiting in the durable outbox")
    evses: list[EvseStatus]
    control: Control | None
    override: OverrideStatus
    grid_constraints: int = Field(description="active ChargingStationExternalConstraints (OpenADR)")
    history: list[tuple[float, float, float, float]] = Field(
        description="recent control steps: (t_s, soc, current_a, cell_temp_max_c)"
    )


class PlanSegment(_Model):
    soc_start: float
    soc_end: float
    c_rate: float


class PlanView(_Model):
    """`GET /api/plan`: the charge plan in force (policy/plan.py `Plan`) and what it predicts."""

    source: str = Field(description="model | fallback")
    model_sha256: str | None
    expected_minutes: float | None = Field(description="predicted time to the target SoC")
    segments: list[PlanSegment]
    predicted_temp_c: list[float] = Field(
        description="predicted hottest-cell temperature at each segment end"
    )
    horizon_min: list[float] = Field(description="the look-ahead times of horizon_temp_c (minutes)")
    horizon_temp_c: list[float] = Field(description="predicted hottest-cell temperature at horizon_min")
    binding_constraints: list[str]
    explanation: str


class OverrideRequest(_Model):
    """POST /api/override: any subset; null max_current_a removes the cap. Strict: a state change takes
    JSON booleans and numbers as the schema says (0 is not false), found by fuzzing the API."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model_enabled: bool | None = None
    max_current_a: float | None = Field(default=None, ge=0.0)
    paused: bool | None = None
    clear_cap: bool = False


def status(agent: StationAgent, history: int = 120) -> Status:
    core = agent.core
    evses = []
    for evse_id, evse in core.evses.items():
        tx = core.transaction(evse_id)
        sample = evse.last_sample
        evses.append(
            EvseStatus(
                evse_id=evse_id,
                connector_status=evse.connector.status.value,
                transaction_id=tx.transaction_id if tx else None,
                id_token=agent.authorizer.pseudonym(tx.id_token) if tx and tx.id_token else None,
                meter=Meter(
                    energy_wh=sample.energy_wh,
                    power_w=sample.power_w,
                    current_a=sample.current_a,
                    voltage_v=sample.voltage_v,
                    soc=sample.soc,
                    cell_temp_c=sample.cell_temp_c,
                )
                if sample is not None
                else None,
            )
        )
    last = agent.live.last
    override = core.override
    return Status(
        station_id=agent.station_id,
        connected=agent.outbox.online,
        booted=agent.booted.is_set(),
        queue_depth=len(agent.outbox),
        evses=evses,
        control=Control(
            current_a=last.current_a,
            limit_a=last.limit_a,
            binding_constraint=last.binding_constraint,
            soc=last.soc,
            cell_temp_max_c=last.cell_temp_max_c,
            pack_voltage_v=last.pack_voltage_v,
        )
        if last is not None
        else None,
        override=OverrideStatus(
            model_enabled=override.model_enabled, max_current_a=override.max_current_a, paused=override.paused
        ),
        grid_constraints=sum(1 for p in core.profiles.installed() if p.source == "SO"),
        history=list(agent.live.history)[-history:],
    )


def plan(agent: StationAgent) -> PlanView | None:
    """The plan of the running session, or None (idle, or the model is off: CC-CV has no plan)."""
    current = agent.live.plan
    if current is None:
        return None
    return PlanView(
        source=current.source,
        model_sha256=current.model_sha256,
        expected_minutes=current.expected_minutes,
        segments=[
            PlanSegment(soc_start=s.soc_start, soc_end=s.soc_end, c_rate=s.c_rate) for s in current.segments
        ],
        predicted_temp_c=list(current.predicted_temp_c),
        horizon_min=list(HORIZONS_MIN) if current.horizon_temp_c else [],
        horizon_temp_c=list(current.horizon_temp_c),
        binding_constraints=list(current.binding_constraints),
        explanation=current.explanation,
    )
