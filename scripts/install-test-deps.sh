#!/usr/bin/env bash
# Installs the real servers the integration tests talk to (Dovecot for IMAP,
# Postfix for SMTP) from Debian's packages, when they are missing.
# Idempotent: does nothing when everything is already there.
# Postfix is the real SMTP server of the report tests (tests/support/postfix.rs
# runs private instances that deliver into the test Dovecot over LMTP).
# Chromium is not installed here: no test needs it; scripts/screenshot-report.sh
# installs it through scripts/install-chromium.sh when you re-render docs/report.png.
set -euo pipefail

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd dovecot-lmtpd)
command -v doveadm >/dev/null 2>&1 || need+=(dovecot-core)
[ -x /usr/sbin/postfix ] || need+=(postfix)

if [ ${#need[@]} -eq 0 ]; then
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
