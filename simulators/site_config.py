"""Site and vehicle-mix configuration for the EV arrival generator: frozen pydantic models read from TOML.

Examples live in `config/sites/` (workplace, highway_hub, depot). A bad value fails with one line naming
the file and the key (`config/sites/x.toml: dwell.median_h: Input should be greater than 0 (got -1.0)`).
Each site kind has built-in hour-of-day arrival profiles (below); a TOML file may override them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chargeagent.config import _first_error
from chargeagent.errors import ConfigError
from policy.price_plan import Tariff

SiteKind = Literal["workplace", "highway_hub", "depot"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
HourlyProfile = Annotated[list[NonNegative], Field(min_length=24, max_length=24)]

# Relative arrival rates per hour of day (UTC = site time in this slice), normalised when used. Shapes
# follow the published arrival histograms of the ACN-Data workplace/campus sites (Lee, Li, Low 2019,
# "ACN-Data", e-Energy '19, fig. 3: a sharp 7-9 h peak), highway fast-charging traffic counts (a broad
# daytime plateau with a Friday/holiday-like weekend bulge) and return-to-base depot fleets (evening).
DEFAULT_PROFILES: dict[SiteKind, tuple[list[float], list[float]]] = {
    "workplace": (
        [0, 0, 0, 0, 0, 0.2, 1, 4, 8, 6, 3, 1.5, 1.5, 1.5, 1, 0.6, 0.3, 0.2, 0.1, 0.1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0.1, 0.3, 0.6, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0, 0, 0, 0, 0],
    ),
    "highway_hub": (
        [
            0.3,
            0.2,
            0.1,
            0.1,
            0.2,
            0.5,
            1,
            1.6,
            2,
            2.2,
            2.4,
            2.6,
            2.8,
            2.8,
            2.7,
            2.7,
            2.8,
            2.7,
            2.3,
            1.8,
            1.4,
            1,
            0.7,
            0.5,
        ],
        [
            0.3,
            0.2,
            0.1,
            0.1,
            0.1,
            0.3,
            0.6,
            1.2,
            2,
            2.8,
            3.2,
            3.3,
            3.3,
            3.2,
            3.1,
            3,
            2.8,
            2.5,
            2,
            1.6,
            1.2,
            0.9,
            0.6,
            0.4,
        ],
    ),
    "depot": (
        [0.2, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.2, 0.4, 0.3, 0.3, 0.5, 1, 2.5, 4, 4, 2.5, 1.2, 0.6, 0.3],
        [0.1, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.2, 0.2, 0.2, 0.3, 0.5, 1, 1.5, 1.5, 1, 0.5, 0.3, 0.2],
    ),
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteSection(_Model):
    name: Annotated[str, Field(min_length=1)]
    kind: SiteKind
    stations: Annotated[int, Field(ge=1, le=100_000)] = 20
    station_max_power_kw: Annotated[float, Field(gt=0.0, le=1000.0)] = 22.0
    # The site's grid connection limit, shared among the stations every step (policy/allocation.py);
    # None: no site limit, every station draws up to its own rating.
    grid_cap_kw: Annotated[float | None, Field(gt=0.0)] = None


class ArrivalSection(_Model):
    weekday_per_station: NonNegative  # expected arrivals per station per weekday (before capacity limits)
    weekend_per_station: NonNegative
    weekday_hourly: HourlyProfile | None = None  # None: DEFAULT_PROFILES[kind]
    weekend_hourly: HourlyProfile | None = None
    # Day-to-day demand level: log-normal factor following an AR(1) process, the persistent "busy week /
    # quiet week" (weather, holidays, office attendance) seen in daily session counts of public datasets.
    day_factor_sd: Annotated[float, Field(ge=0.0, le=2.0)] = 0.15
    day_factor_ar: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.6


class DwellSection(_Model):
    median_h: Positive  # log-normal dwell time
    sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.4
    min_h: Positive = 0.25
    max_h: Positive = 24.0

    @model_validator(mode="after")
    def _ordered(self) -> DwellSection:
        if not self.min_h <= self.median_h <= self.max_h:
            raise ValueError("median_h: must lie between min_h and max_h")
        return self


class EnergySection(_Model):
    soc_arrival_mean: Fraction = 0.4  # truncated normal SoC at plug-in
    soc_arrival_sd: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    soc_target: Fraction = 0.9  # the driver's target; energy = (target - arrival) x usable capacity


class SohSection(_Model):
    mean: Fraction = 0.92
    sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.04
    min: Fraction = 0.7


class AmbientSection(_Model):
    # T(t) = annual_mean + seasonal_amplitude*cos(2pi(doy-warmest_doy)/365.25)
    #        + daily_amplitude*cos(2pi(hour-warmest_hour)/24) + N(0, noise_sd)
    annual_mean_c: Annotated[float, Field(ge=-40.0, le=50.0)] = 11.0
    seasonal_amplitude_c: Annotated[float, Field(ge=0.0, le=40.0)] = 8.0
    daily_amplitude_c: Annotated[float, Field(ge=0.0, le=20.0)] = 4.0
    noise_sd_c: Annotated[float, Field(ge=0.0, le=10.0)] = 1.5
    warmest_doy: Annotated[int, Field(ge=1, le=366)] = 200  # mid-July in the northern hemisphere
    warmest_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 15.0


class VehicleModel(_Model):
    name: Annotated[str, Field(min_length=1)]
    share: Positive  # relative weight in the mix, normalised over all vehicles
    capacity_kwh: Annotated[float, Field(gt=0.0, le=1000.0)]
    chemistry: Literal["nmc", "lfp"]
    max_charge_power_kw: Annotated[float, Field(gt=0.0, le=1000.0)]


class TariffSection(_Model):
    """Energy prices (per kWh, the operator's currency): 24 UTC hourly prices, or two levels."""

    hourly: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=24, max_length=24)] | None = (
        None
    )
    peak: Annotated[float, Field(ge=0.0)] | None = None
    off_peak: Annotated[float, Field(ge=0.0)] | None = None
    peak_hours: tuple[Annotated[int, Field(ge=0, le=24)], Annotated[int, Field(ge=0, le=24)]] = (7, 22)

    @model_validator(mode="after")
    def _one_form(self) -> TariffSection:
        two_level = self.peak is not None and self.off_peak is not None
        if (self.hourly is not None) == two_level:
            raise ValueError("hourly: give either 24 hourly prices or peak + off_peak")
        return self

    def tariff(self) -> Tariff:
        if self.hourly is not None:
            return Tariff(tuple(self.hourly))
        return Tariff.two_level(
            self.peak or 0.0, self.off_peak or 0.0, self.peak_hours
        )  # both set: validated


