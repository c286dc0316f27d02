"""Price-aware charging: the slot-by-slot rule buys the cheapest energy and never gives up a deadline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.price_plan import PriceLadder, PricePlan, PriceSignal, Tariff, must_charge, power_now, price_at

SLOT_S = 900.0  # 15-min slots in these tests
PRICES = st.lists(st.sampled_from([0.10, 0.15, 0.22, 0.35]), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(PRICES, st.data())
def test_cheaper_after_counts_the_cheaper_slots_still_to_come(prices, data) -> None:
    ladder = PriceLadder(np.asarray(prices))
    k = data.draw(st.integers(0, len(prices) - 1))
    ends = np.asarray(data.draw(st.lists(st.integers(0, len(prices)), min_size=1, max_size=5)))
    expected = [sum(1 for j in range(k + 1, end) if prices[j] < prices[k]) for end in ends]
    assert ladder.cheaper_after(k, ends).tolist() == expected


def _run(prices: list[float], need_kwh: float, max_kw: float) -> tuple[float, float]:
    """One session at constant power, slot by slot with `power_now` (no margin): (cost, energy in)."""
    ladder = PriceLadder(np.asarray(prices))
    end = np.asarray([len(prices)])
    cost = delivered = 0.0
    for k, price in enumerate(prices):
        left = need_kwh - delivered
        if left <= 1e-12:
            break
        kw = power_now(np.asarray([left]), np.asarray([max_kw]), ladder.cheaper_after(k, end), SLOT_S, 0.0)[0]
        energy = min(kw * SLOT_S / 3600.0, left)
        cost, delivered = cost + energy * price, delivered + energy
    return cost, delivered


@settings(max_examples=300, deadline=None)
@given(PRICES, st.floats(0.1, 1.0), st.floats(1.0, 50.0))
def test_slot_by_slot_equals_the_cheapest_schedule_and_meets_a_feasible_deadline(
    prices, share, max_kw
) -> None:
    per_slot = max_kw * SLOT_S / 3600.0
    need = share * per_slot * len(prices)  # feasible: at most every slot at full power
    cost, delivered = _run(prices, need, max_kw)
    assert delivered == pytest.approx(need)
    # The optimum for linear prices and a per-slot cap: fill the cheapest slots.
    optimum, left = 0.0, need
    for price in sorted(prices):
        take = min(per_slot, left)
        optimum, left = optimum + take * price, left - take
    assert cost == pytest.approx(optimum)
    on_arrival = sum(min(per_slot, max(need - k * per_slot, 0.0)) * p for k, p in enumerate(prices))
    assert cost <= on_arrival + 1e-9


def test_must_charge_once_waiting_would_miss_the_departure() -> None:
    # 40 kWh still needed at 50 kW: 48 min at full power; with the 0.8 guard it gives way at 60 min left.
    need, rate = np.asarray([40.0, 40.0]), np.asarray([50.0, 50.0])
    assert must_charge(need, np.asarray([3600.0, 3601.0]), rate).tolist() == [False, False]
    assert must_charge(need, np.asarray([3599.0, 600.0]), rate).tolist() == [True, True]


def test_two_level_tariff_wraps_midnight_and_rejects_bad_prices() -> None:
    night = Tariff.two_level(peak=0.1, off_peak=0.3, peak_hours=(22, 6))
    hours = np.arange(24) * 3600.0 + 1_780_272_000.0  # a UTC midnight
    assert night.price(hours).tolist() == [0.1] * 6 + [0.3] * 16 + [0.1] * 2
    with pytest.raises(ValueError, match="24 finite"):
        Tariff((0.1,) * 23)
    with pytest.raises(ValueError, match="24 finite"):
        Tariff((float("nan"),) * 24)


DAY0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TWO_LEVEL = Tariff.two_level(peak=0.40, off_peak=0.10, peak_hours=(7, 22))


def drive(plan: PricePlan, start_s: float, need_kwh: float, max_kw: float, step_s: float = 60.0):
    """Charge minute by minute as the plan says until the need is in or the departure passes."""
    t, cost, energy = start_s, 0.0, 0.0
    while t < plan.departure_s and energy < need_kwh - 1e-9:
        kw = plan.power_kw(t, need_kwh - energy, max_kw)
        kw = max_kw if kw is None else kw
        kwh = min(kw * step_s / 3600.0, need_kwh - energy)
        energy += kwh
        cost += kwh * float(TWO_LEVEL.price(t))
        t += step_s
    return energy, cost


def test_the_station_plan_waits_for_the_off_peak_hours_and_still_meets_the_departure() -> None:
    arrive, leave = DAY0 + 18 * 3600.0, DAY0 + 31 * 3600.0  # 18:00 to 07:00 next day
    plan = PricePlan(leave, lambda t: price_at(t, TWO_LEVEL))
    assert plan.power_kw(arrive, 30.0, 11.0) == 0.0  # peak now, 9 off-peak hours ahead carry it
    assert plan.power_kw(DAY0 + 22 * 3600.0, 30.0, 11.0) == 11.0  # the off-peak hours came
    energy, cost = drive(plan, arrive, 30.0, 11.0)
    eager_energy, eager_cost = drive(PricePlan(leave, lambda t: 0.0), arrive, 30.0, 11.0)  # flat: at once
    assert energy == pytest.approx(30.0) and eager_energy == pytest.approx(30.0)
    assert cost == pytest.approx(30.0 * 0.10) and eager_cost == pytest.approx(30.0 * 0.40)


def test_the_station_plan_gives_way_when_waiting_would_miss_the_departure() -> None:
    plan = PricePlan(DAY0 + 31 * 3600.0, lambda t: price_at(t, TWO_LEVEL))
    assert plan.power_kw(DAY0 + 21 * 3600.0, 100.0, 11.0) is None  # 100 kWh > 0.8 x 11 kW x 10 h
    assert plan.power_kw(DAY0 + 32 * 3600.0, 10.0, 11.0) is None  # past the departure: charge
    assert plan.power_kw(DAY0 + 21 * 3600.0, 0.0, 11.0) is None


def test_a_grid_price_signal_moves_the_charging() -> None:
    # OpenADR says 22:00-02:00 costs 0.50 after all: the plan charges 02:00-07:00 instead.
    dear = (PriceSignal(DAY0 + 22 * 3600.0, DAY0 + 26 * 3600.0, 0.50),)
    plan = PricePlan(DAY0 + 31 * 3600.0, lambda t: price_at(t, TWO_LEVEL, dear))
    assert plan.power_kw(DAY0 + 22 * 3600.0, 30.0, 11.0) == 0.0
    assert plan.power_kw(DAY0 + 26 * 3600.0, 30.0, 11.0) == 11.0
    assert (
        price_at(DAY0 + 23 * 3600.0, TWO_LEVEL, (PriceSignal(DAY0, DAY0 + 86400, 2.0, "priceMultiplier"),))
        == 0.2
    )
    assert price_at(DAY0 + 23 * 3600.0, None, (PriceSignal(DAY0, DAY0 + 86400, 0.5, "priceRelative"),)) == 1.5


def test_the_wait_before_the_plan_draws_is_published_with_the_plan() -> None:
    plan = PricePlan(DAY0 + 31 * 3600.0, lambda t: price_at(t, TWO_LEVEL))
    assert plan.wait_s(DAY0 + 18 * 3600.0 + 120.0, 30.0, 11.0) == pytest.approx(4 * 3600.0 - 120.0)
    assert plan.wait_s(DAY0 + 22 * 3600.0, 30.0, 11.0) == 0.0  # cheap now: no wait
    assert plan.wait_s(DAY0 + 21 * 3600.0, 100.0, 11.0) == 0.0  # the deadline needs every hour
    # 80 kWh (96 with the margin) at 11 kW from 20:00: the 9 cheap hours carry 99 kWh, so it waits; but
    # 86 kWh (103 with the margin) cannot wait for them and starts in the peak at once.
    assert plan.wait_s(DAY0 + 20 * 3600.0, 80.0, 11.0) == pytest.approx(2 * 3600.0)
    assert plan.wait_s(DAY0 + 20 * 3600.0, 86.0, 11.0) == 0.0
