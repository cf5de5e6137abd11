#!/usr/bin/env bash
# Runs the benchmark harness and prints the performance table (README, "Performance").
# Installs what it needs when missing: Dovecot (as the tests do), GNU time (peak
# memory), and the Python side (pandas + datacompy, in a venv under target/).
#   ./scripts/bench.sh                              # everything: ~20 minutes on 2 cores
#   DRIFTWATCH_BENCH_ONLY=parse ./scripts/bench.sh  # sections: ingest,writepath,reparse,parse,reconcile,backlog,http,failover
#   (ingest, reconcile and failover run a second time on a private PostgreSQL; DRIFTWATCH_BENCH_POSTGRES=0 skips that)
#   DRIFTWATCH_BENCH_MESSAGES=20000 DRIFTWATCH_BENCH_BACKLOG=100000 \
#   DRIFTWATCH_BENCH_ORDERS=1000000 DRIFTWATCH_BENCH_RUNS=3 ./scripts/bench.sh
#   DRIFTWATCH_BENCH_DIR=/tmp/rb ...                 # keep (and reuse) the reconcile data
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
apt_install() {
  echo "installing $*" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
[ -x /usr/bin/time ] || apt_install time
command -v python3 >/dev/null 2>&1 || apt_install python3

# The comparison scripts: ingest.py needs only the standard library;
# reconcile_datacompy.py needs pandas + datacompy.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import pandas, datacompy" 2>/dev/null; then
  venv=target/bench-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
  fi
  PYTHON="$venv/bin/python"
  "$PYTHON" -c "import pandas, datacompy" 2>/dev/null \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check pandas datacompy
fi
export PYTHON

# Dovecot's Maildirs (one file per message) on tmpfs when it has room: the
# bare-fetch limit should measure IMAP, not this machine's disk.
# driftwatch's and Python's databases stay in temp dirs under /tmp: on disk
# (ext4 here), as users have them.
if [ -z "${DRIFTWATCH_TEST_TMPDIR:-}" ] && [ -d /dev/shm ]; then
  free_kb=$(df -Pk /dev/shm | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -gt $((6 * 1024 * 1024)) ]; then
    export DRIFTWATCH_TEST_TMPDIR=/dev/shm
  fi
fi

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2}') GB RAM" >&2
cargo bench --locked --bench harness

# The same store on PostgreSQL, side by side: ingest, reconcile and lease
# failover against a private server on loopback (scripts/postgres.sh).
if [ "${DRIFTWATCH_BENCH_POSTGRES:-1}" = 1 ]; then
  pg_dir=$(mktemp -d /tmp/driftwatch-bench-pg.XXXXXX)
  trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url=$(scripts/postgres.sh start "$pg_dir" "$pg_port")
  only=${DRIFTWATCH_BENCH_ONLY:-ingest,reconcile,failover}
  pg_only=$(echo "$only" | tr ',' '\n' | grep -E '^(ingest|reconcile|failover)$' | paste -sd, -)
  if [ -n "$pg_only" ]; then
    echo "== the same on PostgreSQL ($pg_only)" >&2
    DRIFTWATCH_TEST_BACKEND=postgres DRIFTWATCH_TEST_POSTGRES=${url%/postgres} \
      DRIFTWATCH_BENCH_ONLY=$pg_only cargo bench --locked --bench harness
  fi
fi
