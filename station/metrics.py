"""Prometheus metrics for one agent (`GET /metrics`; the [api] extra's prometheus-client).

A custom collector reads the agent's counters at scrape time (the outbox's, `station.live.LiveState`'s),
so nothing is incremented on the hot path and several agents in one process (tests, the fleet simulator)
each have their own registry. Names follow Prometheus conventions (`_total` counters, base units):

    chargeagent_ocpp_messages_queued_total      messages accepted into the outbox
    chargeagent_ocpp_messages_sent_total        messages the CSMS acknowledged
    chargeagent_ocpp_messages_retried_total     CallErrors answered by a retry
    chargeagent_ocpp_messages_dropped_total     messages given up (offline status, over the cap, attempts)
    chargeagent_ocpp_queue_depth                transaction messages waiting in the durable outbox
    chargeagent_csms_connected                  1 while connected and accepted
    chargeagent_csms_disconnects_total          connections that ended (each followed by a reconnect)
    chargeagent_envelope_steps_total{constraint}  control steps, by the constraint that bound the current
    chargeagent_applied_current_amperes{evse}   the current applied at the last control step
    chargeagent_energy_delivered_wh_total       the station meter's register
    chargeagent_sessions_total{reason}          charging sessions ended, by stop reason
    chargeagent_bms_timeouts_total              sessions ended because the BMS went silent
    chargeagent_model_plan_seconds              histogram: wall time of each charge-curve inference
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from station.live import PLAN_LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from prometheus_client import Metric

    from station.agent import StationAgent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _AgentCollector(Collector):
    def __init__(self, agent: StationAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent, live, outbox = self.agent, self.agent.live, self.agent.outbox
        labels = {"station_id": agent.station_id}
        names = list(labels)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"chargeagent_{name}", doc, labels=names)
            family.add_metric(list(labels.values()), value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"chargeagent_{name}", doc, labels=names)
            family.add_metric(list(labels.values()), value)
            return family

        yield counter("ocpp_messages_queued", "OCPP messages accepted into the outbox", outbox.queued)
        yield counter("ocpp_messages_sent", "OCPP messages the CSMS acknowledged", outbox.sent)
        yield counter("ocpp_messages_retried", "CallErrors answered by a retry", outbox.retried)
        yield counter("ocpp_messages_dropped", "OCPP messages given up", outbox.dropped)
        yield gauge("ocpp_queue_depth", "transaction messages waiting in the outbox", len(outbox))
        yield gauge("csms_connected", "1 while connected and accepted", float(outbox.online))
        yield counter("csms_disconnects", "CSMS connections that ended", live.disconnects)
        yield counter("energy_delivered_wh", "the station meter's energy register (Wh)", agent.energy_wh)
        yield counter("bms_timeouts", "sessions ended because the BMS went silent", live.bms_timeouts)
        sessions = CounterMetricFamily(
            "chargeagent_sessions", "charging sessions ended, by stop reason", labels=[*names, "reason"]
        )
        for reason, count in sorted(live.sessions.items()):
            sessions.add_metric([agent.station_id, reason], count)
        yield sessions
        steps = CounterMetricFamily(
            "chargeagent_envelope_steps", "control steps by binding constraint", labels=[*names, "constraint"]
        )
        for constraint, count in sorted(live.binding.items()):
            steps.add_metric([agent.station_id, constraint], count)
        yield steps
        current = GaugeMetricFamily(
            "chargeagent_applied_current_amperes", "current applied at the last step", labels=[*names, "evse"]
        )
        for evse_id, evse in agent.core.evses.items():
            sample = evse.last_sample
            current.add_metric(
                [agent.station_id, str(evse_id)], sample.current_a if sample is not None else 0.0
            )
        yield current
        cumulative, buckets = 0, []
        for bound, count in zip(PLAN_LATENCY_BUCKETS_S, live.plan_latency_counts, strict=False):
            cumulative += count
            buckets.append((f"{bound:g}", cumulative))
        buckets.append(("+Inf", cumulative + live.plan_latency_counts[-1]))
        plan = HistogramMetricFamily(
            "chargeagent_model_plan_seconds", "wall time of each charge-curve inference", labels=names
        )
        plan.add_metric([agent.station_id], buckets, live.plan_latency_sum_s)
        yield plan


def agent_registry(agent: StationAgent) -> CollectorRegistry:
    """A registry of its own for one agent (never the global one: many agents may share a process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AgentCollector(agent))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE
