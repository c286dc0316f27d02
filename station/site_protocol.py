"""One grid cap shared by the stations of a site (issue #8 item 5), sans-I/O: messages and the allocator.

A site controller (`chargeagent site-controller`, station/site_controller.py) and every station agent
(`[site]` in the config, station/site_link.py) talk over MQTT:

    chargeagent/{site_id}/demand/{station_id}  station -> controller, every report_interval_s (`Demand`)
    chargeagent/{site_id}/limit/{station_id}   controller -> station, every round (`Grant`)
    chargeagent/{site_id}/cap                  anyone -> controller, retained {"cap_kw": 120} (`CapMessage`)

Each round the controller shares the cap with `policy.allocation.allocate` (deadline first, then by
battery health) and sends every station its grant. A station applies a grant as a
ChargingStationExternalConstraints profile (`grant_profile`) whose schedule *itself* falls back to the
station's failsafe limit when the grant's validity ends: a silent controller, a lost broker or a lost
message need no timer on the station, and GetCompositeSchedule shows the fallback to the CSMS. This is the
failsafe rule of load-management interfaces such as EEBUS LPC (a "failsafe consumption active power
limit" that applies after a missed heartbeat); the operator sizes the failsafes so that Σ failsafe ≤ cap.

**Never above the cap, even while grants are in flight or lost.** A grant that lowers a station takes
effect when the station applies it, one that raises another could arrive first; a station whose grants
stop arriving falls back to its failsafe at a moment the others cannot know. So the controller counts
for each station the most it may be enforcing before the next round: the limit it reports applying
(`Demand.applied_limit_w`), every grant it was sent and may still hold, and its failsafe; it raises a
station only out of the room left after *those*. A lowered station's room reaches the others one round
later, once its next demand confirms it. A station holds a grant until the earlier of its `valid_until`
and its duration after it arrived (a grant delayed past its end is ignored); the controller counts a
grant as possibly held until `valid_until + clock_skew_s`, so station clocks within `clock_skew_s` of the
controller's (NTP) keep the guarantee: Σ of the limits the stations may enforce at any moment stays ≤ cap
whatever messages are late or lost (property-tested in tests/station/test_site_protocol.py, with skewed
clocks). A station not heard from keeps its reservation.

The price of that guarantee is the failsafe budget: every station's failsafe stays reserved (a station
may fall back to it at any moment), so a car can get at most cap − Σ(the other stations' failsafes). A
failsafe of 0 gives load management the whole cap, and stops a station's charging when the controller is
lost; a larger one keeps charging through an outage and leaves less to share. The operator sizes them
(`[site] failsafe_kw`) with Σ failsafe ≤ cap, and tells the controller that sum (`failsafe_budget_w`,
`--failsafe-budget-kw`) so the failsafes of stations it has not heard from yet stay reserved too; the
controller warns when the stations it hears exceed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chargeagent.clock import ocpp_timestamp
from chargeagent.errors import ChargeAgentError
from policy.allocation import allocate
from station.protocol.charging_profile import EXTERNAL

SCHEMA_VERSION = 1
SITE_PROFILE_KEY = "site"  # the external-constraint key of the site's limit in the profile store
SITE_PROFILE_ID = 900_000  # external constraint ids live apart from the CSMS's (OpenADR's: 1,000,000+)
# Without a departure time a session gets this horizon for its deadline rate: it still shares the
# cap, but never displaces a car that has a real deadline (allocation's laxity order).
NO_DEADLINE_S = 24 * 3600.0

NonNegativeW = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
EpochS = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
TopicId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


class SiteMessageError(ChargeAgentError):
    """A site message that is not JSON or not the schema (the receiver logs it and ignores it)."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    schema_version: Annotated[int, Field(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION


class Demand(_Message):
    """What one station needs now (its single EVSE; an idle station sends zeros)."""

    station_id: TopicId
    sent_at: EpochS
    want_w: NonNegativeW  # what it would draw without the site limit (the envelope's demand x voltage)
    power_w: NonNegativeW  # what it draws now (metered)
    need_wh: NonNegativeW  # energy still needed to the session's target SoC
    departure: EpochS | None = None  # when the driver leaves, if known
    soh: Annotated[float, Field(gt=0.0, le=1.2, allow_inf_nan=False)] | None = None
    applied_limit_w: NonNegativeW | None = None  # the site limit it enforces now (None: none yet)
    applied_grant_at: EpochS | None = None  # `issued_at` of the grant it enforces (None: its failsafe)
    failsafe_w: NonNegativeW  # what it falls back to without a valid grant
    # Its plan, for the site's load forecast (station/site_forecast.py): the power it will draw once its
    # plan draws (the envelope's demand without the price plan) and from when (a price plan waiting for
    # cheaper hours; None: now). None from stations that do not say: `want_w` from now.
    plan_w: NonNegativeW | None = None
    plan_from: EpochS | None = None


