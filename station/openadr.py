"""OpenADR 2.0b, sans-I/O: what the grid operator's events mean for the station, and what it reports back.

The VEN (`station/openadr_ven.py`, on openleadr) hands each event it receives to `decide` and installs the
result as ChargingStationExternalConstraints profiles (`external_profiles`) in the station's profile store,
so a grid limit enters the composite schedule and the safety envelope like any other limit: it can only
lower the current, never raise it.

Signals understood (OpenADR 2.0b profile specification, 8.1 "Signals"; names as openleadr's enums):

- SIMPLE (or simple), type level, payload 0 normal … 3 special: `simple_fractions[level]` × the site max.
- LOAD_DISPATCH setpoint, or LOAD_CONTROL x-loadControlSetpoint: that power (kW unless the signal's
  measurement says W or MW), at most the site max.
- LOAD_CONTROL x-loadControlCapacity, payload a fraction 0…1: that fraction of the site max.
- ELECTRICITY_PRICE / ENERGY_PRICE, type price, priceRelative or priceMultiplier: no limit; logged, and
  with `policy.price_aware` they move the station's price plan (policy.price_plan.PriceSignal).

Anything else, or a payload that is not a finite number in range, is refused (optOut) with the reason:
the station never guesses what an unknown signal wants. Price signals are accepted (optIn) and kept for
the operator to see, but the charge planner does not use them yet (docs/forecast.md says so).

Reports: the site load forecast (p10/p50/p90, `policy.forecast.forecast_message`) becomes one report per
quantile (`forecast_points`), reading type "Projected", in W; the measured load goes as TELEMETRY_USAGE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from chargeagent.clock import ocpp_timestamp

OptType = Literal["optIn", "optOut"]
QUANTILES = ("p10", "p50", "p90")
_SIMPLE = ("SIMPLE", "simple")
_PRICE_NAMES = ("ELECTRICITY_PRICE", "ENERGY_PRICE")
_PRICE_TYPES = ("price", "priceRelative", "priceMultiplier")
_SCALE = {"none": 1.0, "k": 1e3, "M": 1e6}  # SI scale codes a power measurement can carry


@dataclass(frozen=True)
class GridLimit:
    """The site may draw at most `max_w` from `start` to `end`."""

    start: datetime
    end: datetime
    max_w: float


@dataclass(frozen=True)
class Price:
    start: datetime
    end: datetime
    value: float
    signal_type: str


@dataclass(frozen=True)
class SignalRules:
    """How the station reads signals: its maximum draw and what each SIMPLE level sheds."""

    site_max_w: float
    simple_fractions: tuple[float, ...] = (1.0, 0.5, 0.25, 0.0)  # SIMPLE levels 0 (normal) … 3 (special)


@dataclass(frozen=True)
class EventDecision:
    event_id: str
    opt: OptType
    reason: str
    limits: tuple[tuple[GridLimit, ...], ...] = ()  # one tuple of contiguous limits per limiting signal
    prices: tuple[Price, ...] = field(default=())


class SignalError(ValueError):
    """A signal the station refuses: unknown, or a payload out of range."""


def decide(event: Mapping[str, Any], rules: SignalRules) -> EventDecision:
    """The station's answer to one event (oadrDistributeEvent entry, as openleadr parses it)."""
    descriptor = event.get("event_descriptor", {})
    event_id = str(descriptor.get("event_id", "?"))
    if descriptor.get("event_status") in ("cancelled", "completed"):
        return EventDecision(event_id, "optIn", f"event {descriptor['event_status']}")
    limits: list[tuple[GridLimit, ...]] = []
    prices: list[Price] = []
    try:
        signals = event.get("event_signals") or []
        if not signals:
            raise SignalError("the event carries no signal")
        for signal in signals:
            name, kind = str(signal.get("signal_name")), str(signal.get("signal_type"))
            spans = _spans(signal, event.get("active_period", {}))
            if name in _PRICE_NAMES and kind in _PRICE_TYPES:
                prices.extend(Price(a, b, _finite(v, name), kind) for a, b, v in spans)
            else:
                limits.append(
                    tuple(GridLimit(a, b, _limit_w(name, kind, v, signal, rules)) for a, b, v in spans)
                )
    except (SignalError, KeyError, TypeError, ValueError) as exc:
        return EventDecision(event_id, "optOut", str(exc))
    reason = "limits" if limits else "prices (for the price plan, policy.price_aware)"
    return EventDecision(event_id, "optIn", reason, tuple(limits), tuple(prices))


