"""Price-aware charging (sans-I/O, NumPy): charge in the cheapest hours that still meet the departure.

A session with a departure time and an energy need, under a tariff, charges at full power in the cheapest
slots before departure (earliest first among equal prices) until the energy plus a margin is in, and not
in the others. With a linear price and a per-slot power limit, filling the cheapest slots is the cheapest
schedule (an exchange argument: moving energy from a dearer slot to a cheaper one with room never costs
more). It is decided slot by slot (`power_now`: draw what the cheaper slots still to come cannot carry of
the remaining need), so what the plan cannot see — the CV taper near full, thermal derating, a site cap —
just moves the rest on to the next cheapest slots; and `must_charge` lifts the plan altogether once the
remaining energy no longer fits in the remaining time at `guard` × full power, so a car that can still
make its deadline does: the price plan only moves charging later, never past the point of no return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policy.physics import FloatArray

_HOUR_S = 3600.0


@dataclass(frozen=True)
class Tariff:
    """Energy price per hour of the day (UTC hours; currency per kWh, the unit is the operator's)."""

    hourly: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.hourly) != 24 or not all(np.isfinite(p) and p >= 0 for p in self.hourly):
            raise ValueError("a tariff needs 24 finite, non-negative hourly prices")

    @classmethod
    def two_level(cls, peak: float, off_peak: float, peak_hours: tuple[int, int]) -> Tariff:
        """`peak` from peak_hours[0] to peak_hours[1] (UTC hours, may wrap midnight), `off_peak` otherwise."""
        start, end = peak_hours
        hours = range(24)
        in_peak = [(start <= h < end) if start <= end else (h >= start or h < end) for h in hours]
        return cls(tuple(peak if p else off_peak for p in in_peak))

    def price(self, t_s: FloatArray | float) -> FloatArray:
        hour = (np.floor_divide(np.asarray(t_s, dtype=np.float64), _HOUR_S) % 24).astype(np.int64)
        return np.asarray(self.hourly, dtype=np.float64)[hour]


class PriceLadder:
    """Prices of a run of slots (e.g. a simulation's 1-min steps), ready to answer, for any slot and any
    end, how many of the later slots before the end are cheaper than this one (prefix counts per price
    level: O(levels × slots) memory, O(1) per question; a tariff has at most 24 levels)."""

    def __init__(self, price: FloatArray) -> None:
        self.levels, self.level_of = np.unique(np.asarray(price, dtype=np.float64), return_inverse=True)
        cheaper = self.level_of[None, :] < np.arange(self.levels.size)[:, None]  # (levels, slots)
        self._prefix = np.concatenate(
            [np.zeros((self.levels.size, 1), np.int64), np.cumsum(cheaper, axis=1)], axis=1
        )

    def cheaper_after(self, k: int, end: np.ndarray) -> np.ndarray:
        """For slot `k` and each end index (exclusive): the slots in (k, end) cheaper than slot k."""
        row: np.ndarray = self._prefix[self.level_of[k]]
        counts: np.ndarray = np.maximum(row[np.clip(end, k + 1, row.size - 1)] - row[k + 1], 0)
        return counts


def power_now(
    need_kwh: FloatArray,
    max_kw: FloatArray,
    cheaper_slots_left: np.ndarray,
    slot_s: float,
    margin: float = 0.2,
) -> FloatArray:
    """The power (kW) to draw in this slot: the part of the need (plus `margin`, for the taper and derating
    the plan cannot see) that the cheaper slots still to come cannot carry at `max_kw`, at most `max_kw`.
    Decided afresh every slot from the energy still needed, so a shortfall moves on to the next cheapest
    slots by itself; among equally cheap slots the earliest are used (the later ones are not cheaper)."""
    slot_h = slot_s / _HOUR_S
    later_kwh = np.asarray(cheaper_slots_left) * np.asarray(max_kw) * slot_h
    uncovered_kwh = np.asarray(need_kwh) * (1.0 + margin) - later_kwh
    return np.clip(uncovered_kwh / slot_h, 0.0, np.asarray(max_kw))


def must_charge(
    need_kwh: FloatArray, time_left_s: FloatArray, max_kw: FloatArray, guard: float = 0.8
) -> np.ndarray:
    """True where the plan must give way: the remaining energy needs more than `guard` × full power for
    the remaining time (the point after which waiting for a cheaper hour would miss the departure)."""
    return (
        np.asarray(need_kwh) > guard * np.asarray(max_kw) * np.maximum(np.asarray(time_left_s), 0.0) / _HOUR_S
    )


