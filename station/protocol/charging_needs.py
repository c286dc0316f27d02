"""NotifyEVChargingNeeds (OCPP 2.0.1 K15/K17) from what the EV stated at the handshake, without I/O.

In 2.0.1 the EV's charging needs come from ISO 15118 (ChargeParameterDiscovery): the station forwards
them so the CSMS can plan (it may answer with a TxProfile that meets them). Our BMS links give a
`PackInfo`; an EV that states a departure or a target SoC (`PackInfo.departure` / `target_soc`; over
MQTT, never over GB/T 27930) is reported with:
- requestedEnergyTransfer "DC" (every session here is DC);
- departureTime, when given;
- dcChargingParameters: evMaxCurrent / evMaxVoltage (integers, required by the schema: the BCP limits,
  rounded down so they stay limits), evEnergyCapacity (Wh), stateOfCharge (%), fullSoC (the EV's target,
  %), energyAmount (Wh to that target from the SoC now).
"""

from __future__ import annotations

import math

from bms_link.models import PackInfo
from chargeagent.clock import ocpp_timestamp
from station.protocol.station import Outbound


def charging_needs(evse_id: int, info: PackInfo) -> Outbound:
    """The NotifyEVChargingNeeds request for what the EV stated in `info`."""
    dc: dict[str, int] = {
        "evMaxCurrent": math.floor(info.max_charge_current_a),
        "evMaxVoltage": math.floor(info.max_pack_voltage_v),
        "evEnergyCapacity": round(info.nominal_energy_kwh * 1000.0),
        "stateOfCharge": round(info.soc * 100.0),
    }
    if info.target_soc is not None:
        dc["fullSoC"] = round(info.target_soc * 100.0)
        dc["energyAmount"] = round(max(info.target_soc - info.soc, 0.0) * info.nominal_energy_kwh * 1000.0)
    needs: dict[str, object] = {"requestedEnergyTransfer": "DC", "dcChargingParameters": dc}
    if info.departure is not None:
        needs["departureTime"] = ocpp_timestamp(info.departure)
    return Outbound("NotifyEVChargingNeeds", {"evseId": evse_id, "chargingNeeds": needs})
