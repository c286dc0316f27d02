"""One charging session on one EVSE: BMS handshake, the control loop, metering, the transaction's end.

Per telemetry sample: integrate the meter, let the curve controller (`policy.closed_loop`) propose a
current (the learned curve, or CC-CV when the model is off or cannot answer), let the safety envelope
decide (it only ever lowers), command the charger, report meter values. The agent owns the session's
inputs (OCPP core, clock, limits, the stop request) and the meter register; this module owns the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bms_link.base import BmsLink
from bms_link.models import ChargeCommand, PackInfo, PackTelemetry, StopReason
from chargeagent.clock import ocpp_timestamp
from chargeagent.config import Settings
from chargeagent.errors import BmsLinkError
from policy.closed_loop import FALLBACK_CURVE, ControllerSettings, CurveController
from policy.envelope import Decision, EnvelopeLimits, cc_cv_current_a, charger_max_a, decide
from policy.plan import CurvePolicy, Plan
from policy.price_plan import PricePlan, Tariff, price_at
from station.audit import Step
from station.health_recorder import SessionRecorder
from station.protocol.charging_needs import charging_needs
from station.protocol.transaction import ChargingState, MeterSample
from station.site_link import EvseDemand

if TYPE_CHECKING:
    from station.agent import StationAgent

EVSE_ID = 1  # this slice drives one EVSE with one connector


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One control step, for reports and the fleet simulator."""

    t_s: float
    soc: float
    current_a: float
    limit_a: float | None
    pack_voltage_v: float
    cell_temp_max_c: float
    binding_constraint: str
    energy_wh: float


@dataclass(frozen=True, slots=True)
class SessionResult:
    transaction_id: str | None
    info: PackInfo | None
    reason: StopReason
    energy_wh: float
    duration_s: float
    plan_source: str = "fallback"  # where the last charge plan came from: "model" | "fallback"
    plans_made: int = 0
    plan_explanation: str = ""
    health: dict[str, Any] | None = None  # the battery-health assessment (station.health_recorder), if any


def curve_policy(settings: Settings, limits: EnvelopeLimits) -> CurvePolicy | None:
    """The learned-curve planner, or None when the operator switched the model off (CC-CV only)."""
    if not settings.policy.model_enabled:
        return None
    path = settings.policy.model_path
    return CurvePolicy(limits=limits) if path is None else CurvePolicy(path, limits=limits)


