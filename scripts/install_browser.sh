#!/usr/bin/env bash
# Chromium for the report tests (tests/test_report.py opens the reports in it through playwright,
# which downloads no browser): Debian's package, installed when missing where apt-get runs as root
# (CI's clean machine). Elsewhere it says so and the browser tests skip.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "no chromium here and no apt-get as root to install it: the report's browser tests will skip" >&2
fi
