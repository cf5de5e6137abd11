#!/usr/bin/env bash
# A private PostgreSQL for the tests and benchmarks, from Debian's packages:
#   scripts/postgres.sh start DIR PORT   # initdb + start on 127.0.0.1:PORT, prints the URL
#   scripts/postgres.sh stop DIR
# The cluster listens on loopback only. Plain connections are trusted (a
# throwaway test cluster); TLS connections need user `dw`'s password, which
# is in DIR/password, and the server's certificate is signed by DIR/ca.pem
# (for 127.0.0.1 and localhost), so `sslmode=verify-full` can be tested.
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "postgres.sh: PostgreSQL is not installed (scripts/install-test-deps.sh installs it)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=${3:?port}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=driftwatch test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
    chmod 600 "$dir/password" "$dir/server.key" "$dir/ca.key"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$dir"; chmod 755 "$dir"; fi
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U dw --no-sync -E UTF8 >/dev/null
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/server.pem'
ssl_key_file = '$dir/server.key'
fsync = off
max_connections = 300
CONF
    cat > "$dir/data/pg_hba.conf" <<HBA
local     all all                trust
hostssl   all all 127.0.0.1/32   scram-sha-256
hostnossl all all 127.0.0.1/32   trust
HBA
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
  pw=$(cat "$dir/password")
  as_pg "$bin/psql" -h "$dir" -p "$port" -U dw -d postgres -q \
    -c "ALTER USER dw PASSWORD '$pw'" >/dev/null
  echo "postgres://dw@127.0.0.1:$port/postgres"
  ;;
stop)
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