class ChargingSession:
    """Runs one session for `agent` (create one per accepted start)."""

    def __init__(self, agent: StationAgent, tx_id: str | None) -> None:
        self.agent = agent
        self.tx_id = tx_id
        self.log = agent.log
        self._controller: CurveController | None = None
        self._recorder: SessionRecorder | None = None
        self._published: Plan | None = None  # the plan last handed to the OCPP core
        self._station_soh: float | None = None
        dwell_s = agent.settings.policy.dwell_s  # this session's departure, if configured
        self._departure_s = None if dwell_s is None else agent.clock.now().timestamp() + dwell_s
        self._target_soc = agent.settings.policy.target_soc  # the EV's own, once it states one
        self._price_plan = self._new_price_plan()
        self._prices_seen = -1  # the grid link's price-signal version the plan was priced with
        self._demand_a: float | None = None  # the envelope's demand at the last step
        self._price_a: float | None = None  # the price plan's current at the last step (None: no cap)

    async def run(self) -> SessionResult:
        """Handshake, charge until someone stops, end the transaction; BMS link errors end it, never raise."""
        started_s = self.agent.clock.monotonic()
        energy_at_start = self.agent.energy_wh
        link = self.agent.bms_factory()
        agent_health = self.agent.health
        info: PackInfo | None = None
        reason = StopReason.LOCAL
        try:
            info = await link.start_session()
            self.log.info("bms_session_started", battery=info.battery_type, soc=info.soc)
            self._take_charging_needs(info)
            self._recorder = agent_health.recorder(self.agent.settings.policy.ambient_c)
            self._station_soh = agent_health.soh_for(info)
            self._controller = self._new_controller(info, self._station_soh)
            reason = await self._control_loop(link, info)
            await link.stop_session(reason)  # idempotent: completes the BST/CST and BSD/CSD exchange
        except BmsLinkError as exc:
            self.log.error("bms_session_failed", error=str(exc))
            reason = link.end_reason or StopReason.BMS_TIMEOUT
        finally:
            await link.close()
            self.agent.site_demand = EvseDemand()  # idle: the site may give the room to others
        sample = self.agent.core.evses[EVSE_ID].last_sample
        if sample is not None:
            sample = MeterSample(
                self.agent.energy_wh, 0.0, 0.0, sample.voltage_v, sample.soc, sample.cell_temp_c
            )
            self.agent.core.record_sample(EVSE_ID, sample)
        self.agent.enqueue(self.agent.core.end_transaction(EVSE_ID, self.agent.clock.now(), reason, sample))
        ctl = self._controller
        plan = ctl.plan if ctl is not None else None
        result = SessionResult(
            self.tx_id,
            info,
            reason,
            self.agent.energy_wh - energy_at_start,
            self.agent.clock.monotonic() - started_s,
            plan_source=plan.source if plan is not None else "fallback",
            plans_made=ctl.plans_made if ctl is not None else 0,
            plan_explanation=plan.explanation if plan is not None else "CC-CV fallback (model off)",
            health=self._health(info),
        )
        self.log.info(
            "session_ended",
            reason=reason,
            energy_kwh=round(result.energy_wh / 1000, 3),
            minutes=round(result.duration_s / 60, 1),
        )
        return result

    def _health(self, info: PackInfo | None) -> dict[str, Any] | None:
        """Store and assess this session for the battery; alerts go to the CSMS as NotifyEvent."""
        if info is None or self._recorder is None:
            return None
        session_id = self.tx_id or f"session-{self.agent.clock.now().isoformat()}"
        outcome = self.agent.health.finish(
            info, self._recorder, session_id, self.agent.clock.now().timestamp()
        )
        if outcome is None:
            return None
        if outcome.alerts:
            self.agent.health_alerts(outcome.alerts)
        return outcome.to_json()

    async def _control_loop(self, link: BmsLink, info: PackInfo) -> StopReason:
        previous_a = 0.0
        last_s: float | None = None
        charging = False
        async for telemetry in link.telemetry():
            now_s = self.agent.clock.monotonic()
            dt_s = 0.0 if last_s is None else now_s - last_s
            last_s = now_s
            self._meter(telemetry, dt_s, previous_a)
            if self._recorder is not None:
                self._recorder.add(self.agent.clock.now().timestamp(), telemetry)
            if self.agent.stop_reason is not None:
                await link.stop_session(self.agent.stop_reason)
                return self.agent.stop_reason
            decision = self._decide(telemetry, info, previous_a, dt_s)
            if decision.stop:
                self.log.warning("envelope_stop", reason=decision.explanation)
                await link.stop_session(StopReason.SAFETY_ENVELOPE)
                return StopReason.SAFETY_ENVELOPE
            voltage_v = min(
                telemetry.request.voltage_v, info.max_pack_voltage_v, self.agent.limits.charger_max_voltage_v
            )
            await link.command(ChargeCommand(output_voltage_v=voltage_v, output_current_a=decision.current_a))
            previous_a = decision.current_a
            if self.agent.site is not None:
                self.agent.site_demand = self._site_demand(telemetry, info, decision)
            if decision.current_a > 0 and not charging:
                charging = True
                self.agent.enqueue(
                    self.agent.core.charging_state_changed(
                        EVSE_ID,
                        ChargingState.CHARGING,
                        self.agent.clock.now(),
                        self.agent.core.evses[EVSE_ID].last_sample,
                    )
                )
            self.agent.enqueue(self.agent.core.meter_update(EVSE_ID, self.agent.clock.now(), now_s))
            record = StepRecord(
                now_s,
                telemetry.soc,
                decision.current_a,
                self.agent.core.limit_a(EVSE_ID, self.agent.clock.now(), max(telemetry.pack_voltage_v, 1.0)),
                telemetry.pack_voltage_v,
                telemetry.cell_temp_max_c,
                decision.binding_constraint,
                self.agent.energy_wh,
            )
            self.agent.live.step(record, self._controller)
            if self.agent.on_step is not None:
                self.agent.on_step(record)
        return link.end_reason or StopReason.STOPPED_BY_EV

    def _take_charging_needs(self, info: PackInfo) -> None:
        """The EV's departure and target SoC replace the configured ones for this session; the CSMS is
        told with NotifyEVChargingNeeds (2.0.1 K15/K17; 1.6 has no such message)."""
        if info.departure is None and info.target_soc is None:
            return
        now = self.agent.clock.now()
        if info.departure is not None:
            departure_s = info.departure.timestamp()
            if departure_s <= now.timestamp():  # a stale or wrong clock: charge at once, never wait
                self.log.warning("ev_departure_in_past", departure=ocpp_timestamp(info.departure))
                departure_s = now.timestamp()
            self._departure_s = departure_s
            self._price_plan = self._new_price_plan()
        if info.target_soc is not None:
            self._target_soc = info.target_soc
        self.log.info(
            "ev_charging_needs",
            departure=None if info.departure is None else ocpp_timestamp(info.departure),
            target_soc=info.target_soc,
        )
        self.agent.enqueue([charging_needs(EVSE_ID, info)])

    def _new_price_plan(self) -> PricePlan | None:
        p = self.agent.settings.policy
        if not p.price_aware or self._departure_s is None:
            return None
        tariff = Tariff(p.tariff_hourly) if p.tariff_hourly is not None else None
        grid = self.agent.grid

        def price(t_s: float) -> float:
            return price_at(t_s, tariff, grid.price_signals() if grid is not None else ())

        return PricePlan(self._departure_s, price)

    def _need_kwh(self, telemetry: PackTelemetry, info: PackInfo) -> float:
        return max(self._target_soc - telemetry.soc, 0.0) * info.nominal_energy_kwh

    def _price_limit(self, telemetry: PackTelemetry, info: PackInfo) -> float | None:
        """The price plan's current now (None: no plan, or it gives way to the deadline)."""
        plan = self._price_plan
        if plan is None:
            return None
        grid = self.agent.grid
        if grid is not None and grid.prices_version != self._prices_seen:
            plan.reprice()  # a new or cancelled OpenADR price signal
            self._prices_seen = grid.prices_version
        volts = max(telemetry.pack_voltage_v, 1.0)
        now_s = self.agent.clock.now().timestamp()
        kw = plan.power_kw(now_s, self._need_kwh(telemetry, info), self._could_kw(volts))
        return None if kw is None else kw * 1e3 / volts

    def _could_kw(self, volts: float) -> float:
        """The power the envelope allows now without the price plan (the charger's until the first step)."""
        could_a = self._demand_a if self._demand_a is not None else charger_max_a(self.agent.limits, volts)
        return could_a * volts / 1e3

    def _site_demand(self, telemetry: PackTelemetry, info: PackInfo, decision: Decision) -> EvseDemand:
        """What this session asks of the site's load manager (station/site_link.py)."""
        sohs = [v for v in (telemetry.soh, self._station_soh) if v is not None]
        want_a = decision.demand_a if self._price_a is None else min(decision.demand_a, self._price_a)
        need_kwh, volts = self._need_kwh(telemetry, info), telemetry.pack_voltage_v
        plan_from_s = None
        if self._price_plan is not None and self._price_a is not None and self._price_a <= 0.0:
            now_s = self.agent.clock.now().timestamp()  # waiting: when does the plan start drawing?
            plan_from_s = now_s + self._price_plan.wait_s(now_s, need_kwh, self._could_kw(max(volts, 1.0)))
        return EvseDemand(
            want_w=want_a * volts,  # a car waiting for cheaper hours wants nothing now
            power_w=decision.current_a * volts,
            need_wh=need_kwh * 1000.0,
            departure_s=self._departure_s,
            soh=min(sohs) if sohs else None,  # the more conservative of the BMS's and the station's
            plan_w=decision.demand_a * volts,
            plan_from_s=plan_from_s,
        )

    def _csms_limit(self, telemetry: PackTelemetry) -> float | None:
        voltage_v = max(telemetry.pack_voltage_v, 1.0)
        return self.agent.core.limit_a(EVSE_ID, self.agent.clock.now(), voltage_v, external=False)

    def _grid_limit(self, telemetry: PackTelemetry) -> float | None:
        """The grid operator's limit (OpenADR events as ChargingStationExternalConstraints)."""
        voltage_v = max(telemetry.pack_voltage_v, 1.0)
        return self.agent.core.profiles.external_limit_a(self.agent.clock.now(), voltage_v)

    def _new_controller(self, info: PackInfo, station_soh: float | None) -> CurveController | None:
        if self.agent.policy is None:
            return None
        p = self.agent.settings.policy
        if station_soh is not None:
            self.log.info("station_soh_estimate", soh=round(station_soh, 3))
        return CurveController(
            self.agent.policy,
            info,
            ControllerSettings(
                preference=p.preference,
                target_soc=self._target_soc,
                ambient_c=p.ambient_c,
                assumed_soh=p.assumed_soh,
                station_soh=station_soh,
                replan_interval_s=p.replan_interval_s,
                temp_margin_c=p.temp_margin_c,
            ),
        )

    def _decide(self, telemetry: PackTelemetry, info: PackInfo, previous_a: float, dt_s: float) -> Decision:
        """The proposal (learned curve, or CC-CV), then the envelope decides; it only ever lowers."""
        name = FALLBACK_CURVE
        cc_cv = cc_cv_current_a(telemetry, info.rated_capacity_ah)
        proposal = cc_cv
        override = self.agent.core.override
        if not override.model_enabled and self._published is not None:  # switched off: no plan to publish
            self.agent.core.planned.pop(EVSE_ID, None)
            self._published = None
        if self._controller is not None and override.model_enabled:  # the operator may switch it off
            proposal, name = self._controller.propose(telemetry, self.agent.clock.monotonic())
            self._publish_plan(telemetry, info)
        if not math.isfinite(proposal):
            self.log.error("proposal_invalid", proposal=proposal, reaction="CC-CV fallback")
            name = FALLBACK_CURVE
        self._price_a = self._price_limit(telemetry, info)
        decision = decide(
            telemetry,
            proposed_current_a=proposal,
            csms_limit_a=self._csms_limit(telemetry),
            grid_limit_a=self._grid_limit(telemetry),
            previous_current_a=previous_a,
            dt_s=dt_s,
            limits=self.agent.limits,
            capacity_ah=info.rated_capacity_ah,
            proposal_name=name,
            operator_limit_a=override.limit_a(),
            price_limit_a=self._price_a,
        )
        self._demand_a = decision.demand_a
        ctl = self._controller
        self.agent.audit.step(
            Step(
                self.agent.clock.now(),
                self.agent.clock.monotonic(),
                self.tx_id,
                telemetry,
                ctl.plan if ctl is not None else None,
                name,
                proposal,
                cc_cv,
                decision,
            )
        )
        return decision

    def _publish_plan(self, telemetry: PackTelemetry, info: PackInfo) -> None:
        """A new plan becomes the EVSE's planned current in GetCompositeSchedule (protocol.composite)."""
        plan = self._controller.plan if self._controller is not None else None
        if plan is None or plan is self._published:
            return
        self._published = plan
        soh = telemetry.soh if telemetry.soh is not None else 1.0
        schedule = plan.current_schedule(telemetry.soc, info.rated_capacity_ah, soh)
        if self._price_plan is not None:  # the curve starts when the price plan says
            now_s, need_kwh = self.agent.clock.now().timestamp(), self._need_kwh(telemetry, info)
            wait_s = self._price_plan.wait_s(
                now_s, need_kwh, self._could_kw(max(telemetry.pack_voltage_v, 1.0))
            )
            if wait_s > 0.0:
                schedule = [(0.0, 0.0), *((wait_s + t, a) for t, a in schedule)]
        self.agent.core.planned[EVSE_ID] = (self.agent.clock.now(), schedule)

    def _meter(self, telemetry: PackTelemetry, dt_s: float, current_a: float) -> None:
        """Integrate the DC output energy over the last step (the current we delivered at this voltage)."""
        self.agent.energy_wh += telemetry.pack_voltage_v * current_a * dt_s / 3600.0
        sample = MeterSample(
            energy_wh=self.agent.energy_wh,
            power_w=telemetry.pack_voltage_v * telemetry.pack_current_a,
            current_a=telemetry.pack_current_a,
            voltage_v=telemetry.pack_voltage_v,
            soc=telemetry.soc,
            cell_temp_c=telemetry.cell_temp_max_c,
        )
        self.agent.core.record_sample(EVSE_ID, sample)
