"""Config layering (default.toml < --config < env < flags) and one-line errors naming the key."""

import pytest

from chargeagent.config import load_settings
from chargeagent.errors import ConfigError


def test_defaults_come_from_default_toml():
    settings = load_settings()
    assert settings.bms.can_bitrate == 250_000
    assert settings.ocpp.versions == ["ocpp2.0.1", "ocpp1.6"]  # offered in this order; the CSMS picks


def test_config_file_overrides_only_the_keys_it_names(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[sim]\nsoh = 0.7\n[station]\nid = "SITE-7"\n')
    settings = load_settings(path)
    assert (settings.sim.soh, settings.station.id, settings.sim.capacity_ah) == (0.7, "SITE-7", 150.0)


def test_env_vars_override_the_file_and_flags_override_env(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text("[ocpp]\nmeter_interval_s = 30\n")
    monkeypatch.setenv("CHARGEAGENT_OCPP__METER_INTERVAL_S", "15")
    assert load_settings(path).ocpp.meter_interval_s == 15
    assert load_settings(path, {"ocpp": {"meter_interval_s": 5}}).ocpp.meter_interval_s == 5


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[ocpp]\nmeter_interval_s = -5\n", "ocpp.meter_interval_s"),
        ("[ocpp]\ncsms_url = 'http://x'\n", "ocpp.csms_url"),
        ("[sim]\nsohh = 0.5\n", "sim.sohh"),
        ("[bms]\nbackend = 'carrier-pigeon'\n", "bms.backend"),
    ],
)
def test_bad_value_fails_with_one_line_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(key + ":")
    assert "\n" not in message


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[ocpp\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_ocpp_versions_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"ocpp\.versions"):
        load_settings(overrides={"ocpp": {"versions": ["ocpp1.5"]}})
    with pytest.raises(ConfigError, match="each version once"):
        load_settings(overrides={"ocpp": {"versions": ["ocpp1.6", "ocpp1.6"]}})
    assert load_settings(overrides={"ocpp": {"versions": ["ocpp1.6"]}}).ocpp.versions == ["ocpp1.6"]
