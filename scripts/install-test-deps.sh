#!/usr/bin/env bash
# Installs the real servers the integration tests talk to (Dovecot for IMAP,
# Postfix for SMTP) from Debian's packages, when they are missing.
# Idempotent: does nothing when everything is already there.
# Postfix is the real SMTP server of the report tests (tests/support/postfix.rs
# runs private instances that deliver into the test Dovecot over LMTP).
# Chromium is installed by scripts/install-chromium.sh (scripts/test.sh runs
# it): the report's phone-layout test renders in it.
# systemd-analyze checks the shipped unit (tests/packaging.rs).
# PostgreSQL (server and client) runs the suite's second round (scripts/test.sh).
# OpenSSH's server is the real SFTP server of the `kind = "sftp"` export tests
# (tests/support/sftp.rs runs private instances on loopback high ports), and
# `ssh-keygen` makes their host and client keys. Those tests also log in with
# a password as the local user `dwsftp` (password `dwsftp-test-pw`, home
# /home/dwsftp), created here; it exists only for them.
set -euo pipefail

SFTP_TEST_USER=dwsftp
SFTP_TEST_PASSWORD=dwsftp-test-pw
ensure_sftp_user() {
  if id "$SFTP_TEST_USER" >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    S=sudo
  else
    S=
  fi
  $S useradd --create-home --shell /bin/sh "$SFTP_TEST_USER"
  echo "$SFTP_TEST_USER:$SFTP_TEST_PASSWORD" | $S chpasswd
}

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd dovecot-lmtpd)
command -v doveadm >/dev/null 2>&1 || need+=(dovecot-core)
[ -x /usr/sbin/postfix ] || need+=(postfix)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# PostgreSQL: the second store backend (scripts/postgres.sh runs a private server).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)

if [ ${#need[@]} -eq 0 ]; then
  ensure_sftp_user
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

echo "installing test servers: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
ensure_sftp_user
