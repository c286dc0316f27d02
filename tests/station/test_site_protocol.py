"""One cap shared by a site's stations: messages and the allocator (station/site_protocol.py), sans-I/O.

The main property: whatever messages are late, lost or reordered, and with station clocks up to the
allowed skew off, the sum of the limits the stations enforce never exceeds the cap at any moment.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.allocation import allocate
from station.protocol.charging_profile import ProfileStore
from station.site_protocol import (
    CapMessage,
    Demand,
    Grant,
    SiteAllocator,
    SiteMessageError,
    StationGrant,
    encode,
    grant_profile,
    parse,
)

# Integer time units (period 20, validity 100, skew 10 = 2 s, 10 s, 1 s at 0.1 s per unit): every
# event falls on a tick and no comparison depends on float rounding.
T0, PERIOD, VALID, SKEW = 1000.0, 20.0, 100.0, 10.0


def demand(sid: str, t: float, want_w: float, grant: StationGrant, **kw: float | None) -> Demand:
    return Demand(
        station_id=sid,
        sent_at=t,
        want_w=want_w,
        power_w=0.0,
        need_wh=kw.get("need_wh") or 10_000.0,
        departure=kw.get("departure"),
        applied_limit_w=grant.limit_now_w(t),
        applied_grant_at=grant.applied_grant_at(t),
        failsafe_w=grant.failsafe_w,
    )


@st.composite
def sites(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(1, 5))
    cap = draw(st.floats(1_000.0, 200_000.0))
    shares = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    failsafe = [cap * s / n for s in shares]  # the operator's sizing: Σ failsafe ≤ cap
    delays = st.one_of(st.none(), st.integers(0, 150))  # None: the message is lost
    return {
        "cap": cap,
        "failsafe": failsafe,
        "offsets": draw(st.lists(st.integers(-int(SKEW), int(SKEW)), min_size=n, max_size=n)),
        "wants": draw(
            st.lists(st.lists(st.floats(0.0, 150_000.0), min_size=n, max_size=n), min_size=12, max_size=12)
        ),
        "grant_delays": draw(st.lists(delays, min_size=60 * n, max_size=60 * n)),
        "demand_delays": draw(st.lists(delays, min_size=60 * n, max_size=60 * n)),
        "phases": draw(st.lists(st.integers(0, int(PERIOD) - 1), min_size=n, max_size=n)),
    }


@settings(max_examples=100, deadline=None)
@given(site=sites())
def test_the_stations_limits_never_sum_above_the_cap_whatever_the_network_does(site: dict) -> None:
    cap: float = site["cap"]
    failsafe: list[float] = site["failsafe"]
    n = len(failsafe)
    ids = [f"CS{i}" for i in range(n)]
    allocator = SiteAllocator(
        cap, valid_s=VALID, clock_skew_s=SKEW, stale_after_s=VALID, failsafe_budget_w=sum(failsafe)
    )
    stations = [StationGrant(f) for f in failsafe]
    queue: list[tuple[float, int, str, int, object]] = []  # (deliver at, seq, kind, station, message)
    seq = 0
    grant_delays, demand_delays = iter(site["grant_delays"]), iter(site["demand_delays"])
    worst = 0.0
    for tick in range(int(T0), int(T0 + 60 * PERIOD)):
        t = float(tick)
        while queue and queue[0][0] <= t:
            _, _, kind, i, message = heapq.heappop(queue)
            if kind == "grant":
                assert isinstance(message, Grant)
                stations[i].receive(message, t + site["offsets"][i], t)  # the station's own wall clock
            else:
                assert isinstance(message, Demand)
                allocator.update(message, t)
        if (tick - T0) % PERIOD == 0:
            for grant in allocator.step(t):
                i = ids.index(grant.station_id)
                delay = next(grant_delays, None)
                if delay is not None:
                    heapq.heappush(queue, (t + delay, seq := seq + 1, "grant", i, grant))
        for i, sid in enumerate(ids):
            if (tick - T0 - site["phases"][i]) % PERIOD == 0:
                round_no = int((tick - T0) // PERIOD) % len(site["wants"])
                d = demand(sid, t, site["wants"][round_no][i], stations[i])
                delay = next(demand_delays, None)
                if delay is not None:
                    heapq.heappush(queue, (t + delay, seq := seq + 1, "demand", i, d))
        total = sum(s.limit_now_w(t) for s in stations)
        worst = max(worst, total / cap)
        assert total <= cap * (1 + 1e-9), f"t={t}: limits {[s.limit_now_w(t) for s in stations]} > cap {cap}"
    assert worst <= 1.0 + 1e-9


def test_with_a_quiet_network_the_grants_settle_on_the_allocation() -> None:
    cap, wants, failsafe = 60_000.0, [50_000.0, 30_000.0, 10_000.0], [10_000.0] * 3
    allocator = SiteAllocator(cap, valid_s=VALID, clock_skew_s=SKEW)
    stations = [StationGrant(f) for f in failsafe]
    t = T0
    grants: list[Grant] = []
    for _ in range(4):  # every message on time: a few rounds to hand the room over
        for i, g in enumerate(stations):
            allocator.update(demand(f"CS{i}", t, wants[i], g), t)
        grants = allocator.step(t)
        for g, grant in zip(stations, grants, strict=True):
            g.receive(grant, t, t)
        t += PERIOD
    # Each gets its failsafe; the 30 kW left is shared by the wants beyond it: 40 and 20 kW want 15 each.
    extra = allocate(
        30_000.0, np.array([40_000.0, 20_000.0, 0.0]), np.zeros(3), np.full(3, 86_400.0), np.ones(3)
    )
    assert list(extra) == pytest.approx([15_000.0, 15_000.0, 0.0])
    assert [g.limit_w for g in grants] == pytest.approx([25_000.0, 25_000.0, 10_000.0])


def test_a_station_not_heard_from_keeps_its_reservation() -> None:
    allocator = SiteAllocator(50_000.0, valid_s=VALID, clock_skew_s=SKEW, stale_after_s=40.0)
    quiet, busy = StationGrant(15_000.0), StationGrant(15_000.0)
    allocator.update(demand("QUIET", T0, 40_000.0, quiet), T0)
    allocator.update(demand("BUSY", T0, 40_000.0, busy), T0)
    allocator.step(T0)
    t = T0 + 200.0  # QUIET's demand is long stale and its grants expired: it may be at its failsafe
    allocator.update(demand("BUSY", t, 80_000.0, busy), t)
    (grant,) = allocator.step(t)
    assert grant.station_id == "BUSY" and grant.limit_w == pytest.approx(50_000.0 - 15_000.0)


def test_a_deadline_is_served_before_a_car_without_one() -> None:
    allocator = SiteAllocator(20_000.0, valid_s=VALID, clock_skew_s=SKEW)
    late, free = StationGrant(0.0), StationGrant(0.0)
    for k in range(3):
        t = T0 + k * PERIOD
        # 10 kWh in one hour needs 10 kW; the other car has no deadline.
        allocator.update(demand("DEADLINE", t, 20_000.0, late, need_wh=10_000.0, departure=t + 3600.0), t)
        allocator.update(demand("FREE", t, 20_000.0, free), t)
        grants = {g.station_id: g for g in allocator.step(t)}
        late.receive(grants["DEADLINE"], t, t)
        free.receive(grants["FREE"], t, t)
    assert grants["DEADLINE"].limit_w >= 10_000.0 - 1e-6
    assert grants["DEADLINE"].limit_w + grants["FREE"].limit_w <= 20_000.0 + 1e-6


def test_a_station_ignores_older_and_expired_grants() -> None:
    g = StationGrant(5_000.0)
    new = Grant(station_id="CS", issued_at=T0 + 20, limit_w=1_000.0, valid_until=T0 + 120, cap_w=9e3)
    old = Grant(station_id="CS", issued_at=T0, limit_w=8_000.0, valid_until=T0 + 100, cap_w=9e3)
    assert g.receive(new, T0 + 21, 0.0) == pytest.approx(99.0)
    assert g.receive(old, T0 + 22, 1.0) == 0.0 and g.limit_now_w(1.0) == 1_000.0
    assert g.limit_now_w(99.5) == 5_000.0  # past its end: the failsafe
    late = Grant(station_id="CS", issued_at=T0 + 40, limit_w=9_000.0, valid_until=T0 + 140, cap_w=9e3)
    assert g.receive(late, T0 + 150, 200.0) < 0 and g.limit_now_w(200.0) == 5_000.0


def test_the_grant_profile_falls_back_to_the_failsafe_by_itself() -> None:
    store = ProfileStore()
    now = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    store.install_external("site", grant_profile(7_000.0, 11_000.0, now, 10.0))
    assert store.external_limit_a(now, 500.0) == pytest.approx(14.0)
    assert store.external_limit_a(now.replace(second=11), 500.0) == pytest.approx(22.0)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"not json", "Demand: message: Invalid JSON"),
        (b'{"station_id": "CS1"}', "Demand: sent_at: Field required"),
        (
            b'{"station_id":"CS1","sent_at":1e9,"want_w":-1,"power_w":0,"need_wh":0,"failsafe_w":0}',
            "Demand: want_w: Input should be greater than or equal to 0",
        ),
        (
            b'{"station_id":"a/b","sent_at":1e9,"want_w":1,"power_w":0,"need_wh":0,"failsafe_w":0}',
            "Demand: station_id: String should match pattern",
        ),
    ],
)
def test_a_bad_demand_is_refused_with_the_first_problem(payload: bytes, problem: str) -> None:
    with pytest.raises(SiteMessageError) as err:
        parse(Demand, payload)
    assert str(err.value).startswith(problem)


def test_messages_round_trip_and_a_nan_cap_is_refused() -> None:
    d = demand("CS1", T0, 1234.5, StationGrant(500.0), departure=T0 + 60)
    assert parse(Demand, encode(d)) == d
    assert parse(CapMessage, b'{"cap_kw": 120}').cap_kw == 120.0
    with pytest.raises(SiteMessageError):
        parse(CapMessage, b'{"cap_kw": NaN}')
