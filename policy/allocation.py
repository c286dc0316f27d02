"""Site load management (sans-I/O, NumPy): share one grid cap among the EVSEs charging now.

`allocate` runs every control step with what each EVSE would draw on its own (`want_w`: its curve, the
BMS, the vehicle and the station rating already applied), the energy it still needs, the time until its
driver leaves and its battery's health, and returns what each may draw. Guarantees (property-tested in
tests/policy/test_allocation.py):

1. Σ grant ≤ cap, and 0 ≤ grant_i ≤ want_i: the cap is never exceeded, nobody gets more than it asked for.
2. When Σ want ≤ cap, grant = want: load management costs nothing while the site has room.
3. Deadlines first: each EVSE's *deadline rate* — the constant power that still delivers its remaining
   energy before departure (need / time left, at most want) — is granted before anyone gets more, most
   urgent first (least laxity: time left − need / want, the slack before it must charge flat out). So
   when every deadline rate fits under the cap, every car that can still make its deadline gets at least
   that rate: no car is starved while another could yield.
4. What is left is shared max-min fairly (water-filling), weighted by battery health: a pack at SoH 0.7
   gets 0.7 of the share a new one gets, the gentler charge the health issue asks for — it is still granted
   its deadline rate in step 3, so health never costs a car its deadline.

The deadline rate is a planning estimate (constant power; the CV taper makes the real need a little
higher towards the end), which is why it is recomputed every step from the energy still needed.
"""

from __future__ import annotations

import math

import numpy as np

from policy.physics import FloatArray

_EPS_W = 1e-9


def allocate(
    cap_w: float,
    want_w: FloatArray,
    need_wh: FloatArray,
    time_left_s: FloatArray,
    soh: FloatArray,
) -> FloatArray:
    """Per-EVSE power grants under `cap_w` (see the module docstring). Inputs are aligned 1-D arrays;
    NaN or negative wants count as 0, a cap that is NaN or below 0 allows nothing."""
    want = np.nan_to_num(np.asarray(want_w, dtype=np.float64), nan=0.0, posinf=0.0).clip(min=0.0)
    cap = 0.0 if math.isnan(cap_w) else max(float(cap_w), 0.0)
    if want.sum() <= cap:
        return want
    need = np.nan_to_num(np.asarray(need_wh, dtype=np.float64), nan=0.0).clip(min=0.0)
    left = np.maximum(np.nan_to_num(np.asarray(time_left_s, dtype=np.float64), nan=0.0), 1.0)
    deadline_w = np.minimum(need * 3600.0 / left, want)
    grant = np.zeros_like(want)
    laxity = left - need * 3600.0 / np.maximum(want, _EPS_W)
    room = cap
    for i in np.argsort(laxity, kind="stable"):  # most urgent first
        grant[i] = min(deadline_w[i], room)
        room -= grant[i]
        if room <= 0.0:
            return grant
    weight = np.clip(np.nan_to_num(np.asarray(soh, dtype=np.float64), nan=1.0), 0.05, 1.0)
    return grant + _water_fill(room, want - grant, weight)


def _water_fill(room: float, headroom: FloatArray, weight: FloatArray) -> FloatArray:
    """Share `room` in proportion to `weight`, never above `headroom`; what a full one cannot take is
    shared again among the others (at most one round per EVSE)."""
    extra = np.zeros_like(headroom)
    open_ = headroom > _EPS_W
    while room > _EPS_W and open_.any():
        share = room * weight * open_ / weight[open_].sum()
        take = np.minimum(share, headroom - extra)
        extra += take
        room -= float(take.sum())
        full = headroom - extra <= _EPS_W
        if not (open_ & full).any():
            break  # nobody filled up: the room is used as far as the weights allow
        open_ &= ~full
    return extra