class Grant(_Message):
    """The controller's answer to one station: its limit until `valid_until`, its failsafe after."""

    station_id: TopicId
    issued_at: EpochS
    limit_w: NonNegativeW
    valid_until: EpochS
    cap_w: NonNegativeW  # the site cap this round shared (for the station's log and API)


class CapMessage(_Message):
    cap_kw: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


def parse_demand(topic: str, payload: bytes) -> Demand:
    """A demand from `chargeagent/{site}/demand/{station}`; SiteMessageError if it is not the schema or
    names another station than its topic's."""
    demand = parse(Demand, payload)
    station_id = topic.rsplit("/", 1)[-1]
    if demand.station_id != station_id:
        raise SiteMessageError(f"station_id {demand.station_id!r} on another station's topic")
    return demand


def demand_topic(site_id: str, station_id: str) -> str:
    return f"chargeagent/{site_id}/demand/{station_id}"


def limit_topic(site_id: str, station_id: str) -> str:
    return f"chargeagent/{site_id}/limit/{station_id}"


def cap_topic(site_id: str) -> str:
    return f"chargeagent/{site_id}/cap"


M = TypeVar("M", bound=_Message)


def parse(model: type[M], payload: bytes | bytearray | str) -> M:
    """Decode and validate one message; SiteMessageError with the first problem when it is not one."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise SiteMessageError(f"{model.__name__}: {where}: {first['msg']}") from None


def encode(message: _Message) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def grant_profile(limit_w: float, failsafe_w: float, now: datetime, valid_s: float) -> dict[str, Any]:
    """The site limit as an external constraint: `limit_w` from now for `valid_s`, then `failsafe_w`
    (open-ended: the failsafe holds until the next grant replaces the profile)."""
    periods = [{"startPeriod": 0, "limit": math.floor(limit_w * 10.0) / 10.0}]  # never rounded up
    if valid_s > 0.0:
        periods.append(
            {"startPeriod": max(1, math.floor(valid_s)), "limit": math.floor(failsafe_w * 10.0) / 10.0}
        )
    return {
        "id": SITE_PROFILE_ID,
        "stackLevel": 0,
        "chargingProfilePurpose": EXTERNAL,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": SITE_PROFILE_ID,
                "startSchedule": ocpp_timestamp(now),
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": periods,
            }
        ],
    }


def failsafe_profile(failsafe_w: float, now: datetime) -> dict[str, Any]:
    """The station's limit before any grant (and after the last one expired)."""
    return grant_profile(failsafe_w, failsafe_w, now, 0.0)


@dataclass
class _Station:
    demand: Demand
    received_s: float
    # Grants sent that the station may hold and has not yet confirmed superseding: (issued_at, limit_w).
    outstanding: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class StationGrant:
    """The station's side: which grant it enforces and until when (monotonic seconds)."""

    failsafe_w: float
    limit_w: float | None = None
    issued_at: float | None = None
    until_mono_s: float = -math.inf

    def receive(self, grant: Grant, now_s: float, now_mono_s: float) -> float:
        """Take `grant` if it is newer than the one held and not over; return its seconds left (≤ 0:
        ignored: older than the one held, or arrived after its end)."""
        if self.issued_at is not None and grant.issued_at <= self.issued_at:
            return 0.0
        left = min(grant.valid_until - grant.issued_at, grant.valid_until - now_s)
        if left <= 0.0:
            return left
        self.limit_w, self.issued_at, self.until_mono_s = grant.limit_w, grant.issued_at, now_mono_s + left
        return left

    def active(self, now_mono_s: float) -> bool:
        return self.limit_w is not None and now_mono_s < self.until_mono_s

    def limit_now_w(self, now_mono_s: float) -> float:
        return self.limit_w if self.active(now_mono_s) and self.limit_w is not None else self.failsafe_w

    def applied_grant_at(self, now_mono_s: float) -> float | None:
        return self.issued_at if self.active(now_mono_s) else None