class SiteConfig(_Model):
    site: SiteSection
    arrivals: ArrivalSection
    dwell: DwellSection
    energy: EnergySection = EnergySection()
    soh: SohSection = SohSection()
    ambient: AmbientSection = AmbientSection()
    vehicles: Annotated[list[VehicleModel], Field(min_length=1)]
    tariff: TariffSection | None = None  # energy prices: session costs, and --price-aware charging

    def hourly_profiles(self) -> tuple[list[float], list[float]]:
        """(weekday, weekend) relative arrival rate per hour, normalised to sum to 1 (all-zero stays 0)."""
        default_wd, default_we = DEFAULT_PROFILES[self.site.kind]
        weekday = self.arrivals.weekday_hourly or default_wd
        weekend = self.arrivals.weekend_hourly or default_we
        return _normalised(weekday), _normalised(weekend)


def _normalised(profile: list[float]) -> list[float]:
    total = sum(profile)
    return [value / total for value in profile] if total > 0 else [0.0] * len(profile)


def load_site(path: Path) -> SiteConfig:
    """Read and validate a site TOML file; `ConfigError` naming the file and the key on any problem."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"site config not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return site_from_dict(raw, source=str(path))


def site_from_dict(raw: dict[str, object], source: str = "site config") -> SiteConfig:
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None
