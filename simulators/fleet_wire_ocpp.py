"""Wire-mode fleet simulation, the OCPP side: the station power limit the CSMS sets, energy per session
from what the CSMS received, and the OCPP message log (`out/ocpp_log.jsonl`). Plain functions, no I/O but
the log file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargeagent.clock import ocpp_timestamp
from simulators.csms import Received

_REGISTER = "Energy.Active.Import.Register"


def station_max_profile(start_s: float, power_kw: float) -> dict[str, Any]:
    """SetChargingProfile payload: a ChargingStationMaxProfile of `power_kw` in W, Absolute from `start_s`.

    OCPP 2.0.1 K01.FR.03: ChargingStationMaxProfile is only allowed on evseId 0; an Absolute profile
    needs startSchedule. The station converts W to A at the DC output voltage.
    """
    schedule = {
        "id": 1,
        "startSchedule": ocpp_timestamp(datetime.fromtimestamp(start_s, UTC)),
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": power_kw * 1000.0}],
    }
    profile = {
        "id": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [schedule],
    }
    return {"evseId": 0, "chargingProfile": profile}


def _register_wh(payload: dict[str, Any]) -> float | None:
    for meter_value in payload.get("meterValue", []):
        for sampled in meter_value.get("sampledValue", []):
            if sampled.get("measurand") == _REGISTER:
                return float(sampled["value"])
    return None


def delivered_kwh(received: list[Received]) -> dict[int, float]:
    """kWh per session row (remoteStartId - 1) as the CSMS saw it: Ended minus Started register.

    A Started without meter value (the station's first transaction) starts from the register the
    station last reported, 0 for a new meter: the register only grows while a transaction charges.
    """
    last: dict[str, float] = {}
    open_tx: dict[str, tuple[int, float]] = {}
    out: dict[int, float] = {}
    for item in received:
        if item.action != "TransactionEvent":
            continue
        payload, station = item.payload, item.station_id
        info = payload["transactionInfo"]
        register = _register_wh(payload)
        if payload["eventType"] == "Started" and "remoteStartId" in info:
            start_wh = register if register is not None else last.get(station, 0.0)
            open_tx[info["transactionId"]] = (int(info["remoteStartId"]) - 1, start_wh)
        if register is not None:
            last[station] = register
        if payload["eventType"] == "Ended" and info["transactionId"] in open_tx:
            row, start_wh = open_tx.pop(info["transactionId"])
            out[row] = (last.get(station, start_wh) - start_wh) / 1000.0
    return out


def write_ocpp_log(path: Path, received: list[Received], sent: list[dict[str, Any]]) -> Path:
    """out/ocpp_log.jsonl: every CALL, both directions, in time order (one JSON object per line)."""
    lines: list[tuple[str, str, str, str, str | None, dict[str, Any], dict[str, Any] | None]] = [
        (ocpp_timestamp(r.at), "station_to_csms", r.station_id, r.action, r.unique_id, r.payload, None)
        for r in received
    ]
    lines += [
        (s["at"], "csms_to_station", s["station_id"], s["action"], None, s["payload"],
         s.get("response", {"error": s.get("error")}))
        for s in sent
    ]  # fmt: skip
    lines.sort(key=lambda line: line[0])
    keys = ("at", "direction", "station_id", "action", "message_id", "payload", "response")
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            record = {k: v for k, v in zip(keys, line, strict=True) if v is not None}
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    return path