def _spans(
    signal: Mapping[str, Any], active_period: Mapping[str, Any]
) -> list[tuple[datetime, datetime, Any]]:
    """(start, end, payload) per interval; an interval without dtstart follows the previous one (2.0b
    intervals are sequential from the event's active period)."""
    cursor = active_period.get("dtstart")
    spans = []
    for interval in sorted(signal.get("intervals") or [], key=lambda i: int(i.get("uid", 0))):
        start = interval.get("dtstart", cursor)
        duration = interval.get("duration")
        if not isinstance(start, datetime) or not isinstance(duration, timedelta):
            raise SignalError("an interval needs a start and a duration")
        if duration <= timedelta(0):
            raise SignalError(f"an interval lasts {duration}")
        spans.append((start, start + duration, interval.get("signal_payload")))
        cursor = start + duration
    if not spans:
        raise SignalError("a signal without intervals")
    return spans


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise SignalError(f"{what}: payload {value!r} is not a finite number")
    return number


def _limit_w(name: str, kind: str, payload: Any, signal: Mapping[str, Any], rules: SignalRules) -> float:
    value = _finite(payload, name)
    if name in _SIMPLE and kind == "level":
        level = int(value)
        if level != value or not 0 <= level < len(rules.simple_fractions):
            raise SignalError(f"SIMPLE level {payload!r} is not one of 0..{len(rules.simple_fractions) - 1}")
        return rules.simple_fractions[level] * rules.site_max_w
    if (name, kind) == ("LOAD_CONTROL", "x-loadControlCapacity"):
        if not 0.0 <= value <= 1.0:
            raise SignalError(f"x-loadControlCapacity {value} is not a fraction in [0, 1]")
        return value * rules.site_max_w
    if (name, kind) in (("LOAD_DISPATCH", "setpoint"), ("LOAD_CONTROL", "x-loadControlSetpoint")):
        watts = value * _power_scale(signal.get("measurement"))
        if watts < 0:
            raise SignalError(f"{name} setpoint {value} is negative")
        return min(watts, rules.site_max_w)
    raise SignalError(f"signal {name}/{kind} is not one the station acts on")


def _power_scale(measurement: Any) -> float:
    """W per payload unit: kW when the signal says nothing (the usual unit of a dispatch setpoint)."""
    if not isinstance(measurement, Mapping):
        return 1e3
    unit, scale = str(measurement.get("unit", "W")), str(measurement.get("scale", "none"))
    if unit not in ("W", "VA") or scale not in _SCALE:
        raise SignalError(f"a setpoint in {scale}{unit} is not a power the station understands")
    return _SCALE[scale]


def external_profiles(decision: EventDecision, first_id: int) -> dict[str, dict[str, Any]]:
    """One Absolute ChargingStationExternalConstraints profile (W, evseId 0) per limiting signal, keyed
    `<event_id>/<n>`; ids from `first_id` on (the grid's ids live apart from the CSMS's)."""
    profiles = {}
    for n, limits in enumerate(decision.limits):
        start = limits[0].start
        periods = [
            {"startPeriod": int((lim.start - start).total_seconds()), "limit": round(lim.max_w, 1)}
            for lim in limits
        ]
        profiles[f"{decision.event_id}/{n}"] = {
            "id": first_id + n,
            "stackLevel": 0,
            "chargingProfilePurpose": "ChargingStationExternalConstraints",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": first_id + n,
                    "startSchedule": ocpp_timestamp(start),
                    "duration": int((limits[-1].end - start).total_seconds()),
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": periods,
                }
            ],
        }
    return profiles


def forecast_points(message: Mapping[str, Any], quantile: str) -> list[tuple[datetime, float]]:
    """(interval start, W) of one quantile of a forecast message (kW in the message, W in the report)."""
    if quantile not in QUANTILES:
        raise ValueError(f"quantile must be one of {QUANTILES}")
    intervals: Sequence[Mapping[str, Any]] = message.get("intervals", [])
    return [
        (datetime.fromisoformat(str(i["start"]).replace("Z", "+00:00")), float(i[quantile]) * 1e3)
        for i in intervals
    ]
