"""Remote-control requests answered from the station's state: TriggerMessage, UnlockConnector, DataTransfer.

Sans-I/O: each function takes the `StationCore` and returns the response payload plus the messages to
send after it (never inside the handler). Requirement ids are OCPP 2.0.1 part 2.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from station.protocol.station import Outbound, StationCore
from station.protocol.transaction import meter_value

# F06: what we can be triggered to send. Certificate and firmware/log messages are not implemented here.
SUPPORTED_TRIGGERS = (
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "MeterValues",
    "TransactionEvent",
)


def trigger_message(
    core: StationCore, requested: str, evse: dict[str, Any] | None, now: datetime
) -> tuple[dict[str, Any], list[Outbound]]:
    """F06: (response, messages to send after it)."""
    if requested not in SUPPORTED_TRIGGERS:
        return {"status": "NotImplemented"}, []
    evse_id = None if evse is None else int(evse["id"])
    targets = (
        list(core.evses.values())
        if evse_id is None
        else [core.evses[evse_id]]
        if evse_id in core.evses
        else []
    )
    if evse_id is not None and not targets:
        return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}, []
    if requested == "BootNotification":
        # F06.FR.17: a station already Accepted rejects a triggered BootNotification.
        return (
            ({"status": "Rejected"}, [])
            if core.accepted
            else ({"status": "Accepted"}, [core.boot_request("Triggered")])
        )
    if requested == "Heartbeat":
        return {"status": "Accepted"}, [core.heartbeat_request()]
    if requested == "StatusNotification":
        statuses = [
            m for m in core.status_notifications(now) if m.payload["evseId"] in {e.evse_id for e in targets}
        ]
        return {"status": "Accepted"}, statuses
    if requested == "MeterValues":
        # F06.FR.06: the latest measurements; context Trigger. No sample yet: nothing to report.
        messages = [
            Outbound(
                "MeterValues",
                {"evseId": e.evse_id, "meterValue": [meter_value(now, e.last_sample, "Trigger")]},
            )
            for e in targets
            if e.last_sample is not None
        ]
        return ({"status": "Accepted"}, messages) if messages else ({"status": "Rejected"}, [])
    # TransactionEvent: F06.FR.07 an Updated event with triggerReason Trigger for each ongoing transaction.
    messages = []
    for e in targets:
        tx = core.transaction(e.evse_id)
        if tx is not None:
            messages.append(
                Outbound("TransactionEvent", tx.event("Updated", "Trigger", now, sample=e.last_sample))
            )
    return ({"status": "Accepted"}, messages) if messages else ({"status": "Rejected"}, [])


def get_charging_profiles(
    core: StationCore, request_id: int, evse_id: int | None, criteria: dict[str, Any]
) -> tuple[dict[str, Any], list[Outbound]]:
    """K09: installed profiles matching the criteria; one ReportChargingProfiles per EVSE and source (tbc).

    Criteria (all optional, AND-ed): chargingProfilePurpose, stackLevel, chargingProfileId (list),
    chargingLimitSource (list: "CSO" for the CSMS's profiles, "SO" for the grid's external constraints,
    `ProfileStore.install_external`); one report per EVSE and source. evseId 0 selects the
    station-wide profiles, an id one EVSE, no evseId all of them.
    """
    ids = criteria.get("chargingProfileId")
    sources = criteria.get("chargingLimitSource")
    chosen = [
        p
        for p in core.profiles.installed()
        if (evse_id is None or p.evse_id == evse_id)
        and criteria.get("chargingProfilePurpose") in (None, p.purpose)
        and criteria.get("stackLevel") in (None, p.stack_level)
        and (not ids or int(p.profile["id"]) in ids)
        and (not sources or p.source in sources)
    ]
    if not chosen:
        return {"status": "NoProfiles"}, []
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for p in chosen:
        groups.setdefault((p.evse_id, p.source), []).append(p.profile)
    keys = sorted(groups)
    reports = [
        Outbound(
            "ReportChargingProfiles",
            {
                "requestId": request_id,
                "chargingLimitSource": source,
                "evseId": e,
                "chargingProfile": groups[(e, source)],
                "tbc": i < len(keys) - 1,
            },
        )
        for i, (e, source) in enumerate(keys)
    ]
    return {"status": "Accepted"}, reports


def unlock_connector(core: StationCore, evse_id: int, connector_id: int) -> dict[str, Any]:
    """F05: UnknownConnector / OngoingAuthorizedTransaction (F05.FR.02) / Unlocked.

    The station has no lock actuator of its own to fail (the GB/T connector lock is the vehicle's and is
    released when the charging sequence ends), so an idle connector always reports Unlocked.
    """
    evse = core.evses.get(evse_id)
    if evse is None or evse.connector.connector_id != connector_id:
        return {"status": "UnknownConnector"}
    if core.transaction(evse_id) is not None:
        return {"status": "OngoingAuthorizedTransaction"}
    return {"status": "Unlocked"}


def data_transfer(vendor_id: str) -> dict[str, Any]:
    """P01: we implement no vendor extensions, so every vendor is unknown (P01.FR.05: UnknownVendorId)."""
    return {
        "status": "UnknownVendorId",
        "statusInfo": {"reasonCode": "UnknownVendor", "additionalInfo": vendor_id[:512]},
    }
