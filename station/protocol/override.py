"""The operator's override of the charge policy (issue #9): model off, a current cap, pause.

Set through the device model (component `ChargeAgentCtrlr`, station.protocol.device_variables) by a CSMS's
SetVariables, or by the local API; persisted like every device-model value. The charging session reads it
every control step: with the model off the proposal is plain CC-CV; the cap and the pause become the
envelope's `operator_limit` (0 A while paused). The safety envelope still dominates: an override can only
lower the current or make the curve more conservative, never raise anything above the envelope's limits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Override:
    model_enabled: bool = True  # ChargeAgentCtrlr.ModelEnabled
    max_current_a: float | None = None  # ChargeAgentCtrlr.MaxCurrent (None: no cap of the operator's)
    paused: bool = False  # ChargeAgentCtrlr.Paused

    def limit_a(self) -> float | None:
        """The operator's current limit this step (None: none)."""
        return 0.0 if self.paused else self.max_current_a
