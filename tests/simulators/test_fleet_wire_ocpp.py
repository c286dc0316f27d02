"""The OCPP side of wire mode as plain calls: energy per session from the CSMS journal, the station limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.csms import Received
from simulators.fleet_wire_ocpp import delivered_kwh, station_max_profile, write_ocpp_log
from station.protocol.charging_profile import ProfileStore

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def _event(
    station: str, kind: str, tx: str, register_wh: float | None, remote: int | None = None
) -> Received:
    info: dict[str, Any] = {"transactionId": tx}
    if remote is not None:
        info["remoteStartId"] = remote
    payload: dict[str, Any] = {"eventType": kind, "transactionInfo": info}
    if register_wh is not None:
        sampled = [{"measurand": "Energy.Active.Import.Register", "value": register_wh}]
        payload["meterValue"] = [{"timestamp": "2026-06-01T08:00:00.000Z", "sampledValue": sampled}]
    return Received(station, "TransactionEvent", payload, T0, f"{station}-{tx}-{kind}")


def test_energy_is_ended_minus_started_register_and_a_bare_first_start_counts_from_zero() -> None:
    journal = [
        _event("CS1", "Started", "a", None, remote=1),  # a new meter: no sample yet
        _event("CS2", "Started", "b", 500.0, remote=2),
        _event("CS1", "Updated", "a", 4_000.0),
        _event("CS1", "Ended", "a", 7_250.0),
        _event("CS2", "Ended", "b", 1_500.0),
        _event("CS1", "Started", "c", 7_250.0, remote=3),
        _event("CS1", "Ended", "c", 9_000.0),
        _event("CS1", "Started", "d", 9_000.0),  # started locally: not one of the simulated sessions
        _event("CS1", "Ended", "d", 9_500.0),
    ]
    assert delivered_kwh(journal) == {0: 7.25, 1: 1.0, 2: 1.75}


def test_station_max_profile_is_accepted_on_evse_0_and_limits_in_watts_at_the_pack_voltage() -> None:
    payload = station_max_profile(T0.timestamp(), 22.0)
    store = ProfileStore()
    assert store.install(payload["evseId"], payload["chargingProfile"], None) == "Accepted"
    limit_a = store.limit_a(1, T0, tx_id=None, tx_start=None, voltage_v=400.0)
    assert limit_a is not None and abs(limit_a - 55.0) < 1e-9  # 22 kW / 400 V


def test_ocpp_log_has_both_directions_in_time_order(tmp_path: Path) -> None:
    received = [_event("CS1", "Started", "a", None, remote=1)]
    sent = [
        {"at": "2026-06-01T07:59:59.000Z", "station_id": "CS1", "action": "RequestStartTransaction",
         "payload": {"remoteStartId": 1}, "response": {"status": "Accepted"}},
    ]  # fmt: skip
    lines = write_ocpp_log(tmp_path / "log.jsonl", received, sent).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["direction"] for r in records] == ["csms_to_station", "station_to_csms"]
    assert records[0]["response"] == {"status": "Accepted"} and "response" not in records[1]
