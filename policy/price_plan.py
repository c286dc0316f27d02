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
