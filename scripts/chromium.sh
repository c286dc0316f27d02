#!/usr/bin/env bash
# Make sure headless Chromium is installed (the dashboard test loads the page in it and takes a screenshot).
# Debian package; installed when run as root; otherwise the test is skipped and says why.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found: installing the Debian package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
        echo "chromium could not be installed: the dashboard test will be skipped" >&2
    exit 0
fi
echo "chromium is not installed and this is not root: run 'sudo apt-get install chromium'" \
     "(the dashboard test is skipped without it)" >&2
exit 0
