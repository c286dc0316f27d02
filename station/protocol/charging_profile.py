"""Smart-charging profiles (OCPP 2.0.1 K01/K08): store installed profiles, evaluate the limit at time t.

Rules implemented (OCPP 2.0.1 part 2, 3.5 'Smart charging'): within a purpose the valid profile with the
highest stackLevel wins; a TxProfile overrides the TxDefaultProfile for its transaction; the result is the
minimum of that and ChargingStationMaxProfile. Kinds: Absolute (from startSchedule), Relative (from the
transaction's start) and Recurring (from startSchedule, restarting every day or week, `recurrencyKind`).

A Recurring schedule applies from its startSchedule on; each run starts at startSchedule + k·period and
lasts `duration` (or the whole period when absent; a longer duration is cut by the next run), so a daily
22:00-06:00 cap crosses midnight as one run.

ChargingStationExternalConstraints (K01.FR.22: a CSMS may not set them) are the grid's limits: the station
installs them itself (`install_external`, from an OpenADR event, station/openadr.py) on evseId 0, a CSMS's
ClearChargingProfile never removes them, and they cap every EVSE like ChargingStationMaxProfile does. They
are reported with chargingLimitSource "SO" (system operator); the CSMS's own profiles with "CSO".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chargeagent.errors import ProtocolError

PURPOSES = ("ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile")  # what a CSMS may set
EXTERNAL = "ChargingStationExternalConstraints"
KINDS = ("Absolute", "Relative", "Recurring")
RECURRENCE_S = {"Daily": 86_400.0, "Weekly": 7 * 86_400.0}  # RecurrencyKindEnumType


@dataclass(frozen=True)
class InstalledProfile:
    evse_id: int
    profile: dict[str, Any]
    source: str = "CSO"  # ChargingLimitSourceEnumType: CSO (the CSMS), SO (the grid operator)

    @property
    def purpose(self) -> str:
        return str(self.profile["chargingProfilePurpose"])

    @property
    def stack_level(self) -> int:
        return int(self.profile["stackLevel"])


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ProfileStore:
    """Installed charging profiles and their evaluation; pure functions of (profiles, time, tx info)."""

    def __init__(self) -> None:
        self._profiles: dict[int, InstalledProfile] = {}  # by chargingProfile.id (K01.FR.05: replace same id)
        self._external: dict[str, InstalledProfile] = {}  # the grid's constraints, by the caller's key

    def install(self, evse_id: int, profile: dict[str, Any], active_tx_id: str | None) -> str:
        """Validate and install; return 'Accepted' or 'Rejected' (K01.FR.03/.16/.22)."""
        purpose = profile.get("chargingProfilePurpose")
        if purpose not in PURPOSES:
            return "Rejected"
        if purpose == "ChargingStationMaxProfile" and evse_id != 0:
            return "Rejected"  # K01.FR.03: only on evseId 0
        if purpose == "TxProfile":
            if evse_id == 0 or active_tx_id is None:
                return "Rejected"  # K01.FR.16: TxProfile needs an active transaction on that EVSE
            if profile.get("transactionId") not in (None, active_tx_id):
                return "Rejected"
        kind = profile.get("chargingProfileKind")
        if kind not in KINDS:
            return "Rejected"
        if kind == "Recurring" and profile.get("recurrencyKind") not in RECURRENCE_S:
            return "Rejected"
        for schedule in profile.get("chargingSchedule", []):
            if kind == "Recurring" and "startSchedule" not in schedule:
                return "Rejected"  # a recurrence needs its first start
            if schedule.get("chargingRateUnit") not in ("A", "W") or not schedule.get(
                "chargingSchedulePeriod"
            ):
                return "Rejected"
        self._profiles[int(profile["id"])] = InstalledProfile(evse_id, profile)
        return "Accepted"

    def install_external(self, key: str, profile: dict[str, Any]) -> None:
        """Install (or replace) the grid's constraint `key`: an Absolute ChargingStationExternalConstraints
        profile on evseId 0. Raises ProtocolError when it is not one the store can evaluate."""
        if (
            profile.get("chargingProfilePurpose") != EXTERNAL
            or profile.get("chargingProfileKind") not in KINDS
        ):
            raise ProtocolError("an external constraint needs purpose ChargingStationExternalConstraints")
        for schedule in profile.get("chargingSchedule", []):
            if schedule.get("chargingRateUnit") not in ("A", "W") or not schedule.get(
                "chargingSchedulePeriod"
            ):
                raise ProtocolError("an external constraint needs a rate unit and at least one period")
            if any(not math.isfinite(float(p["limit"])) for p in schedule["chargingSchedulePeriod"]):
                raise ProtocolError("an external constraint's limits must be finite numbers")
        self._external[key] = InstalledProfile(0, profile, source="SO")

    def clear_external(self, key: str) -> bool:
        return self._external.pop(key, None) is not None

    def installed(self) -> list[InstalledProfile]:
        """Every installed profile: the CSMS's and the grid's external constraints."""
        return [*self._profiles.values(), *self._external.values()]

    def clear(self, profile_id: int | None = None, purpose: str | None = None) -> bool:
        before = len(self._profiles)
        self._profiles = {
            pid: p
            for pid, p in self._profiles.items()
            if not ((profile_id is None or pid == profile_id) and (purpose is None or p.purpose == purpose))
        }
        return len(self._profiles) < before

    def clear_tx_profiles(self, transaction_id: str) -> None:
        """K01.FR.05/K08: a TxProfile ends with its transaction."""
        self._profiles = {
            pid: p
            for pid, p in self._profiles.items()
            if not (p.purpose == "TxProfile" and p.profile.get("transactionId") in (None, transaction_id))
        }

    def limit_a(
        self,
        evse_id: int,
        now: datetime,
        *,
        tx_id: str | None,
        tx_start: datetime | None,
        voltage_v: float,
        external: bool = True,
    ) -> float | None:
        """The current limit (A) for the EVSE at `now`, or None when no profile applies; `external=False`
        leaves the grid's constraints out (the envelope weighs them as its own `grid` candidate)."""
        station_max = self._purpose_limit("ChargingStationMaxProfile", 0, now, tx_start, voltage_v)
        tx = None
        if tx_id is not None:
            tx = self._purpose_limit("TxProfile", evse_id, now, tx_start, voltage_v, tx_id)
        if tx is None:
            tx = self._purpose_limit("TxDefaultProfile", evse_id, now, tx_start, voltage_v)
            if tx is None:
                tx = self._purpose_limit("TxDefaultProfile", 0, now, tx_start, voltage_v)
        grid = self.external_limit_a(now, voltage_v) if external else None
        limits = [v for v in (station_max, tx, grid) if v is not None]
        return min(limits) if limits else None

    def external_limit_a(self, now: datetime, voltage_v: float) -> float | None:
        """The grid's limit (A) at `now`: the lowest active external constraint, None when none applies."""
        limits = [
            v
            for p in self._external.values()
            if (v := _profile_limit_a(p.profile, now, None, voltage_v)) is not None
        ]
        return min(limits) if limits else None

    def _purpose_limit(
        self,
        purpose: str,
        evse_id: int,
        now: datetime,
        tx_start: datetime | None,
        voltage_v: float,
        tx_id: str | None = None,
    ) -> float | None:
        candidates = sorted(
            (
                p
                for p in self._profiles.values()
                if p.purpose == purpose
                and p.evse_id == evse_id
                and (tx_id is None or p.profile.get("transactionId") in (None, tx_id))
            ),
            key=lambda p: p.stack_level,
            reverse=True,
        )
        for installed in candidates:
            value = _profile_limit_a(installed.profile, now, tx_start, voltage_v)
            if value is not None:
                return value
        return None


