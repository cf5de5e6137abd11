#!/usr/bin/env bash
# Runs every test driftwatch has, installing what the tests need first
# (Dovecot and Postfix from Debian's packages) when it is missing.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh imap       # only tests whose name matches "imap"
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# The report's phone-layout test (tests/report_layout.rs) renders in headless
# Chromium; it fails, never skips, without it.
bash scripts/install-chromium.sh

# Unit, integration (real Dovecot/Postfix on loopback) and doc tests.
cargo test --all-targets --locked -- "$@"

# Every shipped vendor fixture through the current parsers (what a user runs
# after adding a vendor).
if [ $# -eq 0 ]; then
  cargo run --locked -q -- parsers test
fi
