"""EV arrivals for a site: a seeded synthetic generator, SESSIONS.csv replay, and uncontrolled site load.

The generator draws, per hour, Poisson arrivals whose rate follows the site's weekday/weekend hour-of-day
profile times a persistent day-level factor (`simulators.site_config`), then per arrival: a vehicle model
from the mix, a log-normal dwell time, the SoC at plug-in, a SoH and the ambient temperature. Arrivals take
the first free station; when every station is busy the driver leaves (counted in `rejected`).

Uncontrolled charging (`site_load_kw`): each session draws a constant `power_kw` = min(vehicle max, station
max) from plug-in until its energy is delivered or it departs. This ignores the CC-CV taper: a real charge
spends its last ~10-20 % of SoC at falling power, so the energy per session is right but the tail is
drawn a few minutes early and slightly too high (more at DC fast chargers than at AC/low-power ones). The
fleet simulator replaces it with the pack physics; this is the fast approximation for site-level data.
All randomness comes from one `numpy.random.Generator(seed)`: same seed, same sessions.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from policy.forecast_features import interval_mean_kw
from policy.forecast_io import (
    InputFileError,
    LoadHistory,
    format_utc,
    parse_number_cell,
    parse_time_cell,
    read_csv_rows,
)
from simulators.site_config import AmbientSection, SiteConfig

FloatArray = npt.NDArray[np.float64]
SESSION_COLUMNS = ("session_id", "station_id", "connection_time", "disconnect_time", "kwh_delivered")
_DAY_S = 86_400
_HOUR_S = 3_600


@dataclass(frozen=True)
class Sessions:
    """Charging sessions as arrays (one element per session), sorted by connection time."""

    session_id: list[str]
    station_id: list[str]
    connection_s: FloatArray
    disconnect_s: FloatArray
    energy_kwh: FloatArray  # wanted (generator) or delivered (replay)
    power_kw: FloatArray  # uncontrolled charging power
    # Vehicle draws (generator only; NaN / "" for replayed sessions).
    vehicle: list[str]
    chemistry: list[str]
    capacity_kwh: FloatArray
    soh: FloatArray
    soc_arrival: FloatArray
    ambient_c: FloatArray
    rejected: int = 0  # arrivals that found every station busy

    def __len__(self) -> int:
        return len(self.session_id)

    @property
    def charge_end_s(self) -> FloatArray:
        """When uncontrolled charging stops: energy delivered, or departure, whichever comes first."""
        full_s = self.connection_s + self.energy_kwh / self.power_kw * _HOUR_S
        return np.minimum(self.disconnect_s, full_s)

    @property
    def delivered_kwh(self) -> FloatArray:
        return self.power_kw * (self.charge_end_s - self.connection_s) / _HOUR_S


def ambient_temp_c(times_s: FloatArray, ambient: AmbientSection, rng: np.random.Generator) -> FloatArray:
    """Seasonal + diurnal cosine with noise (the usual two-harmonic fit of hourly weather data)."""
    doy = (times_s / _DAY_S) % 365.25
    hour = (times_s % _DAY_S) / _HOUR_S
    # 1 Jan 1970 is day-of-year 1: epoch days modulo a year give the doy to within a day, enough here.
    seasonal = ambient.seasonal_amplitude_c * np.cos(2 * np.pi * (doy + 1 - ambient.warmest_doy) / 365.25)
    daily = ambient.daily_amplitude_c * np.cos(2 * np.pi * (hour - ambient.warmest_hour) / 24.0)
    noise = rng.normal(0.0, ambient.noise_sd_c, size=len(times_s)) if ambient.noise_sd_c > 0 else 0.0
    return np.asarray(ambient.annual_mean_c + seasonal + daily + noise, dtype=np.float64)


def _day_factors(site: SiteConfig, days: int, rng: np.random.Generator) -> FloatArray:
    sd, ar = site.arrivals.day_factor_sd, site.arrivals.day_factor_ar
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - ar * ar), size=days)
    z = np.empty(days)
    previous = rng.normal(0.0, sd)  # stationary start
    for day in range(days):
        previous = ar * previous + shocks[day]
        z[day] = previous
    return np.exp(z - sd * sd / 2.0)  # mean 1


def _hourly_rates(
    site: SiteConfig, start_s: float, days: int, stations: int, rng: np.random.Generator
) -> FloatArray:
    weekday_profile, weekend_profile = (np.asarray(p) for p in site.hourly_profiles())
    hours_s = start_s + _HOUR_S * np.arange(days * 24, dtype=np.float64)
    dow = ((hours_s // _DAY_S).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    hour = ((hours_s % _DAY_S) // _HOUR_S).astype(np.int64)
    weekend = dow >= 5
    per_station = np.where(weekend, site.arrivals.weekend_per_station, site.arrivals.weekday_per_station)
    profile = np.where(weekend, weekend_profile[hour], weekday_profile[hour])
    factor = np.repeat(_day_factors(site, days, rng), 24)
    return np.asarray(per_station * stations * profile * factor, dtype=np.float64)


def _assign_stations(arrival_s: FloatArray, departure_s: FloatArray, stations: int) -> npt.NDArray[np.int64]:
    """First free station for each arrival (in time order), -1 when all are busy."""
    free: list[tuple[float, int]] = [(-np.inf, i) for i in range(stations)]
    out = np.full(len(arrival_s), -1, dtype=np.int64)
    for k in range(len(arrival_s)):
        if free[0][0] <= arrival_s[k]:
            _, station = heapq.heappop(free)
            out[k] = station
            heapq.heappush(free, (float(departure_s[k]), station))
    return out


def generate_sessions(
    site: SiteConfig, start_s: float, days: int, stations: int | None = None, seed: int = 0
) -> Sessions:
    """Synthetic sessions for `days` days from `start_s` (epoch seconds, UTC) at `stations` stations."""
    n_stations = stations if stations is not None else site.site.stations
    rng = np.random.default_rng(seed)
    rates = _hourly_rates(site, start_s, days, n_stations, rng)
    counts = rng.poisson(rates)
    hour_start = start_s + _HOUR_S * np.repeat(np.arange(len(rates), dtype=np.float64), counts)
    arrival_s = np.sort(hour_start + rng.uniform(0.0, _HOUR_S, size=len(hour_start)))
    n = len(arrival_s)

    shares = np.asarray([v.share for v in site.vehicles])
    model = rng.choice(len(site.vehicles), size=n, p=shares / shares.sum())
    dwell = site.dwell
    dwell_h = np.clip(dwell.median_h * np.exp(rng.normal(0.0, dwell.sigma, size=n)), dwell.min_h, dwell.max_h)
    energy = site.energy
    soc_arrival = np.clip(
        rng.normal(energy.soc_arrival_mean, energy.soc_arrival_sd, size=n), 0.02, max(energy.soc_target, 0.02)
    )
    soh = np.clip(rng.normal(site.soh.mean, site.soh.sd, size=n), site.soh.min, 1.0)
    ambient = ambient_temp_c(arrival_s, site.ambient, rng)

    capacity = np.asarray([v.capacity_kwh for v in site.vehicles])[model]
    vehicle_max_kw = np.asarray([v.max_charge_power_kw for v in site.vehicles])[model]
    wanted_kwh = np.maximum(energy.soc_target - soc_arrival, 0.0) * capacity * soh
    departure_s = arrival_s + dwell_h * _HOUR_S
    station = _assign_stations(arrival_s, departure_s, n_stations)
    keep = station >= 0
    idx = np.flatnonzero(keep)
    return Sessions(
        session_id=[f"S{i + 1:07d}" for i in range(len(idx))],
        station_id=[f"CS{s + 1:04d}" for s in station[keep]],
        connection_s=arrival_s[keep],
        disconnect_s=departure_s[keep],
        energy_kwh=wanted_kwh[keep],
        power_kw=np.minimum(vehicle_max_kw[keep], site.site.station_max_power_kw),
        vehicle=[site.vehicles[m].name for m in model[idx]],
        chemistry=[site.vehicles[m].chemistry for m in model[idx]],
        capacity_kwh=capacity[keep],
        soh=soh[keep],
        soc_arrival=soc_arrival[keep],
        ambient_c=ambient[keep],
        rejected=int(n - len(idx)),
    )


def site_load_kw(sessions: Sessions, t0_s: float, n: int, step_s: int = 60) -> FloatArray:
    """Uncontrolled site load (kW, mean over each interval) at `step_s` resolution (60 s or 900 s)."""
    return interval_mean_kw(sessions.connection_s, sessions.charge_end_s, sessions.power_kw, t0_s, step_s, n)


def site_history(sessions: Sessions, t0_s: int, days: int, step_s: int = 900) -> LoadHistory:
    n = days * _DAY_S // step_s
    return LoadHistory(start_s=t0_s, step_s=step_s, load_kw=site_load_kw(sessions, t0_s, n, step_s))


def read_sessions_csv(path: Path, station_power_kw: float = 22.0) -> Sessions:
    """Replay SESSIONS.csv; each session charges at max(station_power_kw, kWh/dwell) so it delivers its
    recorded energy within its recorded dwell (the file has no power column)."""
    name = str(path)
    ids: list[str] = []
    stations: list[str] = []
    on: list[float] = []
    off: list[float] = []
    kwh: list[float] = []
    for row, values in read_csv_rows(path, SESSION_COLUMNS):
        connect = parse_time_cell(name, row, "connection_time", values["connection_time"])
        disconnect = parse_time_cell(name, row, "disconnect_time", values["disconnect_time"])
        if disconnect <= connect:
            raise InputFileError(name, row, "disconnect_time", "must be after connection_time")
        ids.append(values["session_id"])
        stations.append(values["station_id"])
        on.append(connect)
        off.append(disconnect)
        kwh.append(parse_number_cell(name, row, "kwh_delivered", values["kwh_delivered"]))
    if not ids:
        raise InputFileError(name, None, None, "no data rows")
    order = np.argsort(np.asarray(on), kind="stable")
    on_s, off_s, energy = (np.asarray(a, dtype=np.float64)[order] for a in (on, off, kwh))
    power = np.maximum(station_power_kw, energy / ((off_s - on_s) / _HOUR_S))
    unknown = np.full(len(ids), np.nan)
    return Sessions(
        session_id=[ids[i] for i in order],
        station_id=[stations[i] for i in order],
        connection_s=on_s,
        disconnect_s=off_s,
        energy_kwh=energy,
        power_kw=power,
        vehicle=[""] * len(ids),
        chemistry=[""] * len(ids),
        capacity_kwh=unknown,
        soh=unknown,
        soc_arrival=unknown,
        ambient_c=unknown,
    )


def write_sessions_csv(path: Path, sessions: Sessions) -> None:
    """SESSIONS.csv as DESIGN.md specifies (energy = what uncontrolled charging delivered)."""
    delivered = sessions.delivered_kwh
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(SESSION_COLUMNS) + "\n")
        for i in range(len(sessions)):
            handle.write(
                f"{sessions.session_id[i]},{sessions.station_id[i]},{format_utc(sessions.connection_s[i])},"
                f"{format_utc(sessions.disconnect_s[i])},{delivered[i]:.3f}\n"
            )