def schedule_runs(
    profile: dict[str, Any],
    schedule: dict[str, Any],
    start: datetime,
    end: datetime,
    tx_start: datetime | None,
) -> list[tuple[datetime, float | None]]:
    """(origin, length in s or None = open-ended) of each run of `schedule` that can touch [start, end]."""
    kind = profile["chargingProfileKind"]
    duration = float(schedule["duration"]) if "duration" in schedule else None
    if kind == "Relative":
        return [] if tx_start is None else [(tx_start, duration)]
    if "startSchedule" not in schedule:
        return []
    first = parse_time(schedule["startSchedule"])
    if kind != "Recurring":
        return [(first, duration)]
    period = RECURRENCE_S[profile["recurrencyKind"]]
    length = period if duration is None else min(duration, period)
    k_first = max(0, math.floor((start - first).total_seconds() / period))
    k_last = math.floor((end - first).total_seconds() / period)
    return [(first + timedelta(seconds=k * period), length) for k in range(k_first, k_last + 1)]


def _profile_limit_a(
    profile: dict[str, Any], now: datetime, tx_start: datetime | None, voltage_v: float
) -> float | None:
    if "validFrom" in profile and now < parse_time(profile["validFrom"]):
        return None
    if "validTo" in profile and now >= parse_time(profile["validTo"]):
        return None
    for schedule in profile.get("chargingSchedule", []):
        runs = schedule_runs(profile, schedule, now, now, tx_start)
        if not runs:
            continue
        start, duration = runs[-1]
        offset_s = (now - start).total_seconds()
        if offset_s < 0 or (duration is not None and offset_s >= duration):
            continue
        active = None
        for period in sorted(schedule["chargingSchedulePeriod"], key=lambda p: p["startPeriod"]):
            if period["startPeriod"] <= offset_s:
                active = period
        if active is None:
            continue
        limit = float(active["limit"])
        if schedule["chargingRateUnit"] == "W":
            if voltage_v <= 0:
                raise ProtocolError("a W-based charging limit needs a positive output voltage")
            limit = limit / voltage_v  # DC output: P = U·I
        return max(limit, 0.0)
    return None
