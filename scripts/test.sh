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

# Unit, integration (real Dovecot/Postfix on loopback) and doc tests, on
# the default store (SQLite).
cargo test --all-targets --locked -- "$@"

# The integration tests again on PostgreSQL: a private server on loopback
# (scripts/postgres.sh), a fresh database per test. Left to the round above:
# tests of the SQLite file itself (its permissions: security.rs; a full disk
# under it: full_disk_*; opening older SQLite schemas: upgrade.rs), tests
# that need no database (parsers, packaging) and tests/postgres.rs, which
# starts its own PostgreSQL servers in that round.
pg_dir=$(mktemp -d /tmp/driftwatch-test-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DRIFTWATCH_TEST_POSTGRES
DRIFTWATCH_TEST_POSTGRES=$(scripts/postgres.sh start "$pg_dir" "$pg_port")
DRIFTWATCH_TEST_POSTGRES=${DRIFTWATCH_TEST_POSTGRES%/postgres}
DRIFTWATCH_TEST_BACKEND=postgres cargo test --locked \
  --test crash_recovery --test imap_ingest --test rebuild --test reparse_rules \
  --test reconcile_guard --test reconcile_keyframe --test reconcile_lease \
  --test reconcile_props --test reconcile_sim --test reconcile_http --test faults_reconcile \
  --test reconcile_sftp --test reconcile_mail \
  --test http_api --test http_feed --test http_hooks --test http_read --test http_alerts --test http_tls \
  --test cli_output --test format_change --test faults --test faults_network \
  --test report_email --test report_content --test parser_statuses \
  --test dashboard_pages --test dashboard_actions --test dashboard_live -- --skip full_disk_ "$@"

# Every shipped vendor fixture through the current parsers (what a user runs
# after adding a vendor).
if [ $# -eq 0 ]; then
  cargo run --locked -q -- parsers test
fi
