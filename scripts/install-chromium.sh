#!/usr/bin/env bash
# Installs Debian's Chromium when missing: tests/report_layout.rs renders the
# HTML report in it at 375 px and 1280 px (scripts/test.sh runs this first),
# and scripts/screenshot-report.sh takes the screenshots in docs/ with it.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing chromium (Debian package) for the report screenshot" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
