#!/usr/bin/env bash
# Installs Debian's Chromium (for scripts/screenshot-report.sh) when missing.
# Kept out of install-test-deps.sh on purpose: no test needs a browser, and
# Chromium with its libraries is a few hundred MB that CI would download for nothing.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing chromium (Debian package) for the report screenshot" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