@dataclass
class SiteAllocator:
    """The controller's state: the latest demand per station; `step` answers every station heard from.

    `valid_s`: how long a grant holds; `clock_skew_s`: how far the stations' clocks may be from the
    controller's. Stations are never forgotten: one not heard from may still be drawing its limit."""

    cap_w: float
    valid_s: float = 10.0
    clock_skew_s: float = 1.0
    # Σ of every station's failsafe on the site, heard from or not: the part of it of stations not heard
    # from yet stays reserved (a station that has just started holds its failsafe before it reports).
    failsafe_budget_w: float = 0.0
    stale_after_s: float = 10.0  # a demand older than this: the station is not heard from
    stations: dict[str, _Station] = field(default_factory=dict)

    def update(self, demand: Demand, now_s: float) -> None:
        previous = self.stations.get(demand.station_id)
        if previous is None:
            self.stations[demand.station_id] = _Station(demand, now_s)
        elif demand.sent_at > previous.demand.sent_at:  # a late, older demand says nothing new
            previous.demand, previous.received_s = demand, now_s

    def held_w(self, now_s: float) -> dict[str, float]:
        """Per station, the most its limit may be between now and the next round."""
        out = {}
        for sid, st in self.stations.items():
            d = st.demand
            confirmed = -math.inf if d.applied_grant_at is None else d.applied_grant_at
            # A station never goes back to an older grant; one past its end (+ skew) is not held.
            st.outstanding = [
                (issued, limit)
                for issued, limit in st.outstanding
                if issued > confirmed and now_s < issued + self.valid_s + self.clock_skew_s
            ]
            # The grant it reported applying, unless that has ended since (a late demand cannot revive it).
            applied = (
                d.applied_limit_w or 0.0 if now_s < confirmed + self.valid_s + self.clock_skew_s else 0.0
            )
            out[sid] = max([applied, d.failsafe_w, *(limit for _, limit in st.outstanding)])
        return out

    def failsafe_w(self) -> float:
        """Σ of the failsafes of the stations heard from (the operator keeps it ≤ cap)."""
        return sum(st.demand.failsafe_w for st in self.stations.values())

    def step(self, now_s: float) -> list[Grant]:
        """One round: the new grants for the stations heard from (the others keep their reservation)."""
        held = self.held_w(now_s)
        fresh = [sid for sid, st in self.stations.items() if now_s - st.received_s <= self.stale_after_s]
        stale_w = sum(held[sid] for sid in self.stations if sid not in fresh)
        stale_w += max(self.failsafe_budget_w - self.failsafe_w(), 0.0)  # stations not heard from yet
        if not fresh:
            return []
        demands = [self.stations[sid].demand for sid in fresh]
        # Each failsafe is reserved anyway (see the module docstring): every station gets its failsafe,
        # and what the failsafes leave is shared by what each wants beyond it.
        failsafe = np.array([d.failsafe_w for d in demands])
        left = np.array([_time_left(d, now_s) for d in demands])
        target = failsafe + allocate(
            max(self.cap_w - stale_w - float(failsafe.sum()), 0.0),
            np.maximum(np.array([d.want_w for d in demands]) - failsafe, 0.0),
            np.maximum(np.array([d.need_wh for d in demands]) - failsafe * left / 3600.0, 0.0),
            left,
            np.array([1.0 if d.soh is None else d.soh for d in demands]),
        )
        now_held = np.array([held[sid] for sid in fresh])
        # Lowering is safe at once; raising only out of what no station may still be holding.
        new = np.minimum(target, now_held)
        room = max(self.cap_w - stale_w - float(now_held.sum()), 0.0)
        rise = np.maximum(target - now_held, 0.0)
        if room > 0.0 and rise.sum() > 0.0:
            new += np.minimum(rise, room * rise / rise.sum())
        grants = []
        for sid, limit_w in zip(fresh, new, strict=True):
            st = self.stations[sid]
            st.outstanding.append((now_s, float(limit_w)))
            grants.append(
                Grant(
                    station_id=sid,
                    issued_at=now_s,
                    limit_w=float(limit_w),
                    valid_until=now_s + self.valid_s,
                    cap_w=self.cap_w,
                )
            )
        return grants


def _time_left(demand: Demand, now_s: float) -> float:
    if demand.departure is None:
        return NO_DEADLINE_S
    return max(demand.departure - now_s, 1.0)
