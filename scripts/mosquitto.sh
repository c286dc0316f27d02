#!/usr/bin/env bash
# Make sure the mosquitto MQTT broker is installed (the MQTT BMS tests start their own on a free port).
# Debian/Ubuntu package; installs it when run as root, otherwise says what to run.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mosquitto not found: installing the Debian package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    # The package enables a system broker on :1883; the tests do not need it.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
    exit 0
fi
echo "mosquitto is not installed and this is not root: run 'sudo apt-get install mosquitto'" \
     "(the MQTT tests fail without it)" >&2
exit 0
