#!/usr/bin/env bash
# Takes the dashboard screenshots shown in the README: the vendors, drifts,
# order timeline and quarantine pages of a seeded database, rendered by
# headless Chromium at 375 px (phone) and 1280 px (desktop) against the real
# `serve` (tests/dashboard_pages.rs, which also fails if a page scrolls
# sideways), then copies them into docs/.
#   ./scripts/screenshot-dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-chromium.sh
cargo test --quiet --test dashboard_pages the_dashboard_fits_a_phone_and_a_desktop >/dev/null
for page in vendors drifts order quarantine; do
  for device in phone desktop; do
    shot="dashboard-$page-$device.png"
    cp "${CARGO_TARGET_DIR:-target}/tmp/$shot" "docs/$shot"
    echo "wrote docs/$shot"
  done
done
