"""GB/T 27930-2015 timing and charger limits: every period and timeout (`GbtTiming`), and what the
charger can deliver (`ChargerLimits`). Shared by the charger core (`bms_link.gbt`) and the BMS
simulator (`simulators.gbt_bms`), so both sides of the link keep the same clock rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

# Deadlines count as reached this close to them: event loops fire timers up to their clock resolution
# early, and a virtual clock lands on `when` only up to float rounding.
TIME_EPS_S = 1e-6


@dataclass(frozen=True, slots=True)
class GbtTiming:
    """Every GB/T 27930-2015 period and timeout, in seconds (both sides of the link).

    Periods: message tables of clause 10 (CHM..CEM). Timeouts: each message's clause ("if not received
    within N s it is a timeout error") and annex C. `period_scale` multiplies the periodic SEND periods
    only, never the timeouts, so a long simulation sends fewer frames; scaled periods must stay below
    half of the receiver's timeout for that message, else `ValueError` names the field.
    """

    chm_period_s: float = 0.25
    bhm_period_s: float = 0.25
    crm_period_s: float = 0.25
    brm_period_s: float = 0.25
    bcp_period_s: float = 0.5
    cts_period_s: float = 0.5
    cml_period_s: float = 0.25
    bro_period_s: float = 0.25
    cro_period_s: float = 0.25
    bcl_period_s: float = 0.05
    bcs_period_s: float = 0.25
    ccs_period_s: float = 0.05
    bsm_period_s: float = 0.25
    bst_period_s: float = 0.01
    cst_period_s: float = 0.01
    bsd_period_s: float = 0.25
    csd_period_s: float = 0.25
    bem_period_s: float = 0.25
    cem_period_s: float = 0.25
    # charger side (CEM codes, SPN3921-3927); BHM has no CEM code: we apply the general 5 s
    bhm_timeout_s: float = 5.0
    brm_timeout_s: float = 5.0
    bcp_timeout_s: float = 5.0
    bro_timeout_s: float = 5.0  # first BRO after CML
    bro_ready_timeout_s: float = 60.0  # BRO 0xAA after BRO 0x00
    bcl_timeout_s: float = 1.0
    bcs_timeout_s: float = 5.0
    bst_timeout_s: float = 5.0
    bsd_timeout_s: float = 10.0
    # BMS side (BEM codes, SPN3901-3907)
    crm_timeout_s: float = 5.0
    crm_ready_timeout_s: float = 5.0
    cml_timeout_s: float = 5.0
    cro_timeout_s: float = 5.0
    cro_ready_timeout_s: float = 60.0
    ccs_timeout_s: float = 1.0
    cst_timeout_s: float = 5.0
    csd_timeout_s: float = 10.0
    end_repeats: int = 3  # ours: CSD/CEM/BEM are sent this often, the standard has no acknowledgement
    period_scale: float = 1.0
    _periods: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.period_scale > 0:
            raise ValueError("period_scale must be > 0")
        periods = {
            f.name[: -len("_period_s")].upper(): getattr(self, f.name) * self.period_scale
            for f in fields(self)
            if f.name.endswith("_period_s")
        }
        for name, timeout in _PERIOD_VS_TIMEOUT.items():
            if not periods[name] < getattr(self, timeout) / 2:
                raise ValueError(
                    f"{name.lower()}_period_s x period_scale = {periods[name]:g} s must stay below "
                    f"half of {timeout} ({getattr(self, timeout):g} s)"
                )
        object.__setattr__(self, "_periods", periods)

    def period(self, name: str) -> float:
        """Scaled send period of message `name` ("BCL")."""
        return self._periods[name]


# Each periodic message and the timeout its receiver applies to it.
_PERIOD_VS_TIMEOUT = {
    "BHM": "bhm_timeout_s",
    "CRM": "crm_timeout_s",
    "BRM": "brm_timeout_s",
    "BCP": "bcp_timeout_s",
    "CTS": "cml_timeout_s",
    "CML": "cml_timeout_s",
    "BRO": "bro_timeout_s",
    "CRO": "cro_timeout_s",
    "BCL": "bcl_timeout_s",
    "BCS": "bcs_timeout_s",
    "CCS": "ccs_timeout_s",
    "BST": "bst_timeout_s",
    "CST": "cst_timeout_s",
    "BSD": "bsd_timeout_s",
    "CSD": "csd_timeout_s",
}


@dataclass(frozen=True, slots=True)
class ChargerLimits:
    """What this charger can do (CML) and who it is (CRM/CSD)."""

    max_output_voltage_v: float = 750.0
    min_output_voltage_v: float = 150.0
    max_output_current_a: float = 250.0
    min_output_current_a: float = 0.0
    charger_number: int = 1
    region_code: str | None = None


def send_due(
    periodic: dict[str, float], now_s: float, timing: GbtTiming, send: Callable[[str, float], None]
) -> None:
    """Send every periodic message that is due and schedule its next time (both sides of the link).

    The next time keeps the message's phase (due + period) unless we fell behind, then it restarts from
    now: a late tick never bursts several copies of the same message. `send` may remove entries.
    """
    for name, due_s in list(periodic.items()):
        if now_s >= due_s - TIME_EPS_S and name in periodic:
            send(name, now_s)
            if name in periodic:
                nxt = due_s + timing.period(name)
                periodic[name] = nxt if nxt > now_s else now_s + timing.period(name)
