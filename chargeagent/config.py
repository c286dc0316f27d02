"""Configuration: config/default.toml, then --config FILE, then CHARGEAGENT_* env vars, then CLI flags.

Every section is a frozen pydantic model, so a bad value fails at start with one line naming the key
(`ConfigError: ocpp.meter_interval_s: Input should be greater than 0 (got -5)`). Env vars use `__` between
section and key: `CHARGEAGENT_OCPP__CSMS_URL=ws://...`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from chargeagent.errors import ConfigError

PositiveS = Annotated[float, Field(gt=0.0)]


def config_dir() -> Path:
    """The directory holding default.toml, the DBC and schemas (override with CHARGEAGENT_CONFIG_DIR)."""
    override = os.environ.get("CHARGEAGENT_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "config"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StationSettings(_Section):
    id: Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9._:\-]+$")] = "CS001"
    vendor: Annotated[str, Field(max_length=50)] = "chargeagent"
    model: Annotated[str, Field(max_length=50)] = "chargeagent-dc"
    serial_number: Annotated[str, Field(max_length=25)] = "CA-0001"
    firmware_version: Annotated[str, Field(max_length=50)] = "0.1.0"
    charger_max_current_a: Annotated[float, Field(gt=0.0, le=1000.0)] = 250.0
    charger_max_voltage_v: Annotated[float, Field(gt=0.0, le=1500.0)] = 1000.0
    charger_max_power_kw: Annotated[float | None, Field(gt=0.0, le=1000.0)] = None  # None: A-limited only
    ramp_up_a_per_s: Annotated[float, Field(gt=0.0)] = 50.0
    # Where the station keeps what must survive a restart (the transaction outbox). Relative paths are
    # relative to the working directory; an edge install sets an absolute path on persistent storage.
    data_dir: Path = Path("var")


class OcppSettings(_Section):
    csms_url: str = "ws://127.0.0.1:9000/ocpp"
    # Offered as websocket subprotocols in this order; the CSMS picks one (OCPP-J part 4, 3.1.2).
    versions: Annotated[list[Literal["ocpp2.0.1", "ocpp1.6"]], Field(min_length=1)] = ["ocpp2.0.1", "ocpp1.6"]
    response_timeout_s: PositiveS = 30.0
    heartbeat_interval_s: PositiveS = 300.0  # until the CSMS's BootNotification response says otherwise
    meter_interval_s: PositiveS = 60.0  # SampledDataCtrlr.TxUpdatedInterval
    websocket_ping_interval_s: Annotated[float, Field(ge=0.0)] = 30.0  # OCPPCommCtrlr.WebSocketPingInterval
    websocket_compression: bool = True  # offer permessage-deflate (RFC 7692); the CSMS decides
    # Validate with the ocpp schemas compiled (fastjsonschema): ~20x faster per message, ~0.45 MiB per
    # message type. Worth it for many stations in one process (the wire fleet), not for one edge agent.
    compiled_validation: bool = False
    reconnect_min_s: PositiveS = 2.0  # OCPPCommCtrlr.RetryBackOffWaitMinimum
    reconnect_max_s: PositiveS = 120.0
    reconnect_random_s: Annotated[float, Field(ge=0.0)] = 2.0  # RetryBackOffRandomRange
    authorize_remote_start: bool = False  # AuthCtrlr.AuthorizeRemoteStart
    message_attempts: Annotated[int, Field(ge=1, le=100)] = 3  # OCPPCommCtrlr.MessageAttempts
    message_attempt_interval_s: PositiveS = 10.0  # OCPPCommCtrlr.MessageAttemptInterval
    outbox_max_messages: Annotated[int, Field(ge=10)] = 10_000  # queue cap (see station/outbox.py policy)
    # OCPP 2.0.1 security profile (part 2, A00): 1 Basic auth over ws://, 2 TLS + Basic auth, 3 mutual TLS.
    # 0 = no security at all, for a lab CSMS on a trusted network only.
    security_profile: Literal[0, 1, 2, 3] = 0
    password_env: str | None = None  # NAME of the env var holding the Basic auth password (profiles 1, 2)
    ca_file: Path | None = None  # CSMS root certificate(s) (profiles 2, 3); system CAs if unset
    cert_file: Path | None = None  # station certificate chain (profile 3)
    key_file: Path | None = None  # station private key (profile 3)

    @field_validator("csms_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value.rstrip("/")

    @field_validator("versions")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each version once")
        return value

    @model_validator(mode="after")
    def _security_profile_consistent(self) -> OcppSettings:
        profile, tls = self.security_profile, self.csms_url.startswith("wss://")
        if profile == 1 and tls:
            raise ValueError(
                "csms_url: security profile 1 is Basic auth over ws://; use profile 2 for wss://"
            )
        if profile in (2, 3) and not tls:
            raise ValueError(f"csms_url: security profile {profile} needs a wss:// URL")
        if profile in (1, 2) and not self.password_env:
            raise ValueError(
                f"password_env: security profile {profile} needs the name of the password env var"
            )
        if profile == 3 and (self.cert_file is None or self.key_file is None):
            raise ValueError("cert_file/key_file: security profile 3 needs the station certificate and key")
        return self


class BmsSettings(_Section):
    backend: Literal["sim", "can", "mqtt"] = "sim"
    can_interface: str = "virtual"
    can_channel: str = "chargeagent0"
    can_bitrate: Annotated[int, Field(gt=0)] = 250_000
    # Multiplies GB/T periodic send periods (not timeouts); 1.0 is the standard's timing.
    timing_scale: Annotated[float, Field(ge=1.0, le=10.0)] = 1.0
    mqtt_url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS
    mqtt_username: str | None = None
    mqtt_password_env: str | None = None  # name of the env var holding the password (never the password)
    mqtt_ca_file: Path | None = None
    mqtt_telemetry_timeout_s: PositiveS = 2.0  # telemetry older than this stops charging (watchdog)


class SimPackSettings(_Section):
    chemistry: Literal["nmc", "lfp"] = "nmc"
    capacity_ah: Annotated[float, Field(gt=0.0, le=1000.0)] = 150.0
    soh: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    series_cells: Annotated[int, Field(gt=0, le=300)] = 96
    soc: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    target_soc: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    cell_temp_c: Annotated[float, Field(ge=-30.0, le=60.0)] = 25.0
    ambient_c: Annotated[float, Field(ge=-40.0, le=55.0)] = 25.0
    max_charge_current_a: Annotated[float, Field(gt=0.0, le=400.0)] = 250.0


class PolicySettings(_Section):
    """The charge-curve model (policy/curve.py) and how the agent uses it during a session."""

    model_enabled: bool = True  # false: the conservative CC-CV fallback curve only
    model_path: Path | None = None  # None: the shipped policy/models/charge_curve.int8.onnx
    preference: Literal["fast", "balanced", "gentle"] = "balanced"
    target_soc: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8  # plan to here, then 10 % at a time
    ambient_c: Annotated[float, Field(ge=-40.0, le=55.0)] = 20.0
    assumed_soh: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85  # when the BMS does not report SoH
    replan_interval_s: PositiveS = 60.0
    temp_margin_c: Annotated[float, Field(ge=0.0, le=20.0)] = 2.0
    # A session's departure, as seconds after it starts (None: unknown). The site's load manager serves
    # deadlines first, and the price plan needs one. An EV that states its own departure (and target SoC)
    # at the handshake overrides both for its session (bms_link.models.PackInfo.departure).
    dwell_s: Annotated[float | None, Field(gt=0.0, le=7 * 86400.0)] = None
    # Charge in the cheapest hours before the departure (policy/price_plan.py PricePlan), by the tariff
    # and any OpenADR price signals; the deadline always wins (docs/policy.md "Price-aware charging").
    # A session with no departure (no dwell_s, none from the EV) charges at once.
    price_aware: bool = False
    tariff_hourly: (
        Annotated[
            tuple[Annotated[float, Field(ge=0.0, allow_inf_nan=False)], ...],
            Field(min_length=24, max_length=24),
        ]
        | None
    ) = None  # 24 prices per kWh for the UTC hours 0..23; None: a flat price (grid signals only)


class HealthSettings(_Section):
    """Battery health on the station (docs/health.md): per-battery history, SoH input to the policy."""

    enabled: bool = True  # false: no recording, no store, the policy uses BMS SoH / assumed_soh only
    min_sessions: Annotated[int, Field(ge=1, le=1000)] = 3  # stored sessions before the policy trusts it
    max_sessions_per_battery: Annotated[int, Field(ge=1, le=100_000)] = 500
    retention_days: Annotated[float, Field(gt=0.0)] = 1095.0


class GridSettings(_Section):
    """Upstream reporting (station/grid.py, docs/forecast.md): the site load forecast over MQTT."""

    # Becomes an MQTT topic level (`chargeagent/{site_id}/forecast`): no `/`, `+` or `#`.
    site_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")] = "site"
    mqtt_url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS
    mqtt_username: str | None = None
    mqtt_password_env: str | None = None  # name of the env var holding the password (never the password)
    mqtt_ca_file: Path | None = None
    publish_interval_s: PositiveS = 900.0  # re-publish at least this often, changed or not
    # Publish early when the p50 energy over the horizon moved by more than this fraction (0.1 = 10 %).
    change_threshold: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1
    # OpenADR 2.0b VEN (station/openadr_ven.py, needs the [grid] extra); no URL = no VEN.
    vtn_url: str | None = None  # e.g. https://vtn.example.com/OpenADR2/Simple/2.0b
    ven_name: str | None = None  # default: the station id (the site id for publish-forecast)
    vtn_ca_file: Path | None = None  # the VTN's CA, for https
    ven_cert_file: Path | None = None  # the VEN's client certificate + key (2.0b TLS and XML signatures)
    ven_key_file: Path | None = None
    vtn_fingerprint: str | None = None  # the VTN certificate's fingerprint, to check its signatures
    report_interval_s: PositiveS = 60.0  # the fastest the VEN offers its reports
    # What SIMPLE levels and load-control capacity fractions scale; default: the station's own rating.
    site_max_kw: Annotated[float | None, Field(gt=0.0)] = None
    simple_fractions: tuple[float, float, float, float] = (1.0, 0.5, 0.25, 0.0)  # SIMPLE levels 0..3

    @model_validator(mode="after")
    def _openadr_consistent(self) -> GridSettings:
        if self.vtn_url is not None and not self.vtn_url.startswith(("http://", "https://")):
            raise ValueError("vtn_url: must start with http:// or https://")
        if (self.ven_cert_file is None) != (self.ven_key_file is None):
            raise ValueError("ven_cert_file: the VEN certificate and key go together")
        if any(not 0.0 <= f <= 1.0 for f in self.simple_fractions):
            raise ValueError("simple_fractions: each level's fraction must be in [0, 1]")
        return self


class SiteSettings(_Section):
    """One grid cap shared by a site's stations (station/site_link.py, docs/site.md): the station's side."""

    mqtt_url: str | None = None  # the site controller's broker; None: this station is not load-managed
    site_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")] = "site"
    mqtt_username: str | None = None
    mqtt_password_env: str | None = None  # name of the env var holding the password (never the password)
    mqtt_ca_file: Path | None = None
    report_interval_s: Annotated[float, Field(gt=0.0, le=60.0)] = 2.0  # demand to the controller
    # The station's limit without a valid grant (at start, and when the controller goes quiet). Required
    # when mqtt_url is set: the operator sizes the site's failsafes so that their sum stays <= the cap.
    # A session's departure (its deadline for the site) is the EV's, else `policy.dwell_s`.
    failsafe_kw: Annotated[float | None, Field(ge=0.0, le=1000.0)] = None

    @model_validator(mode="after")
    def _failsafe_given(self) -> SiteSettings:
        if self.mqtt_url is not None and self.failsafe_kw is None:
            raise ValueError("failsafe_kw: required when mqtt_url is set (the limit without the controller)")
        return self


class ApiSettings(_Section):
    """The local HTTP API, dashboard and Prometheus metrics (station/api.py; the [api] extra)."""

    enabled: bool = False  # off on edge builds unless asked for
    host: str = "127.0.0.1"  # loopback unless configured: the API changes what the charger does
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port (tests)
    # NAME of the env var holding the bearer token for state-changing requests; without one they are
    # refused (403). There is no default token.
    token_env: str | None = None


class LogSettings(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseSettings):
    """The whole configuration tree."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="CHARGEAGENT_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    station: StationSettings = StationSettings()
    ocpp: OcppSettings = OcppSettings()
    bms: BmsSettings = BmsSettings()
    sim: SimPackSettings = SimPackSettings()
    policy: PolicySettings = PolicySettings()
    health: HealthSettings = HealthSettings()
    grid: GridSettings = GridSettings()
    site: SiteSettings = SiteSettings()
    api: ApiSettings = ApiSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [config_dir() / "default.toml", *_EXTRA_FILES]
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=files),
        )


_EXTRA_FILES: list[Path] = []


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load and validate the configuration; raise `ConfigError` with one line naming the bad key."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        try:
            with config_file.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: invalid TOML: {exc}") from None
    _EXTRA_FILES[:] = [config_file] if config_file is not None else []
    try:
        return Settings(**_deep_merge({}, overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    finally:
        _EXTRA_FILES.clear()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    field, sep, rest = message.partition(": ")
    if sep and " " not in field:  # a cross-field check names its key first: "csms_url: needs wss://"
        key, message = f"{key}.{field}", rest
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return f"{key}: {message}{shown}{more}"