@dataclass(frozen=True)
class PriceSignal:
    """A price for [start_s, end_s) from the grid (OpenADR ELECTRICITY_PRICE / ENERGY_PRICE): `kind`
    "price" replaces the tariff's price, "priceRelative" is added to it, "priceMultiplier" multiplies it."""

    start_s: float
    end_s: float
    value: float
    kind: str = "price"


# Without a tariff, relative and multiplier signals apply to a flat price of 1 (only their order matters
# to the plan: it looks for the cheapest slots, not for the amount).
_FLAT_PRICE = 1.0


def price_at(t_s: float, tariff: Tariff | None, signals: tuple[PriceSignal, ...] = ()) -> float:
    """The price at `t_s`: the tariff's, changed by the last signal that covers `t_s`."""
    price = float(tariff.price(t_s)) if tariff is not None else _FLAT_PRICE
    for s in signals:
        if s.start_s <= t_s < s.end_s:
            if s.kind == "priceRelative":
                price = price + s.value
            elif s.kind == "priceMultiplier":
                price = price * s.value
            else:
                price = s.value
    return price


class PricePlan:
    """One session's price plan on the wall clock (the station agent's; the fleet's is vectorised in
    simulators/fleet_group.py): `power_kw(now_s, need_kwh, max_kw)` is `power_now` for the clock-aligned
    slots (`slot_s`) before `departure_s`, or None when the plan must give way (`must_charge`: the deadline
    needs full power from now on, or has passed). Decided afresh every control step from the energy still
    needed, so a shortfall moves on to the next cheapest slots. The later slots' prices are read once per
    slot (`price` may be a tariff with grid signals on top; `reprice()` after a new signal)."""

    def __init__(
        self,
        departure_s: float,
        price: Callable[[float], float],
        slot_s: float = 900.0,
        margin: float = 0.2,
        guard: float = 0.8,
    ) -> None:
        self.departure_s, self.slot_s, self.margin, self.guard = departure_s, slot_s, margin, guard
        self._price = price
        self._slots: tuple[float, FloatArray, FloatArray] | None = None  # (boundary, hours, prices)

    def reprice(self, price: Callable[[float], float] | None = None) -> None:
        self._price = price or self._price
        self._slots = None

    def wait_s(self, now_s: float, need_kwh: float, max_kw: float) -> float:
        """How long from now the plan draws nothing if nothing is drawn meanwhile: the start of the first
        slot (now, or a later clock-aligned one) that must carry part of the need (0: charge now). What the
        station publishes as its planned consumption (GetCompositeSchedule) shifts the curve by this."""
        if self.power_kw(now_s, need_kwh, max_kw) != 0.0:
            return 0.0
        boundary = (now_s // self.slot_s + 1.0) * self.slot_s
        starts = np.arange(boundary, self.departure_s, self.slot_s)
        if starts.size == 0:
            return 0.0
        hours = (np.minimum(starts + self.slot_s, self.departure_s) - starts) / _HOUR_S
        prices = np.array([self._price(float(t)) for t in starts])
        # Slot i must draw once the strictly cheaper slots after it cannot carry the need, or the deadline
        # needs full power from its start (must_charge).
        later = np.triu(np.ones((starts.size, starts.size), dtype=bool), k=1)
        cheaper_kwh = ((later & (prices[None, :] < prices[:, None])) * hours[None, :]).sum(axis=1) * max_kw
        urgent = must_charge(
            np.full(starts.size, need_kwh),
            self.departure_s - starts,
            np.full(starts.size, max_kw),
            self.guard,
        )
        draws = (need_kwh * (1.0 + self.margin) > cheaper_kwh) | urgent
        first = int(np.argmax(draws)) if draws.any() else starts.size - 1
        return float(starts[first] - now_s)

    def power_kw(self, now_s: float, need_kwh: float, max_kw: float) -> float | None:
        left_s = self.departure_s - now_s
        if need_kwh <= 0.0 or max_kw <= 0.0 or left_s <= 0.0:
            return None
        if bool(must_charge(np.array([need_kwh]), np.array([left_s]), np.array([max_kw]), self.guard)[0]):
            return None
        boundary = (now_s // self.slot_s + 1.0) * self.slot_s
        if self._slots is None or self._slots[0] != boundary:
            starts = np.arange(boundary, self.departure_s, self.slot_s)
            hours = (np.minimum(starts + self.slot_s, self.departure_s) - starts) / _HOUR_S
            self._slots = (boundary, hours, np.array([self._price(float(t)) for t in starts]))
        _, hours, prices = self._slots
        cheaper_kwh = float(np.sum(hours[prices < self._price(now_s)])) * max_kw
        current_h = (min(boundary, self.departure_s) - now_s) / _HOUR_S
        uncovered_kwh = need_kwh * (1.0 + self.margin) - cheaper_kwh
        return float(np.clip(uncovered_kwh / current_h, 0.0, max_kw))
